"""Read TensorFlow 1 checkpoints (the "tensor bundle" format) without TensorFlow.

A TF1 checkpoint with prefix ``P`` is two kinds of file:

* ``P.index`` — an SSTable (LevelDB's table format). Its keys are tensor names in sorted
  order; the value of the empty key ``""`` is a serialized ``BundleHeaderProto``
  (``num_shards``, ``endianness``), every other value a serialized ``BundleEntryProto``
  (``dtype``, ``shape``, ``shard_id``, ``offset``, ``size``, ``crc32c``).
* ``P.data-SSSSS-of-NNNNN`` — the shards: each tensor's raw bytes (little-endian, C order)
  at ``offset``, ``size`` bytes long.

The SSTable layout (LevelDB ``table_format``), all integers little-endian:

* a 48-byte footer at the end: two *block handles* (``offset``, ``size`` as varints) — the
  metaindex block and the index block — zero padding to 40 bytes, then the 8-byte magic
  number ``0xdb4775248b80fb57``;
* every block is followed by a 5-byte trailer: a compression byte (0 = none; TF writes
  bundles uncompressed) and the *masked* CRC-32C of the block bytes plus that byte;
* a block is a run of entries ``varint shared, varint non_shared, varint value_len,
  key[shared:] bytes, value bytes`` (keys are prefix-compressed against the previous key),
  then ``uint32`` restart offsets and their ``uint32`` count;
* the index block maps the last key of each data block to that block's handle.

Everything is checked: the magic number, every block checksum, key order, each tensor's
byte size against its dtype and shape, and each tensor's CRC-32C. A damaged file raises
:class:`CheckpointFormatError` naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # 2 block handles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # 1 compression byte + 4-byte masked CRC-32C
_CRC_MASK_DELTA = 0xA282EAD8

# TensorFlow DataType enum values (types.proto) → numpy little-endian dtypes.
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


class CheckpointFormatError(ValueError):
    """A TF checkpoint file is damaged or uses a feature this reader does not handle."""


# ----------------------------------------------------------------------------- CRC-32C


def _make_crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c_python(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data`` continuing from ``crc``, in pure Python (~5 MB/s)."""
    table = _CRC32C_TABLE
    c = crc ^ 0xFFFFFFFF
    for byte in bytes(data):
        c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data`` continuing from ``crc``: ``google-crc32c`` (C) when installed,
    else :func:`crc32c_python`, which is fast enough for the few-MB musicnn checkpoints."""
    try:
        import google_crc32c
    except ImportError:
        return crc32c_python(data, crc)
    return google_crc32c.extend(crc, bytes(data))


def mask_crc(crc: int) -> int:
    """LevelDB/TF's CRC masking (stored CRCs are masked so CRCs of CRCs stay useful)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- varints, protobuf


def read_varint(buf: bytes, pos: int, where: str = "buffer") -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns ``(value, next_pos)``."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError(f"truncated varint in {where}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError(f"varint longer than 10 bytes in {where}")


def parse_protobuf(buf: bytes, where: str) -> list[tuple[int, int | bytes]]:
    """Split a serialized protobuf message into ``(field_number, value)`` pairs.

    Varints and fixed32/fixed64 come back as ints, length-delimited fields as bytes
    (sub-messages are parsed by the caller). Unknown fields are kept, not interpreted.
    """
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos, where)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointFormatError(f"truncated fixed64 field in {where}")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos, where)
            if pos + length > len(buf):
                raise CheckpointFormatError(f"truncated length-delimited field in {where}")
            value, pos = bytes(buf[pos : pos + length]), pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointFormatError(f"truncated fixed32 field in {where}")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire} in {where}")
        fields.append((number, value))
    return fields


