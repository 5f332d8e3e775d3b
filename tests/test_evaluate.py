"""Evaluation: extraction (deterministic, eval mode, stored and reused), probes, zero-shot,
neighbours, reports, plots and the ``python -m trimodal.evaluate`` command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trimodal import build_model
from trimodal.config import HeadConfig, ModelConfig
from trimodal.embedding import SplitEmbeddings
from trimodal.evaluation import evaluate, extract_split, load_or_extract, merge_results
from trimodal.evaluation.extraction import load_split
from trimodal.evaluation.probes import ProbeData, run_probe
from trimodal.evaluation.tasks import (
    load_youtube8m_features,
    neighbours_task,
    pair_similarities,
    probe_task,
)
from trimodal.metrics import choose_threshold, cross_modal_retrieval, pool_by_video

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_PLOTS = {
    "tsne_text",
    "tsne_audio",
    "tsne_video",
    "per_label_ap_zero_shot",
    "per_label_ap_probe",
    "similarity_audio_video",
    "training_curves",
}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Twelve short synthetic videos (6 train, 3 dev, 3 test; two 4-s clips each), stored
    only at the tiny presets' sizes. (The shared reference preparation has one dev and one
    test video, which makes every video-level metric trivial, and 224/112 frames, 3x slower.)"""
    from trimodal.config import DataConfig
    from trimodal.prepare import prepare
    from trimodal.prepare.corpus import read_corpus, write_corpus
    from trimodal.prepare.synthetic import SynthOptions, generate_corpus

    root = tmp_path_factory.mktemp("eval_data")
    opts = SynthOptions(min_seconds=8.5, max_seconds=9.5)
    generate_corpus(root / "corpus", 12, seed=5, opts=opts, workers=2)
    records = read_corpus(root / "corpus")
    for record, split in zip(records, ["train"] * 6 + ["dev"] * 3 + ["test"] * 3):
        record.split = split
    write_corpus(root / "corpus", records)
    config = DataConfig(
        clip_seconds=4.0,
        sparse_train=False,
        frame_sizes=[32],
        frame_margin=1.25,
        num_frames=4,
        audio_rates=[48000],
        prepare_workers=2,
    )
    prepare(root / "corpus", root / "prepared", config, show_progress=False)
    return root / "prepared"


@pytest.fixture(scope="module")
def model_dir(prepared, tmp_path_factory) -> Path:
    """A tiny model trained for a few steps by the real trainer: its ``best`` model, beside
    the run's config.yaml and metrics.jsonl (train → evaluate, end to end)."""
    from trimodal.config import load_config
    from trimodal.training import Trainer

    run = tmp_path_factory.mktemp("run")
    config = load_config(
        None,
        [
            "--data", str(prepared),
            "--output", str(run),
            "--model.preset", "tiny",
            "--model.embed_dim", "16",
            "--model.channels.audio.trainable_blocks", "none",
            "--train.batch_size", "3",
            "--train.gradient_accumulation_steps", "1",
            "--train.epochs", "2",
            "--train.log_every", "1",
            "--train.log_with", "[jsonl]",
        ],
    )  # fmt: skip
    Trainer(config).fit()
    return run / "best"


@pytest.fixture(scope="module")
def evaluated(model_dir, prepared, tmp_path_factory) -> tuple[Path, dict]:
    """All tasks on the test split (video-level probes only, to keep the test short)."""
    out = tmp_path_factory.mktemp("eval_out")
    results = evaluate(
        model_dir,
        prepared,
        out,
        split="test",
        tasks=["retrieval", "probe", "zero_shot", "neighbours"],
        batch_size=4,
        probe_levels=["video", "clip"],
    )
    return out, results


def _dropout_model() -> torch.nn.Module:
    config = ModelConfig(preset="tiny", embed_dim=16)
    for channel in config.channels.values():
        channel.head = HeadConfig(hidden_sizes=[32], dropout=0.5)
    return build_model(config)


def _md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables keyed by the nearest preceding heading: rows as {column: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, lines = None, text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(header, cells)))
                i += 1
            tables[heading] = rows
            continue
        i += 1
    return tables


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------- extraction


