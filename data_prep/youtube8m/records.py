"""``yt8m-records``: keep the YouTube-8M videos that carry a selected label.

Reads video-level or frame-level TFRecord files, keeps every video with at least one selected
label and saves its ``mean_rgb`` / ``mean_audio`` (frame level: the mean of the dequantised
frames) for baseline probes. Output directory::

    records/
      shards/<file>-<hash>.npz   per input file: ids, labels, mean_rgb, mean_audio (atomic)
      progress.jsonl             append-only: one line per finished input file (the resume state)
      mean_rgb.npy               float32 (N, 1024)   } rebuilt from the shards at the end
      mean_audio.npy             float32 (N, 128)    } of every run (atomic writes)
      index.jsonl                row i of the arrays: pseudo_id, labels, source file
      skipped_records.jsonl      records that could not be read, with the reason

Resuming: an input file whose last progress line says ``done`` (same size) is not read again;
a file that was ``corrupt`` is retried (it may have been downloaded again). A damaged record
is skipped with its reason; a damaged file keeps the videos read before the damage.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data_prep.youtube8m.jsonl import JsonlAppender, read_jsonl, write_jsonl_atomic
from data_prep.youtube8m.labels import LabelEntry
from data_prep.youtube8m.tfrecord import (
    AUDIO_DIM,
    RGB_DIM,
    ProtoDecodeError,
    TFRecordCorruptError,
    Yt8mRecordError,
    decode_yt8m_example,
    iter_tfrecord,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.jsonl"
PROGRESS_FILE = "progress.jsonl"
SKIPPED_FILE = "skipped_records.jsonl"
MAX_PROBLEMS_PER_FILE = 1000  # keep progress lines bounded on a badly broken file


class RecordsError(ValueError):
    """Bad input to ``yt8m-records`` (no input files, unreadable output directory, ...)."""


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named by ``inputs``: files, directories (their ``*.tfrecord``) and glob patterns."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(p.glob("*.tfrecord")))
        elif p.is_file():
            files.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item)) if Path(m).is_file())
            if not matches:
                raise RecordsError(f"no TFRecord files match {str(item)!r}")
            files.extend(matches)
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    if not unique:
        raise RecordsError("no input TFRecord files")
    return unique


def shard_key(path: Path) -> str:
    """A shard name unique per input path (official files repeat names across partitions)."""
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:8]
    return f"{path.stem}-{digest}"


def _save_shard(path: Path, videos: list[dict[str, Any]]) -> None:
    from trimodal.utils import atomic_path

    labels = [np.asarray(v["label_indices"], dtype=np.int64) for v in videos]
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(
                f,
                ids=np.asarray([v["pseudo_id"] for v in videos], dtype=str),
                label_flat=np.concatenate(labels) if labels else np.zeros(0, np.int64),
                label_offsets=np.cumsum([0] + [len(x) for x in labels]).astype(np.int64),
                num_frames=np.asarray(
                    [-1 if v["num_frames"] is None else v["num_frames"] for v in videos],
                    dtype=np.int64,
                ),
                mean_rgb=np.stack([v["mean_rgb"] for v in videos]).astype(np.float32)
                if videos
                else np.zeros((0, RGB_DIM), np.float32),
                mean_audio=np.stack([v["mean_audio"] for v in videos]).astype(np.float32)
                if videos
                else np.zeros((0, AUDIO_DIM), np.float32),
            )


def _load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def process_file(
    path: Path, selected: dict[int, str], verify_crc: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read one TFRecord file; return (kept videos, progress entry with counts and problems)."""
    kept: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    stats = {"records": 0, "kept": 0, "bad_records": 0}

    def problem(entry: dict[str, Any]) -> None:
        stats["bad_records"] += 1
        if len(problems) < MAX_PROBLEMS_PER_FILE:
            problems.append(entry)

    status = "done"
    error = None
    try:
        for i, data in enumerate(
            iter_tfrecord(
                path,
                verify_crc=verify_crc,
                on_bad_record=lambda e: problem({"offset": e.offset, "reason": e.reason}),
            )
        ):
            stats["records"] += 1
            try:
                video = decode_yt8m_example(data)
            except (ProtoDecodeError, Yt8mRecordError) as err:
                problem({"record": i, "reason": str(err)})
                continue
            indices = [int(x) for x in video.labels]
            if not any(x in selected for x in indices):
                continue
            kept.append(
                {
                    "pseudo_id": video.pseudo_id,
                    "label_indices": indices,
                    "num_frames": video.num_frames,
                    "mean_rgb": video.mean_rgb,
                    "mean_audio": video.mean_audio,
                }
            )
    except TFRecordCorruptError as err:
        # Nothing after a bad length or a truncation can be located: keep what was read.
        status = "corrupt"
        error = str(err)
        problem({"offset": err.offset, "reason": err.reason})
    stats["kept"] = len(kept)
    entry = {"status": status, **stats, "problems": problems}
    if error:
        entry["error"] = error
    return kept, entry


