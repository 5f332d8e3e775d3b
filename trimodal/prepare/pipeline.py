"""``prepare()``: a raw corpus → model-ready clips, one Hugging Face dataset per split.

The steps, in the order :func:`prepare` runs them:

1. read and check the settings (:mod:`~trimodal.prepare.settings`) and the corpus
   (:mod:`~trimodal.prepare.corpus`); stop early if the output already holds exactly this
   preparation (:func:`~trimodal.prepare.assembly.previous_summary`);
2. screen the records: a malformed line, an unsafe id, an unknown label or missing media
   skips that video, with its reason; give each remaining video its split
   (:mod:`~trimodal.prepare.splits`; by age, one outside every age range is skipped as
   ``too_recent`` / ``too_old`` / ``age_between_splits``, the reasons of ``yt8m-filter``);
3. give each train video its share of clips and describe each video's work as a
   :class:`~trimodal.prepare.shards.VideoTask` named by a key of its content;
4. decode the videos that have no finished shard yet in worker processes
   (:mod:`~trimodal.prepare.pool`, :mod:`~trimodal.prepare.shards`), or in Ray tasks with
   ``prepare_executor: ray`` (:mod:`~trimodal.prepare.ray_executor`, docs/cluster.md);
5. assemble the shards into the split datasets (:mod:`~trimodal.prepare.assembly`) and write
   ``summary.json`` and ``skipped.jsonl`` beside them.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from trimodal.config import DataConfig
from trimodal.data.schema import SPLITS, clip_features, media_stamp
from trimodal.media import resolve_decoder
from trimodal.prepare.assembly import (
    WORK_DIR,
    assemble_splits,
    preparation_fingerprint,
    previous_summary,
    reuse_finished,
    shard_paths,
    task_key,
)
from trimodal.prepare.corpus import (
    CorpusError,
    VideoRecord,
    read_corpus,
    record_problems,
    text_candidates,
)
from trimodal.prepare.errors import PrepareError, VideoSkipped
from trimodal.prepare.pool import run_pool, start_workers_early
from trimodal.prepare.settings import label_vocabulary, preparation_settings, validate_config
from trimodal.prepare.shards import VideoTask, process_video
from trimodal.prepare.splits import assign_keep_fractions, assign_split
from trimodal.utils import atomic_write_json, atomic_write_text

# The function the workers run on each video. Tests put a failing one in its place
# (monkeypatch): it reaches the workers because the pool pickles it by module and name.
video_work = process_video


def prepare(
    corpus_dir: str | Path,
    out_dir: str | Path,
    config: DataConfig | None = None,
    workers: int | None = None,
    keep_work: bool = False,
    force: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Prepare ``corpus_dir`` into ``out_dir`` (see the module docstring); return the summary.

    Args:
        corpus_dir: a raw corpus (``videos.jsonl`` + media).
        out_dir: where ``train``/``dev``/``test``, ``summary.json`` and ``skipped.jsonl`` go.
        config: preparation settings (defaults: :class:`DataConfig`).
        workers: decoding processes (default ``config.prepare_workers``).
        keep_work: keep the per-video shards in ``out_dir/.work`` after a successful run
            (a later run over a grown corpus then only decodes the new videos).
        force: re-assemble even if ``out_dir`` already holds this exact preparation.
        show_progress: tqdm progress bar on stderr.
    """
    config = config or DataConfig()
    validate_config(config)
    if config.prepare_executor == "ray":  # before any work: Ray is an optional extra
        from trimodal.prepare.ray_executor import import_ray

        import_ray()
    workers = max(1, workers or config.prepare_workers)
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    vocabulary = label_vocabulary(config)
    corpus_bytes, records, errors = _read(corpus_dir)
    settings = preparation_settings(config)
    # Backends may differ in the frames they give: the one that reads the frames first is
    # part of what the prepared data depends on (``auto`` resolves by what is installed).
    keyed = {**settings, "frames_backend": resolve_decoder(config.decoder)}
    stamps = {
        r.video_id: (media_stamp(r.media_path(corpus_dir)), media_stamp(r.audio_path(corpus_dir)))
        for r in records
    }
    fingerprint = preparation_fingerprint(keyed, corpus_bytes, list(stamps.values()))
    old = None if force else previous_summary(out_dir, fingerprint)
    if old is not None:
        print(f"{out_dir} is already prepared from this corpus and config (use --force to redo)")
        return old

    if config.prepare_executor == "local":
        # The forkserver imports the decoding modules while this process imports ``datasets``.
        start_workers_early()
    schema = clip_features(config, vocabulary).arrow_schema.serialize().to_pybytes()
    usable, splits, skipped = _screen(records, errors, corpus_dir, vocabulary, config)
    work_dir = out_dir / WORK_DIR
    tasks = _plan_tasks(usable, splits, corpus_dir, config, vocabulary, stamps, work_dir, schema)
    results, todo = reuse_finished(tasks)
    decode_s = _decode(todo, len(tasks), workers, work_dir, results, show_progress, config)
    failed = [results[t.video_id] for t in tasks if results[t.video_id]["status"] != "ok"]
    skipped += [{k: r[k] for k in ("video_id", "reason", "detail")} for r in failed]
    summary = assemble_splits(out_dir, tasks, results, config, vocabulary)
    skipped.sort(key=lambda s: (s.get("video_id") or "", s["reason"]))
    summary |= {
        "fingerprint": fingerprint,
        "corpus": str(corpus_dir.resolve()),
        "videos_in_corpus": len(records) + len(errors),
        "videos_prepared": sum(1 for t in tasks if results[t.video_id]["status"] == "ok"),
        "videos_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "label_vocabulary": vocabulary,
        "config": settings,
    }
    _write_reports(out_dir, summary, skipped)
    _report(summary, results, decode_s)
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return summary


