"""Retrieval metrics: brute-force references, ties, hand-made cases, and regression tests of
docs/defects.md#rank-of-the-true-partner and docs/defects.md#cumulative-recall."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from trimodal.metrics import (
    EVALUATE_MODULES,
    aggregate_by_video,
    chance_metrics,
    cross_modal_retrieval,
    label_retrieval_chance,
    label_retrieval_metrics,
    metrics_from_ranks,
    retrieval_metrics,
    retrieval_ranks,
)


def brute_force_ranks(queries: np.ndarray, gallery: np.ndarray) -> list[int]:
    """Explicit loops: rank_i = 1 + #{j != i : cos(q_i, g_j) >= cos(q_i, g_i)}."""

    def unit(row: list[float]) -> list[float]:
        norm = math.sqrt(sum(v * v for v in row))
        return [v / norm for v in row]

    q = [unit(row) for row in queries.tolist()]
    g = [unit(row) for row in gallery.tolist()]
    ranks = []
    for i, qi in enumerate(q):
        sims = [sum(a * b for a, b in zip(qi, gj)) for gj in g]
        ranks.append(1 + sum(1 for j, s in enumerate(sims) if j != i and s >= sims[i]))
    return ranks


def brute_force_summary(ranks: list[int], ks) -> dict[str, float]:
    n = len(ranks)
    out = {f"R@{k}": sum(1 for r in ranks if r <= k) / n for k in ks}
    out["mean_rank"] = sum(ranks) / n
    s = sorted(ranks)
    out["median_rank"] = (s[(n - 1) // 2] + s[n // 2]) / 2
    return out


@pytest.mark.parametrize("n,d,seed", [(1, 3, 0), (57, 5, 1), (200, 16, 2)])
def test_ranks_match_brute_force_on_random_data(n, d, seed):
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((n, d))
    queries = gallery + 1.5 * rng.standard_normal((n, d))  # a weak, imperfect model
    # float64 end to end, so the matmul and the Python loops agree far below any gap
    metrics, ranks = retrieval_metrics(queries, gallery, ks=(1, 5, 10), return_ranks=True)
    expected = brute_force_ranks(queries, gallery)
    assert ranks.tolist() == expected
    ref = brute_force_summary(expected, (1, 5, 10))
    for key, value in ref.items():
        assert metrics[key] == pytest.approx(value)
    assert metrics["num_queries"] == n and metrics["gallery_size"] == n


def test_quantised_embeddings_with_exact_ties_match_integer_brute_force():
    # ±1 vectors in 4-d: only 16 distinct vectors for 80 items, so ties are everywhere. After
    # normalisation every entry is ±0.5 (exact), so float32 similarities are exact multiples of
    # 0.25 and the reference can count with integer dot products.
    rng = np.random.default_rng(3)
    gallery = rng.choice([-1.0, 1.0], size=(80, 4)).astype(np.float32)
    queries = rng.choice([-1.0, 1.0], size=(80, 4)).astype(np.float32)
    qi, gi = queries.astype(int), gallery.astype(int)
    expected = []
    for i in range(80):
        sims = [int(np.dot(qi[i], gi[j])) for j in range(80)]
        expected.append(1 + sum(1 for j in range(80) if j != i and sims[j] >= sims[i]))
    for chunk in (1, 7, 80, 1000):
        ranks = retrieval_ranks(queries, gallery, chunk_size=chunk)
        assert ranks.tolist() == expected
    assert max(expected) > 20  # the case really has many ties


def test_duplicated_gallery_rows_count_against_the_query():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 8)).astype(np.float32)
    gallery = x.copy()
    gallery[5] = gallery[3]  # item 5 is an exact copy of item 3
    ranks = retrieval_ranks(x, gallery)
    # query 3 (== x[3]) finds its partner at similarity 1, tied with the copy: pessimistic rank 2
    assert ranks[3].item() == 2
    # every other query except 5 is perfect
    assert all(ranks[i].item() == 1 for i in range(30) if i not in (3, 5))
    # query 5 (x[5]) sees x[3] twice: partner gallery[5] == gallery[3] ties exactly with gallery[3]
    assert ranks[5].item() >= 2
    # a gallery of identical rows: every partner ties with everything, rank N for all
    same = np.tile(x[:1], (30, 1))
    assert retrieval_ranks(x, same).tolist() == [30] * 30


