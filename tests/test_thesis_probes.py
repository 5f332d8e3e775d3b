"""The thesis's downstream probes (genre classification, music tagging; §4.3): the softmax
probe, the metrics, the inputs M1–M3/B1–B3, the genre labels, the skips, and the
``thesis_probes`` task of ``evaluate`` / ``python -m trimodal.evaluate`` with its tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from trimodal.embedding import SplitEmbeddings
from trimodal.evaluation import evaluate, main
from trimodal.evaluation.reports import pct
from trimodal.evaluation.thesis_probes import (
    THESIS_HIDDEN_SIZES,
    SoftmaxMLPProbe,
    first_label_genres,
    load_genre_labels,
    per_tag_metrics,
    single_label_metrics,
    thesis_features,
    thesis_probes_task,
)
from trimodal.metrics import pool_by_video

NUM_LABELS = 8  # labels 0-2 act as genres (each video has exactly one), 3-7 as extra tags
EMBED_DIM = 12
FAST = {"epochs": 40, "patience": 10}


def make_split(
    split: str,
    num_videos: int,
    seed: int,
    informative: bool = True,
    clips: int = 2,
    noise: float = 1.0,
) -> SplitEmbeddings:
    """Synthetic embeddings of ``num_videos`` videos x ``clips`` clips.

    Each video has one genre label (0-2, listed first) and 1-2 of the tags 3-7. With
    ``informative`` the audio and video rows are ``labels @ centres + noise * N(0, 1)`` (so
    genre and tags are predictable), otherwise pure noise. Embeddings are unit-norm ``[N, 12]``;
    backbones ``[N, 12]`` (audio) and ``[N, 20]`` (video), unnormalised.
    """
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(size=(NUM_LABELS, EMBED_DIM)) * 2.0
    mix = np.random.default_rng(4321).normal(size=(EMBED_DIM, 20))
    video_id, clip_index, labels, first, audio, video = [], [], [], [], [], []
    for v in range(num_videos):
        genre = int(rng.integers(0, 3))
        tags = rng.choice(np.arange(3, NUM_LABELS), size=int(rng.integers(1, 3)), replace=False)
        row = np.zeros(NUM_LABELS, dtype=np.int64)
        row[genre] = 1
        row[tags] = 1
        for c in range(clips):
            video_id.append(f"{split}-{v:03d}")
            clip_index.append(c)
            labels.append(row)
            first.append(genre)
            base = row @ centres if informative else np.zeros(EMBED_DIM)
            audio.append(base + noise * rng.normal(size=EMBED_DIM))
            video.append(base + noise * rng.normal(size=EMBED_DIM))
    a = torch.tensor(np.array(audio), dtype=torch.float32)
    v = torch.tensor(np.array(video), dtype=torch.float32)
    return SplitEmbeddings(
        split=split,
        embeddings={
            "audio": torch.nn.functional.normalize(a),
            "video": torch.nn.functional.normalize(v),
        },
        backbone={"audio": 3.0 * a, "video": v @ torch.tensor(mix, dtype=torch.float32)},
        video_id=video_id,
        clip_index=clip_index,
        labels=np.array(labels),
        first_label=first,
        label_names=[f"label {i}" for i in range(NUM_LABELS)],
        titles={},
        fingerprint=f"synthetic-{split}-{seed}-{informative}",
    )


def make_splits(
    informative: bool = True, sizes=(90, 40, 60), noise: float = 1.0
) -> dict[str, SplitEmbeddings]:
    return {
        name: make_split(name, n, seed, informative, noise=noise)
        for (name, n), seed in zip(zip(("train", "dev", "test"), sizes), (1, 2, 3))
    }


@pytest.fixture(scope="module")
def informative() -> dict[str, SplitEmbeddings]:
    return make_splits(True)


@pytest.fixture(scope="module")
def random_splits() -> dict[str, SplitEmbeddings]:
    return make_splits(False)


# ----------------------------------------------------------------------------- the probe


def test_softmax_is_over_classes_and_batch_composition_does_not_matter():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)  # 4 classes
    probe = SoftmaxMLPProbe(num_classes=4, seed=0, **FAST).fit(x[:150], y[:150], x[150:], y[150:])
    assert [m.out_features for m in probe.net if isinstance(m, torch.nn.Linear)] == [
        *THESIS_HIDDEN_SIZES,
        4,
    ]
    proba = probe.predict_proba(x)
    assert proba.shape == (200, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    # A softmax over the batch (the research code's) would make each column sum to 1 instead.
    assert not np.allclose(proba.sum(axis=0), 1.0, atol=1e-3)
    logits = probe.predict_logits(x)
    np.testing.assert_allclose(proba, torch.softmax(torch.tensor(logits), dim=1).numpy())
    # An example's prediction does not depend on the other rows of its batch (up to float32
    # rounding of differently sized matrix products; a batch softmax changes it entirely).
    order = rng.permutation(200)
    np.testing.assert_allclose(probe.predict_proba(x[order]), proba[order], atol=1e-6)
    np.testing.assert_allclose(probe.predict_proba(x[7:8]), proba[7:8], atol=1e-6)
    np.testing.assert_allclose(probe.predict_proba(x[:3]), proba[:3], atol=1e-6)
    assert accuracy_score(y[150:], proba[150:].argmax(axis=1)) > 0.85


# ----------------------------------------------------------------------------- metrics


def test_single_label_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=50)
    proba = torch.softmax(torch.tensor(rng.normal(size=(50, 4))), dim=1).numpy()
    m = single_label_metrics(y, proba, ["a", "b", "c", "d"])
    pred = proba.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert m["num_auc_classes"] == 4
    assert [m["per_class"][n]["f1"] for n in "abcd"] == pytest.approx(
        f1_score(y, pred, average=None, labels=[0, 1, 2, 3])
    )
    # A class absent from y_true has no AUC; the macro AUC averages the others.
    y2 = np.where(y == 3, 0, y)
    m2 = single_label_metrics(y2, proba, ["a", "b", "c", "d"])
    assert m2["per_class"]["d"]["auc"] is None and m2["num_auc_classes"] == 3
    expected = np.mean([roc_auc_score(y2 == c, proba[:, c]) for c in range(3)])
    assert m2["roc_auc_macro"] == pytest.approx(expected)


def test_per_tag_metrics_equal_sklearn():
    rng = np.random.default_rng(2)
    y = (rng.random((40, 3)) < 0.4).astype(int)
    y[:, 2] = 0  # a tag without positives: no AUC/AP
    s = rng.random((40, 3))
    m = per_tag_metrics(y, s, 0.5, ["x", "y", "z"])
    auc = roc_auc_score(y[:, :2], s[:, :2], average=None)
    assert [m["x"]["auc"], m["y"]["auc"]] == pytest.approx(list(auc))
    assert m["z"]["auc"] is None and m["z"]["ap"] is None and m["z"]["support"] == 0
    f1 = f1_score(y, (s >= 0.5).astype(int), average=None, zero_division=0)
    assert [m[t]["f1"] for t in "xyz"] == pytest.approx(list(f1))


# ----------------------------------------------------------------------------- inputs, labels


def test_inputs_m1_to_b3_at_video_and_clip_level(informative):
    d = informative["train"]
    a, v = d.embeddings["audio"].double().numpy(), d.embeddings["video"].double().numpy()
    x, ids = thesis_features(d, "M3", "video")
    unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)  # noqa: E731
    expected, expected_ids = pool_by_video((unit(a) + unit(v)) / 2, d.video_id)
    np.testing.assert_allclose(x, expected)
    assert ids == expected_ids == d.video_ids()
    assert thesis_features(d, "M3c", "video")[0].shape == (90, 2 * EMBED_DIM)
    assert thesis_features(d, "B3", "video")[0].shape == (90, EMBED_DIM + 20)
    b1, _ = thesis_features(d, "B1", "clip")
    np.testing.assert_allclose(b1, d.backbone["audio"].double().numpy())
    no_video = make_split("train", 4, 0)
    del no_video.embeddings["video"], no_video.backbone["video"]
    with pytest.raises(ValueError, match="no video channel"):
        thesis_features(no_video, "M2", "video")


def test_genre_label_files(tmp_path):
    expected = {"v1": "rock", "v2": "pop", "v3": "rock"}
    (tmp_path / "a.csv").write_text("genre,video_id\nrock,v1\npop,v2\nrock,v3\n")
    (tmp_path / "b.csv").write_text("v1,rock\nv2,pop\n\nv3,rock\n")
    (tmp_path / "c.json").write_text(json.dumps(expected))
    records = [{"video_id": k, "genre": g} for k, g in expected.items()]
    (tmp_path / "d.json").write_text(json.dumps(records))
    for name in ("a.csv", "b.csv", "c.json", "d.json"):
        assert load_genre_labels(tmp_path / name) == expected, name
    (tmp_path / "bad.csv").write_text("v1,rock\nv1,pop\n")
    with pytest.raises(ValueError, match="two genres"):
        load_genre_labels(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        load_genre_labels(tmp_path / "missing.csv")


def test_default_genre_is_the_first_label():
    d = make_split("dev", 5, 7)
    d.first_label[2] = d.first_label[3] = -1  # video dev-001 (clips 2, 3) has no label
    genres = first_label_genres(d)
    assert "dev-001" not in genres
    assert genres["dev-000"] == d.label_names[int(np.flatnonzero(d.labels[0][:3])[0])]


# ----------------------------------------------------------------------------- the task


@pytest.mark.parametrize("task", ["genre", "tagging"])
def test_informative_features_score_high_and_random_ones_chance(task, informative, random_splits):
    rows = ("M1", "M3", "B3")
    good = thesis_probes_task(informative, "test", tasks=(task,), inputs=rows, **FAST)
    bad = thesis_probes_task(random_splits, "test", tasks=(task,), inputs=rows, **FAST)
    assert not good["skipped"] and not bad["skipped"]
    for row in rows:
        g, b = good[task]["video"]["results"][row], bad[task]["video"]["results"][row]
        assert g["roc_auc_macro"] > 0.95, (row, g["roc_auc_macro"])
        assert g["f1_macro"] > 0.8, (row, g["f1_macro"])
        assert 0.35 < b["roc_auc_macro"] < 0.65, (row, b["roc_auc_macro"])
        if task == "genre":
            assert g["accuracy"] > 0.9
            assert b["accuracy"] < 0.55  # 3 classes: chance ≈ 1/3
            assert g["num_features"] == {"M1": 12, "M3": 12, "B3": 32}[row]
        else:
            assert good[task]["video"]["tags"][0] in {f"label {i}" for i in range(8)}
            assert len(g["per_tag"]) == len(good[task]["video"]["tags"]) == NUM_LABELS
            assert b["f1_macro"] < 0.6


def test_task_metrics_are_sklearns_on_the_probes_predictions_and_deterministic(informative):
    kwargs = {"tasks": ("genre", "tagging"), "inputs": ("M2",), "levels": ("clip",), **FAST}
    out = thesis_probes_task(informative, "test", **kwargs)
    assert thesis_probes_task(informative, "test", **kwargs) == out
    # The same probe (same seed) refitted by hand gives the same predictions, and sklearn
    # gives the same numbers on them.
    xs = [thesis_features(informative[s], "M2", "clip")[0] for s in ("train", "dev", "test")]
    ys = [np.array(informative[s].first_label) for s in ("train", "dev", "test")]
    probe = SoftmaxMLPProbe(num_classes=3, seed=0, **FAST).fit(xs[0], ys[0], xs[1], ys[1])
    proba = probe.predict_proba(xs[2])
    genre = out["genre"]["clip"]
    assert genre["classes"] == ["label 0", "label 1", "label 2"]
    m = genre["results"]["M2"]
    assert m["num_examples"] == 120 and genre["num_train"] == 180
    assert m["accuracy"] == accuracy_score(ys[2], proba.argmax(1))
    assert m["f1_macro"] == pytest.approx(f1_score(ys[2], proba.argmax(1), average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(ys[2], proba, multi_class="ovr"))
    tagging = out["tagging"]["clip"]
    t = tagging["results"]["M2"]
    per_tag_auc = [t["per_tag"][tag]["auc"] for tag in tagging["tags"]]
    assert t["roc_auc_macro"] == pytest.approx(np.mean(per_tag_auc))
    assert t["f1_macro"] == pytest.approx(np.mean([t["per_tag"][x]["f1"] for x in tagging["tags"]]))


def test_top_n_tags_and_fixed_threshold(informative):
    out = thesis_probes_task(
        informative, "test", tasks=("tagging",), inputs=("M1",), top_n=3, tag_threshold=0.5, **FAST
    )
    sec = out["tagging"]["video"]
    counts = informative["train"].video_labels().sum(axis=0)
    top = sorted(range(NUM_LABELS), key=lambda i: (-counts[i], i))[:3]
    assert sec["tags"] == [f"label {i}" for i in top]
    assert sec["train_counts"] == [int(counts[i]) for i in top]
    assert sec["results"]["M1"]["threshold"] == 0.5
    with pytest.raises(ValueError, match="tag_threshold"):
        thesis_probes_task(informative, "test", tasks=("tagging",), tag_threshold=1.5)


def test_too_few_genres_are_skipped_and_rare_genres_dropped(informative):
    train_ids = informative["train"].video_ids()
    # One genre with many training videos, one with a single video: fewer than 2 usable.
    mapping = {vid: "rock" for vid in train_ids[:-1]} | {train_ids[-1]: "jazz"}
    out = thesis_probes_task(informative, "test", inputs=("M1",), genre_labels=mapping, **FAST)
    assert "genre" not in out
    reason = out["skipped"]["genre/video"]
    assert "fewer than 2 genres" in reason and "'jazz': 1" in reason
    assert "M1" in out["tagging"]["video"]["results"]  # tagging is unaffected
    # Three usable genres and a rare one: the rare genre's videos leave every split.
    mapping = {vid: ["a", "b", "c"][i % 3] for i, vid in enumerate(train_ids[:-1])}
    mapping[train_ids[-1]] = "rare"
    for s in ("dev", "test"):
        mapping |= {vid: ["a", "b", "c"][i % 3] for i, vid in enumerate(informative[s].video_ids())}
    mapping[informative["test"].video_ids()[0]] = "rare"
    out = thesis_probes_task(
        informative, "test", tasks=("genre",), inputs=("M1",), genre_labels=mapping, **FAST
    )
    genre = out["genre"]["video"]
    assert genre["classes"] == ["a", "b", "c"]
    assert genre["dropped"] == {
        "classes": ["rare"],
        "train_videos": 1,
        "dev_videos": 0,
        "test_videos": 1,
    }
    assert genre["num_train"] == 89 and genre["num_test"] == 59
    # These genres are unrelated to the features: chance level.
    assert genre["results"]["M1"]["roc_auc_macro"] < 0.7


# ----------------------------------------------------------------------------- evaluate / CLI


def _md_tables(text: str) -> dict[str, list[list[str]]]:
    """Markdown tables keyed by the nearest preceding heading or ``...:`` line: header +
    rows as lists of cells."""
    tables: dict[str, list[list[str]]] = {}
    lines, key, i = text.splitlines(), None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") or line.endswith(":"):
            key = line.lstrip("#").strip() if line.startswith("#") else f"{key} / {line}"
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            rows = [[c.strip() for c in line.strip("|").split("|")]]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            tables[key] = rows
            continue
        i += 1
    return tables


def test_evaluate_cli_writes_thesis_tables_with_the_json_numbers(tiny_model, tmp_path, monkeypatch):
    """``python -m trimodal.evaluate --tasks thesis_probes`` end to end, on a saved model,
    with the embedding extraction replaced by synthetic splits (noisy enough that the rows'
    scores differ, so the table check can tell rows apart)."""
    import trimodal.evaluation.extraction as extraction

    informative = make_splits(True, noise=6.0)
    model_dir, prepared = tmp_path / "model", tmp_path / "prepared"
    tiny_model.save_pretrained(model_dir)
    for split in ("train", "dev", "test"):
        (prepared / split).mkdir(parents=True)
    calls = []

    def fake_load_or_extract(model, model_fp, prepared_dir, split, cache_dir, **kwargs):
        calls.append(split)
        if not (Path(prepared_dir) / split).is_dir():
            raise FileNotFoundError(f"split {split!r} not found in {prepared_dir}")
        return informative[split], False

    monkeypatch.setattr(extraction, "load_or_extract", fake_load_or_extract)
    genres = tmp_path / "genres.csv"
    rows = ["video_id,genre"]
    for split in ("train", "dev", "test"):
        d = informative[split]
        rows += [f"{v},{d.label_names[d.first_label[d.video_id.index(v)]]}" for v in d.video_ids()]
    genres.write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    # fmt: off
    code = main([
        "--model", str(model_dir), "--data", str(prepared), "--split", "test",
        "--tasks", "thesis_probes", "--output", str(out), "--genre-labels", str(genres),
        "--top-tags", "4", "--thesis-epochs", "40", "--no-plots",
    ])
    # fmt: on
    assert code == 0
    assert sorted(set(calls)) == ["dev", "test", "train"]
    results = json.loads((out / "results.json").read_text())
    thesis = results["thesis_probes"]
    assert results["meta"]["config"]["genre_labels"] == str(genres)
    assert thesis["settings"]["genre_source"] == f"file {genres}"
    assert set(thesis["inputs"]) == {"M1", "M2", "M3", "M3c", "B1", "B2", "B3"}
    assert thesis["settings"]["epochs"] == 40
    assert not [k for k in results["skipped"] if k.startswith("thesis_probes")]
    tables = _md_tables((out / "results.md").read_text())
    tag_key = next(k for k in tables if k.startswith("Music tagging, video level"))
    genre_key = next(k for k in tables if k.startswith("Genre classification, video level"))
    assert "top 4 training tags" in tag_key and "3 genres" in genre_key
    tag_sec, genre_sec = thesis["tagging"]["video"], thesis["genre"]["video"]
    header, *body = tables[tag_key]
    assert header[:6] == ["Model", "Embeddings", "Features", "AUC", "F1", "mAP"]
    assert [r[0] for r in body] == ["M1", "M2", "M3", "M3c", "B1", "B2", "B3"]
    for r in body:
        m = tag_sec["results"][r[0]]
        assert r[3:6] == [pct(m["roc_auc_macro"]), pct(m["f1_macro"]), pct(m["map_macro"])]
    assert len({r[3] for r in body}) > 1 and len({r[4] for r in body}) > 1
    header, *body = tables[f"{tag_key} / AUC per tag:"]
    assert header[1:] == tag_sec["tags"]
    for r in body:
        per_tag = tag_sec["results"][r[0]]["per_tag"]
        assert r[1:] == [pct(per_tag[t]["auc"]) for t in tag_sec["tags"]]
    header, *body = tables[genre_key]
    assert header == ["Model", "Embeddings", "Features", "Accuracy", "AUC", "F1"]
    assert [r[0] for r in body] == ["M1", "M2", "M3", "M3c", "B1", "B2", "B3"]
    for r in body:
        m = genre_sec["results"][r[0]]
        assert r[3:] == [pct(m["accuracy"]), pct(m["roc_auc_macro"]), pct(m["f1_macro"])]
        assert m["accuracy"] > m["majority_accuracy"]  # the genres are predictable
    assert len({r[3] for r in body}) > 1 and len({r[4] for r in body}) > 1
    # Unknown settings fail before any extraction.
    with pytest.raises(ValueError, match="tag_threshold"):
        evaluate(model_dir, prepared, out, tasks=["thesis_probes"], tag_threshold=2.0)
    with pytest.raises(FileNotFoundError):
        evaluate(model_dir, prepared, out, tasks=["thesis_probes"], genre_labels=tmp_path / "x")
    # Without a dev split the task is skipped with the reason.
    (prepared / "dev").rmdir()
    results = evaluate(model_dir, prepared, out, tasks=["thesis_probes"], make_plots=False)
    assert "thesis_probes" not in results
    assert "need the train and dev splits" in results["skipped"]["thesis_probes"]
