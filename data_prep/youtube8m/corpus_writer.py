"""``yt8m-corpus``: write the raw corpus (``videos.jsonl``) for the media the user downloaded.

Downloading is the user's business (e.g. ``yt-dlp -o '%(id)s.%(ext)s'``); this step looks in
the media directory for ``<youtube_id>.mp4`` / ``.mkv`` / ``.webm`` (in that order of
preference), writes one :class:`~trimodal.prepare.corpus.VideoRecord` per video that has a file, and
lists the others in ``missing_media.jsonl`` — a large share of YouTube-8M is no longer online,
so missing media is expected and counted, not an error. Unfinished downloads (``.part``,
``.ytdl``) and empty files do not count as media.

The step is a pure function of its inputs: re-run it after downloading more.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.youtube8m.jsonl import read_jsonl, write_jsonl_atomic
from trimodal.prepare.corpus import VideoRecord, is_safe_video_id, write_corpus

MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a", ".mp3", ".ogg", ".opus")
MISSING_FILE = "missing_media.jsonl"
SUMMARY_FILE = "youtube8m_media.json"


class CorpusWriterError(ValueError):
    """Bad input to ``yt8m-corpus`` (no filter output, no media directory)."""


def index_media(directory: str | Path, extensions: Sequence[str]) -> dict[str, Path]:
    """``{stem: path}`` for non-empty files in ``directory`` with one of ``extensions``.

    When one id has several files, the extension earliest in ``extensions`` wins. Listing the
    directory once is much cheaper than probing three names for each of ~10^5 ids.
    """
    directory = Path(directory)
    found: dict[str, tuple[int, Path]] = {}
    with os.scandir(directory) as it:
        for entry in it:
            if not entry.is_file():
                continue
            stem, ext = os.path.splitext(entry.name)
            ext = ext.lower()
            if ext not in extensions or entry.stat().st_size == 0:
                continue
            rank = extensions.index(ext)
            if stem not in found or rank < found[stem][0]:
                found[stem] = (rank, Path(entry.path))
    return {stem: path for stem, (_, path) in found.items()}


def _relative(path: Path, corpus_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), corpus_dir.resolve())).as_posix()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def build_records(
    selected: Iterable[Mapping[str, Any]],
    media: Mapping[str, Path],
    corpus_dir: Path,
    audio: Mapping[str, Path] | None = None,
    progress: bool = True,
) -> tuple[list[VideoRecord], list[dict[str, Any]]]:
    """(records for videos with media, missing-media entries) from the filter's selection."""
    records: list[VideoRecord] = []
    missing: list[dict[str, Any]] = []
    for v in tqdm(list(selected), desc="yt8m-corpus", unit="video", disable=not progress):
        yid = v["youtube_id"]
        file = media.get(yid)
        if file is None:
            missing.append(
                {
                    "video_id": yid,
                    "pseudo_id": v.get("pseudo_id"),
                    "split": v.get("split"),
                    "reason": "no media file "
                    f"({'/'.join(e.lstrip('.') for e in MEDIA_EXTENSIONS)}) named by the id",
                    "url": f"https://www.youtube.com/watch?v={yid}",
                }
            )
            continue
        stats = v.get("statistics") or {}
        audio_file = (audio or {}).get(yid)
        records.append(
            VideoRecord(
                video_id=yid,
                media=_relative(file, corpus_dir),
                audio=_relative(audio_file, corpus_dir) if audio_file else None,
                labels=list(v.get("labels") or []),
                tags=list(v.get("tags") or []),
                title=v.get("title") or "",
                published_at=v.get("published_at"),
                duration_s=v.get("duration_s"),
                split=v.get("split"),
                extra={
                    "source": "youtube8m",
                    "youtube8m_id": v.get("pseudo_id"),
                    "channel_id": v.get("channel_id"),
                    "view_count": _int_or_none(stats.get("viewCount")),
                    "like_count": _int_or_none(stats.get("likeCount")),
                    "comment_count": _int_or_none(stats.get("commentCount")),
                },
            )
        )
    return records, missing


def run_corpus(
    selected_path: str | Path,
    media_dir: str | Path,
    corpus_dir: str | Path,
    audio_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``corpus_dir/videos.jsonl``, ``missing_media.jsonl`` and a media summary.

    Returns the summary: per split, how many videos have media and how many do not.
    """
    from trimodal.utils import atomic_write_json

    selected_path = Path(selected_path)
    if selected_path.is_dir():
        selected_path = selected_path / "selected.jsonl"
    if not selected_path.is_file():
        raise CorpusWriterError(
            f"{selected_path} not found: run `python -m data_prep yt8m-filter` first"
        )
    media_dir = Path(media_dir)
    if not media_dir.is_dir():
        raise CorpusWriterError(f"media directory not found: {media_dir}")
    if audio_dir is not None and not Path(audio_dir).is_dir():
        raise CorpusWriterError(f"audio directory not found: {audio_dir}")
    corpus_dir = Path(corpus_dir)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    selected = list(read_jsonl(selected_path))
    media = index_media(media_dir, MEDIA_EXTENSIONS)
    audio = index_media(audio_dir, AUDIO_EXTENSIONS) if audio_dir is not None else None
    records, missing = build_records(selected, media, corpus_dir, audio, progress=progress)
    write_corpus(corpus_dir, records)
    write_jsonl_atomic(corpus_dir / MISSING_FILE, missing)
    present = Counter(r.split or "none" for r in records)
    absent = Counter(m["split"] or "none" for m in missing)
    summary = {
        "selected": len(selected),
        "with_media": len(records),
        "missing_media": len(missing),
        "missing_share": round(len(missing) / len(selected), 4) if selected else 0.0,
        "per_split": {
            s: {"with_media": present.get(s, 0), "missing_media": absent.get(s, 0)}
            for s in sorted(set(present) | set(absent))
        },
        # prepare refuses ids that are not safe file names (e.g. a leading "-"); say so now.
        "unsafe_ids": [r.video_id for r in records if not is_safe_video_id(r.video_id)],
    }
    atomic_write_json(corpus_dir / SUMMARY_FILE, summary)
    return summary
