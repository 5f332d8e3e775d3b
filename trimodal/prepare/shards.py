"""One video → its shard: the work each decoding worker process does.

A :class:`VideoTask` carries everything about one video that its clips need (paths, split,
labels, texts, the share of clips it keeps, the settings, the split's Arrow schema), so that
a worker needs nothing else. :func:`process_video` decodes the media
(:func:`~trimodal.prepare.decoding.decode_media`), plans the clips
(:func:`~trimodal.prepare.splits.clip_plan`) and writes them to the task's shard: an Arrow
IPC stream with one record batch per clip, in the split's exact schema, renamed into place
whole (so a shard that exists is finished, and it can become a split file as it is).

A video that cannot be used is not an error: :func:`process_video` returns
``{"status": "skipped", "reason": ..., "detail": ...}`` and caches that result beside the
shards, so a resumed run does not decode it again.

The workers import NumPy, PyArrow, PyAV and (where it is installed) decord, not torch or
``datasets`` (seconds to import per process): the split's schema arrives serialized in the
task. The result of a prepared video names the backend that read its frames (``decoder``)
and, when decord was passed over, why (``fallback``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa

from trimodal.config import DataConfig, from_dict
from trimodal.data.schema import (
    audio_column,
    audio_samples,
    check_storage_schema,
    encode_waveform,
    fixed_list_array,
    frames_column,
    metadata_type,
    nested_list_array,
    storage_schema,
    stored_side,
)
from trimodal.prepare.decoding import DecodedMedia, decode_media, downscale
from trimodal.prepare.errors import VideoSkipped
from trimodal.prepare.splits import ClipPlan, clip_plan
from trimodal.utils import atomic_path, atomic_write_json

# The per-video columns every clip of the video repeats (see VideoTask).
_VIDEO_COLUMNS = ("video_id", "split", "labels", "label_ids", "texts", "title", "published_at")


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
    config: dict[str, Any]  # the preparation settings (DataConfig as a dict)
    vocabulary: list[str]
    schema: bytes = b""  # the split's Arrow schema (serialized: workers need no ``datasets``)


def process_video(task: VideoTask) -> dict[str, Any]:
    """Decode one video into its shard of clips; return ``{"status": "ok" | "skipped", ...}``.

    Runs in a worker process. Never raises for bad media: the reason is returned.
    """
    try:
        n_clips, decoder, fallback = _write_shard(task)
    except VideoSkipped as skip:
        return skip_result(task, skip.reason, skip.detail)
    except Exception as err:  # a decoder error we did not foresee must not stop the run
        return skip_result(task, "decode_error", f"{type(err).__name__}: {err}")
    result = {"video_id": task.video_id, "status": "ok", "clips": n_clips, "decoder": decoder}
    return result | ({"fallback": fallback} if fallback else {})


def skip_result(task: VideoTask, reason: str, detail: str) -> dict[str, Any]:
    """The result of a skipped video, cached in ``task.skip_marker`` for a resumed run."""
    result = {"video_id": task.video_id, "status": "skipped", "reason": reason, "detail": detail}
    atomic_write_json(task.skip_marker, result)
    return result


def split_schema(task: VideoTask, cfg: DataConfig) -> pa.Schema:
    """The schema the shard is written in: the split files' own (extension types and the
    ``huggingface`` metadata as field and schema metadata), checked against the settings."""
    expected = storage_schema(cfg)
    schema = pa.ipc.read_schema(pa.py_buffer(task.schema)) if task.schema else expected
    check_storage_schema(expected, schema, "features")
    return schema


def _write_shard(task: VideoTask) -> tuple[int, str, str | None]:
    """Decode, cut and write the clips of ``task``; return (how many were written, the
    backend that read the frames, why decord was passed over or None)."""
    cfg = from_dict(DataConfig, task.config)
    sides = {size: stored_side(size, cfg.frame_margin) for size in cfg.frame_sizes}
    blank = cfg.audio_only == "blank"
    side = max(sides.values())
    media = decode_media(task.media, task.audio, side, cfg.audio_rates, cfg.decoder, blank)
    try:
        n_clips = _write_clips(task, cfg, media, sides)
    finally:
        media.close()
    return n_clips, media.decoder, media.fallback


def _write_clips(
    task: VideoTask, cfg: DataConfig, media: DecodedMedia, sides: dict[int, int]
) -> int:
    """Cut the clips of ``task`` from ``media`` and write its shard; return how many."""
    plan = clip_plan(task.video_id, media.duration_s, task.keep_fraction, cfg)
    schema = split_schema(task, cfg)
    # The columns every clip of the video shares, as one-row Arrow arrays.
    fixed = {name: pa.array([getattr(task, name)], metadata_type(name)) for name in _VIDEO_COLUMNS}
    with atomic_path(task.shard) as tmp:
        # One record batch per clip (bounded memory), as datasets' ArrowWriter wrote them.
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for clip_index, start in zip(plan.indices, plan.starts):
                cols = {**fixed, **_clip_columns(clip_index, start, plan, media, sides, cfg)}
                writer.write_batch(
                    pa.RecordBatch.from_arrays([cols[name] for name in schema.names], schema=schema)
                )
    return len(plan.indices)


def _clip_columns(
    clip_index: int,
    start: float,
    plan: ClipPlan,
    media: DecodedMedia,
    sides: dict[int, int],
    cfg: DataConfig,
) -> dict[str, pa.Array]:
    """The one-row arrays of one clip: its times, waveforms and frames."""
    length = plan.length
    cols: dict[str, pa.Array] = {
        "clip_index": pa.array([clip_index], metadata_type("clip_index")),
        "start_s": pa.array([start], metadata_type("start_s")),
        "end_s": pa.array([start + length], metadata_type("end_s")),
    }
    for rate in cfg.audio_rates:
        a, n = audio_samples(start, rate), audio_samples(length, rate)
        # Zeros past the end of the track (rounding at the very end); stored as int16.
        cols[audio_column(rate)] = fixed_list_array(encode_waveform(media.audio_at(rate, a, n)))
    # Frame j shows time start + (j + 0.5) * length / T: the centres of T equal bins.
    T = cfg.num_frames
    frames = media.frames_at(start + (np.arange(T) + 0.5) * length / T)
    for size, side in sides.items():
        x = downscale(frames, side)
        if cfg.frame_dtype == "float16":
            x = (x.astype(np.float32) / 255.0).astype(np.float16)
        cols[frames_column(size)] = nested_list_array(x)
    return cols