def test_perfect_model_has_rank_one_everywhere_not_half_the_gallery():
    # docs/defects.md#rank-of-the-true-partner: diag(argsort(sim)) gives median ≈ N/2 even for
    # a perfect model.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((501, 32)).astype(np.float32)
    metrics = retrieval_metrics(x, 3.0 * x)  # scale must not matter (cosine)
    assert metrics["median_rank"] == 1.0
    assert metrics["mean_rank"] == 1.0
    assert metrics["R@1"] == 1.0 and metrics["mrr"] == 1.0
    # the buggy formula, for contrast: it is far from 1 on the very same similarities
    sim = torch.nn.functional.normalize(torch.as_tensor(x), dim=1)
    buggy = torch.diag(torch.argsort(sim @ sim.T, dim=1)).float() + 1
    assert buggy.median().item() > 50


def test_rank_does_not_depend_on_gallery_order():
    rng = np.random.default_rng(6)
    g = rng.standard_normal((120, 6))
    q = g + rng.standard_normal((120, 6))
    ranks = retrieval_ranks(q, g)
    perm = rng.permutation(120)
    ranks_perm = retrieval_ranks(q[perm], g[perm])  # same pairs, another order
    assert ranks_perm.tolist() == ranks[perm].tolist()


def test_hand_made_reversed_model():
    # Gallery on an arc at 0°, 10°, ..., 40°; query i sits on gallery item 4 - i.
    theta = np.deg2rad(np.arange(5) * 10.0)
    gallery = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    queries = gallery[::-1].copy()
    # i=0: query at 40°, partner at 0° is the farthest: rank 5. i=1: query at 30°, partner at
    # 10° (20° away) behind 30°, 20°, 40°: rank 4. i=2: on its partner: 1. i=3, i=4 mirror i=1, 0.
    assert retrieval_ranks(queries, gallery).tolist() == [5, 4, 1, 4, 5]
    m = retrieval_metrics(queries, gallery, ks=(1, 4, 5))
    assert (m["R@1"], m["R@4"], m["R@5"]) == (0.2, 0.6, 1.0)
    assert m["median_rank"] == 4.0 and m["mean_rank"] == 19 / 5


def test_directions_are_not_copies_of_each_other():
    # The research code also copied a→v ranks into v→a
    # (docs/defects.md#rank-of-the-true-partner). Here they differ:
    a = np.array([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # a1 = (1, .1) is closer to v0 (cos .995) than to its partner v1 (cos .0995): rank 2.
    assert retrieval_ranks(a, v).tolist() == [1, 2, 1]
    # v1 = (0, 1): a1 scores .0995, a0 and a2 score 0: rank 1. All of v→a is perfect.
    assert retrieval_ranks(v, a).tolist() == [1, 1, 1]
    res = cross_modal_retrieval({"audio": a, "video": v}, levels=("clip",))["clip"]
    assert res["audio→video"]["R@1"] == pytest.approx(2 / 3)
    assert res["video→audio"]["R@1"] == 1.0


def test_recall_at_k_is_cumulative():
    # docs/defects.md#cumulative-recall: with `elif`, a rank-1 hit was not counted in R@5.
    # Ranks 1, 3, 7, 30:
    m = metrics_from_ranks([1, 3, 7, 30], ks=(1, 5, 10, 25))
    assert (m["R@1"], m["R@5"], m["R@10"], m["R@25"]) == (0.25, 0.5, 0.75, 0.75)
    perfect = metrics_from_ranks([1] * 10, ks=(1, 5, 10))
    assert perfect["R@5"] == 1.0 and perfect["R@10"] == 1.0
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 8))
    m = retrieval_metrics(x, x + rng.standard_normal((300, 8)), ks=(1, 5, 10, 25))
    assert m["R@1"] <= m["R@5"] <= m["R@10"] <= m["R@25"]


@pytest.mark.parametrize("chunk", [1, 13, 64, 299, 300, 4096])
def test_chunked_equals_unchunked(chunk):
    rng = np.random.default_rng(8)
    g = rng.standard_normal((300, 24)).astype(np.float32)
    q = (g + rng.standard_normal((300, 24))).astype(np.float32)
    full = retrieval_ranks(q, g, chunk_size=300)
    assert torch.equal(retrieval_ranks(q, g, chunk_size=chunk), full)


def test_inputs_are_validated():
    x = np.ones((4, 3))
    with pytest.raises(ValueError):
        retrieval_ranks(x, np.ones((5, 3)))
    with pytest.raises(ValueError):
        retrieval_ranks(np.ones(4), np.ones(4))
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError):
        retrieval_ranks(bad, x)
    with pytest.raises(ValueError):
        metrics_from_ranks([0, 1])


