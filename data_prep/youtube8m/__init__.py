"""YouTube-8M as a source of the raw corpus: ``python -m data_prep yt8m-*``.

The steps, each resumable, each reading and writing under one work directory (``--work-dir``,
default ``data/youtube8m``)::

    yt8m-labels    vocabulary.csv            -> labels.json        (which labels to keep)
    yt8m-records   *.tfrecord                -> records/           (videos with a kept label,
                                                                    mean_rgb/mean_audio arrays)
    yt8m-ids       records/index.jsonl       -> id_map.jsonl       (pseudo id -> YouTube id)
    yt8m-metadata  id_map.jsonl              -> metadata.jsonl     (YouTube Data API)
    yt8m-filter    all of the above          -> filtered/          (filters, age splits)
    yt8m-corpus    filtered/ + media dir     -> CORPUS/videos.jsonl, missing_media.jsonl

No TensorFlow is needed; the network steps take configurable base URLs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import sys
from pathlib import Path
from typing import Any

DEFAULT_WORK_DIR = "data/youtube8m"
LABELS_FILE = "labels.json"
RECORDS_DIR = "records"
ID_MAP_FILE = "id_map.jsonl"
METADATA_FILE = "metadata.jsonl"
FILTERED_DIR = "filtered"
DOWNLOAD_LIST = "download_urls.txt"

log = logging.getLogger(__name__)


def _print(msg: str) -> None:
    print(msg, flush=True)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    return 2


def _guard(func: Any) -> Any:
    """Turn the expected errors of a step into one clear line and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from data_prep.youtube8m.api import ApiError
        from data_prep.youtube8m.corpus_writer import CorpusWriterError
        from data_prep.youtube8m.labels import LabelSelectionError
        from data_prep.youtube8m.records import RecordsError
        from trimodal.prepare.corpus import CorpusError

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return func(args)
        except (
            ApiError,
            CorpusError,
            CorpusWriterError,
            LabelSelectionError,
            RecordsError,
            FileNotFoundError,
        ) as err:
            return _fail(str(err))
        except KeyboardInterrupt:
            print(
                "interrupted; progress so far is saved, run the same command to resume",
                file=sys.stderr,
            )
            return 130

    return run


# --------------------------------------------------------------------------------------------
# the commands


def cmd_labels(args: argparse.Namespace) -> int:
    """``yt8m-labels``: select labels from the vocabulary and save ``labels.json``."""
    from data_prep.youtube8m.labels import (
        load_vocabulary,
        read_label_list,
        save_labels,
        select_labels,
    )

    vocabulary = load_vocabulary(args.vocabulary)
    wanted: list[str] | None = None
    if args.labels_file:
        wanted = read_label_list(args.labels_file)
    if args.label:
        wanted = (wanted or []) + list(args.label)
    labels = select_labels(vocabulary, wanted)
    out = Path(args.work_dir) / LABELS_FILE
    save_labels(out, labels, args.vocabulary)
    _print(f"selected {len(labels)} labels -> {out}")
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    """``yt8m-records``: keep the videos with a selected label from TFRecord files."""
    from data_prep.youtube8m.labels import load_labels
    from data_prep.youtube8m.records import run_records

    work = Path(args.work_dir)
    labels = load_labels(args.labels or work / LABELS_FILE)
    s = run_records(
        args.input,
        labels,
        work / RECORDS_DIR,
        verify_crc=not args.no_verify_crc,
        progress=not args.no_progress,
    )
    _print(
        f"{s['files']} files ({s['read']} read now, {s['already_done']} already done, "
        f"{s['corrupt']} corrupt); {s['videos']} videos kept; {s['bad_records']} records "
        f"skipped -> {work / RECORDS_DIR}"
    )
    if s["corrupt"]:
        _print(f"see {work / RECORDS_DIR / 'skipped_records.jsonl'} for the damaged files")
    return 0


def _policy(args: argparse.Namespace) -> Any:
    from data_prep.youtube8m.api import RetryPolicy

    return RetryPolicy(max_attempts=args.retries + 1, base_delay=args.backoff, timeout=args.timeout)


def _report(step: str, s: Any) -> int:
    _print(
        f"{step}: {s.total} ids, {s.already_done} done before, {s.done} done now, "
        f"{s.missing} missing, {s.failed} failed (retried on the next run)"
    )
    if s.stopped:
        _print(f"stopped: {s.stopped}")
    return s.exit_code


def cmd_ids(args: argparse.Namespace) -> int:
    """``yt8m-ids``: map pseudo ids to YouTube ids (append-only ``id_map.jsonl``)."""
    from data_prep.youtube8m.api import map_pseudo_ids
    from data_prep.youtube8m.records import read_index

    work = Path(args.work_dir)
    index = read_index(work / RECORDS_DIR)
    s = map_pseudo_ids(
        [row["pseudo_id"] for row in index],
        work / ID_MAP_FILE,
        base_url=args.base_url,
        policy=_policy(args),
        workers=args.workers,
        progress=not args.no_progress,
    )
    return _report("yt8m-ids", s)


