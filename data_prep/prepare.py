"""``prepare``: a raw corpus → model-ready clips, one Hugging Face dataset per split.

::

    python -m data_prep prepare --corpus CORPUS --out PREPARED [--config YAML] [--workers N]
        [--clip-seconds 8] [--scheme clips|segments] [--seed 0] [--keep-work] [--force]

For every usable video of ``CORPUS/videos.jsonl`` (:mod:`data_prep.corpus`):

1. **split**: the record's ``split``, else by hash of the id or by age (``DataConfig``);
2. **clips**: consecutive ``clip_seconds`` clips (train videos keep a sampled share of them,
   the study's sparse scheme; the clips saved are exactly the sampled ones and ``start_s ==
   clip_index * clip_seconds``), or the dual-encoder scheme's random segments;
3. **arrays per clip**: mono float32 waveforms (``audio_48k``, ``audio_16k``) and
   ``num_frames`` uniformly spaced frames per size (``frames_224``, ``frames_112``:
   ``[T, 3, S, S]`` with a crop margin, ``S = round(size * frame_margin)``), the text
   candidates (labels then tags, multi-word names kept), label ids, title;
4. the clips are written to a per-video Arrow shard in ``PREPARED/.work/`` (atomic rename),
   then the split datasets are assembled in video-id order (``PREPARED/train``, ``dev``,
   ``test``: ``load_from_disk`` directories, memory-mapped Arrow files), with
   ``summary.json`` and ``skipped.jsonl`` beside them. A split of at most 500 MB is one
   Arrow file, byte for byte what ``save_to_disk`` writes (the shards' record batches are
   copied, not re-encoded); a bigger one is made of the videos' shards themselves (hard
   links: nothing is written twice), up to 10,000 videos, else of copied 500-MB files.

Decoding uses decord (frames and resampled audio) after a PyAV probe, in worker processes
forked from a ``forkserver`` that has imported the decoding libraries once (the workers
import neither torch nor ``datasets``): a file that crashes the decoder kills a worker, not
the run (the crashed video is retried alone and then skipped). Every video that cannot be
used — malformed record, unsafe id, unknown label, missing/empty/truncated/unreadable media,
no audio or video stream, shorter than one clip — is listed in ``skipped.jsonl`` with its
reason and counted in the summary.

A re-run reuses the finished shards of the same videos under the same settings (the shard
name carries a key of everything that determines its content, the media files' size and
modification time included), so a killed run resumes without redoing finished videos and
produces the same datasets as an uninterrupted run, while a media file replaced under the
same name is decoded again.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from data_prep._arrow_io import atomic_write_json, atomic_write_text
from data_prep.corpus import (
    MUSIC45_LABELS,
    SPLITS,
    CorpusError,
    VideoRecord,
    read_corpus,
    record_problems,
)
from trimodal.config import DataConfig, from_dict

WORK_DIR = ".work"
SHARD_FORMAT = 2  # bump when the shard layout changes: old shards are then not reused
# Set in the environment of ``prepare`` to make a worker die on one video (tests of crash
# recovery). Read by the parent: forkserver workers do not see later changes of its environment.
FAULT_ENV = "TRIMODAL_PREPARE_CRASH_ON"
# Modules the forkserver imports once, so that each worker starts without importing them.
_PRELOAD = ["data_prep.prepare", "data_prep._arrow_io", "numpy", "pyarrow", "av", "decord"]
_MAX_FILE_BYTES = 500 * 10**6  # split files of at most this size, as ``save_to_disk``
_MAX_BATCH_BYTES = 100 * 10**6  # record batches of at most this size, as ``save_to_disk``
# Up to this many videos, a split's files are the videos' shards themselves (hard links, no
# copy); beyond it the shards are copied into files of at most _MAX_FILE_BYTES (each file
# is one memory map of the loading process: the default limit is 65530 maps).
_MAX_LINKED_FILES = 10_000


class PrepareError(RuntimeError):
    """The preparation cannot run at all (bad configuration, unreadable corpus)."""


# ----------------------------------------------------------------------------- names


def audio_column(rate: int) -> str:
    """Column name of the waveform at ``rate`` Hz: ``audio_48k``, ``audio_16k``, ``audio_22050hz``."""
    return f"audio_{rate // 1000}k" if rate % 1000 == 0 else f"audio_{rate}hz"


def frames_column(size: int) -> str:
    """Column name of the frames meant for ``size``² crops: ``frames_224``, ``frames_112``."""
    return f"frames_{size}"


def stored_side(size: int, margin: float) -> int:
    """Side of the stored square frames for target ``size`` (224 → 256 with margin 8/7)."""
    return int(round(size * margin))


# ----------------------------------------------------------------------------- determinism


def stable_int(*parts: Any) -> int:
    """A 64-bit integer from ``parts`` that is the same on every machine and Python run."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def stable_unit(*parts: Any) -> float:
    """A number in [0, 1) from ``parts`` (see :func:`stable_int`)."""
    return stable_int(*parts) / 2.0**64


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
    sorted. ``fraction >= 1`` keeps every clip.
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
    """Start times of the dual-encoder segments: one random start inside each ``1/n`` of the video.

    The segments never overlap (each lies inside its own part). Requires
    ``duration / n_segments >= seg_seconds``.
    """
    part = duration / n_segments
    if part < seg_seconds:
        raise ValueError("video too short for its segments")
    rng = np.random.default_rng(stable_int(seed, "segments", video_id))
    offsets = rng.uniform(0.0, part - seg_seconds, size=n_segments)
    return np.round(np.arange(n_segments) * part + offsets, 3)