def test_chance_metrics():
    m = chance_metrics(4, ks=(1, 5))
    assert m["R@1"] == 0.25 and m["R@5"] == 1.0
    assert m["median_rank"] == 2.5 and m["mean_rank"] == 2.5
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    # random embeddings land near chance (N = 2000: std of the mean rank ≈ 577/√2000 ≈ 13)
    rng = np.random.default_rng(9)
    r = retrieval_metrics(rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16)))
    assert abs(r["mean_rank"] - chance_metrics(2000)["mean_rank"]) < 80


def _loop_aggregate(x: np.ndarray, ids: list, how: str) -> tuple[np.ndarray, list]:
    uniq = sorted(set(ids))
    rows = []
    for u in uniq:
        clips = [x[i] / np.linalg.norm(x[i]) for i in range(len(ids)) if ids[i] == u]
        pooled = np.mean(clips, axis=0) if how == "mean" else np.max(clips, axis=0)
        rows.append(pooled / np.linalg.norm(pooled))
    return np.array(rows), uniq


@pytest.mark.parametrize("how", ["mean", "max"])
def test_video_level_aggregation_matches_loops(how):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((40, 5))
    ids = [f"vid{rng.integers(0, 9)}" for _ in range(40)]
    got, got_ids = aggregate_by_video(x, ids, how)
    ref, ref_ids = _loop_aggregate(x, ids, how)
    assert got_ids == ref_ids
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_cross_modal_retrieval_all_six_directions_and_video_level():
    rng = np.random.default_rng(11)
    n_clips = 90
    ids = [i // 6 for i in range(n_clips)]  # 15 videos × 6 clips
    base = rng.standard_normal((15, 12))[ids]
    emb = {m: base + 0.8 * rng.standard_normal((n_clips, 12)) for m in ("text", "audio", "video")}
    res = cross_modal_retrieval(emb, ids, ks=(1, 5))
    directions = {k for k in res["clip"] if k != "chance"}
    assert directions == {
        "text→audio",
        "audio→text",
        "text→video",
        "video→text",
        "audio→video",
        "video→audio",
    }
    assert res["clip"]["chance"]["gallery_size"] == 90
    assert res["video"]["chance"]["gallery_size"] == 15
    agg_a = _loop_aggregate(emb["audio"], ids, "mean")[0]
    agg_v = _loop_aggregate(emb["video"], ids, "mean")[0]
    expected = brute_force_summary(brute_force_ranks(agg_a, agg_v), (1, 5))
    for key, value in expected.items():
        assert res["video"]["audio→video"][key] == pytest.approx(value)
    expected_clip = brute_force_summary(brute_force_ranks(emb["text"], emb["video"]), (1, 5))
    for key, value in expected_clip.items():
        assert res["clip"]["text→video"][key] == pytest.approx(value)
    # a missing modality leaves two directions
    two = cross_modal_retrieval({"audio": emb["audio"], "video": emb["video"], "text": None}, ids)
    assert set(two["video"]) == {"audio→video", "video→audio", "chance"}
    with pytest.raises(ValueError):
        cross_modal_retrieval(emb, None, levels=("video",))


def test_label_retrieval_hand_made_with_tie():
    # One label query along x; 5 items; items 0 and 3 carry the label.
    q = np.array([[1.0, 0.0]])
    g = np.array([[0.6, 0.8], [0.8, 0.6], [1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]])
    rel = np.array([[1], [0], [0], [1], [0]])
    # similarities .6, .8, 1, .8, -1. Sklearn AP: thresholds 1 (P=0, R=0), .8 (items 1, 3 tied:
    # P=1/3, R=1/2), .6 (P=2/4, R=1): AP = 1/2·1/3 + 1/2·1/2 = 5/12.
    # Pessimistic order: 2, 1, 3 (irrelevant 1 before relevant 3 on the tie), 0, 4. First
    # relevant at rank 3; R = 2, top 2 = {2, 1}: R-precision 0.
    m = label_retrieval_metrics(q, g, rel, ks=(1, 2, 3))
    assert m["mAP"] == pytest.approx(5 / 12)
    assert m["R-precision"] == 0.0
    assert (m["any@1"], m["any@2"], m["any@3"]) == (0.0, 0.0, 1.0)


def test_label_retrieval_chance_is_the_mean_over_every_ranking():
    """The closed forms against the exact expectation: the mean of the metrics over all 720
    orders of a 6-item gallery (query at angle 0, item j at the angle of its place)."""
    from itertools import permutations

    rel = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1], [0, 0, 0, 1], [0, 1, 0, 1],
                    [0, 0, 0, 1]], dtype=bool)  # fmt: skip
    ks = (1, 2, 5)
    queries = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    runs = []
    for order in permutations(range(6)):
        angles = torch.tensor(order, dtype=torch.float64) * 0.4
        gallery = torch.stack([angles.cos(), angles.sin()], dim=1)
        runs.append(label_retrieval_metrics(queries, gallery, rel, ks=ks))
    chance = label_retrieval_chance(rel, ks=ks)
    for key in ["mAP", "R-precision", *[f"any@{k}" for k in ks]]:
        assert chance[key] == pytest.approx(np.mean([r[key] for r in runs]), rel=1e-12), key
    assert chance["num_labels"] == 4
    with pytest.raises(ValueError, match="no label"):
        label_retrieval_chance(np.zeros((3, 2), dtype=bool))