@dataclasses.dataclass
class BundleEntry:
    """One tensor's ``BundleEntryProto``: where its bytes are and what they are."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool = False


def parse_bundle_entry(name: str, buf: bytes) -> BundleEntry:
    """Decode a ``BundleEntryProto`` (tensor_bundle.proto).

    Fields: 1 dtype (enum), 2 shape (``TensorShapeProto``: repeated 2 dim {1 size}),
    3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32), 7 slices (partitioned variables).
    """
    where = f"the index entry of {name!r}"
    entry = BundleEntry(name, dtype=0, shape=(), shard_id=0, offset=0, size=0, crc32c=None)
    for number, value in parse_protobuf(buf, where):
        if number == 1:
            entry.dtype = int(value)
        elif number == 2:
            dims = []
            for dim_number, dim in parse_protobuf(value, where):
                if dim_number == 2:  # TensorShapeProto.dim
                    size = next((int(v) for n, v in parse_protobuf(dim, where) if n == 1), 0)
                    dims.append(size)
                elif dim_number == 3 and value:  # unknown_rank
                    raise CheckpointFormatError(f"{name!r} has a shape of unknown rank")
            entry.shape = tuple(dims)
        elif number == 3:
            entry.shard_id = int(value)
        elif number == 4:
            entry.offset = int(value)
        elif number == 5:
            entry.size = int(value)
        elif number == 6:
            entry.crc32c = int(value)
        elif number == 7:
            entry.sliced = True
    return entry


# ----------------------------------------------------------------------------- SSTable


def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    """The contents of the block at ``(offset, size)``, checksum verified."""
    end = offset + size
    if offset < 0 or end + BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointFormatError(
            f"{path}: block handle (offset {offset}, size {size}) points past the end of the "
            f"file ({len(data)} bytes): the file is truncated or corrupt"
        )
    contents = data[offset:end]
    compression = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    actual = mask_crc(crc32c(data[offset : end + 1]))  # CRC covers the compression byte
    if stored != actual:
        raise CheckpointFormatError(
            f"{path}: checksum mismatch in the block at offset {offset} "
            f"(stored {stored:#010x}, computed {actual:#010x}): the file is corrupt"
        )
    if compression != 0:
        # TF's BundleWriter always writes kNoCompression; a compressed index is not a TF
        # bundle we know how to read.
        raise CheckpointFormatError(
            f"{path}: block at offset {offset} uses compression type {compression}; only "
            "uncompressed tables (as TensorFlow writes checkpoint indexes) are supported"
        )
    return contents


def _block_entries(block: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """Decode the ``(key, value)`` entries of one block (restart array skipped)."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{path}: block shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointFormatError(f"{path}: block restart array larger than the block")
    entries = []
    key = b""
    pos = 0
    where = str(path)
    while pos < limit:
        shared, pos = read_varint(block, pos, where)
        non_shared, pos = read_varint(block, pos, where)
        value_len, pos = read_varint(block, pos, where)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise CheckpointFormatError(f"{path}: malformed block entry at byte {pos}")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_sstable(path: str | Path) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of a LevelDB-format table file, in key order."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise CheckpointFormatError(f"{path}: {len(data)} bytes, too short for an SSTable")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointFormatError(
            f"{path}: bad SSTable magic number {magic:#018x} (expected {TABLE_MAGIC:#018x}): "
            "not a TensorFlow checkpoint index, or a truncated one"
        )
    pos = 0
    _meta_offset, pos = read_varint(footer, pos, str(path))
    _meta_size, pos = read_varint(footer, pos, str(path))
    index_offset, pos = read_varint(footer, pos, str(path))
    index_size, pos = read_varint(footer, pos, str(path))
    entries: list[tuple[bytes, bytes]] = []
    for _last_key, handle in _block_entries(
        _read_block(data, index_offset, index_size, path), path
    ):
        block_offset, hpos = read_varint(handle, 0, str(path))
        block_size, _ = read_varint(handle, hpos, str(path))
        entries.extend(_block_entries(_read_block(data, block_offset, block_size, path), path))
    keys = [k for k, _ in entries]
    if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
        raise CheckpointFormatError(f"{path}: keys are not in strictly increasing order")
    return entries


# ----------------------------------------------------------------------------- bundle


def resolve_prefix(path: str | Path) -> str:
    """The checkpoint prefix for ``path``, as a string to which ``.index`` is appended.

    ``path`` is a prefix (``P`` with ``P.index`` next to it), the ``.index`` file itself, or
    a directory holding exactly one ``*.index`` file. musicnn ships ``MTT_musicnn/.index``:
    its prefix is ``MTT_musicnn/`` (an empty file-name part), hence strings, not Paths.
    """
    path = Path(path)
    if path.is_dir():
        indexes = sorted(p for p in path.iterdir() if p.name.endswith(".index"))
        if len(indexes) != 1:
            raise CheckpointFormatError(
                f"{path}: expected exactly one *.index file in the directory, found "
                f"{[p.name for p in indexes]}"
            )
        return str(indexes[0])[: -len(".index")]
    if path.name.endswith(".index"):
        return str(path)[: -len(".index")]
    return str(path)


