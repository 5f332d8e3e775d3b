"""Read and write YouTube-8M TFRecord files without TensorFlow.

Three layers, each small enough to check by eye:

1. **TFRecord framing** (:func:`iter_tfrecord`, :func:`write_tfrecord`). A file is a sequence of
   ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``, all
   little-endian. CRC-32C comes from ``google-crc32c`` (C, fast) when installed, else from a
   pure-Python table (correct but slow: a few MB/s — fine for video-level files, slow for the
   frame-level ones, so install ``google-crc32c`` there).
2. **Protobuf wire format** of ``tf.train.Example`` / ``tf.train.SequenceExample``
   (:func:`parse_example`, :func:`parse_sequence_example` and the ``encode_*`` inverses). Only
   the handful of messages involved are decoded, by hand: it keeps TensorFlow and generated code
   out, and packed float lists become one ``numpy.frombuffer`` instead of a Python float per
   value.
3. **The YouTube-8M schema** (:func:`decode_yt8m_example`, :func:`encode_video_level`,
   :func:`encode_frame_level`): video level ``id``, ``labels``, ``mean_rgb`` (1024 floats),
   ``mean_audio`` (128); frame level a SequenceExample with context ``id``/``labels`` and feature
   lists ``rgb`` (1024 uint8 per frame) and ``audio`` (128 uint8), dequantised as
   ``x * 4/255 + 4/512 - 2``.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

RGB_DIM = 1024
AUDIO_DIM = 128
# Quantisation used by the YouTube-8M starter code (max 2, min -2, 8 bits).
_Q_SCALE = 4.0 / 255.0
_Q_BIAS = 4.0 / 512.0 - 2.0

# --------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli)

try:  # the C implementation is ~1000x faster than the fallback below
    import google_crc32c as _gcrc

    def crc32c(data: bytes) -> int:
        """CRC-32C (Castagnoli) of ``data``."""
        return _gcrc.value(bytes(data))

    CRC32C_IMPLEMENTATION = "google-crc32c"
except ImportError:  # pragma: no cover - exercised when the package is absent
    CRC32C_IMPLEMENTATION = "python"

    def crc32c(data: bytes) -> int:
        """CRC-32C (Castagnoli) of ``data`` (pure Python; slow on large inputs)."""
        return crc32c_python(data)


def _make_table() -> list[int]:
    poly = 0x82F63B78  # reversed Castagnoli polynomial
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_table()


def crc32c_python(data: bytes) -> int:
    """Pure-Python CRC-32C; the reference the fast implementation is tested against."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# TFRecord framing


