"""The output: per-video shards in a work area, assembled into one dataset per split.

**Work area and resume.** Each video's shard (or its cached skip result) lives in
``OUT/.work/`` under a name that carries :func:`task_key`, a hash of everything that
determines its content (the task's fields, the settings, the vocabulary, the media files'
size and modification time, :data:`SHARD_FORMAT`). :func:`reuse_finished` takes every video
whose shard or skip result exists as done, so a killed run resumes without redoing finished
videos, and a media file replaced under the same name is decoded again.
:func:`preparation_fingerprint` hashes the whole preparation (settings, ``videos.jsonl``,
media stamps): :func:`previous_summary` finds an output that already holds exactly it.

**Assembly.** :func:`assemble_splits` makes each split directory (``OUT/train``, ``dev``,
``test``) from the split's shards in video-id order: up to :data:`MAX_LINKED_FILES` videos,
its files are the videos' shards themselves (hard links: nothing is written twice), beyond
it the shards' record batches are copied into files of about :data:`MAX_FILE_BYTES`. The
files are Arrow IPC streams carrying the ``datasets`` features in their schema metadata,
listed in ``split.json`` (:func:`trimodal.data.schema.load_split` opens them with
``datasets.Dataset.from_file``, memory-mapped). Each split directory is built beside the old
one and swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from trimodal.config import DataConfig
from trimodal.data.schema import (
    SPLIT_MANIFEST,
    SPLITS,
    STORAGE_FORMAT,
    audio_column,
    check_storage_schema,
    clip_features,
    frames_column,
    frames_shape,
)
from trimodal.modalities import AUDIO_SCALE
from trimodal.prepare.shards import VideoTask
from trimodal.utils import atomic_write_json

WORK_DIR = ".work"
SHARD_FORMAT = STORAGE_FORMAT  # shards of another format (their key carries it) are not reused
MAX_FILE_BYTES = 500 * 10**6  # copied split files of about this size
# Up to this many videos, a split's files are the videos' shards themselves (hard links, no
# copy); beyond it the shards are copied into files of about MAX_FILE_BYTES (each file
# is one memory map of the loading process: the default limit is 65530 maps).
MAX_LINKED_FILES = 10_000


# ----------------------------------------------------------------------------- resume


def task_key(task_fields: dict[str, Any], media_stamps: tuple[Any, ...]) -> str:
    """A key of everything that determines a shard's content (its file name carries it)."""
    blob = json.dumps(
        {"v": SHARD_FORMAT, "task": task_fields, "media": media_stamps}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shard_paths(work: Path, video_id: str, key: str) -> tuple[str, str]:
    """(shard, cached skip result) of a video in the work area ``work``."""
    return (
        str(work / "shards" / f"{video_id}.{key}.arrow"),
        str(work / "skips" / f"{video_id}.{key}.json"),
    )


def preparation_fingerprint(settings: dict[str, Any], corpus_text: bytes, stamps: list[Any]) -> str:
    """A hash of a whole preparation: settings, ``videos.jsonl``, every media stamp and the
    storage format (an output of another format is prepared again)."""
    blob = json.dumps([settings, stamps, SHARD_FORMAT], sort_keys=True).encode() + corpus_text
    return hashlib.sha256(blob).hexdigest()[:16]


def previous_summary(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The summary of ``out_dir`` if it already holds the preparation ``fingerprint``."""
    try:
        old = json.loads((out_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if old.get("fingerprint") == fingerprint and all((out_dir / s).is_dir() for s in SPLITS):
        return old
    return None


def reuse_finished(
    tasks: list[VideoTask],
) -> tuple[dict[str, dict[str, Any]], list[VideoTask]]:
    """(results of the videos already done, the tasks still to run): a shard or a cached
    skip result under the task's key is a finished video."""
    results: dict[str, dict[str, Any]] = {}
    todo: list[VideoTask] = []
    for task in tasks:
        if Path(task.shard).is_file():
            results[task.video_id] = {"video_id": task.video_id, "status": "ok", "reused": True}
        elif Path(task.skip_marker).is_file():
            results[task.video_id] = json.loads(Path(task.skip_marker).read_text())
        else:
            todo.append(task)
    return results, todo


# ----------------------------------------------------------------------------- split files


def assemble_splits(
    out_dir: Path,
    tasks: list[VideoTask],
    results: dict[str, dict[str, Any]],
    config: DataConfig,
    vocabulary: list[str],
) -> dict[str, Any]:
    """Write each split's dataset from its shards; return the summary's ``splits`` and
    ``columns`` entries."""
    features = clip_features(config, vocabulary)
    split_summary = {}
    for split in SPLITS:
        shards = [
            t.shard for t in tasks if t.split == split and results[t.video_id]["status"] == "ok"
        ]
        n_clips = _assemble_split(out_dir, split, shards, features)
        split_summary[split] = {"videos": len(shards), "clips": n_clips}
    return {"splits": split_summary, "columns": _columns_summary(config)}


def _assemble_split(out_dir: Path, split: str, shards: list[str], features) -> int:
    """Write ``out_dir/split`` from ``shards`` (in order); return its number of rows."""
    schema = features.arrow_schema
    # The shard names carry a key of their content: so does the split's fingerprint.
    fingerprint = hashlib.sha256("\n".join(Path(s).name for s in shards).encode()).hexdigest()
    final, tmp, old = out_dir / split, out_dir / f".{split}.tmp", out_dir / f".{split}.old"
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    tmp.mkdir(parents=True)
    if shards and len(shards) <= MAX_LINKED_FILES and _same_schema(shards, schema):
        names = _link_shards(tmp, shards)
    else:  # many videos (one memory map per file), no videos, or shards of another layout
        names = _copy_shards(tmp, shards, schema)
    rows = sum(_rows(tmp / name) for name in names)
    manifest = {
        "format": STORAGE_FORMAT,
        "files": names,
        "rows": rows,
        "fingerprint": fingerprint[:16],
    }
    atomic_write_json(tmp / SPLIT_MANIFEST, manifest)
    # Swap the finished directory in: the previous output stays until the new one is whole.
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return rows


def _columns_summary(config: DataConfig) -> dict[str, Any]:
    """The summary's description of the array columns."""
    return {
        "audio": {
            audio_column(r): {"rate": r, "dtype": "int16", "scale": AUDIO_SCALE}
            for r in config.audio_rates
        },
        "frames": {
            frames_column(s): {
                "shape": list(frames_shape(config, s)),
                "dtype": config.frame_dtype,
                "crop": s,
            }
            for s in config.frame_sizes
        },
    }


def _rows(path: Path) -> int:
    """Rows of an Arrow stream file (record batch headers only: the data stays on disk)."""
    return pa.ipc.open_stream(pa.memory_map(str(path))).read_all().num_rows


def _same_schema(shards: list[str], schema: pa.Schema) -> bool:
    """Whether every shard is written in exactly ``schema`` (metadata included)."""
    for shard in shards:
        with pa.memory_map(shard) as source:
            if not pa.ipc.open_stream(source).schema.equals(schema, check_metadata=True):
                return False
    return True


def _link_shards(path: Path, shards: list[str]) -> list[str]:
    """Make the shards the split's files (hard links: nothing is written twice)."""
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for shard, name in zip(shards, names):
        try:
            os.link(shard, path / name)  # shards are never modified: they are renamed in whole
        except OSError:  # a file system without hard links
            shutil.copyfile(shard, path / name)
    return names


def _read_shard(path: str, schema: pa.Schema) -> pa.Table:
    """The memory-mapped table of a shard, with the extension types of ``schema``."""
    table = pa.ipc.open_stream(pa.memory_map(path)).read_all()
    check_storage_schema(schema, table.schema, path)
    columns = []
    for field, column in zip(schema, table.columns):
        if isinstance(field.type, pa.ExtensionType) and column.type != field.type:
            chunks = [pa.ExtensionArray.from_storage(field.type, c) for c in column.chunks]
            column = pa.chunked_array(chunks, type=field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _copy_shards(path: Path, shards: list[str], schema: pa.Schema) -> list[str]:
    """Copy the shards' record batches, in order, into Arrow stream files of about
    :data:`MAX_FILE_BYTES` each (at least one file, empty for a split without videos)."""
    names: list[str] = []
    writer, size = None, 0
    try:
        for shard in shards or [None]:
            table = _read_shard(shard, schema) if shard else schema.empty_table()
            if writer is None or size + table.nbytes > MAX_FILE_BYTES:
                if writer is not None:
                    writer.close()
                names.append(f"data-{len(names):05d}.arrow")
                writer, size = pa.ipc.new_stream(str(path / names[-1]), schema), 0
            writer.write_table(table)
            size += table.nbytes
    finally:
        if writer is not None:
            writer.close()
    return names