def test_extraction_is_deterministic_and_in_eval_mode(prepared):
    model = _dropout_model().train()
    # The heads' dropout is active in training mode: two forwards differ. (Guards the test.)
    frames = torch.rand(2, 4, 3, 32, 32)
    assert not torch.equal(model(video=frames).video_embeds, model(video=frames).video_embeds)

    modes: list[bool] = []

    def record_mode(module, args, kwargs):
        modes.append(module.training or any(m.training for m in module.modules()))

    handle = model.register_forward_pre_hook(record_mode, with_kwargs=True)
    try:
        first = extract_split(model, prepared, "test", batch_size=4)
        second = extract_split(model, prepared, "test", batch_size=3)
    finally:
        handle.remove()
    assert modes and not any(modes), "a forward ran with a module in training mode"
    assert model.training, "the model's training mode was not restored"
    assert first.modalities == ["text", "audio", "video"]
    for m in first.modalities:
        assert torch.allclose(first.embeddings[m], second.embeddings[m], atol=1e-6), m
        assert torch.allclose(first.backbone[m], second.backbone[m], atol=1e-6), m
        assert first.embeddings[m].shape == (len(first), 16)
        norms = first.embeddings[m].norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # The same batch size gives bit-identical results.
    third = extract_split(model, prepared, "test", batch_size=4)
    for m in first.modalities:
        assert torch.equal(first.embeddings[m], third.embeddings[m])
        assert torch.equal(first.backbone[m], third.backbone[m])
    # The captured backbone features are what the heads project.
    model.eval()
    with torch.no_grad():
        projected = model.project("audio", first.backbone["audio"])
    assert torch.allclose(projected, first.embeddings["audio"], atol=1e-5)
    assert first.video_id == sorted(first.video_id) and len(set(first.video_id)) == 3
    assert first.labels.shape == (len(first), len(first.label_names))
    assert all(first.labels[i, lab] == 1 for i, lab in enumerate(first.first_label) if lab >= 0)


def test_embeddings_are_stored_and_reused(tiny_model, prepared, tmp_path):
    data, reused = load_or_extract(tiny_model, "fp-a", prepared, "dev", tmp_path, batch_size=4)
    assert not reused
    assert (tmp_path / "embeddings_dev.safetensors").stat().st_size > 0
    meta = json.loads((tmp_path / "embeddings_dev.json").read_text())
    assert meta["video_id"] == data.video_id and meta["fingerprint"] == data.fingerprint
    again, reused = load_or_extract(tiny_model, "fp-a", prepared, "dev", tmp_path)
    assert reused
    for m in data.modalities:
        assert torch.equal(data.embeddings[m], again.embeddings[m])
        assert torch.equal(data.backbone[m], again.backbone[m])
    assert np.array_equal(data.labels, again.labels) and again.titles == data.titles
    # Another model fingerprint (other weights) invalidates the stored embeddings.
    _, reused = load_or_extract(tiny_model, "fp-b", prepared, "dev", tmp_path)
    assert not reused
    stored = load_split(tmp_path, "dev")
    assert stored is not None and stored.fingerprint != data.fingerprint
    # A damaged file is recomputed, not trusted.
    (tmp_path / "embeddings_dev.safetensors").write_bytes(b"garbage")
    assert load_split(tmp_path, "dev") is None
    _, reused = load_or_extract(tiny_model, "fp-b", prepared, "dev", tmp_path)
    assert not reused


def test_pool_by_video():
    x = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    pooled, ids = pool_by_video(x, ["b", "a", "b"])
    assert ids == ["a", "b"]
    np.testing.assert_allclose(pooled, [[3.0, 2.0], [3.0, 2.5]])
    pooled, _ = pool_by_video(x, ["b", "a", "b"], "max")
    np.testing.assert_allclose(pooled, [[3.0, 2.0], [5.0, 5.0]])


# ----------------------------------------------------------------------------- probes


def _synthetic_probe_data(informative: bool, n: int, rng: np.random.Generator) -> ProbeData:
    labels = (rng.random((n, 8)) < 0.2).astype(np.int64)
    noise = rng.normal(size=(n, 12))
    if informative:
        features = np.concatenate([3 * labels + 0.3 * rng.normal(size=labels.shape), noise], 1)
    else:
        features = noise
    return ProbeData(features, labels)