def text_candidates(record: VideoRecord) -> list[str]:
    """Texts that describe a video: its labels, then its tags, each once, multi-word kept."""
    seen, out = set(), []
    for text in [*record.labels, *record.tags]:
        text = " ".join(text.split())
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


# ----------------------------------------------------------------------------- features


def clip_features(config: DataConfig, vocabulary: list[str]):
    """The ``datasets.Features`` of a prepared split under ``config``."""
    from datasets import Array4D, ClassLabel, Features, List, Value

    length = config.segment_seconds if config.scheme == "segments" else config.clip_seconds
    cols: dict[str, Any] = {
        "video_id": Value("string"),
        "clip_index": Value("int32"),
        "start_s": Value("float64"),
        "end_s": Value("float64"),
        "split": Value("string"),
        "labels": List(Value("string")),
        "label_ids": List(ClassLabel(names=list(vocabulary))),
        "texts": List(Value("string")),
        "title": Value("string"),
        "published_at": Value("string"),
    }
    for rate in config.audio_rates:
        cols[audio_column(rate)] = List(Value("float32"), length=int(round(length * rate)))
    for size in config.frame_sizes:
        side = stored_side(size, config.frame_margin)
        shape = (config.num_frames, 3, side, side)
        cols[frames_column(size)] = Array4D(shape=shape, dtype=config.frame_dtype)
    return Features(cols)


def _validate_config(config: DataConfig) -> None:
    def bad(msg: str) -> PrepareError:
        return PrepareError(f"invalid data config: {msg}")

    if config.clip_seconds <= 0 or config.segment_seconds <= 0:
        raise bad("clip_seconds and segment_seconds must be > 0")
    if config.num_segments < 1 or config.num_frames < 1:
        raise bad("num_segments and num_frames must be >= 1")
    if not config.frame_sizes or any(s < 8 for s in config.frame_sizes):
        raise bad("frame_sizes must list sizes >= 8")
    if len(set(config.frame_sizes)) != len(config.frame_sizes):
        raise bad("frame_sizes has duplicates")
    if config.frame_margin < 1.0:
        raise bad("frame_margin must be >= 1")
    if not config.audio_rates or any(r < 1000 for r in config.audio_rates):
        raise bad("audio_rates must list rates >= 1000 Hz")
    if len({audio_column(r) for r in config.audio_rates}) != len(config.audio_rates):
        raise bad("audio_rates has duplicates")
    if (
        len(config.split_ratios) != 3
        or min(config.split_ratios) < 0
        or sum(config.split_ratios) <= 0
    ):
        raise bad("split_ratios must be three non-negative numbers (train, dev, test)")
    for pair in config.sparse_fractions:
        if len(pair) != 2 or pair[0] < 0 or not 0 < pair[1] <= 1:
            raise bad(f"sparse_fractions entries are [share>=0, keep in (0,1]], got {pair}")
    try:
        _dt.date.fromisoformat(config.reference_date)
    except ValueError as err:
        raise bad(f"reference_date {config.reference_date!r} is not YYYY-MM-DD") from err
    vocab = config.label_vocabulary
    if vocab is not None and len(set(vocab)) != len(vocab):
        raise bad("label_vocabulary has duplicates")


# ----------------------------------------------------------------------------- one video