def _read(corpus_dir: Path) -> tuple[bytes, list[VideoRecord], list[dict[str, Any]]]:
    """(the bytes of ``videos.jsonl``, its well-formed records, its malformed lines)."""
    try:
        corpus_bytes = (corpus_dir / "videos.jsonl").read_bytes()
    except OSError as err:
        raise PrepareError(f"cannot read the corpus {corpus_dir}: {err}") from err
    errors: list[dict[str, Any]] = []
    try:
        records = read_corpus(corpus_dir, errors=errors)
    except CorpusError as err:
        raise PrepareError(str(err)) from err
    return corpus_bytes, records, errors


def _screen(
    records: list[VideoRecord],
    errors: list[dict[str, Any]],
    corpus_dir: Path,
    vocabulary: list[str],
    config: DataConfig,
) -> tuple[list[VideoRecord], dict[str, str], list[dict[str, Any]]]:
    """(the records that can be prepared, their splits by video id, the skipped entries of
    the others and of the malformed lines).

    Splitting is part of the screening: a video outside every age range is skipped before
    any decoding, with the reason :func:`~trimodal.prepare.splits.assign_split` gives.
    """
    skipped: list[dict[str, Any]] = [
        {
            "video_id": e["video_id"],
            "reason": "malformed_record",
            "detail": e["reason"],
            "line": e["line"],
        }
        for e in errors
    ]
    usable: list[VideoRecord] = []
    splits: dict[str, str] = {}
    for record in records:
        problems = record_problems(record, corpus_dir, known_labels=vocabulary)
        if problems:
            reason, _, detail = problems[0].partition(": ")
            skipped.append({"video_id": record.video_id, "reason": reason, "detail": detail})
            continue
        try:
            splits[record.video_id] = assign_split(record, config)
        except VideoSkipped as err:
            skipped.append(
                {"video_id": record.video_id, "reason": err.reason, "detail": err.detail}
            )
            continue
        usable.append(record)
    return usable, splits, skipped