@pytest.mark.parametrize("probe", ["sklearn_mlp", "torch_linear"])
def test_probe_learns_informative_features_and_not_random_ones(probe):
    rng = np.random.default_rng(0)
    results = {}
    for informative in (True, False):
        train, dev, test = (_synthetic_probe_data(informative, n, rng) for n in (300, 100, 200))
        results[informative] = run_probe(probe, train, dev, test, seed=0)
    good, bad = results[True], results[False]
    assert good["f1"] > 0.9 and good["f1_micro"] > 0.9
    assert good["map_macro"] > 0.95 and good["gap"] > 0.9 and good["roc_auc_macro"] > 0.95
    assert good["subset_accuracy"] > 0.7 and good["hamming_loss"] < 0.03
    assert bad["f1"] < 0.5 and bad["map_macro"] < 0.4 and bad["gap"] < 0.5
    assert 0.3 < bad["roc_auc_macro"] < 0.7
    assert good["num_train"] == 300 and good["num_dev"] == 100 and good["num_examples"] == 200
    assert len(good["per_label_ap"]) == 8


def test_probe_threshold_is_chosen_on_dev(monkeypatch):
    rng = np.random.default_rng(1)
    train, dev, test = (_synthetic_probe_data(True, n, rng) for n in (200, 80, 120))
    seen = {}
    original = choose_threshold

    def spy(y_true, y_score, *args, **kwargs):
        seen["rows"] = np.asarray(y_true).shape[0]
        return original(y_true, y_score, *args, **kwargs)

    monkeypatch.setattr("trimodal.evaluation.probes.choose_threshold", spy)
    result = run_probe("torch_linear", train, dev, test)
    assert seen["rows"] == 80
    assert result["threshold"] == pytest.approx(original(dev.y, _refit_scores(train, dev))[0])


def _refit_scores(train: ProbeData, dev: ProbeData) -> np.ndarray:
    from trimodal.evaluation.probes import make_probe

    return make_probe("torch_linear").fit(train.x, train.y, dev.x, dev.y).predict_proba(dev.x)


def test_youtube8m_baseline_probe(evaluated, tmp_path):
    out, _ = evaluated
    splits = {s: load_split(out, s) for s in ("train", "dev", "test")}
    ids = sorted({v for d in splits.values() for v in d.video_id})
    rng = np.random.default_rng(0)
    npz = tmp_path / "yt8m.npz"
    np.savez(
        npz,
        video_id=np.array(ids),
        mean_rgb=rng.normal(size=(len(ids), 1024)).astype(np.float32),
        mean_audio=rng.normal(size=(len(ids), 128)).astype(np.float32),
    )
    features = load_youtube8m_features(npz)
    assert set(features) == set(ids) and features[ids[0]].shape == (1152,)
    res = probe_task(
        splits,
        "test",
        probes=("torch_linear",),
        levels=("video",),
        baselines=False,
        youtube8m=features,
    )
    row = res["results"]["video"]["youtube8m:mean_rgb+mean_audio"]["torch_linear"]
    assert row["num_train"] == 6 and row["num_examples"] == 3 and row["num_features"] == 1152
    # Features for none of the dev videos: the baseline is skipped with a reason.
    partial = {v: f for v, f in features.items() if v not in splits["dev"].video_id}
    res = probe_task(splits, "test", probes=("torch_linear",), levels=("video",), youtube8m=partial)
    (key,) = [k for k in res["skipped"] if "youtube8m" in k]
    assert "none of the 3 dev videos" in res["skipped"][key]
    assert "embedding:audio+video" in res["results"]["video"]


def test_pair_similarities_match_brute_force():
    rng = torch.Generator().manual_seed(0)
    audio, video = torch.randn(9, 5, generator=rng), torch.randn(9, 5, generator=rng)
    ids = ["a", "a", "b", "b", "b", "c", "c", "d", "e"]
    data = SplitEmbeddings(
        "test", {"audio": audio, "video": video}, {}, ids, [0] * 9, np.zeros((9, 1), int),
        [-1] * 9, ["x"], {}, "",
    )  # fmt: skip
    sims = (
        torch.nn.functional.normalize(audio.double(), dim=1)
        @ torch.nn.functional.normalize(video.double(), dim=1).T
    ).numpy()
    other_video = np.asarray(ids)[:, None] != np.asarray(ids)[None, :]
    out = pair_similarities(data)
    np.testing.assert_allclose(out["positive"], np.diag(sims), atol=1e-6)
    np.testing.assert_allclose(np.sort(out["negative"]), np.sort(sims[other_video]), atol=1e-6)
    assert out["num_negative_pairs"] == other_video.sum() == 81 - (4 + 9 + 4 + 1 + 1)
    # Sampled negatives (fewer pairs allowed than exist) are still cross-video pairs only.
    sampled = pair_similarities(data, max_negatives=40)
    assert 0 < sampled["num_negative_pairs"] <= 40
    gaps = np.abs(sampled["negative"][:, None] - sims[other_video][None, :]).min(axis=1)
    assert (gaps < 1e-6).all()