@dataclasses.dataclass
class VideoTask:
    """Everything a worker needs to turn one video into its shard (picklable)."""

    video_id: str
    media: str
    audio: str
    split: str
    keep_fraction: float  # 1.0: every clip
    labels: list[str]
    label_ids: list[int]
    texts: list[str]
    title: str
    published_at: str | None
    shard: str  # final shard path
    skip_marker: str  # where a skip result is cached
    config: dict[str, Any]  # DataConfig as a dict
    vocabulary: list[str]
    schema: bytes = b""  # the split's Arrow schema (serialized: workers need no ``datasets``)
    crash: bool = False  # die on this video (tests of crash recovery, see FAULT_ENV)


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _probe(path: str, want: str) -> dict[str, Any]:
    """Check that ``path`` opens with PyAV and has a ``want`` stream; return its properties.

    Raises ``_Skip`` (``unreadable`` or ``no_<want>_stream``) otherwise. Cheap: it reads
    the container header, not the media.
    """
    import av

    try:
        with av.open(path) as container:
            streams = [s for s in container.streams if s.type == want]
            if not streams:
                raise _Skip(f"no_{want}_stream", f"{path} has no {want} stream")
            stream = streams[0]
            info: dict[str, Any] = {}
            if want == "video":
                info["width"] = int(stream.codec_context.width or 0)
                info["height"] = int(stream.codec_context.height or 0)
                if info["width"] < 1 or info["height"] < 1:
                    raise _Skip("unreadable", f"{path}: video stream has no frame size")
            return info
    except _Skip:
        raise
    except Exception as err:  # PyAV raises many error types for broken files
        raise _Skip("unreadable", f"{type(err).__name__}: {err}") from err