def run_records(
    inputs: Sequence[str | Path],
    labels: Sequence[LabelEntry],
    out_dir: str | Path,
    verify_crc: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Process every input file not done yet, then rebuild the arrays and index.

    Returns a summary: files read/skipped/corrupt, videos kept, bad records.
    """
    out_dir = Path(out_dir)
    shard_dir = out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs)
    selected = {e.index: e.name for e in labels}
    if not selected:
        raise RecordsError("no labels selected")

    last: dict[str, dict[str, Any]] = {}
    for entry in read_jsonl(out_dir / PROGRESS_FILE):
        if "key" in entry:
            last[entry["key"]] = entry

    summary = {"files": len(files), "read": 0, "already_done": 0, "corrupt": 0}
    with JsonlAppender(out_dir / PROGRESS_FILE) as progress_log:
        bar = tqdm(files, desc="yt8m-records", unit="file", disable=not progress)
        for path in bar:
            key = shard_key(path)
            size = path.stat().st_size
            prev = last.get(key)
            if (
                prev
                and prev.get("status") == "done"
                and prev.get("size") == size
                and (shard_dir / f"{key}.npz").is_file()
            ):
                summary["already_done"] += 1
                continue
            kept, entry = process_file(path, selected, verify_crc=verify_crc)
            _save_shard(shard_dir / f"{key}.npz", kept)
            entry = {"key": key, "file": str(path), "size": size, **entry}
            progress_log.write(entry)  # after the shard: a logged file always has its shard
            last[key] = entry
            summary["read"] += 1
            if entry["status"] == "corrupt":
                summary["corrupt"] += 1
                log.warning("%s", entry["error"])
    summary.update(consolidate(out_dir, files, last, selected))
    return summary


def consolidate(
    out_dir: Path,
    files: Sequence[Path],
    last: dict[str, dict[str, Any]],
    selected: dict[int, str],
) -> dict[str, Any]:
    """Merge the shards of ``files`` into ``mean_rgb.npy``, ``mean_audio.npy``, ``index.jsonl``.

    A pseudo id seen twice (the same file given under two paths, overlapping partitions) keeps
    its first occurrence; the repeat is listed in ``skipped_records.jsonl``.
    """
    from trimodal.utils import atomic_path

    index: list[dict[str, Any]] = []
    rgbs: list[np.ndarray] = []
    audios: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for path in files:
        key = shard_key(path)
        entry = last.get(key)
        shard_path = out_dir / "shards" / f"{key}.npz"
        if entry is None or not shard_path.is_file():
            continue
        for p in entry.get("problems", []):
            skipped.append({"file": str(path), **p})
        shard = _load_shard(shard_path)
        offsets = shard["label_offsets"]
        keep_rows = []
        for row, pid in enumerate(shard["ids"].tolist()):
            if pid in seen:
                skipped.append(
                    {"file": str(path), "pseudo_id": pid, "reason": f"duplicate of {seen[pid]}"}
                )
                continue
            seen[pid] = str(path)
            indices = shard["label_flat"][offsets[row] : offsets[row + 1]].tolist()
            frames = int(shard["num_frames"][row])
            index.append(
                {
                    "row": len(index),
                    "pseudo_id": pid,
                    "labels": [selected[i] for i in indices if i in selected],
                    "label_indices": indices,
                    "num_frames": None if frames < 0 else frames,
                    "source": str(path),
                }
            )
            keep_rows.append(row)
        rgbs.append(shard["mean_rgb"][keep_rows])
        audios.append(shard["mean_audio"][keep_rows])
    for name, parts, dim in (("mean_rgb", rgbs, RGB_DIM), ("mean_audio", audios, AUDIO_DIM)):
        arr = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        with atomic_path(out_dir / f"{name}.npy") as tmp:
            with tmp.open("wb") as f:
                np.save(f, arr.astype(np.float32))
    write_jsonl_atomic(out_dir / INDEX_FILE, index)
    write_jsonl_atomic(out_dir / SKIPPED_FILE, skipped)
    return {"videos": len(index), "bad_records": len(skipped)}


def read_index(records_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``index.jsonl`` (raises :class:`RecordsError` if the step has not run)."""
    path = Path(records_dir) / INDEX_FILE
    if not path.is_file():
        raise RecordsError(f"{path} not found: run `python -m data_prep yt8m-records` first")
    return list(read_jsonl(path))
