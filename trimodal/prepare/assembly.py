"""The output: per-video shards in a work area, assembled into one dataset per split.

**Work area and resume.** Each video's shard (or its cached skip result) lives in
``OUT/.work/`` under a name that carries :func:`task_key`, a hash of everything that
determines its content (the task's fields, the settings, the vocabulary, the media files'
size and modification time, :data:`SHARD_FORMAT`). :func:`reuse_finished` takes every video
whose shard or skip result exists as done, so a killed run resumes without redoing finished
videos, and a media file replaced under the same name is decoded again.
:func:`preparation_fingerprint` hashes the whole preparation (settings, ``videos.jsonl``,
media stamps): :func:`previous_summary` finds an output that already holds exactly it.

**Assembly.** :func:`assemble_splits` concatenates the shards of each split in video-id
order into ``OUT/train``, ``dev`` and ``test``, ``load_from_disk`` directories of
memory-mapped Arrow files. A split of at most :data:`MAX_FILE_BYTES` is one Arrow file, byte
for byte what ``Dataset.save_to_disk`` writes (the shards' record batches are copied, not
re-encoded); a bigger one is made of the videos' shards themselves (hard links: nothing is
written twice), up to :data:`MAX_LINKED_FILES` videos, else of copied files of at most
:data:`MAX_FILE_BYTES`. Each split directory is built beside the old one and swapped in
whole.
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
    SPLITS,
    audio_column,
    check_storage_schema,
    clip_features,
    frames_column,
    frames_shape,
)
from trimodal.prepare.shards import VideoTask

WORK_DIR = ".work"
SHARD_FORMAT = 2  # bump when the shard layout changes: old shards are then not reused
MAX_FILE_BYTES = 500 * 10**6  # split files of at most this size, as ``save_to_disk``
MAX_BATCH_BYTES = 100 * 10**6  # record batches of at most this size, as ``save_to_disk``
# Up to this many videos, a split's files are the videos' shards themselves (hard links, no
# copy); beyond it the shards are copied into files of at most MAX_FILE_BYTES (each file
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
    """A hash of a whole preparation: settings, ``videos.jsonl`` and every media stamp."""
    blob = json.dumps([settings, stamps], sort_keys=True).encode() + corpus_text
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
    # The shard names carry a key of their content: so does the dataset fingerprint.
    fingerprint = hashlib.sha256("\n".join(Path(s).name for s in shards).encode()).hexdigest()
    final, tmp, old = out_dir / split, out_dir / f".{split}.tmp", out_dir / f".{split}.old"
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    n_clips = _link_split(tmp, shards, schema, features, fingerprint[:16])
    if n_clips is None:  # many videos, or shards of another layout: copy the batches
        shutil.rmtree(tmp, ignore_errors=True)
        parts = [_read_shard(s, schema) for s in shards]
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        _write_split(tmp, table, features, fingerprint[:16])
        n_clips = table.num_rows
    # Swap the finished directory in: the previous output stays until the new one is whole.
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return n_clips


def _columns_summary(config: DataConfig) -> dict[str, Any]:
    """The summary's description of the array columns."""
    return {
        "audio": {audio_column(r): {"rate": r, "dtype": "float32"} for r in config.audio_rates},
        "frames": {
            frames_column(s): {
                "shape": list(frames_shape(config, s)),
                "dtype": config.frame_dtype,
                "crop": s,
            }
            for s in config.frame_sizes
        },
    }


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


def _link_split(
    path: Path, shards: list[str], schema: pa.Schema, features, fingerprint: str
) -> int | None:
    """Make the shards the split's files (hard links); return the number of rows.

    None (nothing written) when ``save_to_disk`` would have written a single file (a split
    of at most :data:`MAX_FILE_BYTES`: it is then one memory-mapped table), when the split
    has more than :data:`MAX_LINKED_FILES` videos, or when a shard's schema is not exactly
    ``schema``. A split of several files loads as a concatenation of memory-mapped tables
    either way.
    """
    if not shards or len(shards) > MAX_LINKED_FILES:
        return None
    rows = nbytes = 0
    for shard in shards:
        reader = pa.ipc.open_stream(pa.memory_map(shard))
        if not reader.schema.equals(schema, check_metadata=True):
            return None
        table = reader.read_all()  # batch headers only: the data stays on disk
        rows, nbytes = rows + table.num_rows, nbytes + table.nbytes
    if min(rows, int(nbytes / MAX_FILE_BYTES) + 1) <= 1:
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


def _write_split(path: Path, table: pa.Table, features, fingerprint: str) -> None:
    """Write ``table`` to the directory ``path`` as ``Dataset.save_to_disk`` lays it out.

    Same files (``data-XXXXX-of-NNNNN.arrow`` of at most 500 MB, contiguous row ranges,
    record batches of at most ~100 MB), ``dataset_info.json`` and ``state.json``, but the
    batches are copied from the memory-mapped shards instead of going through ``datasets``.
    """
    rows, nbytes = table.num_rows, table.nbytes
    num_files = min(rows, int(nbytes / MAX_FILE_BYTES) + 1) if rows else 1
    batch_rows = 1000  # datasets.config.DEFAULT_MAX_BATCH_SIZE
    if nbytes > 0:
        batch_rows = min(batch_rows, max(1, rows * MAX_BATCH_BYTES // nbytes))
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
