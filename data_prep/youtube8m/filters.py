"""``yt8m-filter``: quality filters on the API metadata and splits by video age.

Defaults are the trimodal study's: duration 100–512 s, views ≥ 10,000, likes ≥ 100,
comments ≥ 5 (all bounds inclusive), and splits by age at a reference date of 2023-01-01:
``test`` 7–8 years old, ``dev`` 8–8.5, ``train`` 8.5 and older.

Age rule: :func:`trimodal.prepare.splits.age_split`, the one ``prepare --split-by age``
uses too. A video published on day ``d`` is at least ``k`` years old when
``d <= reference - k years`` (calendar arithmetic on whole months; 8.5 years = 102 months).
Each split is a half-open age range ``[min_age, max_age)``: a video exactly 8 years old
(published 2015-01-01) is in ``dev``, not ``test``; one published 2016-01-01 (exactly 7) is in
``test``; 2014-07-01 (exactly 8.5) is in ``train``. Videos younger than every split (published
after 2016-01-01 by default) are excluded with reason ``too_recent``, videos at least as old
as every split's upper bound (when all have one) with ``too_old``, and ages that fall between
configured ranges with ``age_between_splits``. The ranges must not overlap, so each kept video
is in exactly one split.

Every excluded video is listed with all its reasons in ``excluded.jsonl``; each reason is
``code: details`` (``too_short``, ``few_likes``, ``missing_likes``, ``too_recent``, ...) and the
summary counts the codes.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data_prep.youtube8m.jsonl import write_jsonl_atomic
from trimodal.prepare.splits import DEFAULT_AGE_SPLITS, AgeSplit, age_split, check_age_splits

SELECTED_FILE = "selected.jsonl"
EXCLUDED_FILE = "excluded.jsonl"
SUMMARY_FILE = "filter_summary.json"


class DurationError(ValueError):
    """A string that is not an ISO-8601 duration this parser accepts."""


_DURATION = re.compile(
    r"^P(?!$)"
    r"(?:(?P<weeks>\d+)W)?"
    r"(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)"
    r"(?:(?P<hours>\d+)H)?"
    r"(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?"
    r")?$"
)


def parse_iso8601_duration(text: str) -> float:
    """Seconds in an ISO-8601 duration as YouTube writes them (``PT5M``, ``PT1H2M3S``, ``P1DT2H``).

    Every component is optional (``PT5M`` is 300 s: the research parser dropped durations with
    no seconds part), weeks and days are accepted, fractional seconds too. Years and months are
    refused: their length in seconds is not defined.

    Raises:
        DurationError: anything else (empty, ``P``, ``PT``, ``5M``, ``PT5X``, ``P1Y``, ...).
    """
    if not isinstance(text, str):
        raise DurationError(f"duration must be a string, got {type(text).__name__}")
    s = text.strip().upper()
    m = _DURATION.match(s)
    if not m:
        if s.startswith("P") and re.search(r"\d+[YM]", s[1:].split("T", 1)[0]):
            raise DurationError(
                f"{text!r}: years and months have no fixed length in seconds; not supported"
            )
        raise DurationError(f"{text!r} is not an ISO-8601 duration (expected e.g. PT4M13S)")
    g = m.groupdict()
    total = (
        int(g["weeks"] or 0) * 7 * 86400
        + int(g["days"] or 0) * 86400
        + int(g["hours"] or 0) * 3600
        + int(g["minutes"] or 0) * 60
        + float((g["seconds"] or "0").replace(",", "."))
    )
    return float(total)


@dataclasses.dataclass
class FilterConfig:
    """Thresholds (inclusive; ``None`` switches one off) and the age splits."""

    min_duration_s: float | None = 100
    max_duration_s: float | None = 512
    min_views: int | None = 10_000
    min_likes: int | None = 100
    min_comments: int | None = 5
    reference_date: _dt.date = _dt.date(2023, 1, 1)
    splits: Sequence[AgeSplit] = DEFAULT_AGE_SPLITS

    def __post_init__(self) -> None:
        check_age_splits(self.splits)

    def split_for(self, published: _dt.date) -> tuple[str | None, str | None]:
        """(split name, None) or (None, ``"reason: detail"``) for a video published on
        ``published`` (:func:`~trimodal.prepare.splits.age_split`)."""
        verdict = age_split(published, self.reference_date, self.splits)
        return verdict.split, verdict.reason_text()


def _count(stats: Mapping[str, Any], key: str) -> int | None:
    value = stats.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def evaluate(meta: Mapping[str, Any], config: FilterConfig) -> dict[str, Any]:
    """Check one ``status: ok`` metadata line: ``{"split", "duration_s", "published_at", "reasons"}``.

    ``reasons`` lists every failed check (empty: the video is kept). A statistic that is
    absent (likes or comments hidden) fails its threshold with reason ``missing_likes`` (etc.).
    """
    reasons: list[str] = []
    snippet = meta.get("snippet") or {}
    stats = meta.get("statistics") or {}
    details = meta.get("contentDetails") or {}

    duration = None
    raw = details.get("duration")
    if raw is None:
        reasons.append("missing_duration: no contentDetails.duration")
    else:
        try:
            duration = parse_iso8601_duration(raw)
        except DurationError as err:
            reasons.append(f"invalid_duration: {err}")
    if duration is not None:
        if config.min_duration_s is not None and duration < config.min_duration_s:
            reasons.append(f"too_short: {duration:g} s < {config.min_duration_s:g} s")
        if config.max_duration_s is not None and duration > config.max_duration_s:
            reasons.append(f"too_long: {duration:g} s > {config.max_duration_s:g} s")

    for key, code, minimum in (
        ("viewCount", "views", config.min_views),
        ("likeCount", "likes", config.min_likes),
        ("commentCount", "comments", config.min_comments),
    ):
        if minimum is None:
            continue
        value = _count(stats, key)
        if value is None:
            reasons.append(f"missing_{code}: {key} hidden or not reported")
        elif value < minimum:
            reasons.append(f"few_{code}: {key} {value} < {minimum}")

    split = None
    published = None
    raw_date = snippet.get("publishedAt")
    if not raw_date:
        reasons.append("missing_date: no snippet.publishedAt")
    else:
        try:
            published = _dt.date.fromisoformat(str(raw_date)[:10])
        except ValueError:
            reasons.append(f"invalid_date: publishedAt {raw_date!r}")
    if published is not None:
        split, why = config.split_for(published)
        if why:
            reasons.append(why)
    return {
        "split": split if not reasons else None,
        "duration_s": duration,
        "published_at": published.isoformat() if published else None,
        "reasons": reasons,
    }


def _availability(
    pid: str,
    yid: str | None,
    id_map: Mapping[str, str | None],
    metadata: Mapping[str, Mapping[str, Any]],
    seen_youtube: Mapping[str, str],
) -> list[str]:
    """Reasons a video cannot be judged yet / at all (empty: its metadata is there)."""
    if pid not in id_map:
        return ["not_mapped: pseudo id not resolved yet (run yt8m-ids)"]
    if not yid:
        return ["no_youtube_id: the id mapping has no YouTube id for this pseudo id"]
    if yid in seen_youtube:
        return [f"duplicate: same YouTube id as pseudo id {seen_youtube[yid]}"]
    meta = metadata.get(yid)
    if meta is None:
        return ["not_fetched: no metadata yet (run yt8m-metadata)"]
    if meta.get("status") != "ok":
        return [f"unavailable: {meta.get('reason', 'not returned by the API')}"]
    return []


def run_filter(
    index: Sequence[Mapping[str, Any]],
    id_map: Mapping[str, str | None],
    metadata: Mapping[str, Mapping[str, Any]],
    out_dir: str | Path,
    config: FilterConfig | None = None,
) -> dict[str, Any]:
    """Filter and split every video of the records index; write the three output files.

    ``selected.jsonl`` holds the kept videos (ids, labels, title, tags, date, duration,
    statistics, split), ``excluded.jsonl`` every other video with its reasons (id not mapped
    yet / no mapping, metadata not fetched yet / missing, failed filters), and
    ``filter_summary.json`` the counts. All three are rewritten atomically: the step is a pure
    function of its inputs, so re-running it after more metadata arrived is the way to resume.
    """
    from trimodal.utils import atomic_write_json

    config = config or FilterConfig()
    selected: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    reason_counts: Counter[str] = Counter()
    seen_youtube: dict[str, str] = {}
    for row in index:
        pid = row["pseudo_id"]
        base = {"pseudo_id": pid, "labels": list(row.get("labels", []))}

        yid = id_map.get(pid)
        reasons = _availability(pid, yid, id_map, metadata, seen_youtube)
        if not reasons:
            seen_youtube[yid] = pid
            result = evaluate(metadata[yid], config)
            reasons = result["reasons"]
        if reasons:
            excluded.append({**base, "youtube_id": yid, "reasons": reasons})
            reason_counts.update(r.split(":", 1)[0] for r in reasons)
            continue
        meta = metadata[yid]
        snippet = meta.get("snippet") or {}
        selected.append(
            {
                **base,
                "youtube_id": yid,
                "split": result["split"],
                "title": str(snippet.get("title") or ""),
                "tags": [t for t in (snippet.get("tags") or []) if isinstance(t, str)],
                "published_at": result["published_at"],
                "duration_s": result["duration_s"],
                "statistics": dict(meta.get("statistics") or {}),
                "channel_id": snippet.get("channelId"),
            }
        )
    out_dir = Path(out_dir)
    write_jsonl_atomic(out_dir / SELECTED_FILE, selected)
    write_jsonl_atomic(out_dir / EXCLUDED_FILE, excluded)
    summary = {
        "videos": len(index),
        "selected": len(selected),
        "excluded": len(excluded),
        "splits": dict(Counter(v["split"] for v in selected)),
        "reasons": dict(reason_counts.most_common()),
        "config": {
            **{k: v for k, v in dataclasses.asdict(config).items() if k not in ("splits",)},
            "reference_date": config.reference_date.isoformat(),
            "splits": [
                {"name": s.name, "min_years": s.min_years, "max_years": s.max_years}
                for s in config.splits
            ],
        },
    }
    # JSON has no infinity: an open upper bound is written as null.
    for s in summary["config"]["splits"]:
        if not math.isfinite(s["max_years"]):
            s["max_years"] = None
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    return summary