def test_label_retrieval_matches_loops_on_random_data():
    rng = np.random.default_rng(12)
    labels_q = rng.standard_normal((6, 8))
    gallery = rng.standard_normal((50, 8))
    rel = rng.random((50, 6)) < 0.2
    rel[:, 5] = False  # a label without items is left out
    m = label_retrieval_metrics(labels_q, gallery, rel, ks=(1, 5))
    aps, rps, any5 = [], [], []
    for li in range(5):
        s = [
            float(np.dot(labels_q[li], g) / np.linalg.norm(labels_q[li]) / np.linalg.norm(g))
            for g in gallery
        ]
        order = sorted(range(50), key=lambda j: -s[j])  # no ties in continuous random data
        hits, precisions = 0, []
        for pos, j in enumerate(order, start=1):
            if rel[j, li]:
                hits += 1
                precisions.append(hits / pos)
        aps.append(sum(precisions) / rel[:, li].sum())
        r = int(rel[:, li].sum())
        rps.append(sum(rel[j, li] for j in order[:r]) / r)
        any5.append(any(rel[j, li] for j in order[:5]))
    assert m["mAP"] == pytest.approx(np.mean(aps))
    assert m["R-precision"] == pytest.approx(np.mean(rps))
    assert m["any@5"] == pytest.approx(np.mean(any5))
    assert m["num_labels"] == 5 and m["num_labels_without_items"] == 1


def test_evaluate_module_loads_offline_and_agrees(tmp_path):
    # A fresh interpreter with the hub switched off, as on a machine without network.
    code = f"""
import json, numpy as np, evaluate
from trimodal.metrics import retrieval_metrics
rng = np.random.default_rng(0)
g = rng.standard_normal((64, 10)).astype(np.float32)
q = (g + rng.standard_normal((64, 10))).astype(np.float32)
m = evaluate.load({EVALUATE_MODULES["retrieval"]!r})
print(json.dumps([m.compute(predictions=q, references=g, ks=[1, 5]),
                  retrieval_metrics(q, g, (1, 5))]))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    import json

    via_evaluate, direct = json.loads(out.stdout.strip().splitlines()[-1])
    assert via_evaluate == direct
    assert direct["R@1"] > 0.0


# ----------------------------------------------------------------------------- repeated texts


def brute_force_multi_relevant(queries, gallery, query_keys, gallery_keys, ks):
    """Explicit loops: rank the gallery by cosine, irrelevant items first among equal scores;
    AP = mean over relevant items of (relevant so far / position); any@k = a relevant in top k."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    aps, firsts = [], []
    for i in range(len(q)):
        sims = [float(q[i] @ g[j]) for j in range(len(g))]
        relevant = [gallery_keys[j] == query_keys[i] for j in range(len(g))]
        order = sorted(range(len(g)), key=lambda j: (-sims[j], relevant[j]))
        hits, precisions = 0, []
        for position, j in enumerate(order, start=1):
            if relevant[j]:
                hits += 1
                precisions.append(hits / position)
        aps.append(sum(precisions) / len(precisions))
        firsts.append(next(p for p, j in enumerate(order, start=1) if relevant[j]))
    out = {"mAP": float(np.mean(aps))}
    out.update({f"any@{k}": float(np.mean([f <= k for f in firsts])) for k in ks})
    return out


def _perfect_model_with_repeated_texts():
    """14 clips of 7 videos (2 clips each), 10 clips (5 videos) sharing the text "drums": each
    text's embedding is one vector, every clip's audio and video lie next to its text's."""
    rng = np.random.default_rng(0)
    texts = ["drums"] * 10 + ["piano"] * 2 + ["choir"] * 2
    ids = [f"v{i // 2}" for i in range(14)]
    by_text = {t: rng.standard_normal(32) for t in dict.fromkeys(texts)}
    text = np.stack([by_text[t] for t in texts])
    audio = text + 0.05 * rng.standard_normal((14, 32))
    return {"text": text, "audio": audio, "video": audio.copy()}, ids, texts