def _with_suffix(prefix: str, suffix: str) -> Path:
    return Path(prefix + suffix)


def read_bundle_entries(prefix: str | Path) -> tuple[int, dict[str, BundleEntry]]:
    """Parse ``<prefix>.index``: the number of data shards and the entry of each tensor."""
    prefix = resolve_prefix(prefix)
    index_path = _with_suffix(prefix, ".index")
    if not index_path.is_file():
        raise FileNotFoundError(f"TF checkpoint index not found: {index_path}")
    num_shards = 1
    entries: dict[str, BundleEntry] = {}
    header_seen = False
    for key, value in read_sstable(index_path):
        if key == b"":
            header_seen = True
            header = dict(parse_protobuf(value, f"{index_path} header"))
            num_shards = int(header.get(1, 1))
            if int(header.get(2, 0)) != 0:  # BundleHeaderProto.Endianness: 0 LITTLE, 1 BIG
                raise CheckpointFormatError(f"{index_path}: big-endian bundles are not supported")
            continue
        name = key.decode("utf-8")
        entries[name] = parse_bundle_entry(name, value)
    if not header_seen:
        raise CheckpointFormatError(f"{index_path}: no bundle header (empty key): not a TF bundle")
    return num_shards, entries


def read_checkpoint(prefix: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Load the tensors of a TF1 checkpoint as numpy arrays (all, or only ``names``).

    Args:
        prefix: the checkpoint prefix, its ``.index`` file, or a directory holding one.
        names: tensors to load (default: every tensor in the index).
    Returns:
        ``{name: array}`` with each array's dtype and shape from its index entry.
    Raises:
        CheckpointFormatError: damaged index or data, unsupported dtype or partitioned
            variables. FileNotFoundError: a missing index or data shard.
    """
    prefix = resolve_prefix(prefix)
    num_shards, entries = read_bundle_entries(prefix)
    wanted = list(entries) if names is None else names
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise KeyError(f"{prefix}: no tensor named {missing[0]!r} in the checkpoint")
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        entry = entries[name]
        if entry.sliced:
            raise CheckpointFormatError(f"{prefix}: {name!r} is a partitioned (sliced) variable")
        if entry.dtype not in TF_DTYPES:
            raise CheckpointFormatError(
                f"{prefix}: {name!r} has TF dtype enum {entry.dtype}, not supported here"
            )
        dtype = TF_DTYPES[entry.dtype]
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected:
            raise CheckpointFormatError(
                f"{prefix}: {name!r} is stored as {entry.size} bytes but dtype {dtype} and "
                f"shape {list(entry.shape)} need {expected}"
            )
        if entry.shard_id not in shards:
            if not 0 <= entry.shard_id < num_shards:
                raise CheckpointFormatError(
                    f"{prefix}: {name!r} is in shard {entry.shard_id} of {num_shards}"
                )
            shard_path = _with_suffix(prefix, f".data-{entry.shard_id:05d}-of-{num_shards:05d}")
            if not shard_path.is_file():
                raise FileNotFoundError(f"TF checkpoint data shard not found: {shard_path}")
            shards[entry.shard_id] = shard_path.read_bytes()
        shard = shards[entry.shard_id]
        if entry.offset + entry.size > len(shard):
            raise CheckpointFormatError(
                f"{prefix}: {name!r} (offset {entry.offset}, size {entry.size}) lies past "
                f"the end of its data shard ({len(shard)} bytes): truncated data file"
            )
        raw = shard[entry.offset : entry.offset + entry.size]
        if entry.crc32c is not None and mask_crc(crc32c(raw)) != entry.crc32c:
            raise CheckpointFormatError(
                f"{prefix}: checksum mismatch for {name!r}: the data file is corrupt"
            )
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
    return out


__all__ = [
    "BundleEntry",
    "CheckpointFormatError",
    "crc32c",
    "crc32c_python",
    "mask_crc",
    "parse_bundle_entry",
    "read_bundle_entries",
    "read_checkpoint",
    "read_sstable",
    "resolve_prefix",
]