def _decode_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) that scales the short side to ``side``, keeping the aspect ratio."""
    scale = side / min(width, height)
    return max(side, int(round(width * scale))), max(side, int(round(height * scale)))


def _centre_square(frames: np.ndarray, side: int) -> np.ndarray:
    """uint8 [T, H, W, 3] → uint8 [T, 3, side, side], the centred square."""
    h, w = frames.shape[1:3]
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(
        frames[:, top : top + side, left : left + side].transpose(0, 3, 1, 2)
    )


def _downscale(frames: np.ndarray, side: int) -> np.ndarray:
    """uint8 [T, 3, S, S] → uint8 [T, 3, side, side].

    An integer factor is an exact (rounded) box average, e.g. 256 → 128; otherwise
    antialiased bilinear interpolation.
    """
    big = frames.shape[-1]
    if big == side:
        return frames
    if big % side == 0:
        f = big // side
        # Sum of the f×f strided views: much faster than a reshaped mean over two axes.
        # uint16 holds the sum (and the rounding term) up to f = 15: half the memory traffic.
        acc_type = np.uint16 if f * f * 255 + (f * f) // 2 < 2**16 else np.uint32
        acc = frames[:, :, 0::f, 0::f].astype(acc_type)
        for dy in range(f):
            for dx in range(f):
                if dy or dx:
                    acc += frames[:, :, dy::f, dx::f]
        acc += (f * f) // 2
        acc //= f * f
        return acc.astype(np.uint8)
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).float()
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def _clip_plan(
    task: VideoTask, duration: float, cfg: DataConfig
) -> tuple[list[int], list[float], float]:
    """(clip indices, start times, clip length) for a video of ``duration`` seconds."""
    if cfg.scheme == "segments":
        length = cfg.segment_seconds
        need = length * cfg.num_segments
        if duration + 1e-6 < need:
            raise _Skip(
                "too_short",
                f"{duration:.2f} s < {cfg.num_segments} segments of {length:g} s",
            )
        starts = segment_starts(task.video_id, duration, cfg.num_segments, length, cfg.seed)
        return list(range(cfg.num_segments)), [float(s) for s in starts], length
    length = cfg.clip_seconds
    n = int(math.floor(duration / length + 1e-6))
    if n < 1:
        raise _Skip("too_short", f"{duration:.2f} s is shorter than one clip ({length:g} s)")
    idx = sample_clip_indices(task.video_id, n, task.keep_fraction, cfg.seed)
    return [int(i) for i in idx], [float(i) * length for i in idx], length


def process_video(task: VideoTask) -> dict[str, Any]:
    """Decode one video into its shard of clips; return ``{"status": "ok" | "skipped", ...}``.

    Runs in a worker process. Never raises for bad media: the reason is returned.
    """
    if task.crash:
        os.abort()  # simulated decoder crash (tests)
    try:
        n_clips = _process_video(task)
    except _Skip as skip:
        result = {
            "video_id": task.video_id,
            "status": "skipped",
            "reason": skip.reason,
            "detail": skip.detail,
        }
        atomic_write_json(task.skip_marker, result)
        return result
    except Exception as err:  # a decoder error we did not foresee must not stop the run
        result = {
            "video_id": task.video_id,
            "status": "skipped",
            "reason": "decode_error",
            "detail": f"{type(err).__name__}: {err}",
        }
        atomic_write_json(task.skip_marker, result)
        return result
    return {"video_id": task.video_id, "status": "ok", "clips": n_clips}


def _shard_schema(cfg: DataConfig):
    """Arrow storage schema of the shards (and split files) under ``cfg``."""
    from data_prep._arrow_io import storage_schema

    length = cfg.segment_seconds if cfg.scheme == "segments" else cfg.clip_seconds
    audio = [(audio_column(r), int(round(length * r))) for r in cfg.audio_rates]
    return storage_schema(audio, [frames_column(s) for s in cfg.frame_sizes], cfg.frame_dtype)


def _process_video(task: VideoTask) -> int:
    import decord
    import pyarrow as pa

    from data_prep._arrow_io import atomic_path, fixed_list_array, nested_list_array

    cfg = from_dict(DataConfig, task.config)
    info = _probe(task.media, "video")
    _probe(task.audio, "audio")
    sides = {size: stored_side(size, cfg.frame_margin) for size in cfg.frame_sizes}
    big = max(sides.values())
    # decord scales while decoding (FFmpeg's swscale), short side to the largest stored side.
    width, height = _decode_size(info["width"], info["height"], big)
    try:
        vr = decord.VideoReader(
            task.media, ctx=decord.cpu(0), width=width, height=height, num_threads=1
        )
        n_frames, fps = len(vr), float(vr.get_avg_fps())
    except Exception as err:
        raise _Skip("unreadable", f"video: {type(err).__name__}: {err}") from err
    if n_frames < 1 or not fps > 0:
        raise _Skip("unreadable", f"video has {n_frames} frames at {fps} fps")
    waves = {}
    for rate in cfg.audio_rates:
        try:
            ar = decord.AudioReader(task.audio, ctx=decord.cpu(0), sample_rate=rate, mono=True)
            # The reader decodes the whole track into ``_array`` on construction; ``ar[:]``
            # would copy it again through a Python list of indices (seconds per track).
            wave = ar._array if hasattr(ar, "_array") else ar[:].asnumpy()
        except Exception as err:
            raise _Skip("unreadable", f"audio: {type(err).__name__}: {err}") from err
        # Clipped and converted per clip below: only the samples that are kept.
        waves[rate] = wave.reshape(-1)
        del ar
    duration = min([n_frames / fps] + [len(w) / r for r, w in waves.items()])
    indices, starts, length = _clip_plan(task, duration, cfg)

    from data_prep._arrow_io import check_storage_schema

    # The schema of the split files (extension types and ``huggingface`` metadata as field
    # and schema metadata), so that a shard can become a split file as it is.
    schema = pa.ipc.read_schema(pa.py_buffer(task.schema)) if task.schema else None
    if schema is None:
        schema = _shard_schema(cfg)
    check_storage_schema(_shard_schema(cfg), schema, "features")
    # The columns every clip of the video shares, as one-row Arrow arrays.
    fixed = {
        "video_id": pa.array([task.video_id], pa.string()),
        "split": pa.array([task.split], pa.string()),
        "labels": pa.array([task.labels], pa.list_(pa.string())),
        "label_ids": pa.array([task.label_ids], pa.list_(pa.int64())),
        "texts": pa.array([task.texts], pa.list_(pa.string())),
        "title": pa.array([task.title], pa.string()),
        "published_at": pa.array([task.published_at], pa.string()),
    }
    T = cfg.num_frames
    with atomic_path(task.shard) as tmp:
        # One record batch per clip (bounded memory), as datasets' ArrowWriter wrote them.
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for clip_index, start in zip(indices, starts):
                cols: dict[str, Any] = dict(fixed)
                cols["clip_index"] = pa.array([clip_index], pa.int32())
                cols["start_s"] = pa.array([start], pa.float64())
                cols["end_s"] = pa.array([start + length], pa.float64())
                for rate, wave in waves.items():
                    a, n = int(round(start * rate)), int(round(length * rate))
                    seg = np.clip(wave[a : a + n], -1.0, 1.0).astype(np.float32)
                    if len(seg) < n:  # rounding at the very end of the track
                        seg = np.pad(seg, (0, n - len(seg)))
                    cols[audio_column(rate)] = fixed_list_array(seg)
                # Frame j shows time start + (j + 0.5) * length / T: the centres of T equal bins.
                times = start + (np.arange(T) + 0.5) * length / T
                fidx = np.minimum(np.floor(times * fps).astype(np.int64), n_frames - 1)
                frames = _centre_square(vr.get_batch(fidx.tolist()).asnumpy(), big)
                for size, side in sides.items():
                    x = _downscale(frames, side)
                    if cfg.frame_dtype == "float16":
                        x = (x.astype(np.float32) / 255.0).astype(np.float16)
                    cols[frames_column(size)] = nested_list_array(x)
                writer.write_batch(
                    pa.RecordBatch.from_arrays([cols[name] for name in schema.names], schema=schema)
                )
    del vr
    return len(indices)


# ----------------------------------------------------------------------------- the run


def _task_key(task_fields: dict[str, Any], media_stamps: tuple[Any, ...]) -> str:
    """A key of everything that determines a shard's content (its file name carries it)."""
    blob = json.dumps(
        {"v": SHARD_FORMAT, "task": task_fields, "media": media_stamps}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _worker_context() -> multiprocessing.context.BaseContext:
    """The start method of the workers: ``forkserver`` with the decoding modules preloaded.

    The server is a fresh process (never a fork of a parent holding threads or torch) that
    imports :data:`_PRELOAD` once; each worker is then a cheap fork of it. ``spawn`` where
    ``forkserver`` is not available.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # used when the server starts (once per process)
    return ctx


def _start_workers_early() -> None:
    """Start the forkserver (it imports the decoding modules) while the main process works."""
    ctx = _worker_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


TASKS_PER_POOL = 64


def _run_pool(tasks: list[VideoTask], workers: int, progress) -> dict[str, dict[str, Any]]:
    """Run ``process_video`` over ``tasks`` in worker processes, surviving worker crashes.

    When a worker dies (a decoder crash, the OOM killer), the pool is broken and every
    unfinished task fails with ``BrokenProcessPool``. The tasks that may have been running
    are then retried one by one in a fresh single-worker pool — one that crashes again is
    skipped as ``decoder_crash`` — and the rest go back into a new shared pool.
    """
    results: dict[str, dict[str, Any]] = {}
    order = {t.video_id: i for i, t in enumerate(tasks)}
    ctx = _worker_context()
    pending = list(tasks)
    # A fresh pool for every TASKS_PER_POOL videos bounds the memory a worker can leak
    # (decord leaks with many readers). `max_tasks_per_child` would do the same, but on
    # Python < 3.13 the executor can hang when a worker retires with tasks still queued.
    while pending:
        unfinished: list[VideoTask] = []
        group, rest = pending[: workers * TASKS_PER_POOL], pending[workers * TASKS_PER_POOL :]
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(process_video, t): i for i, t in enumerate(group)}
            for fut in cf.as_completed(futures):
                task = group[futures[fut]]
                try:
                    results[task.video_id] = fut.result()
                    progress.update(1)
                except cf.process.BrokenProcessPool:
                    unfinished.append(task)
        if not unfinished:
            pending = rest
            continue
        unfinished.sort(key=lambda t: order[t.video_id])
        # Tasks are handed to workers in submission order, so the ones that were running
        # are among the first unfinished ones (one per worker + the pool's one queued call).
        n_suspects = workers + 1
        for task in unfinished[:n_suspects]:
            with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as solo:
                try:
                    results[task.video_id] = solo.submit(process_video, task).result()
                except cf.process.BrokenProcessPool:
                    result = {
                        "video_id": task.video_id,
                        "status": "skipped",
                        "reason": "decoder_crash",
                        "detail": "the decoding process died on this file",
                    }
                    atomic_write_json(task.skip_marker, result)
                    results[task.video_id] = result
            progress.update(1)
        pending = unfinished[n_suspects:] + rest
    return results


def _media_stamp(path: str | Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a media file, ``None`` if it cannot be read: a file replaced
    under the same name (a regenerated corpus) changes it, so stale results are not reused."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _fingerprint(settings: dict[str, Any], corpus_text: bytes, stamps: list[Any]) -> str:
    blob = json.dumps([settings, stamps], sort_keys=True).encode() + corpus_text
    return hashlib.sha256(blob).hexdigest()[:16]


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
    from tqdm.auto import tqdm

    config = config or DataConfig()
    _validate_config(config)
    workers = max(1, workers or config.prepare_workers)
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    vocabulary = list(config.label_vocabulary or MUSIC45_LABELS)
    vocab_ids = {name: i for i, name in enumerate(vocabulary)}
    try:
        corpus_bytes = (corpus_dir / "videos.jsonl").read_bytes()
    except OSError as err:
        raise PrepareError(f"cannot read the corpus {corpus_dir}: {err}") from err
    errors: list[dict[str, Any]] = []
    try:
        records = read_corpus(corpus_dir, errors=errors)
    except CorpusError as err:
        raise PrepareError(str(err)) from err
    # Loader-only settings (and the worker count) do not change the prepared data.
    shard_config = {k: v for k, v in dataclasses.asdict(config).items() if k not in _LOADER_ONLY}
    stamps = {
        r.video_id: (_media_stamp(r.media_path(corpus_dir)), _media_stamp(r.audio_path(corpus_dir)))
        for r in records
    }
    fingerprint = _fingerprint(shard_config, corpus_bytes, list(stamps.values()))
    summary_path = out_dir / "summary.json"
    if not force and summary_path.is_file():
        try:
            old = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("fingerprint") == fingerprint and all((out_dir / s).is_dir() for s in SPLITS):
            print(
                f"{out_dir} is already prepared from this corpus and config (use --force to redo)"
            )
            return old

    # The forkserver imports the decoding modules while this process imports ``datasets``.
    _start_workers_early()
    schema = clip_features(config, vocabulary).arrow_schema.serialize().to_pybytes()

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
    for record in records:
        problems = record_problems(record, corpus_dir, known_labels=vocabulary)
        if problems:
            reason, _, detail = problems[0].partition(": ")
            skipped.append({"video_id": record.video_id, "reason": reason, "detail": detail})
        else:
            usable.append(record)

    splits = {r.video_id: assign_split(r, config) for r in usable}
    train_ids = [v for v, s in splits.items() if s == "train"]
    fractions: dict[str, float] = {}
    if config.scheme == "clips" and config.sparse_train:
        fractions = assign_keep_fractions(train_ids, config.sparse_fractions, config.seed)

    work = out_dir / WORK_DIR
    crash_on = os.environ.get(FAULT_ENV)
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
        key = _task_key(
            {**fields, "config": shard_config, "vocabulary": vocabulary}, stamps[record.video_id]
        )
        tasks.append(
            VideoTask(
                **fields,
                shard=str(work / "shards" / f"{record.video_id}.{key}.arrow"),
                skip_marker=str(work / "skips" / f"{record.video_id}.{key}.json"),
                config=shard_config,
                vocabulary=vocabulary,
                schema=schema,
                crash=crash_on == record.video_id,
            )
        )

    # Resume: a shard or a cached skip with the same key is a finished video.
    results: dict[str, dict[str, Any]] = {}
    todo: list[VideoTask] = []
    for task in tasks:
        if Path(task.shard).is_file():
            results[task.video_id] = {"video_id": task.video_id, "status": "ok", "reused": True}
        elif Path(task.skip_marker).is_file():
            results[task.video_id] = json.loads(Path(task.skip_marker).read_text())
        else:
            todo.append(task)
    (work / "shards").mkdir(parents=True, exist_ok=True)
    (work / "skips").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tqdm(
        total=len(tasks),
        initial=len(tasks) - len(todo),
        desc="prepare",
        unit="video",
        disable=not show_progress,
    ) as bar:
        if todo:
            results.update(_run_pool(todo, min(workers, len(todo)), bar))
    decode_s = time.perf_counter() - t0

    for task in tasks:
        r = results[task.video_id]
        if r["status"] != "ok":
            skipped.append(
                {"video_id": task.video_id, "reason": r["reason"], "detail": r["detail"]}
            )

    summary = _assemble(out_dir, tasks, results, config, vocabulary, show_progress)
    skipped.sort(key=lambda s: (s.get("video_id") or "", s["reason"]))
    summary.update(
        {
            "fingerprint": fingerprint,
            "corpus": str(corpus_dir.resolve()),
            "videos_in_corpus": len(records) + len(errors),
            "videos_prepared": sum(1 for t in tasks if results[t.video_id]["status"] == "ok"),
            "videos_skipped": len(skipped),
            "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
            "label_vocabulary": vocabulary,
            "config": shard_config,
        }
    )
    atomic_write_text(
        out_dir / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped)
    )
    atomic_write_json(summary_path, summary)
    reused = sum(1 for r in results.values() if r.get("reused"))
    counts = ", ".join(f"{s}: {summary['splits'][s]['clips']} clips" for s in SPLITS)
    print(
        f"prepared {summary['videos_prepared']} videos ({counts}), "
        f"skipped {len(skipped)}, reused {reused} finished videos, decoding took {decode_s:.1f} s",
        file=sys.stderr,
    )
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return summary


_LOADER_ONLY = frozenset(
    {
        "prepared_dir",
        "num_workers",
        "prepare_workers",
        "audio_rate",
        "video_size",
        "crop_seconds",
        "augment",
        "crop_scale",
        "eval_text",
    }
)


def _read_shard(path: str, schema):
    """The memory-mapped table of a shard, with the extension types of ``schema``."""
    import pyarrow as pa

    from data_prep._arrow_io import check_storage_schema

    table = pa.ipc.open_stream(pa.memory_map(path)).read_all()
    check_storage_schema(schema, table.schema, path)
    columns = []
    for field, column in zip(schema, table.columns):
        if isinstance(field.type, pa.ExtensionType) and column.type != field.type:
            chunks = [pa.ExtensionArray.from_storage(field.type, c) for c in column.chunks]
            column = pa.chunked_array(chunks, type=field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _link_split(path: Path, shards: list[str], schema, features, fingerprint: str) -> int | None:
    """Make the shards the split's files (hard links); return the number of rows.

    None (nothing written) when ``save_to_disk`` would have written a single file (a split
    of at most :data:`_MAX_FILE_BYTES`: it is then one memory-mapped table, as before), when
    the split has more than :data:`_MAX_LINKED_FILES` videos, or when a shard's schema is
    not exactly ``schema``. A split of several files loads as a concatenation of
    memory-mapped tables either way.
    """
    import pyarrow as pa

    if not shards or len(shards) > _MAX_LINKED_FILES:
        return None
    rows = nbytes = 0
    for shard in shards:
        reader = pa.ipc.open_stream(pa.memory_map(shard))
        if not reader.schema.equals(schema, check_metadata=True):
            return None
        table = reader.read_all()  # batch headers only: the data stays on disk
        rows, nbytes = rows + table.num_rows, nbytes + table.nbytes
    if min(rows, int(nbytes / _MAX_FILE_BYTES) + 1) <= 1:
        return None
    path.mkdir(parents=True)
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for shard, name in zip(shards, names):
        try:
            os.link(shard, path / name)  # shards are never modified: they are renamed in whole
        except OSError:  # a file system without hard links
            shutil.copyfile(shard, path / name)
    _write_split_json(path, names, rows, schema.names, features, fingerprint)
    return rows


def _write_split_json(
    path: Path, names: list[str], rows: int, columns: list[str], features, fingerprint: str
) -> None:
    """``state.json`` and ``dataset_info.json`` of a split, as ``save_to_disk`` writes them."""
    from datasets import DatasetInfo
    from datasets.utils.py_utils import asdict

    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": fingerprint,
        "_format_columns": list(columns) if rows else None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (path / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    info = asdict(DatasetInfo(features=features))
    (path / "dataset_info.json").write_text(
        json.dumps({k: info[k] for k in sorted(info)}, indent=2)
    )


def _write_split(path: Path, table, features, fingerprint: str) -> None:
    """Write ``table`` to the directory ``path`` as ``Dataset.save_to_disk`` lays it out.

    Same files (``data-XXXXX-of-NNNNN.arrow`` of at most 500 MB, contiguous row ranges,
    record batches of at most ~100 MB), ``dataset_info.json`` and ``state.json``, but the
    batches are copied from the memory-mapped shards instead of going through ``datasets``.
    """
    import pyarrow as pa

    rows, nbytes = table.num_rows, table.nbytes
    num_files = min(rows, int(nbytes / _MAX_FILE_BYTES) + 1) if rows else 1
    batch_rows = 1000  # datasets.config.DEFAULT_MAX_BATCH_SIZE
    if nbytes > 0:
        batch_rows = min(batch_rows, max(1, rows * _MAX_BATCH_BYTES // nbytes))
    path.mkdir(parents=True)
    names = [f"data-{i:05d}-of-{num_files:05d}.arrow" for i in range(num_files)]
    div, mod = divmod(rows, num_files)
    for i, name in enumerate(names):
        start = div * i + min(i, mod)
        stop = start + div + (1 if i < mod else 0)
        with pa.OSFile(str(path / name), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                for a in range(start, stop, batch_rows):
                    part = table.slice(a, min(batch_rows, stop - a)).combine_chunks()
                    writer.write_table(part, max_chunksize=batch_rows)
    _write_split_json(path, names, rows, table.column_names, features, fingerprint)


def _assemble(
    out_dir: Path,
    tasks: list[VideoTask],
    results: dict[str, dict[str, Any]],
    config: DataConfig,
    vocabulary: list[str],
    show_progress: bool,
) -> dict[str, Any]:
    """Concatenate the shards of each split in video-id order into the split's dataset."""
    import pyarrow as pa

    del show_progress  # assembling is a copy of a few seconds at most
    features = clip_features(config, vocabulary)
    schema = features.arrow_schema
    split_summary = {}
    for split in SPLITS:
        shards = [
            t.shard for t in tasks if t.split == split and results[t.video_id]["status"] == "ok"
        ]
        # The shard names carry a key of their content: so does the dataset fingerprint.
        fingerprint = hashlib.sha256("\n".join(Path(s).name for s in shards).encode()).hexdigest()
        final = out_dir / split
        tmp = out_dir / f".{split}.tmp"
        old = out_dir / f".{split}.old"
        for p in (tmp, old):
            shutil.rmtree(p, ignore_errors=True)
        linked = _link_split(tmp, shards, schema, features, fingerprint[:16])
        if linked is not None:
            n_clips = linked
        else:  # many videos, or shards of another layout: copy the batches into big files
            shutil.rmtree(tmp, ignore_errors=True)
            parts = [_read_shard(s, schema) for s in shards]
            table = pa.concat_tables(parts) if parts else schema.empty_table()
            _write_split(tmp, table, features, fingerprint[:16])
            n_clips = table.num_rows
            del table, parts
        # Swap the finished directory in: the previous output stays until the new one is whole.
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        split_summary[split] = {"videos": len(shards), "clips": n_clips}
    return {
        "splits": split_summary,
        "columns": {
            "audio": {audio_column(r): {"rate": r, "dtype": "float32"} for r in config.audio_rates},
            "frames": {
                frames_column(s): {
                    "shape": [config.num_frames, 3] + [stored_side(s, config.frame_margin)] * 2,
                    "dtype": config.frame_dtype,
                    "crop": s,
                }
                for s in config.frame_sizes
            },
        },
    }


# ----------------------------------------------------------------------------- command line


def load_data_config(path: str | Path | None) -> DataConfig:
    """A :class:`DataConfig` from a YAML file: its ``data:`` section, or the whole file."""
    import yaml

    if path is None:
        return DataConfig()
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise PrepareError(f"{path}: the top level must be a mapping")
    if isinstance(data.get("data"), dict):
        data = data["data"]
    return from_dict(DataConfig, data, prefix="data")


def _cmd_prepare(args: argparse.Namespace) -> int:
    config = load_data_config(args.config)
    overrides = {
        "clip_seconds": args.clip_seconds,
        "scheme": args.scheme,
        "seed": args.seed,
        "split_by": args.split_by,
        "frame_dtype": args.frame_dtype,
    }
    if args.dense_train:
        overrides["sparse_train"] = False
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    try:
        summary = prepare(
            args.corpus,
            args.out,
            config,
            workers=args.workers,
            keep_work=args.keep_work,
            force=args.force,
            show_progress=not args.no_progress,
        )
    except (PrepareError, CorpusError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("splits", "videos_prepared", "videos_skipped", "skipped_by_reason")
            }
        )
    )
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="raw corpus directory (videos.jsonl + media)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="YAML with a data: section (or DataConfig keys at the top)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes")
    p.add_argument("--clip-seconds", type=float, default=None)
    p.add_argument("--scheme", choices=["clips", "segments"], default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--split-by", choices=["hash", "age"], default=None)
    p.add_argument("--frame-dtype", choices=["uint8", "float16"], default=None)
    p.add_argument("--dense-train", action="store_true", help="keep every train clip")
    p.add_argument("--keep-work", action="store_true", help="keep the per-video shards")
    p.add_argument("--force", action="store_true", help="redo even if already prepared")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` command to ``python -m data_prep``."""
    p = subparsers.add_parser(
        "prepare",
        help="turn a raw corpus into model-ready clip datasets (one per split)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    """``python -m data_prep.prepare ...``: the same as ``python -m data_prep prepare ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