def cmd_metadata(args: argparse.Namespace) -> int:
    """``yt8m-metadata``: fetch ``videos.list`` metadata (append-only ``metadata.jsonl``)."""
    from data_prep.youtube8m.api import (
        api_key_from_env,
        fetch_metadata,
        ids_to_fetch,
        read_id_map,
    )

    work = Path(args.work_dir)
    key = api_key_from_env(args.api_key_env)
    id_map_path = work / ID_MAP_FILE
    if not id_map_path.is_file():
        return _fail(f"{id_map_path} not found: run `python -m data_prep yt8m-ids` first")
    s = fetch_metadata(
        ids_to_fetch(read_id_map(id_map_path)),
        work / METADATA_FILE,
        key,
        base_url=args.api_url,
        policy=_policy(args),
        max_requests=args.max_requests,
        key_in_query=args.key_in_query,
        progress=not args.no_progress,
    )
    return _report("yt8m-metadata", s)


def _parse_split(text: str) -> Any:
    from trimodal.prepare.splits import AgeSplit

    try:
        name, lo, hi = text.split(":")
        return AgeSplit(name, float(lo), math.inf if hi in ("", "inf") else float(hi))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME:MIN_YEARS:MAX_YEARS (MAX may be 'inf')"
        ) from err


def _none_if_negative(value: float) -> float | None:
    return None if value < 0 else value


def cmd_filter(args: argparse.Namespace) -> int:
    """``yt8m-filter``: filters and age splits; writes ``filtered/``."""
    from data_prep.youtube8m.api import read_id_map, read_metadata
    from data_prep.youtube8m.filters import FilterConfig, run_filter
    from data_prep.youtube8m.records import read_index
    from trimodal.prepare.splits import DEFAULT_AGE_SPLITS

    work = Path(args.work_dir)
    try:
        config = FilterConfig(
            min_duration_s=_none_if_negative(args.min_duration),
            max_duration_s=_none_if_negative(args.max_duration),
            min_views=_none_if_negative(args.min_views),
            min_likes=_none_if_negative(args.min_likes),
            min_comments=_none_if_negative(args.min_comments),
            reference_date=args.reference_date,
            splits=tuple(args.split) if args.split else DEFAULT_AGE_SPLITS,
        )
    except ValueError as err:
        return _fail(str(err))
    out = work / FILTERED_DIR
    s = run_filter(
        read_index(work / RECORDS_DIR),
        read_id_map(work / ID_MAP_FILE),
        read_metadata(work / METADATA_FILE),
        out,
        config,
    )
    from data_prep.youtube8m.jsonl import read_jsonl
    from trimodal.utils import atomic_write_text

    # The list to hand to yt-dlp (--batch-file).
    urls = [
        f"https://www.youtube.com/watch?v={v['youtube_id']}"
        for v in read_jsonl(out / "selected.jsonl")
    ]
    atomic_write_text(out / DOWNLOAD_LIST, "".join(u + "\n" for u in urls))
    splits = ", ".join(f"{k} {v}" for k, v in sorted(s["splits"].items())) or "none"
    _print(f"{s['videos']} videos: {s['selected']} selected ({splits}), {s['excluded']} excluded")
    for reason, n in list(s["reasons"].items())[:10]:
        _print(f"  {n:8d}  {reason}")
    _print(f"-> {out} (download list: {out / DOWNLOAD_LIST})")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    """``yt8m-corpus``: write ``videos.jsonl`` for the downloaded media."""
    from data_prep.youtube8m.corpus_writer import run_corpus

    work = Path(args.work_dir)
    s = run_corpus(
        work / FILTERED_DIR,
        args.media_dir,
        args.corpus_dir,
        audio_dir=args.audio_dir,
        progress=not args.no_progress,
    )
    _print(
        f"{s['selected']} selected videos: {s['with_media']} with media, "
        f"{s['missing_media']} without ({100 * s['missing_share']:.1f}%) "
        f"-> {Path(args.corpus_dir) / 'videos.jsonl'}"
    )
    for split, c in s["per_split"].items():
        _print(f"  {split:6s} {c['with_media']:8d} with media  {c['missing_media']:8d} missing")
    if s["unsafe_ids"]:
        _print(f"warning: {len(s['unsafe_ids'])} ids are not safe file names for prepare")
    return 0