# ----------------------------------------------------------------------------- neighbours


def test_neighbours_follow_similarity_and_count_shared_labels():
    # Videos a and b point the same way in audio, a and c in video.
    emb_audio = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    emb_video = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.98, 0.2], [-1.0, 0.1]])
    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    data = SplitEmbeddings(
        split="test",
        embeddings={"audio": emb_audio, "video": emb_video},
        backbone={},
        video_id=["a", "b", "c", "d"],
        clip_index=[0, 0, 0, 0],
        labels=labels,
        first_label=[0, 0, 1, 1],
        label_names=["Rock", "Jazz"],
        titles={"a": "A", "b": "B", "c": "C", "d": "D"},
        fingerprint="",
    )
    out = neighbours_task(data, num_seeds=4, k=1)
    seed_a = out["seeds"][0]
    assert seed_a["video_id"] == "a" and seed_a["labels"] == ["Rock"]
    assert seed_a["neighbours"]["audio"][0]["video_id"] == "b"
    assert seed_a["neighbours"]["video"][0]["video_id"] == "c"
    assert seed_a["neighbours"]["audio"][0]["title"] == "B"
    # audio: a→b, b→a (Rock-Rock), c→b? c·b = 0.1 vs c·a = 0, c·d = 0 → b (no shared label);
    # d→c (d·c = 0 > d·b = -0.99) shares Jazz: 3 of 4.
    assert out["label_precision@k"]["audio"] == pytest.approx(0.75)


# ----------------------------------------------------------------------------- plots


def _run_records(pairs: list[str], steps: int = 6) -> list[dict]:
    """metrics.jsonl records of a run with these pairs: train terms every step, dev retrieval
    every other step (R@10 for audio-video, mAP and any@10 for the text pairs)."""
    records = []
    for step in range(1, steps + 1):
        train = {"train/loss": 3.0 / step, "train/lr": 1e-3}
        train.update({f"train/loss/{p}": 1.0 / step for p in pairs})
        records.append({"step": step, **train})
        if step % 2 == 0:
            dev = {}
            for pair in pairs:
                names = ["R@10"] if "text" not in pair else ["mAP", "any@10"]
                for level in ("video", "clip"):
                    dev.update({f"dev/{level}/{pair}/mean_{n}": step / 10 for n in names})
                    dev[f"dev/{level}/{pair.replace('-', '→')}/R@1"] = 0.1  # not drawn
            records.append({"step": step, **dev})
    return records


@pytest.mark.parametrize(
    "pairs", [["text-audio", "text-video", "audio-video"], ["audio-video"]], ids=len
)
def test_training_curves_are_small_multiples_one_column_per_pair(pairs, tmp_path):
    from trimodal.evaluation.plots import plot_training_curves, training_curves_figure

    fig = training_curves_figure(_run_records(pairs), "run")
    axes = fig.get_axes()
    assert len(axes) == 2 * (len(pairs) + 1)
    top = [ax.get_title() for ax in axes[: len(pairs) + 1]]
    assert top == ["total (weighted)", *pairs]
    for column, pair in enumerate(pairs, start=1):
        loss_axes, dev_axes = axes[column], axes[len(pairs) + 1 + column]
        assert len(loss_axes.get_lines()) == 1
        labels = [line.get_label() for line in dev_axes.get_lines()]
        names = ["R@10"] if "text" not in pair else ["mAP", "any@10"]
        assert labels == [f"{n} ({level})" for n in names for level in ("video", "clip")]
        video = dev_axes.get_lines()[0]
        assert list(video.get_xdata()) == [2, 4, 6]
        assert list(video.get_ydata()) == pytest.approx([0.2, 0.4, 0.6])
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _run_records(pairs)))
    png = plot_training_curves(path, tmp_path / "curves.png", "run")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- end to end


