""" "More like this" with a trained model: on the synthetic corpus, whose look and sound follow
the labels, the top results share a label with the query more often after training than with
the same model untrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trimodal.search.embedder import EmbedOptions, embed_prepared, load_model, load_videos
from trimodal.search.index import Catalogue, build_index
from trimodal.search.query import more_like_this

REPO = Path(__file__).resolve().parents[1]
TRAIN_VIDEOS, TEST_VIDEOS, K = 120, 40, 5


def label_sharing(model_dir: Path, prepared: Path, out: Path) -> float:
    """Mean share of each test video's top-K "more like this" results that share a label."""
    model, fp = load_model(model_dir)
    options = EmbedOptions(batch_size=32, show_progress=False, previews=False)
    embed_prepared(model, prepared, "test", out / "embedded", model_fp=fp, options=options)
    items, vectors, _ = load_videos(out / "embedded")
    build_index(out / "index", items, {m: vectors[m] for m in ("audio", "video")})
    cat = Catalogue.load(out / "index")
    labels = {item["id"]: set(item["labels"]) for item in items}
    shares = []
    for item in items:
        hits = more_like_this(cat, item["id"], k=K)
        shares.append(np.mean([bool(labels[h.id] & labels[item["id"]]) for h in hits]))
    return float(np.mean(shares))


@pytest.mark.slow
def test_trained_model_finds_videos_that_share_labels(tmp_path):
    from trimodal.cli import demo_data_config
    from trimodal.config import load_config
    from trimodal.prepare import prepare
    from trimodal.prepare.corpus import read_corpus, write_corpus
    from trimodal.prepare.synthetic import SynthOptions, generate_corpus
    from trimodal.training import Trainer

    corpus = tmp_path / "corpus"
    opts = SynthOptions(min_seconds=8, max_seconds=10, width=80, height=60)
    generate_corpus(corpus, TRAIN_VIDEOS + TEST_VIDEOS, seed=21, opts=opts, workers=2)
    records = read_corpus(corpus)
    for i, record in enumerate(records):
        record.split = "train" if i < TRAIN_VIDEOS - 10 else "dev" if i < TRAIN_VIDEOS else "test"
    write_corpus(corpus, records)
    prepared = tmp_path / "prepared"
    prepare(corpus, prepared, demo_data_config(), show_progress=False)
    run = tmp_path / "run"
    config = load_config(
        str(REPO / "configs" / "demo.yaml"),
        ["--data", str(prepared), "--output", str(run), "--train.log_with", "[jsonl]"],
    )
    from trimodal.modeling import build_model

    model = build_model(config.model)
    model.save_pretrained(run / "untrained")
    Trainer(config, model=model).fit()
    trained = label_sharing(run / "best", prepared, tmp_path / "trained")
    untrained = label_sharing(run / "untrained", prepared, tmp_path / "untrained")
    print(f"label sharing of the top {K}: trained {trained:.3f}, untrained {untrained:.3f}")
    assert trained >= untrained + 0.05, (trained, untrained)