class TFRecordCorruptError(ValueError):
    """A TFRecord file is truncated or fails a CRC check; says which file and byte offset."""

    def __init__(self, path: str | Path, offset: int, message: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = message
        super().__init__(f"{path}: corrupt TFRecord at byte {offset}: {message}")


def iter_tfrecord(
    path: str | Path,
    verify_crc: bool = True,
    on_bad_record: Callable[[TFRecordCorruptError], None] | None = None,
) -> Iterator[bytes]:
    """Yield the records (payload bytes) of an uncompressed TFRecord file.

    Args:
        path: the file.
        verify_crc: check both CRCs of every record (on by default; off only to salvage data).
        on_bad_record: called instead of raising when a record's *data* CRC fails while its
            length CRC is fine: the framing can still be trusted, so reading goes on with the
            next record. Truncation and a bad length CRC always raise, since nothing after
            them can be located.

    Raises:
        TFRecordCorruptError: truncated file or failed CRC, with the byte offset.
    """
    path = Path(path)
    with path.open("rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordCorruptError(
                    path, offset, f"truncated record header ({len(header)} of 12 bytes)"
                )
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if verify_crc and masked_crc32c(header[:8]) != length_crc:
                raise TFRecordCorruptError(
                    path, offset, "length CRC mismatch (file damaged or not a TFRecord file)"
                )
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise TFRecordCorruptError(
                    path, offset, f"truncated record: expected {length} data bytes + 4 CRC bytes"
                )
            if verify_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                err = TFRecordCorruptError(path, offset, "data CRC mismatch (record damaged)")
                if on_bad_record is None:
                    raise err
                on_bad_record(err)
            else:
                yield data
            offset += 12 + length + 4


def frame_record(data: bytes) -> bytes:
    """One record framed as TFRecord bytes (length, masked CRCs)."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + bytes(data)
        + struct.pack("<I", masked_crc32c(data))
    )


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> Path:
    """Write ``records`` as an uncompressed TFRecord file, atomically."""
    from trimodal.utils import atomic_path

    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            for data in records:
                f.write(frame_record(data))
    return Path(path)


# --------------------------------------------------------------------------------------------
# Protobuf wire format: tf.train.{Feature, Features, FeatureList, FeatureLists, Example,
# SequenceExample}. Field numbers from tensorflow/core/example/{feature,example}.proto.


class ProtoDecodeError(ValueError):
    """Bytes that are not a valid ``tf.train.Example`` / ``SequenceExample``."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """A ``tf.train.Feature``: ``kind`` is ``bytes``, ``float``, ``int64`` or ``none`` (unset).

    ``value`` is a list of ``bytes`` for ``bytes``, a float32 array for ``float`` and an int64
    array for ``int64`` (an empty list for ``none``).
    """

    kind: Literal["bytes", "float", "int64", "none"]
    value: list[bytes] | np.ndarray

    def __len__(self) -> int:
        return len(self.value)


def bytes_feature(values: Iterable[bytes | str]) -> Feature:
    """A bytes_list feature (str values are UTF-8 encoded)."""
    return Feature("bytes", [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values])


def float_feature(values: Iterable[float] | np.ndarray) -> Feature:
    """A float_list feature (stored as float32, like TensorFlow)."""
    return Feature("float", np.asarray(_as_seq(values), dtype=np.float32).ravel())


def int64_feature(values: Iterable[int] | np.ndarray) -> Feature:
    """An int64_list feature."""
    return Feature("int64", np.asarray(_as_seq(values), dtype=np.int64).ravel())


def _as_seq(values: Iterable | np.ndarray) -> list | np.ndarray:
    return values if isinstance(values, np.ndarray) else list(values)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise ProtoDecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoDecodeError("varint longer than 10 bytes")


def _iter_fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value): ints for varint/fixed, memoryviews for bytes."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ProtoDecodeError("field number 0")
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > n:
                raise ProtoDecodeError("length-delimited field runs past the end")
            yield field, wire, buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > n:
                raise ProtoDecodeError("truncated fixed32")
            yield field, wire, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        elif wire == 1:
            if pos + 8 > n:
                raise ProtoDecodeError("truncated fixed64")
            yield field, wire, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        else:
            raise ProtoDecodeError(f"unsupported wire type {wire}")


def _to_int64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_feature(buf: memoryview) -> Feature:
    feature = Feature("none", [])
    # A oneof: the last kind present wins, as in protobuf's own parser.
    for field, wire, value in _iter_fields(buf):
        if wire != 2:
            continue  # unknown scalar field: ignore, as protobuf would
        if field == 1:
            items = [bytes(v) for f, w, v in _iter_fields(value) if f == 1 and w == 2]
            feature = Feature("bytes", items)
        elif field == 2:
            chunks: list[np.ndarray] = []
            for f, w, v in _iter_fields(value):
                if f != 1:
                    continue
                if w == 2:  # packed (what TensorFlow writes)
                    if len(v) % 4:
                        raise ProtoDecodeError("packed float list length not a multiple of 4")
                    chunks.append(np.frombuffer(v, dtype="<f4"))
                elif w == 5:  # unpacked: one fixed32 per value
                    chunks.append(np.frombuffer(int(v).to_bytes(4, "little"), dtype="<f4"))
            arr = np.concatenate(chunks) if chunks else np.zeros(0, "<f4")
            feature = Feature("float", arr.astype(np.float32))
        elif field == 3:
            ints: list[int] = []
            for f, w, v in _iter_fields(value):
                if f != 1:
                    continue
                if w == 2:
                    pos = 0
                    while pos < len(v):
                        x, pos = _read_varint(v, pos)
                        ints.append(_to_int64(x))
                elif w == 0:
                    ints.append(_to_int64(int(v)))
            feature = Feature("int64", np.asarray(ints, dtype=np.int64))
    return feature


def _parse_map(buf: memoryview, parse_value: Callable[[memoryview], object]) -> dict:
    out: dict = {}
    for field, wire, entry in _iter_fields(buf):
        if field != 1 or wire != 2:
            continue
        key = ""
        value = None
        for f, w, v in _iter_fields(entry):
            if f == 1 and w == 2:
                try:
                    key = bytes(v).decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ProtoDecodeError("feature name is not UTF-8") from err
            elif f == 2 and w == 2:
                value = v
        out[key] = parse_value(value if value is not None else memoryview(b""))
    return out


def _parse_feature_list(buf: memoryview) -> list[Feature]:
    return [_parse_feature(v) for f, w, v in _iter_fields(buf) if f == 1 and w == 2]


def parse_sequence_example(data: bytes) -> tuple[dict[str, Feature], dict[str, list[Feature]]]:
    """Decode a ``tf.train.SequenceExample`` into (context features, feature lists).

    An ``Example`` decodes too (its ``features`` are field 1, like the context) with empty
    feature lists.
    """
    buf = memoryview(bytes(data))
    context: dict[str, Feature] = {}
    lists: dict[str, list[Feature]] = {}
    for field, wire, value in _iter_fields(buf):
        if wire != 2:
            continue
        if field == 1:
            context.update(_parse_map(value, _parse_feature))
        elif field == 2:
            lists.update(_parse_map(value, _parse_feature_list))
    return context, lists


def parse_example(data: bytes) -> dict[str, Feature]:
    """Decode a ``tf.train.Example`` into ``{name: Feature}``."""
    context, _ = parse_sequence_example(data)
    return context


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _encode_feature(feature: Feature) -> bytes:
    if feature.kind == "bytes":
        return _len_field(1, b"".join(_len_field(1, v) for v in feature.value))
    if feature.kind == "float":
        arr = np.asarray(feature.value, dtype="<f4")
        return _len_field(2, _len_field(1, arr.tobytes()) if arr.size else b"")
    if feature.kind == "int64":
        packed = b"".join(_varint(int(v)) for v in np.asarray(feature.value, dtype=np.int64))
        return _len_field(3, _len_field(1, packed) if packed else b"")
    return b""


def _encode_map(entries: Mapping[str, bytes]) -> bytes:
    return b"".join(
        _len_field(1, _len_field(1, name.encode("utf-8")) + _len_field(2, payload))
        for name, payload in sorted(entries.items())
    )


def encode_example(features: Mapping[str, Feature]) -> bytes:
    """Serialise a ``tf.train.Example``."""
    inner = _encode_map({k: _encode_feature(v) for k, v in features.items()})
    return _len_field(1, inner)


def encode_sequence_example(
    context: Mapping[str, Feature], feature_lists: Mapping[str, Iterable[Feature]]
) -> bytes:
    """Serialise a ``tf.train.SequenceExample``."""
    ctx = _encode_map({k: _encode_feature(v) for k, v in context.items()})
    lists = _encode_map(
        {
            k: b"".join(_len_field(1, _encode_feature(f)) for f in v)
            for k, v in feature_lists.items()
        }
    )
    return _len_field(1, ctx) + _len_field(2, lists)


# --------------------------------------------------------------------------------------------
# The YouTube-8M schema


class Yt8mRecordError(ValueError):
    """A record that decodes as protobuf but does not follow the YouTube-8M schema."""


@dataclasses.dataclass
class Yt8mVideo:
    """One YouTube-8M video as read from a video- or frame-level record.

    Attributes:
        pseudo_id: YouTube-8M's 4-character pseudo id (maps to a YouTube id, see ``api``).
        labels: vocabulary indices (int64).
        mean_rgb: float32 (1024,) — given at video level, the mean of the dequantised frames
            at frame level.
        mean_audio: float32 (128,), likewise.
        num_frames: number of frames (frame level), ``None`` for video-level records.
    """

    pseudo_id: str
    labels: np.ndarray
    mean_rgb: np.ndarray
    mean_audio: np.ndarray
    num_frames: int | None = None


def dequantize(x: np.ndarray) -> np.ndarray:
    """uint8 features to float32: ``x * 4/255 + 4/512 - 2`` (YouTube-8M starter code)."""
    return (np.asarray(x, dtype=np.float32) * np.float32(_Q_SCALE) + np.float32(_Q_BIAS)).astype(
        np.float32
    )


def quantize(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dequantize` (rounded, clipped to 0..255): how the dataset was made."""
    q = np.rint((np.asarray(x, dtype=np.float64) - _Q_BIAS) / _Q_SCALE)
    return np.clip(q, 0, 255).astype(np.uint8)


def _single_id(context: Mapping[str, Feature]) -> str:
    feat = context.get("id")
    if feat is None or feat.kind != "bytes" or len(feat.value) != 1:
        raise Yt8mRecordError("missing or malformed 'id' feature (need exactly one bytes value)")
    try:
        vid = feat.value[0].decode("utf-8")
    except UnicodeDecodeError as err:
        raise Yt8mRecordError("'id' is not UTF-8") from err
    if not vid:
        raise Yt8mRecordError("empty 'id'")
    return vid


def _labels(context: Mapping[str, Feature]) -> np.ndarray:
    feat = context.get("labels")
    if feat is None or feat.kind == "none":
        return np.zeros(0, dtype=np.int64)  # the test partition has no labels
    if feat.kind != "int64":
        raise Yt8mRecordError(f"'labels' must be an int64 list, got {feat.kind}")
    return np.asarray(feat.value, dtype=np.int64)


def decode_yt8m_example(
    data: bytes, rgb_dim: int = RGB_DIM, audio_dim: int = AUDIO_DIM
) -> Yt8mVideo:
    """Decode one YouTube-8M record, video level or frame level (detected from its content).

    Raises:
        ProtoDecodeError: not a protobuf message.
        Yt8mRecordError: a protobuf message that breaks the schema (missing id, wrong
            dimensions, no frames, rgb/audio frame counts differ).
    """
    context, lists = parse_sequence_example(data)
    vid = _single_id(context)
    labels = _labels(context)
    if "rgb" in lists or "audio" in lists:
        rgb_frames = lists.get("rgb", [])
        audio_frames = lists.get("audio", [])
        if not rgb_frames:
            raise Yt8mRecordError(f"{vid}: frame-level record without frames")
        if len(rgb_frames) != len(audio_frames):
            raise Yt8mRecordError(
                f"{vid}: {len(rgb_frames)} rgb frames but {len(audio_frames)} audio frames"
            )
        rgb = _frames_to_array(vid, "rgb", rgb_frames, rgb_dim)
        audio = _frames_to_array(vid, "audio", audio_frames, audio_dim)
        # dequantize is affine, so the mean of dequantised frames is the dequantised mean.
        return Yt8mVideo(
            vid,
            labels,
            dequantize(rgb.mean(axis=0, dtype=np.float64)),
            dequantize(audio.mean(axis=0, dtype=np.float64)),
            num_frames=len(rgb_frames),
        )
    mean_rgb = _float_vector(vid, context, "mean_rgb", rgb_dim)
    mean_audio = _float_vector(vid, context, "mean_audio", audio_dim)
    return Yt8mVideo(vid, labels, mean_rgb, mean_audio)


def _frames_to_array(vid: str, name: str, frames: list[Feature], dim: int) -> np.ndarray:
    buf = bytearray()
    for i, frame in enumerate(frames):
        if frame.kind != "bytes" or len(frame.value) != 1 or len(frame.value[0]) != dim:
            raise Yt8mRecordError(f"{vid}: {name} frame {i} is not one bytes value of length {dim}")
        buf += frame.value[0]
    return np.frombuffer(bytes(buf), dtype=np.uint8).reshape(len(frames), dim)


def _float_vector(vid: str, context: Mapping[str, Feature], name: str, dim: int) -> np.ndarray:
    feat = context.get(name)
    if feat is None or feat.kind != "float":
        raise Yt8mRecordError(f"{vid}: missing float feature {name!r}")
    if len(feat.value) != dim:
        raise Yt8mRecordError(f"{vid}: {name} has {len(feat.value)} values, expected {dim}")
    arr = np.asarray(feat.value, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise Yt8mRecordError(f"{vid}: {name} contains NaN or infinity")
    return arr


def encode_video_level(
    pseudo_id: str, labels: Iterable[int], mean_rgb: np.ndarray, mean_audio: np.ndarray
) -> bytes:
    """A video-level YouTube-8M ``Example`` (the official schema)."""
    return encode_example(
        {
            "id": bytes_feature([pseudo_id]),
            "labels": int64_feature(list(labels)),
            "mean_rgb": float_feature(mean_rgb),
            "mean_audio": float_feature(mean_audio),
        }
    )


def encode_frame_level(
    pseudo_id: str, labels: Iterable[int], rgb: np.ndarray, audio: np.ndarray
) -> bytes:
    """A frame-level YouTube-8M ``SequenceExample``; ``rgb``/``audio`` are uint8 (frames, dim)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    audio = np.asarray(audio, dtype=np.uint8)
    return encode_sequence_example(
        {"id": bytes_feature([pseudo_id]), "labels": int64_feature(list(labels))},
        {
            "rgb": [bytes_feature([row.tobytes()]) for row in rgb],
            "audio": [bytes_feature([row.tobytes()]) for row in audio],
        },
    )
