"""The raw corpus: the layout every source writes and :func:`trimodal.prepare.prepare` reads.

A corpus is a directory::

    corpus/
      videos.jsonl      one JSON object per video (a :class:`VideoRecord`)
      media/...         the media files (any layout; paths in the records are relative
                        to the corpus directory)

Each line of ``videos.jsonl`` holds::

    {"video_id": "abc123", "media": "media/abc123.mp4", "audio": null,
     "labels": ["Guitar", "Music video"], "tags": ["live", "rock band"],
     "title": "…", "published_at": "2012-05-01", "duration_s": 31.5,
     "split": null, "extra": {}}

``media`` is a video file that normally carries its own audio track; ``audio`` optionally
names a separate audio file that then takes precedence for the audio. ``split`` (``train``,
``dev`` or ``test``) pins the video to a split; when it is ``null`` ``prepare`` assigns one.
``extra`` is free-form, source-specific metadata (view counts, the source's own ids, …).

Reading validates the *structure* of each line (types, required fields, duplicate ids).
Record-level problems that only make one video unusable — an unknown label name, an id that
is not a safe file name, missing media — are reported by :func:`record_problems` so that
``prepare`` can skip that video and go on. :func:`text_candidates` gives the texts that
describe a video in the prepared data (its labels, then its tags).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trimodal.data.schema import SPLITS
from trimodal.utils import atomic_path

CORPUS_FILE = "videos.jsonl"

# The 45 YouTube-8M music labels of the trimodal study, in the study's order
# (select-music-labels.txt / music45_labels.csv, column order_in_select_music_labels_txt).
MUSIC45_LABELS: tuple[str, ...] = (
    "Concert",
    "Musician",
    "Guitar",
    "String instrument",
    "Musical ensemble",
    "Music video",
    "Drum kit",
    "Piano",
    "Drum",
    "Acoustic guitar",
    "Electric guitar",
    "Drummer",
    "Choir",
    "Pianist",
    "Orchestra",
    "Musical keyboard",
    "Disc jockey",
    "Snare drum",
    "Cymbal",
    "Violin",
    "Electronic keyboard",
    "Accordion",
    "Marching band",
    "Brass instrument",
    "Saxophone",
    "Viola",
    "Diatonic button accordion",
    "Cello",
    "Flute",
    "Music festival",
    "Trumpet",
    "Guitar Hero",
    "Organ (music)",
    "Fiddle",
    "Guitar amplifier",
    "Flamenco",
    "Banjo",
    "Harmonica",
    "Drum stick",
    "Quartet",
    "Trombone",
    "Mixtape",
    "Tenor saxophone",
    "Clarinet",
    "Bagpipes",
)
MUSIC45_LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(MUSIC45_LABELS)}

# A video id becomes part of file names (shards, media). Refuse path separators, "..",
# leading dots and control characters rather than trying to escape them. A leading dash is
# allowed: about 1 in 64 YouTube ids starts with one (paths are always passed whole).
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}$")


_ID_IN_LINE = re.compile(r'"video_id"\s*:\s*"([^"\\]*)"')


class CorpusError(ValueError):
    """``videos.jsonl`` is missing or one of its lines is malformed."""


@dataclasses.dataclass
class VideoRecord:
    """One video of a raw corpus (one line of ``videos.jsonl``).

    Attributes:
        video_id: unique id; must be a safe file name (see :func:`is_safe_video_id`) for
            ``prepare`` to accept the video.
        media: path of the video file (with its audio track), relative to the corpus
            directory (an absolute path is accepted too).
        labels: label names (for the study: names from :data:`MUSIC45_LABELS`).
        tags: free-text tags; multi-word tags are kept as they are.
        title: the video's title.
        published_at: ISO-8601 date (``YYYY-MM-DD``) or date-time; ``None`` if unknown.
        duration_s: duration in seconds as reported by the source; ``None`` if unknown
            (``prepare`` measures the media itself either way).
        audio: optional separate audio file (relative path), used instead of the
            media's own audio track.
        split: ``"train"``, ``"dev"``, ``"test"`` or ``None`` (``prepare`` decides).
        extra: free-form source-specific metadata (JSON-serialisable).
    """

    video_id: str
    media: str
    labels: list[str] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    title: str = ""
    published_at: str | None = None
    duration_s: float | None = None
    audio: str | None = None
    split: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate_structure(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the record (one line of ``videos.jsonl``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoRecord:
        """Build a record from its JSON form; unknown keys and wrong types raise CorpusError."""
        if not isinstance(data, dict):
            raise CorpusError(f"expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CorpusError(f"unknown field(s) {', '.join(unknown)}")
        missing = [k for k in ("video_id", "media") if k not in data]
        if missing:
            raise CorpusError(f"missing required field(s) {', '.join(missing)}")
        data = dict(data)
        # JSON has no tuples; accept them from Python callers all the same.
        for key in ("labels", "tags"):
            if isinstance(data.get(key), tuple):
                data[key] = list(data[key])
        return cls(**data)

    def media_path(self, corpus_dir: str | Path) -> Path:
        """Absolute path of the media file."""
        return _resolve(corpus_dir, self.media)

    def audio_path(self, corpus_dir: str | Path) -> Path:
        """Path of the file to read audio from: ``audio`` if set, else ``media``."""
        return _resolve(corpus_dir, self.audio if self.audio else self.media)

    def published_date(self) -> _dt.date | None:
        """``published_at`` as a date (``None`` if unknown)."""
        return parse_date(self.published_at) if self.published_at else None


def _resolve(corpus_dir: str | Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else Path(corpus_dir) / p


def parse_date(text: str) -> _dt.date:
    """Parse an ISO-8601 date or date-time (``2012-05-01``, ``2012-05-01T10:00:00Z``)."""
    try:
        # A date-time's first ten characters are its date.
        return _dt.date.fromisoformat(text[:10])
    except ValueError as err:
        raise CorpusError(f"published_at: not an ISO-8601 date: {text!r}") from err


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _validate_structure(r: VideoRecord) -> None:
    """Type checks that make a line unreadable (CorpusError); not record-level problems."""
    if not isinstance(r.video_id, str) or not r.video_id:
        raise CorpusError(f"video_id must be a non-empty string, got {r.video_id!r}")
    if not isinstance(r.media, str) or not r.media:
        raise CorpusError(f"{r.video_id}: media must be a non-empty path string, got {r.media!r}")
    if r.audio is not None and (not isinstance(r.audio, str) or not r.audio):
        raise CorpusError(f"{r.video_id}: audio must be a path string or null, got {r.audio!r}")
    if isinstance(r.labels, tuple):
        r.labels = list(r.labels)
    if isinstance(r.tags, tuple):
        r.tags = list(r.tags)
    if not _is_str_list(r.labels):
        raise CorpusError(f"{r.video_id}: labels must be a list of strings, got {r.labels!r}")
    if not _is_str_list(r.tags):
        raise CorpusError(f"{r.video_id}: tags must be a list of strings, got {r.tags!r}")
    if not isinstance(r.title, str):
        raise CorpusError(f"{r.video_id}: title must be a string, got {r.title!r}")
    if r.published_at is not None:
        if not isinstance(r.published_at, str):
            raise CorpusError(f"{r.video_id}: published_at must be an ISO date string or null")
        parse_date(r.published_at)
    if r.duration_s is not None:
        if isinstance(r.duration_s, bool) or not isinstance(r.duration_s, (int, float)):
            raise CorpusError(f"{r.video_id}: duration_s must be a number or null")
        if not math.isfinite(r.duration_s) or r.duration_s < 0:
            raise CorpusError(f"{r.video_id}: duration_s must be finite and >= 0")
        r.duration_s = float(r.duration_s)
    if r.split is not None and r.split not in SPLITS:
        raise CorpusError(f"{r.video_id}: split must be one of {SPLITS} or null, got {r.split!r}")
    if not isinstance(r.extra, dict):
        raise CorpusError(f"{r.video_id}: extra must be a JSON object")


def is_safe_video_id(video_id: str) -> bool:
    """True if ``video_id`` can be used as a file name as it is (no ``/``, no ``..``, …)."""
    return bool(_SAFE_ID.match(video_id)) and ".." not in video_id


def record_problems(
    record: VideoRecord,
    corpus_dir: str | Path | None = None,
    known_labels: Iterable[str] | None = MUSIC45_LABELS,
) -> list[str]:
    """Reasons why ``record`` cannot be prepared (empty list: fine).

    Checks the id is a safe file name, every label is in ``known_labels`` (``None``: any
    label is accepted) and, when ``corpus_dir`` is given, that the media (and audio) files
    exist and are not empty. Decoding problems are found later by ``prepare``.
    """
    problems = []
    if not is_safe_video_id(record.video_id):
        problems.append(f"unsafe_id: {record.video_id!r} is not a safe file name")
    if known_labels is not None:
        known = set(known_labels)
        unknown = [label for label in record.labels if label not in known]
        if unknown:
            problems.append(f"unknown_label: {', '.join(repr(u) for u in unknown)}")
    if corpus_dir is not None:
        files = [("media", record.media_path(corpus_dir))]
        if record.audio:
            files.append(("audio", record.audio_path(corpus_dir)))
        for what, path in files:
            if not path.is_file():
                problems.append(f"missing_{what}: {path} does not exist")
            elif path.stat().st_size == 0:
                problems.append(f"empty_{what}: {path} is a zero-byte file")
    return problems


def corpus_file(corpus_dir: str | Path) -> Path:
    """Path of ``videos.jsonl`` inside ``corpus_dir``."""
    return Path(corpus_dir) / CORPUS_FILE


def read_corpus(
    corpus_dir: str | Path, errors: list[dict[str, Any]] | None = None
) -> list[VideoRecord]:
    """Read and validate ``corpus_dir/videos.jsonl``.

    Args:
        corpus_dir: the corpus directory.
        errors: if ``None`` (default) the first malformed line raises :class:`CorpusError`
            naming its line number. Otherwise malformed lines are skipped and described in
            this list as ``{"line": n, "video_id": id-or-None, "reason": str}``.

    Returns:
        The records in file order. Duplicate ``video_id``\\ s are malformed lines too (the
        first occurrence is kept when ``errors`` is given).
    """
    path = corpus_file(corpus_dir)
    if not path.is_file():
        raise CorpusError(f"no corpus at {corpus_dir}: {path} not found")
    records: list[VideoRecord] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            raw_id = None
            try:
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    # Name the video in the report if its id can still be read.
                    found = _ID_IN_LINE.search(line)
                    raw_id = found.group(1) if found else None
                    raise CorpusError(f"invalid JSON: {err}") from err
                if isinstance(data, dict):
                    raw_id = data.get("video_id")
                record = VideoRecord.from_dict(data)
                if record.video_id in seen:
                    raise CorpusError(f"duplicate video_id {record.video_id!r}")
            except (CorpusError, TypeError) as err:
                if errors is None:
                    raise CorpusError(f"{path}:{line_no}: {err}") from err
                errors.append(
                    {
                        "line": line_no,
                        "video_id": raw_id if isinstance(raw_id, str) else None,
                        "reason": f"malformed_record: {err}",
                    }
                )
                continue
            seen.add(record.video_id)
            records.append(record)
    return records


def write_corpus(corpus_dir: str | Path, records: Iterable[VideoRecord]) -> Path:
    """Write ``records`` to ``corpus_dir/videos.jsonl`` atomically (replacing it).

    Every record is validated and ids must be unique; nothing is written on error. Media
    files are not touched. Returns the path written.
    """
    seen: set[str] = set()
    lines = []
    for record in records:
        if not isinstance(record, VideoRecord):
            record = VideoRecord.from_dict(record)
        _validate_structure(record)
        if record.video_id in seen:
            raise CorpusError(f"duplicate video_id {record.video_id!r}")
        seen.add(record.video_id)
        lines.append(json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=False))
    path = corpus_file(corpus_dir)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def text_candidates(record: VideoRecord) -> list[str]:
    """Texts that describe a video: its labels, then its tags, each once, multi-word kept."""
    seen, out = set(), []
    for text in [*record.labels, *record.tags]:
        text = " ".join(text.split())
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out
