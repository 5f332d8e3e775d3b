"""Light-weight I/O for ``prepare``: Arrow shards without ``datasets``.

The decoding workers import only NumPy, PyAV, decord and PyArrow (not ``torch`` or
``datasets``, which take seconds to import per process). They write each video's clips as
an Arrow IPC stream with the split's schema, which the main process serializes from its
``datasets.Features`` (in a process without ``datasets`` the extension types read back as
their storage types with the extension's field metadata, and are written back as such);
:func:`storage_schema` is the same layout built from the settings alone, and
:func:`check_storage_schema` checks that both agree.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Atomic writers, re-exported for the workers (trimodal.utils imports no torch).
from trimodal.utils import atomic_path, atomic_write_json, atomic_write_text

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_storage_schema",
    "fixed_list_array",
    "nested_list_array",
    "storage_schema",
]


# ----------------------------------------------------------------------------- storage layout

_FRAME_TYPES = {"uint8": pa.uint8(), "float16": pa.float16()}


def storage_schema(audio: list[tuple[str, int]], frames: list[str], frame_dtype: str) -> pa.Schema:
    """Arrow storage schema of a prepared split (the layout ``datasets`` writes).

    ``audio``: (column, samples per clip); ``frames``: the frame columns (``Array4D``:
    stored as four levels of variable-size lists). The column order is the one of
    :func:`data_prep.prepare.clip_features`.
    """
    fields = [
        pa.field("video_id", pa.string()),
        pa.field("clip_index", pa.int32()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("split", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("label_ids", pa.list_(pa.int64())),
        pa.field("texts", pa.list_(pa.string())),
        pa.field("title", pa.string()),
        pa.field("published_at", pa.string()),
    ]
    for name, n in audio:
        fields.append(pa.field(name, pa.list_(pa.float32(), n)))
    for name in frames:
        t = _FRAME_TYPES[frame_dtype]
        for _ in range(4):
            t = pa.list_(t)
        fields.append(pa.field(name, t))
    return pa.schema(fields)


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


def fixed_list_array(x: np.ndarray) -> pa.Array:
    """One row holding the 1-d array ``x`` as a fixed-size list (zero copy of the values)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x)), len(x))