def _plan_tasks(
    usable: list[VideoRecord],
    splits: dict[str, str],
    corpus_dir: Path,
    config: DataConfig,
    vocabulary: list[str],
    stamps: dict[str, tuple[Any, Any]],
    work_dir: Path,
    schema: bytes,
) -> list[VideoTask]:
    """One task per usable video, in video-id order, with its split (``splits``) and share
    of clips."""
    fractions: dict[str, float] = {}
    if config.scheme == "clips" and config.sparse_train:
        train_ids = [v for v, s in splits.items() if s == "train"]
        fractions = assign_keep_fractions(train_ids, config.sparse_fractions, config.seed)
    settings = preparation_settings(config)
    backend = resolve_decoder(config.decoder)  # as in ``prepare``'s fingerprint
    vocab_ids = {name: i for i, name in enumerate(vocabulary)}
    tasks: list[VideoTask] = []
    for record in sorted(usable, key=lambda r: r.video_id):
        fields = {
            "video_id": record.video_id,
            "media": str(record.media_path(corpus_dir).resolve()),
            "audio": str(record.audio_path(corpus_dir).resolve()),
            "split": splits[record.video_id],
            "keep_fraction": fractions.get(record.video_id, 1.0),
            "labels": list(record.labels),
            "label_ids": [vocab_ids[x] for x in record.labels],
            "texts": text_candidates(record),
            "title": record.title,
            "published_at": record.published_at,
        }
        key_fields = {**fields, "config": settings, "vocabulary": vocabulary, "backend": backend}
        key = task_key(key_fields, stamps[record.video_id])
        shard, skip_marker = shard_paths(work_dir, record.video_id, key)
        tasks.append(
            VideoTask(
                **fields,
                shard=shard,
                skip_marker=skip_marker,
                config=settings,
                vocabulary=vocabulary,
                schema=schema,
            )
        )
    return tasks


def _decode(
    todo: list[VideoTask],
    total: int,
    workers: int,
    work_dir: Path,
    results: dict[str, dict[str, Any]],
    show_progress: bool,
    config: DataConfig,
) -> float:
    """Run the unfinished tasks in the worker pool (or on Ray: ``config.prepare_executor``),
    adding to ``results``; return seconds."""
    from tqdm.auto import tqdm

    (work_dir / "shards").mkdir(parents=True, exist_ok=True)
    (work_dir / "skips").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tqdm(
        total=total,
        initial=total - len(todo),
        desc="prepare",
        unit="video",
        disable=not show_progress,
    ) as bar:
        if todo and config.prepare_executor == "ray":
            from trimodal.prepare.ray_executor import run_ray

            results.update(run_ray(todo, workers, bar, video_work, config.ray_address))
        elif todo:
            results.update(run_pool(todo, min(workers, len(todo)), bar, work=video_work))
    return time.perf_counter() - t0


def _write_reports(out_dir: Path, summary: dict[str, Any], skipped: list[dict[str, Any]]) -> None:
    """``skipped.jsonl`` (one line per skipped video) and ``summary.json``."""
    atomic_write_text(
        out_dir / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped)
    )
    atomic_write_json(out_dir / "summary.json", summary)


def _report(summary: dict[str, Any], results: dict[str, dict[str, Any]], decode_s: float) -> None:
    """One line on stderr: what was prepared, skipped and reused."""
    reused = sum(1 for r in results.values() if r.get("reused"))
    counts = ", ".join(f"{s}: {summary['splits'][s]['clips']} clips" for s in SPLITS)
    backends = Counter(r["decoder"] for r in results.values() if "decoder" in r)
    fallbacks = sum(1 for r in results.values() if r.get("fallback"))
    by = ", ".join(f"{n} by {name}" for name, n in sorted(backends.items()))
    print(
        f"prepared {summary['videos_prepared']} videos ({counts}), "
        f"skipped {summary['videos_skipped']}, reused {reused} finished videos, "
        f"decoding took {decode_s:.1f} s (frames read: {by or 'none'}; "
        f"{fallbacks} fell back from decord to PyAV)",
        file=sys.stderr,
    )