# --------------------------------------------------------------------------------------------
# argparse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--work-dir",
        default=DEFAULT_WORK_DIR,
        help=f"directory for this source's intermediate files (default: {DEFAULT_WORK_DIR})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    p.add_argument("--retries", type=int, default=5, help="retries on 5xx/timeouts (default: 5)")
    p.add_argument(
        "--backoff", type=float, default=1.0, help="first retry delay in s, doubling (default: 1)"
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``yt8m-*`` sub-commands to ``python -m data_prep``."""
    for add in (_add_labels, _add_records, _add_ids, _add_metadata, _add_filter, _add_corpus):
        add(subparsers)


def _add_labels(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "yt8m-labels", help="YouTube-8M: select labels (default: the study's 45 music labels)"
    )
    _common(p)
    p.add_argument("--vocabulary", required=True, help="YouTube-8M vocabulary.csv")
    p.add_argument(
        "--labels-file",
        help="labels to keep: one name / index / KG id per line, or a CSV with a Name column "
        "(default: the study's 45 music labels)",
    )
    p.add_argument(
        "--label", action="append", help="a label to keep (name, index or KG id); repeatable"
    )
    p.set_defaults(func=_guard(cmd_labels))


def _add_records(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "yt8m-records", help="YouTube-8M: keep videos with a selected label from TFRecords"
    )
    _common(p)
    p.add_argument(
        "--input", nargs="+", required=True, help="TFRecord files, directories or glob patterns"
    )
    p.add_argument(
        "--labels", help="labels.json written by yt8m-labels (default: WORK_DIR/labels.json)"
    )
    p.add_argument("--no-verify-crc", action="store_true", help="skip CRC checks (salvaging only)")
    p.set_defaults(func=_guard(cmd_records))


def _add_ids(subparsers: argparse._SubParsersAction) -> None:
    from data_prep.youtube8m.api import DEFAULT_ID_MAP_URL

    p = subparsers.add_parser("yt8m-ids", help="YouTube-8M: map pseudo ids to YouTube ids")
    _common(p)
    _network(p)
    p.add_argument(
        "--base-url",
        default=DEFAULT_ID_MAP_URL,
        help=f"id-mapping site (default: {DEFAULT_ID_MAP_URL})",
    )
    p.add_argument("--workers", type=int, default=4, help="parallel requests (default: 4)")
    p.set_defaults(func=_guard(cmd_ids))


def _add_metadata(subparsers: argparse._SubParsersAction) -> None:
    from data_prep.youtube8m.api import DEFAULT_API_KEY_ENV, DEFAULT_API_URL

    p = subparsers.add_parser(
        "yt8m-metadata", help="YouTube-8M: fetch video metadata with the YouTube Data API"
    )
    _common(p)
    _network(p)
    p.add_argument(
        "--api-url", default=DEFAULT_API_URL, help=f"API base (default: {DEFAULT_API_URL})"
    )
    p.add_argument(
        "--api-key-env",
        default=DEFAULT_API_KEY_ENV,
        help=f"environment variable holding the API key (default: {DEFAULT_API_KEY_ENV})",
    )
    p.add_argument(
        "--max-requests",
        type=int,
        help="stop cleanly after this many requests, a quota budget (default: no limit)",
    )
    p.add_argument(
        "--key-in-query",
        action="store_true",
        help="send the key as ?key= instead of the X-Goog-Api-Key header",
    )
    p.set_defaults(func=_guard(cmd_metadata))


def _add_filter(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("yt8m-filter", help="YouTube-8M: quality filters and age splits")
    _common(p)
    p.add_argument("--min-duration", type=float, default=100, help="exclude videos shorter than this many seconds; -1: off (default: 100)")  # fmt: skip
    p.add_argument("--max-duration", type=float, default=512, help="exclude videos longer than this many seconds; -1: off (default: 512)")  # fmt: skip
    p.add_argument("--min-views", type=int, default=10_000, help="exclude videos with fewer views; -1: off (default: 10000)")  # fmt: skip
    p.add_argument("--min-likes", type=int, default=100, help="exclude videos with fewer likes; -1: off (default: 100)")  # fmt: skip
    p.add_argument("--min-comments", type=int, default=5, help="exclude videos with fewer comments; -1: off (default: 5)")  # fmt: skip
    p.add_argument(
        "--reference-date",
        type=_dt.date.fromisoformat,
        default=_dt.date(2023, 1, 1),
        help="date ages are measured at (default: 2023-01-01)",
    )
    p.add_argument(
        "--split",
        action="append",
        type=_parse_split,
        help="NAME:MIN_YEARS:MAX_YEARS, age range [min, max); repeatable "
        "(default: test:7:8 dev:8:8.5 train:8.5:inf)",
    )
    p.set_defaults(func=_guard(cmd_filter))


def _add_corpus(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "yt8m-corpus", help="YouTube-8M: write the raw corpus for the downloaded media"
    )
    _common(p)
    p.add_argument(
        "--media-dir", required=True, help="downloaded videos named <youtube_id>.mp4|mkv|webm"
    )
    p.add_argument("--corpus-dir", required=True, help="where videos.jsonl is written")
    p.add_argument("--audio-dir", help="optional separate audio files named <youtube_id>.<ext>")
    p.set_defaults(func=_guard(cmd_corpus))
