"""The layout of a prepared split: written by :mod:`trimodal.prepare`, read by :mod:`trimodal.data`.

A prepared split is a Hugging Face dataset of clips, one row per clip. This module is the one
place that says what such a row holds, so that the writer and the reader cannot drift apart:

- **names**: the splits (:data:`SPLITS`), the per-clip metadata columns
  (:data:`METADATA_COLUMNS`, in stored order), the waveform columns (:func:`audio_column`:
  ``audio_48k``, ``audio_16k``) and the frame columns (:func:`frames_column`: ``frames_224``);
- **stored shapes and types**: a waveform holds ``round(clip_length * rate)`` int16 samples
  (:func:`audio_samples`, :func:`encode_waveform`: full scale 32767); frames are ``[num_frames, 3, S, S]`` with ``S = round(size *
  frame_margin)`` (:func:`stored_side`), a margin around the crop the model sees;
- **the Arrow layout**: :func:`storage_schema` (built from the settings alone, what the
  decoding workers write) and :func:`clip_features` (the ``datasets.Features`` whose Arrow
  schema the split files carry), with :func:`check_storage_schema` to compare them, and the
  row encoders :func:`nested_list_array` and :func:`fixed_list_array`;
- **the split directory** (:data:`STORAGE_FORMAT`, :func:`load_split`): the split's Arrow
  files (IPC streams, the format ``datasets`` memory-maps) listed in ``split.json``, opened
  with ``datasets.Dataset.from_file`` and ``concatenate_datasets``;
- **stable hashing**: :func:`stable_int` and :func:`stable_unit` give the same number on every
  machine and Python run (``hash()`` is salted per process), :func:`media_stamp` tells a media
  file replaced under the same name from the old one.

It imports only NumPy and PyArrow (``datasets`` inside :func:`clip_features`): the decoding
worker processes use it without importing torch or ``datasets``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from trimodal.modalities import AUDIO_SCALE

if TYPE_CHECKING:
    from trimodal.config import DataConfig

# The layout of a prepared split directory; bump when it changes. Shards of another format are
# not reused, and a split of another format is refused with how to prepare it again.
# 2: ``save_to_disk``'s layout, float32 audio; 3: ``split.json`` + Arrow files, int16 audio.
STORAGE_FORMAT = 3
SPLIT_MANIFEST = "split.json"

SPLITS = ("train", "dev", "test")

# The columns every clip row starts with, in stored order, with their kind: a scalar type
# name, ``list<...>`` of one, or ``label`` (an index into the split's label vocabulary,
# stored as int64 and described as a ``datasets.ClassLabel``).
METADATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("video_id", "string"),
    ("clip_index", "int32"),
    ("start_s", "float64"),
    ("end_s", "float64"),
    ("split", "string"),
    ("labels", "list<string>"),
    ("label_ids", "list<label>"),
    ("texts", "list<string>"),
    ("title", "string"),
    ("published_at", "string"),
)
FRAME_DTYPES = {"uint8": pa.uint8(), "float16": pa.float16()}
_FRAMES_PREFIX = "frames_"


# ----------------------------------------------------------------------------- names and shapes


def audio_column(rate: int) -> str:
    """Column name of the waveform at ``rate`` Hz: ``audio_48k``, ``audio_16k``, ``audio_22050hz``."""
    return f"audio_{rate // 1000}k" if rate % 1000 == 0 else f"audio_{rate}hz"


def frames_column(size: int) -> str:
    """Column name of the frames meant for ``size``² crops: ``frames_224``, ``frames_112``."""
    return f"{_FRAMES_PREFIX}{size}"


def frame_columns(column_names: Any) -> dict[int, str]:
    """The frame columns among ``column_names``, by the crop size they are meant for."""
    return {
        int(name[len(_FRAMES_PREFIX) :]): name
        for name in column_names
        if name.startswith(_FRAMES_PREFIX) and name[len(_FRAMES_PREFIX) :].isdigit()
    }


def stored_side(size: int, margin: float) -> int:
    """Side of the stored square frames for target ``size`` (224 → 256 with margin 8/7)."""
    return int(round(size * margin))


def clip_length(config: DataConfig) -> float:
    """Seconds of media in one stored clip: the segment length or the clip length."""
    return config.segment_seconds if config.scheme == "segments" else config.clip_seconds


def audio_samples(seconds: float, rate: int) -> int:
    """Samples of ``seconds`` of audio at ``rate`` Hz (the stored waveform length)."""
    return int(round(seconds * rate))


def frames_shape(config: DataConfig, size: int) -> tuple[int, int, int, int]:
    """Stored shape ``(num_frames, 3, S, S)`` of the frames for crop ``size``."""
    side = stored_side(size, config.frame_margin)
    return (config.num_frames, 3, side, side)


# ----------------------------------------------------------------------------- Arrow layout


def _arrow_type(kind: str) -> pa.DataType:
    if kind.startswith("list<"):
        return pa.list_(_arrow_type(kind[len("list<") : -1]))
    return pa.int64() if kind == "label" else pa.type_for_alias(kind)


def metadata_type(name: str) -> pa.DataType:
    """Arrow storage type of the metadata column ``name``."""
    return _arrow_type(dict(METADATA_COLUMNS)[name])


def storage_schema(config: DataConfig) -> pa.Schema:
    """Arrow storage schema of a prepared split under ``config`` (the layout ``datasets`` writes).

    Column order: :data:`METADATA_COLUMNS`, the waveforms (fixed-size int16 lists), then
    the frames (``Array4D``: stored as four levels of variable-size lists).
    """
    fields = [pa.field(name, _arrow_type(kind)) for name, kind in METADATA_COLUMNS]
    length = clip_length(config)
    for rate in config.audio_rates:
        fields.append(
            pa.field(audio_column(rate), pa.list_(pa.int16(), audio_samples(length, rate)))
        )
    for size in config.frame_sizes:
        t = FRAME_DTYPES[config.frame_dtype]
        for _ in range(4):
            t = pa.list_(t)
        fields.append(pa.field(frames_column(size), t))
    return pa.schema(fields)


def clip_features(config: DataConfig, vocabulary: list[str]):
    """The ``datasets.Features`` of a prepared split under ``config`` (same columns and order
    as :func:`storage_schema`; ``label_ids`` name the ``vocabulary``)."""
    from datasets import Array4D, ClassLabel, Features, List, Value

    def feature(kind: str):
        if kind.startswith("list<"):
            return List(feature(kind[len("list<") : -1]))
        return ClassLabel(names=list(vocabulary)) if kind == "label" else Value(kind)

    cols: dict[str, Any] = {name: feature(kind) for name, kind in METADATA_COLUMNS}
    length = clip_length(config)
    for rate in config.audio_rates:
        cols[audio_column(rate)] = List(Value("int16"), length=audio_samples(length, rate))
    for size in config.frame_sizes:
        cols[frames_column(size)] = Array4D(
            shape=frames_shape(config, size), dtype=config.frame_dtype
        )
    return Features(cols)


def storage_of(schema: pa.Schema) -> pa.Schema:
    """``schema`` with extension types replaced by their storage types, without metadata."""
    return pa.schema(
        [
            pa.field(
                f.name, f.type.storage_type if isinstance(f.type, pa.ExtensionType) else f.type
            )
            for f in schema
        ]
    )


def check_storage_schema(expected: pa.Schema, actual: pa.Schema, where: str) -> None:
    """Raise ``ValueError`` unless ``actual`` is the storage layout of ``expected``."""
    want = storage_of(expected)
    if not want.equals(storage_of(actual)):
        raise ValueError(f"{where}: shard layout {actual} does not match the features {want}")


def nested_list_array(x: np.ndarray) -> pa.Array:
    """One row holding the N-d array ``x`` as N levels of lists (zero copy of the values)."""
    arr = pa.array(np.ascontiguousarray(x).reshape(-1))
    shape = x.shape
    for d in range(len(shape) - 1, -1, -1):
        count = int(np.prod(shape[:d], dtype=np.int64))
        offsets = pa.array(np.arange(count + 1, dtype=np.int32) * np.int32(shape[d]))
        arr = pa.ListArray.from_arrays(offsets, arr)
    return arr


def encode_waveform(x: np.ndarray) -> np.ndarray:
    """float waveform ``[S]`` → the stored int16 ``[S]``: clipped to [-1, 1], times
    :data:`~trimodal.modalities.AUDIO_SCALE`, rounded (an error of at most 1/65534)."""
    return np.round(np.clip(x, -1.0, 1.0) * AUDIO_SCALE).astype(np.int16)


def fixed_list_array(x: np.ndarray) -> pa.Array:
    """One row holding the 1-d array ``x`` as a fixed-size list (zero copy of the values)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x)), len(x))


