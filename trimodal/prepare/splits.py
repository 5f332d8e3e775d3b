"""Which split a video goes to, and which of its clips are kept.

All of it is deterministic: the random choices come from :func:`~trimodal.data.schema.stable_int`
of the seed and the video id, so a video gets the same split and the same clips on every
machine, whatever the order or number of the other videos.

- :func:`assign_split`: the record's own ``split``, else by age (``split_by: age``) or by a
  hash of the id into ``split_ratios``;
- :func:`assign_keep_fractions`: the study's sparse training scheme, e.g. 30% of the train
  videos keep 20% of their clips, … (exact quotas over the train videos);
- :func:`sample_clip_indices`: which clips a video keeps given its share;
- :func:`segment_starts`: the dual-encoder scheme's random segments, one per ``1/n`` of a video;
- :func:`clip_plan`: for one video of known duration, the clips to cut (indices, start times,
  length) under either scheme.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math

import numpy as np

from trimodal.config import DataConfig
from trimodal.data.schema import SPLITS, stable_int, stable_unit
from trimodal.prepare.corpus import VideoRecord
from trimodal.prepare.errors import VideoSkipped


def assign_split(record: VideoRecord, config: DataConfig) -> str:
    """The split of ``record``: its own ``split``, else by age or by a hash of the id.

    The hash does not involve the seed: a video stays in its split whatever the seed.
    """
    if record.split:
        return record.split
    if config.split_by == "age":
        date = record.published_date()
        if date is not None:
            ref = _dt.date.fromisoformat(config.reference_date)
            age = (ref - date).days / 365.25
            if age < config.test_max_age_years:
                return "test"
            if age < config.dev_max_age_years:
                return "dev"
            return "train"
    u = stable_unit("split", record.video_id)
    ratios = np.asarray(config.split_ratios, dtype=float)
    edges = np.cumsum(ratios / ratios.sum())
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), len(SPLITS) - 1)]


def assign_keep_fractions(
    train_ids: list[str], fractions: list[list[float]], seed: int
) -> dict[str, float]:
    """Share of clips each train video keeps, with exact quotas over the train videos.

    ``fractions`` lists ``[share of videos, share of clips]``; the videos are put in a
    seeded pseudo-random order and cut at the cumulative shares (30% keep 20%, … in the study).
    """
    shares = np.asarray([f[0] for f in fractions], dtype=float)
    keeps = [float(f[1]) for f in fractions]
    order = sorted(train_ids, key=lambda v: (stable_int(seed, "fraction", v), v))
    bounds = np.round(np.cumsum(shares / shares.sum()) * len(order)).astype(int)
    result, start = {}, 0
    for keep, stop in zip(keeps, bounds):
        for vid in order[start:stop]:
            result[vid] = keep
        start = stop
    return result


def sample_clip_indices(video_id: str, n_clips: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of the clips a video keeps: ``max(1, round(fraction * n_clips))`` of them.

    Drawn without replacement from a generator seeded by ``(seed, video_id)``, returned
    sorted (int64 [k]). ``fraction >= 1`` keeps every clip.
    """
    if n_clips <= 0:
        return np.zeros(0, dtype=np.int64)
    if fraction >= 1.0:
        return np.arange(n_clips, dtype=np.int64)
    k = min(n_clips, max(1, int(math.floor(fraction * n_clips + 0.5))))
    rng = np.random.default_rng(stable_int(seed, "clips", video_id))
    return np.sort(rng.choice(n_clips, size=k, replace=False)).astype(np.int64)


def segment_starts(
    video_id: str, duration: float, n_segments: int, seg_seconds: float, seed: int
) -> np.ndarray:
    """Start times (float64 [n_segments], s) of the dual-encoder segments: one random start
    inside each ``1/n`` of the video.

    The segments never overlap (each lies inside its own part). Requires
    ``duration / n_segments >= seg_seconds``.
    """
    part = duration / n_segments
    if part < seg_seconds:
        raise ValueError("video too short for its segments")
    rng = np.random.default_rng(stable_int(seed, "segments", video_id))
    offsets = rng.uniform(0.0, part - seg_seconds, size=n_segments)
    return np.round(np.arange(n_segments) * part + offsets, 3)


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """The clips to cut from one video: ``clip_index`` and start time of each, one length."""

    indices: list[int]
    starts: list[float]  # seconds
    length: float  # seconds


def clip_plan(video_id: str, duration: float, keep_fraction: float, cfg: DataConfig) -> ClipPlan:
    """The clips of a video of ``duration`` seconds under ``cfg``'s scheme.

    ``clips``: consecutive ``clip_seconds`` clips, of which the video keeps ``keep_fraction``
    (``start_s == clip_index * clip_seconds``); ``segments``: ``num_segments`` random
    segments. Raises :class:`VideoSkipped` (``too_short``) when not even one fits.
    """
    if cfg.scheme == "segments":
        length = cfg.segment_seconds
        need = length * cfg.num_segments
        if duration + 1e-6 < need:
            raise VideoSkipped(
                "too_short",
                f"{duration:.2f} s < {cfg.num_segments} segments of {length:g} s",
            )
        starts = segment_starts(video_id, duration, cfg.num_segments, length, cfg.seed)
        return ClipPlan(list(range(cfg.num_segments)), [float(s) for s in starts], length)
    length = cfg.clip_seconds
    n = int(math.floor(duration / length + 1e-6))
    if n < 1:
        raise VideoSkipped("too_short", f"{duration:.2f} s is shorter than one clip ({length:g} s)")
    idx = sample_clip_indices(video_id, n, keep_fraction, cfg.seed)
    return ClipPlan([int(i) for i in idx], [float(i) * length for i in idx], length)
