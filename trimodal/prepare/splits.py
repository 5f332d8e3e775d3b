"""Which split a video goes to, and which of its clips are kept.

All of it is deterministic: the random choices come from :func:`~trimodal.data.schema.stable_int`
of the seed and the video id, so a video gets the same split and the same clips on every
machine, whatever the order or number of the other videos.

- :func:`age_split`: the study's split by age (:class:`AgeSplit` ranges against a reference
  date, in calendar months), the one rule ``prepare --split-by age`` and ``yt8m-filter`` share;
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
from collections.abc import Sequence

import numpy as np

from trimodal.config import DataConfig
from trimodal.data.schema import SPLITS, stable_int, stable_unit
from trimodal.prepare.corpus import VideoRecord
from trimodal.prepare.errors import VideoSkipped


@dataclasses.dataclass(frozen=True)
class AgeSplit:
    """The split ``name`` holds the videos with ``min_years <= age < max_years``.

    ``max_years`` ``inf``: no upper bound. Both bounds must be whole months (8.5 years = 102
    months): ages are compared as calendar dates, see :func:`age_split`.
    """

    name: str
    min_years: float
    max_years: float = math.inf


# The trimodal study's splits (docs/research.md#trimodal-study-data): test 7–8 years old,
# dev 8–8.5, train older; younger videos are excluded.
DEFAULT_AGE_SPLITS = (AgeSplit("test", 7, 8), AgeSplit("dev", 8, 8.5), AgeSplit("train", 8.5))


@dataclasses.dataclass(frozen=True)
class AgeVerdict:
    """Where :func:`age_split` puts a video: ``split``, or ``None`` with a ``reason``.

    ``reason`` is ``too_recent`` (younger than every split), ``too_old`` (at least as old as
    every split's upper bound) or ``age_between_splits`` (in a gap between two ranges);
    ``detail`` says it for a person.
    """

    split: str | None
    reason: str | None = None
    detail: str = ""

    def reason_text(self) -> str | None:
        """``"reason: detail"`` (the form of ``yt8m-filter``'s reasons), ``None`` if kept."""
        return None if self.reason is None else f"{self.reason}: {self.detail}"


def subtract_months(day: _dt.date, months: int) -> _dt.date:
    """``day`` minus ``months`` calendar months (the day clamped to the month's length)."""
    y, m = divmod(day.year * 12 + (day.month - 1) - months, 12)
    m += 1
    last = (_dt.date(y + (m == 12), m % 12 + 1, 1) - _dt.timedelta(days=1)).day
    return _dt.date(y, m, min(day.day, last))


def whole_months(years: float) -> int:
    """``years`` as a whole number of months; ``ValueError`` if it is not one."""
    months = years * 12
    if abs(months - round(months)) > 1e-9:
        raise ValueError(f"split ages must be whole months, got {years} years")
    return round(months)


def check_age_splits(splits: Sequence[AgeSplit]) -> None:
    """Raise ``ValueError`` unless the names are unique, every range is ``0 <= min < max``
    in whole months, and no two ranges overlap (so a video is in at most one split)."""
    names = [s.name for s in splits]
    if not splits:
        raise ValueError("no age splits given")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate split names in {names}")
    for s in splits:
        if not 0 <= s.min_years < s.max_years:
            raise ValueError(f"split {s.name}: need 0 <= min age < max age")
        whole_months(s.min_years)
        if math.isfinite(s.max_years):
            whole_months(s.max_years)
    ordered = sorted(splits, key=lambda s: s.min_years)
    for a, b in zip(ordered, ordered[1:]):
        if b.min_years < a.max_years:
            raise ValueError(f"age splits {a.name} and {b.name} overlap")


def age_split(
    published: _dt.date,
    reference_date: _dt.date,
    splits: Sequence[AgeSplit] = DEFAULT_AGE_SPLITS,
) -> AgeVerdict:
    """The split of a video published on ``published``, by its age on ``reference_date``.

    Calendar arithmetic, no day counts: a video is *at least k years old* when
    ``published <= reference_date - k years``, the subtraction done in whole calendar months
    (:func:`subtract_months`; 8.5 years = 102 months, a day past the month's end clamped to
    it). Each split is the half-open age range ``[min_years, max_years)``: at least
    ``min_years`` old and not yet ``max_years``. With the study's splits and the reference
    2023-01-01, a video published 2016-01-01 (exactly 7) is ``test``, 2016-01-02 is
    ``too_recent``, 2015-01-01 (exactly 8) is ``dev``, 2014-07-02 is ``dev`` and 2014-07-01
    (exactly 8.5) is ``train``. ``splits`` is assumed valid (:func:`check_age_splits`).
    """

    def at_least(years: float) -> bool:
        return math.isfinite(years) and published <= subtract_months(
            reference_date, whole_months(years)
        )

    for s in splits:
        if at_least(s.min_years) and not at_least(s.max_years):
            return AgeVerdict(s.name)
    on = reference_date.isoformat()
    youngest = min(s.min_years for s in splits)
    if not at_least(youngest):
        return AgeVerdict(None, "too_recent", f"younger than {youngest:g} years on {on}")
    oldest = max(s.max_years for s in splits)
    if at_least(oldest):
        return AgeVerdict(None, "too_old", f"at least {oldest:g} years old on {on}")
    return AgeVerdict(None, "age_between_splits", "age outside every split")


def age_splits_of(config: DataConfig) -> tuple[AgeSplit, ...]:
    """The age ranges of a :class:`DataConfig`: ``test`` from ``test_min_age_years`` to
    ``test_max_age_years``, ``dev`` from there to ``dev_max_age_years``, ``train`` older."""
    return (
        AgeSplit("test", config.test_min_age_years, config.test_max_age_years),
        AgeSplit("dev", config.test_max_age_years, config.dev_max_age_years),
        AgeSplit("train", config.dev_max_age_years),
    )


def assign_split(record: VideoRecord, config: DataConfig) -> str:
    """The split of ``record``: its own ``split``, else by age or by a hash of the id.

    By age (``split_by: age``, :func:`age_split` over :func:`age_splits_of`), a dated video
    outside every range raises :class:`VideoSkipped` with :func:`age_split`'s reason
    (``too_recent``, ...); an undated one falls back to the hash. The hash does not involve
    the seed: a video stays in its split whatever the seed.
    """
    if record.split:
        return record.split
    if config.split_by == "age":
        date = record.published_date()
        if date is not None:
            reference = _dt.date.fromisoformat(config.reference_date)
            verdict = age_split(date, reference, age_splits_of(config))
            if verdict.split is None:
                raise VideoSkipped(verdict.reason, verdict.detail)
            return verdict.split
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