def test_perfect_model_with_repeated_texts_is_perfect_text_retrieval():
    emb, ids, texts = _perfect_model_with_repeated_texts()
    # Instance-level ranks cannot tell the clips sharing a text apart: a perfect model
    # looks poor (the defect: R@1 well under 1, median rank far from 1).
    naive = cross_modal_retrieval(emb, ids, ks=(1, 5, 10))["clip"]
    assert naive["text→audio"]["R@1"] < 0.3 and naive["audio→text"]["median_rank"] >= 5
    res = cross_modal_retrieval(emb, ids, texts=texts, ks=(1, 5, 10))
    for level in ("clip", "video"):
        for direction in ("text→audio", "audio→text", "text→video", "video→text"):
            metrics = res[level][direction]
            assert metrics["mAP"] == 1.0 and metrics["any@1"] == 1.0, (level, direction)
            assert "R@1" not in metrics and "median_rank" not in metrics
    assert res["video"]["text→audio"]["gallery_size"] == 7
    assert res["video"]["text→audio"]["mean_relevant"] == pytest.approx((5 * 5 + 1 + 1) / 7)
    # audio↔video rows and keys exactly as without texts.
    plain = cross_modal_retrieval(emb, ids, ks=(1, 5, 10))
    for level in ("clip", "video"):
        for direction in ("audio→video", "video→audio", "chance"):
            assert res[level][direction] == plain[level][direction]


def test_multi_relevant_text_retrieval_matches_brute_force_at_both_levels():
    rng = np.random.default_rng(5)
    n_clips, ks = 60, (1, 5, 10)
    ids = [f"v{rng.integers(0, 20):02d}" for _ in range(n_clips)]
    pool = ["rock", "jazz", "folk", "metal", "soul", "blues"]
    texts = [pool[rng.integers(0, len(pool))] for _ in range(n_clips)]
    by_text = {t: rng.standard_normal(8) for t in pool}
    by_text["soul"] = by_text["blues"]  # two texts, one embedding: ties across texts
    emb = {
        "text": np.stack([by_text[t] for t in texts]),
        "audio": rng.standard_normal((n_clips, 8)),
        "video": rng.standard_normal((n_clips, 8)),
    }
    res = cross_modal_retrieval(emb, ids, texts=texts, ks=ks, chunk_size=7)
    for a, b in (("text", "audio"), ("video", "text")):
        expected = brute_force_multi_relevant(emb[a], emb[b], texts, texts, ks)
        for key, value in expected.items():
            assert res["clip"][f"{a}→{b}"][key] == pytest.approx(value, abs=1e-12), (a, b, key)
    # Video level: a video's text is the set of texts its clips carry; videos pooled as always.
    # (Without the shared embedding: pooling rounds it differently per video, so the two
    # texts' videos would tie to within rounding, decided differently by the two codes.)
    by_text["soul"] = rng.standard_normal(8)
    emb["text"] = np.stack([by_text[t] for t in texts])
    res = cross_modal_retrieval(emb, ids, texts=texts, ks=ks, chunk_size=7)
    video_keys = {}
    for vid, text in zip(ids, texts):
        video_keys.setdefault(vid, set()).add(text)
    keys = [tuple(sorted(video_keys[v])) for v in sorted(video_keys)]
    pooled = {m: _loop_aggregate(emb[m], ids, "mean")[0] for m in emb}
    for a, b in (("audio", "text"), ("text", "video")):
        expected = brute_force_multi_relevant(pooled[a], pooled[b], keys, keys, ks)
        for key, value in expected.items():
            assert res["video"][f"{a}→{b}"][key] == pytest.approx(value, abs=1e-12), (a, b, key)


def test_unique_texts_keep_the_instance_level_rows():
    rng = np.random.default_rng(2)
    ids = [f"v{i // 3}" for i in range(30)]
    emb = {m: rng.standard_normal((30, 8)) for m in ("text", "audio", "video")}
    texts = [f"text {i}" for i in range(30)]
    assert cross_modal_retrieval(emb, ids, texts=texts) == cross_modal_retrieval(emb, ids)
    # Clips of a video sharing its text: multi-relevant at clip level, unique at video level.
    shared = [f"text {v}" for v in ids]
    res = cross_modal_retrieval(emb, ids, texts=shared)
    plain = cross_modal_retrieval(emb, ids)
    assert "mAP" in res["clip"]["text→audio"] and "R@1" not in res["clip"]["text→audio"]
    assert res["video"] == plain["video"]