# ----------------------------------------------------------------------------- split directory


def read_manifest(path: Path) -> dict[str, Any]:
    """``split.json`` of the split directory ``path``: ``format``, ``files`` (in row order),
    ``rows``, ``fingerprint``. Raises ``FileNotFoundError`` where there is no split and
    ``ValueError`` (one line: how to prepare again) for a split of another layout."""
    redo = f"prepare it again: python -m data_prep prepare --corpus CORPUS --out {path.parent}"
    manifest_path = path / SPLIT_MANIFEST
    if not manifest_path.is_file():
        if (path / "state.json").is_file():  # written by save_to_disk: format 2
            raise ValueError(f"{path} is a prepared split of an older layout; {redo}")
        raise FileNotFoundError(
            f"no prepared split at {path} (run `python -m data_prep prepare` first)"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != STORAGE_FORMAT:
        raise ValueError(
            f"{path} is a prepared split of layout {manifest.get('format')}, this trimodal "
            f"reads {STORAGE_FORMAT}; {redo}"
        )
    return manifest


def load_split(path: str | Path):
    """The prepared split at ``path`` as a memory-mapped ``datasets.Dataset`` (its files
    opened with ``Dataset.from_file``, concatenated in order) and its manifest."""
    import datasets

    path = Path(path)
    manifest = read_manifest(path)
    parts = [datasets.Dataset.from_file(str(path / name)) for name in manifest["files"]]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return dataset, manifest


# ----------------------------------------------------------------------------- stable hashing


def stable_int(*parts: Any) -> int:
    """A 64-bit integer from ``parts`` that is the same on every machine and Python run."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def stable_unit(*parts: Any) -> float:
    """A number in [0, 1) from ``parts`` (see :func:`stable_int`)."""
    return stable_int(*parts) / 2.0**64


def media_stamp(path: str | Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a media file, ``None`` if it cannot be read: a file replaced
    under the same name (a regenerated corpus) changes it, so stale results are not reused."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
