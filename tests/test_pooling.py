"""Clip → video pooling: the one definition of a video's embedding, checked by hand, and the
retrieval, validation and evaluation paths that must all use it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trimodal.embedding import SplitEmbeddings
from trimodal.evaluation.reports import retrieval_table
from trimodal.metrics import aggregate_by_video, cross_modal_retrieval, pool_by_video
from trimodal.training import validation_metrics


def test_video_embedding_is_the_renormalised_mean_of_unit_clips():
    # Video "a": clips (3, 4) and (0, 2) → unit (0.6, 0.8) and (0, 1) → mean (0.3, 0.9)
    # → length sqrt(0.9) → (0.3, 0.9) / sqrt(0.9). Video "b": one clip (-2, 0) → (-1, 0).
    clips = torch.tensor([[3.0, 4.0], [-2.0, 0.0], [0.0, 2.0]])
    videos, ids = aggregate_by_video(clips, ["a", "b", "a"])
    assert ids == ["a", "b"]
    root = math.sqrt(0.9)
    torch.testing.assert_close(videos, torch.tensor([[0.3 / root, 0.9 / root], [-1.0, 0.0]]))
    torch.testing.assert_close(videos.norm(dim=1), torch.ones(2))
    # The plain per-video mean (the probes' input pooling) keeps the values: no normalisation.
    means, ids = pool_by_video(clips, ["a", "b", "a"])
    assert ids == ["a", "b"]
    torch.testing.assert_close(means, torch.tensor([[1.5, 3.0], [-2.0, 0.0]]))
    maxima, _ = pool_by_video(clips, ["a", "b", "a"], "max")
    torch.testing.assert_close(maxima, torch.tensor([[3.0, 4.0], [-2.0, 0.0]]))
    with pytest.raises(ValueError, match="3 rows but 2 video ids"):
        pool_by_video(clips, ["a", "b"])


def test_video_level_retrieval_and_validation_rank_the_pooled_videos():
    """Video-level retrieval (evaluation, the demo) and validation both rank the videos of
    :func:`aggregate_by_video`: brute force on the pooled vectors gives the same ranks."""
    rng = np.random.default_rng(3)
    ids = [f"v{i // 3}" for i in range(24)]  # 8 videos × 3 clips
    audio = torch.tensor(rng.normal(size=(24, 6)), dtype=torch.float32)
    video = audio + 1.5 * torch.tensor(rng.normal(size=(24, 6)), dtype=torch.float32)
    a, _ = aggregate_by_video(audio, ids)
    v, _ = aggregate_by_video(video, ids)
    sims = a @ v.T
    # 1-based pessimistic rank: the partner itself plus every video at least as similar.
    ranks = (sims >= sims.diagonal()[:, None]).sum(1).double()
    expected_r1 = float((ranks == 1).float().mean())
    results = cross_modal_retrieval({"audio": audio, "video": video}, ids, ks=(1,))
    assert results["video"]["audio→video"]["R@1"] == pytest.approx(expected_r1)
    assert results["video"]["audio→video"]["mean_rank"] == pytest.approx(float(ranks.mean()))
    data = SplitEmbeddings(
        "dev", {"audio": audio, "video": video}, {}, ids, [i % 3 for i in range(24)]
    )
    metrics = validation_metrics(data, ["audio", "video"], [1])
    assert metrics["video/audio→video/R@1"] == pytest.approx(expected_r1)
    assert metrics["video/gallery_size"] == 8


def _old_demo_table(results: dict) -> str:
    """The demo's table as ``cli.demo_report`` wrote it before the shared renderer."""
    rows = []
    header = "| level | direction | model | R@1 | R@5 | R@10 | median rank |\n|---|---|---|---|---|---|---|"
    for level in ("video", "clip"):
        for direction in results["trained"][level]:
            if direction == "chance":
                continue
            for name in ("trained", "untrained", "chance"):
                source = (
                    results["trained"][level]["chance"]
                    if name == "chance"
                    else results[name][level][direction]
                )
                rows.append(
                    f"| {level} | {direction} | {name} | {source['R@1']:.3f} | {source['R@5']:.3f} "
                    f"| {source['R@10']:.3f} | {source['median_rank']:.1f} |"
                )
    return "\n".join([header, *rows])


def test_retrieval_table_renders_the_demo_table_unchanged():
    rng = np.random.default_rng(0)
    ids = [f"v{i // 2}" for i in range(20)]
    results = {}
    for name in ("trained", "untrained"):
        emb = {m: rng.normal(size=(20, 4)) for m in ("text", "audio", "video")}
        results[name] = cross_modal_retrieval(emb, ids, ks=(1, 5, 10))
    table = retrieval_table(
        results, ["video", "clip"], (1, 5, 10),
        columns=("level", "direction", "model"), chance="per_direction",
        directions=[d for d in results["trained"]["video"] if d != "chance"],
        ranks=("median_rank",), score=lambda v: f"{v:.3f}", rank_format=lambda v: f"{v:.1f}",
        labels={"level": "level", "direction": "direction", "model": "model",
                "median_rank": "median rank"},
    )  # fmt: skip
    assert table == _old_demo_table(results)


def test_retrieval_table_results_layout_and_other_direction_names():
    metrics = {"R@1": 0.25, "R@10": 1.0, "median_rank": 2.0, "mean_rank": 2.5}
    chance = {"R@1": 0.125, "R@10": 1.0, "median_rank": 4.5, "mean_rank": 4.5}
    results = {"VM-NET": {"clip": {"music→video": metrics, "chance": chance}}}
    lines = retrieval_table(results, ["clip"], (1, 10)).splitlines()
    assert lines[0] == "| Direction | R@1 | R@10 | Median rank | Mean rank |"
    assert lines[2] == "| music→video | 25.00 | 100.00 | 2.0 | 2.5 |"
    assert lines[3] == "| chance | 12.50 | 100.00 | 4.5 | 4.5 |"
    with pytest.raises(ValueError, match="chance must be"):
        retrieval_table(results, ["clip"], (1,), chance="bogus")