def test_evaluate_writes_results_markdown_and_plots(evaluated):
    out, results = evaluated
    for name in ("results.json", "results.md", "neighbours.md"):
        assert (out / name).stat().st_size > 0, name
    for split in ("train", "dev", "test"):
        assert (out / f"embeddings_{split}.safetensors").stat().st_size > 0
    assert set(results["plots"]) == EXPECTED_PLOTS, results["skipped"]
    for rel in results["plots"].values():
        content = (out / rel).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 2000, rel
    assert results["skipped"] == {}
    assert json.loads((out / "results.json").read_text()) == results
    meta = results["meta"]
    assert meta["objective"] == "weighted_contrastive"
    assert meta["run_name"].endswith("/best") and len(meta["model_fingerprint"]) == 64
    assert meta["num_clips"] == 6 and meta["num_videos"] == 3
    assert set(meta["embedding_fingerprints"]) == {"train", "dev", "test"}
    assert meta["config"]["probes"] == ["sklearn_mlp", "torch_linear"]
    # Retrieval numbers are those of the stored embeddings.
    stored = load_split(out, "test")
    assert len(stored.texts) == len(stored.video_id)  # each clip's text is stored with it
    expected = cross_modal_retrieval(
        stored.embeddings, stored.video_id, texts=stored.texts, ks=(1, 5, 10)
    )
    got = results["retrieval"]
    for level in ("clip", "video"):
        assert set(got[level]) == set(expected[level])
        for direction, values in expected[level].items():
            for key, value in values.items():
                assert got[level][direction][key] == pytest.approx(value), (level, direction)
    assert got["video"]["chance"]["gallery_size"] == 3
    # Probes ran for every input and both probes, with test = the 3 test videos.
    video_probes = results["probe"]["results"]["video"]
    assert set(video_probes) == {
        "embedding:audio",
        "embedding:video",
        "embedding:audio+video",
        "backbone:audio",
        "backbone:video",
        "backbone:audio+video",
    }
    row = video_probes["embedding:audio+video"]["sklearn_mlp"]
    assert row["num_examples"] == 3 and row["num_train"] == 6 and row["num_features"] == 2 * 16
    assert video_probes["backbone:audio"]["torch_linear"]["num_features"] == 64
    clip_row = results["probe"]["results"]["clip"]["embedding:audio"]["torch_linear"]
    assert clip_row["num_examples"] == 6 and clip_row["num_train"] == 12
    # Zero-shot: three scorings at two levels, label-as-query for both content modalities.
    tagging = results["zero_shot"]["tagging"]
    assert set(tagging["video"]) == {"audio", "video", "audio+video"}
    assert all(0 <= tagging[lvl][g]["gap"] <= 1 for lvl in tagging for g in tagging[lvl])
    assert set(results["zero_shot"]["label_retrieval"]["clip"]) == {"audio", "video"}
    assert len(results["neighbours"]["seeds"]) == 3
    assert 0.0 <= results["av_similarity"]["auc"] <= 1.0


def test_markdown_tables_show_the_json_numbers(evaluated):
    out, results = evaluated
    tables = _md_tables((out / "results.md").read_text())
    video = {r["Direction"]: r for r in tables["Retrieval, video level (gallery of 3 videos)"]}
    clip = {r["Direction"]: r for r in tables["Retrieval, clip level (gallery of 6 clips)"]}
    for rows, level in ((video, "video"), (clip, "clip")):
        # Clips of a video share its text here: at clip level the text rows are
        # multi-relevant, in their own table; the 3 test videos' texts are unique.
        multi = {d: v for d, v in results["retrieval"][level].items() if "mAP" in v}
        heading = f"Text retrieval with repeated texts, {level} level"
        assert bool(multi) == (level == "clip") == (heading in tables), level
        multi_rows = {r["Direction"]: r for r in tables.get(heading, [])}
        assert set(multi_rows) == set(multi)
        for direction, values in multi.items():
            for key in ("any@1", "any@10", "mAP"):
                assert float(multi_rows[direction][key]) == pytest.approx(
                    100 * values[key], abs=0.006
                )
        assert set(rows) == set(results["retrieval"][level]) - set(multi)
        for direction, values in results["retrieval"][level].items():
            if direction in multi:
                continue
            assert float(rows[direction]["R@1"]) == pytest.approx(100 * values["R@1"], abs=0.006)
            assert float(rows[direction]["R@10"]) == pytest.approx(100 * values["R@10"], abs=0.006)
            assert float(rows[direction]["Median rank"]) == pytest.approx(
                values["median_rank"], abs=0.051
            )
    probe_table = next(v for k, v in tables.items() if k.startswith("Multilabel probes, video"))
    row = next(
        r
        for r in probe_table
        if r["Features"] == "embedding:audio+video" and r["Probe"] == "sklearn_mlp"
    )
    expected = results["probe"]["results"]["video"]["embedding:audio+video"]["sklearn_mlp"]
    assert float(row["F1"]) == pytest.approx(100 * expected["f1"], abs=0.006)
    assert float(row["Hamming loss"]) == pytest.approx(expected["hamming_loss"], abs=6e-5)
    zs = next(v for k, v in tables.items() if k.startswith("Zero-shot tagging"))
    zrow = next(r for r in zs if r["Level"] == "video" and r["Scored by"] == "audio+video")
    expected = results["zero_shot"]["tagging"]["video"]["audio+video"]
    assert float(zrow["GAP"]) == pytest.approx(100 * expected["gap"], abs=0.006)
    assert float(zrow["mAP"]) == pytest.approx(100 * expected["map"], abs=0.006)
    neighbours = (out / "neighbours.md").read_text()
    for seed in results["neighbours"]["seeds"]:
        assert f"## {seed['video_id']}: {seed['title']}" in neighbours


def test_merge_command_compares_runs(evaluated, tmp_path):
    out, results = evaluated
    other = json.loads(json.dumps(results))
    other["meta"]["run_name"] = "other/best"
    other["meta"]["objective"] = "cosine"
    other["retrieval"]["video"]["audio→video"]["R@1"] = 0.5
    second = tmp_path / "other.json"
    second.write_text(json.dumps(other))
    comparison = tmp_path / "comparison.md"
    proc = subprocess.run(
        [sys.executable, "-m", "trimodal.evaluate", "merge", str(out / "results.json"),
         str(second), "--output", str(comparison)],
        capture_output=True, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (rows,) = _md_tables(comparison.read_text()).values()
    assert [r["Run"] for r in rows] == [results["meta"]["run_name"], "other/best"]
    assert [r["Objective"] for r in rows] == ["weighted_contrastive", "cosine"]
    first_r1 = 100 * results["retrieval"]["video"]["audio→video"]["R@1"]
    assert float(rows[0]["audio→video R@1"]) == pytest.approx(first_r1, abs=0.006)
    assert rows[1]["audio→video R@1"] == "50.00"
    headline = results["probe"]["results"]["video"]["embedding:audio+video"]["sklearn_mlp"]
    assert float(rows[0]["Probe F1"]) == pytest.approx(100 * headline["f1"], abs=0.006)
    (single,) = _md_tables(merge_results([out / "results.json"])).values()
    assert len(single) == 1
    with pytest.raises(FileNotFoundError):
        merge_results([tmp_path / "missing.json"])


def test_cli_reuses_stored_embeddings(evaluated, model_dir, prepared, tmp_path):
    out, results = evaluated
    for split in ("test",):
        for suffix in ("safetensors", "json"):
            shutil.copy(out / f"embeddings_{split}.{suffix}", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "trimodal.evaluate", "--model", str(model_dir), "--data",
         str(prepared), "--split", "test", "--tasks", "retrieval,neighbours", "--output",
         str(tmp_path), "--no-plots"],
        capture_output=True, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["meta"]["embeddings_reused"] == {"test": True}
    assert again["retrieval"] == results["retrieval"]
    assert "probe" not in again and again["plots"] == {}
    assert re.search(r"wrote .*results\.json", proc.stdout)


def test_missing_text_channel_and_missing_splits_are_reported(prepared, tmp_path):
    model = build_model(ModelConfig(preset="tiny", modalities=["audio", "video"], embed_dim=16))
    model.save_pretrained(tmp_path / "av_model")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "test").symlink_to(prepared / "test", target_is_directory=True)
    results = evaluate(
        tmp_path / "av_model",
        partial,
        tmp_path / "out",
        split="test",
        tasks=["retrieval", "zero_shot", "probe"],
        make_plots=False,
    )
    assert "no text channel" in results["skipped"]["zero_shot"]
    assert "train" in results["skipped"]["probe"]
    assert set(results["retrieval"]["video"]) == {"audio→video", "video→audio", "chance"}
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Skipped" in md and "no text channel" in md
    with pytest.raises(FileNotFoundError, match="split 'dev' not found"):
        evaluate(
            tmp_path / "av_model", partial, tmp_path / "out2", split="dev", tasks=["retrieval"]
        )
    with pytest.raises(ValueError, match="unknown tasks"):
        evaluate(tmp_path / "av_model", partial, tmp_path / "o", tasks=["retrieval", "bogus"])
