"""TFRecord framing, protobuf wire format and the YouTube-8M schema, without TensorFlow."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from test_youtube8m_fakes import frame_level_records, video_level_records

from data_prep.youtube8m import tfrecord as tfr


def test_crc32c_standard_check_values():
    # The CRC-32C check value of "123456789" (RFC 3720 / iSCSI) and an all-zero block.
    assert tfr.crc32c(b"123456789") == 0xE3069283
    assert tfr.crc32c_python(b"123456789") == 0xE3069283
    assert tfr.crc32c_python(bytes(32)) == 0x8A9136AA
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert tfr.crc32c(data) == tfr.crc32c_python(data)


def test_masked_crc_matches_tensorflow_definition():
    crc = tfr.crc32c(b"foo")
    expected = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert tfr.masked_crc32c(b"foo") == expected
    framed = tfr.frame_record(b"foo")
    assert struct.unpack("<Q", framed[:8])[0] == 3
    assert framed[12:15] == b"foo"
    assert len(framed) == 8 + 4 + 3 + 4


def test_video_level_round_trip(tmp_path):
    videos = [("Ab12", [3, 14]), ("Cd34", []), ("Ef-_", [9, 4000, 2**40])]
    records, feats = video_level_records(videos)
    path = tfr.write_tfrecord(tmp_path / "train0000.tfrecord", records)
    out = [tfr.decode_yt8m_example(r) for r in tfr.iter_tfrecord(path)]
    assert [v.pseudo_id for v in out] == ["Ab12", "Cd34", "Ef-_"]
    for v, (pid, labels) in zip(out, videos):
        assert v.labels.tolist() == labels
        assert v.num_frames is None
        np.testing.assert_array_equal(v.mean_rgb, feats[pid][0])
        np.testing.assert_array_equal(v.mean_audio, feats[pid][1])
        assert v.mean_rgb.dtype == np.float32 and v.mean_rgb.shape == (1024,)


def test_frame_level_round_trip_dequantises_and_averages(tmp_path):
    videos = [("Zz99", [1, 2], 5), ("Yy88", [7], 300)]
    records, frames = frame_level_records(videos)
    path = tfr.write_tfrecord(tmp_path / "frames.tfrecord", records)
    out = {v.pseudo_id: v for v in map(tfr.decode_yt8m_example, tfr.iter_tfrecord(path))}
    for pid, labels, n in videos:
        v = out[pid]
        assert v.num_frames == n and v.labels.tolist() == labels
        rgb_q, audio_q = frames[pid]
        # The YouTube-8M starter code's dequantisation, frame by frame, then the mean.
        expected_rgb = (rgb_q.astype(np.float64) * 4 / 255 + 4 / 512 - 2).mean(axis=0)
        expected_audio = (audio_q.astype(np.float64) * 4 / 255 + 4 / 512 - 2).mean(axis=0)
        np.testing.assert_allclose(v.mean_rgb, expected_rgb, atol=1e-5)
        np.testing.assert_allclose(v.mean_audio, expected_audio, atol=1e-5)


def test_dequantize_endpoints_and_quantize_inverse():
    q = np.array([0, 128, 255], dtype=np.uint8)
    np.testing.assert_allclose(
        tfr.dequantize(q), [4 / 512 - 2, 128 * 4 / 255 + 4 / 512 - 2, 4 + 4 / 512 - 2], atol=1e-6
    )
    np.testing.assert_array_equal(tfr.quantize(tfr.dequantize(np.arange(256))), np.arange(256))


def test_corrupted_data_is_detected_with_a_clear_error(tmp_path):
    records, _ = video_level_records([("Ab12", [1]), ("Cd34", [2]), ("Ef56", [3])])
    path = tfr.write_tfrecord(tmp_path / "x.tfrecord", records)
    raw = bytearray(path.read_bytes())
    second = 12 + len(records[0]) + 4
    raw[second + 12 + 40] ^= 0xFF  # a byte inside the second record's payload
    path.write_bytes(bytes(raw))
    with pytest.raises(tfr.TFRecordCorruptError, match=rf"x\.tfrecord.*byte {second}.*data CRC"):
        list(tfr.iter_tfrecord(path))
    # With a handler, only the damaged record is lost: the framing is still trusted.
    bad = []
    ids = [
        tfr.decode_yt8m_example(r).pseudo_id
        for r in tfr.iter_tfrecord(path, on_bad_record=bad.append)
    ]
    assert ids == ["Ab12", "Ef56"]
    assert len(bad) == 1 and bad[0].offset == second
    # Without CRC checks the damage goes unnoticed, which is why checking is the default.
    assert len(list(tfr.iter_tfrecord(path, verify_crc=False))) == 3


def test_corrupted_length_and_truncation_always_raise(tmp_path):
    records, _ = video_level_records([("Ab12", [1]), ("Cd34", [2])])
    path = tfr.write_tfrecord(tmp_path / "x.tfrecord", records)
    raw = path.read_bytes()
    damaged = bytearray(raw)
    damaged[2] ^= 0x01  # the first length field
    path.write_bytes(bytes(damaged))
    with pytest.raises(tfr.TFRecordCorruptError, match="byte 0: length CRC mismatch"):
        list(tfr.iter_tfrecord(path, on_bad_record=lambda e: None))
    path.write_bytes(raw[:-10])
    got = []
    with pytest.raises(tfr.TFRecordCorruptError, match="truncated record"):
        for r in tfr.iter_tfrecord(path):
            got.append(r)
    assert len(got) == 1  # the intact first record was still delivered


def test_schema_violations_are_reported():
    with pytest.raises(tfr.Yt8mRecordError, match="'id'"):
        tfr.decode_yt8m_example(tfr.encode_example({"labels": tfr.int64_feature([1])}))
    short = tfr.encode_video_level("Ab12", [1], np.zeros(1000, np.float32), np.zeros(128))
    with pytest.raises(tfr.Yt8mRecordError, match="mean_rgb has 1000 values"):
        tfr.decode_yt8m_example(short)
    mismatch = tfr.encode_frame_level(
        "Ab12", [1], np.zeros((3, 1024), np.uint8), np.zeros((2, 128), np.uint8)
    )
    with pytest.raises(tfr.Yt8mRecordError, match="3 rgb frames but 2 audio"):
        tfr.decode_yt8m_example(mismatch)
    with pytest.raises(tfr.ProtoDecodeError):
        tfr.decode_yt8m_example(b"\x0a\xff\xff\xff")


def test_negative_int64_and_unpacked_encodings_decode():
    feats = tfr.parse_example(tfr.encode_example({"x": tfr.int64_feature([-1, 0, 2**62])}))
    assert feats["x"].value.tolist() == [-1, 0, 2**62]
    # Unpacked repeated float (wire type 5) and int64 (wire type 0) must be accepted too.
    unpacked_float = b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", -2.0)
    feature = b"\x12" + bytes([len(unpacked_float)]) + unpacked_float
    entry = b"\x0a\x01f" + b"\x12" + bytes([len(feature)]) + feature
    msg = b"\x0a" + bytes([len(entry) + 2]) + b"\x0a" + bytes([len(entry)]) + entry
    assert tfr.parse_example(msg)["f"].value.tolist() == [1.5, -2.0]


def _tf_example_classes():
    """tf.train.Example / SequenceExample built from descriptors with the protobuf package."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tf_example_test.proto", package="tfx", syntax="proto3"
    )

    def message(name, fields, nested=()):
        m = fdp.message_type.add(name=name)
        for nested_msg in nested:
            m.nested_type.add().CopyFrom(nested_msg)
        for fname, number, ftype, label, type_name, *rest in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if rest:
                f.oneof_index = rest[0]
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, F.TYPE_BYTES, rep, None)])
    message("FloatList", [("value", 1, F.TYPE_FLOAT, rep, None)])
    message("Int64List", [("value", 1, F.TYPE_INT64, rep, None)])
    feat = message(
        "Feature",
        [
            ("bytes_list", 1, F.TYPE_MESSAGE, opt, ".tfx.BytesList", 0),
            ("float_list", 2, F.TYPE_MESSAGE, opt, ".tfx.FloatList", 0),
            ("int64_list", 3, F.TYPE_MESSAGE, opt, ".tfx.Int64List", 0),
        ],
    )
    feat.oneof_decl.add(name="kind")

    def map_entry(name, value_type):
        e = descriptor_pb2.DescriptorProto(name=name)
        e.options.map_entry = True
        e.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
        e.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=value_type)
        return e

    message(
        "Features",
        [("feature", 1, F.TYPE_MESSAGE, rep, ".tfx.Features.FeatureEntry")],
        [map_entry("FeatureEntry", ".tfx.Feature")],
    )
    message("FeatureList", [("feature", 1, F.TYPE_MESSAGE, rep, ".tfx.Feature")])
    message(
        "FeatureLists",
        [("feature_list", 1, F.TYPE_MESSAGE, rep, ".tfx.FeatureLists.FeatureListEntry")],
        [map_entry("FeatureListEntry", ".tfx.FeatureList")],
    )
    message("Example", [("features", 1, F.TYPE_MESSAGE, opt, ".tfx.Features")])
    message(
        "SequenceExample",
        [
            ("context", 1, F.TYPE_MESSAGE, opt, ".tfx.Features"),
            ("feature_lists", 2, F.TYPE_MESSAGE, opt, ".tfx.FeatureLists"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("tfx.Example")), get(
        pool.FindMessageTypeByName("tfx.SequenceExample")
    )


def test_wire_format_agrees_with_the_protobuf_library():
    """An independent encoder/decoder: our bytes parse with protobuf and vice versa."""
    Example, SequenceExample = _tf_example_classes()
    rgb = np.linspace(-2, 2, 1024, dtype=np.float32)
    ours = tfr.encode_video_level("Ab12", [3, 14, 2**33], rgb, np.ones(128, np.float32))
    ex = Example()
    ex.ParseFromString(ours)
    f = ex.features.feature
    assert f["id"].bytes_list.value == [b"Ab12"]
    assert list(f["labels"].int64_list.value) == [3, 14, 2**33]
    np.testing.assert_array_equal(np.array(f["mean_rgb"].float_list.value, np.float32), rgb)

    theirs = Example()
    theirs.features.feature["id"].bytes_list.value.append(b"Qq11")
    theirs.features.feature["labels"].int64_list.value.extend([5, -7])
    theirs.features.feature["mean_rgb"].float_list.value.extend(rgb.tolist())
    theirs.features.feature["mean_audio"].float_list.value.extend([0.25] * 128)
    v = tfr.decode_yt8m_example(theirs.SerializeToString())
    assert v.pseudo_id == "Qq11" and v.labels.tolist() == [5, -7]
    np.testing.assert_array_equal(v.mean_rgb, rgb)

    seq = SequenceExample()
    seq.context.feature["id"].bytes_list.value.append(b"Ww22")
    seq.context.feature["labels"].int64_list.value.append(9)
    frames = np.arange(3 * 1024).reshape(3, 1024) % 256
    for row in frames:
        seq.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(
            row.astype(np.uint8).tobytes()
        )
        seq.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(bytes(128))
    v = tfr.decode_yt8m_example(seq.SerializeToString())
    assert v.num_frames == 3 and v.labels.tolist() == [9]
    np.testing.assert_allclose(v.mean_rgb, tfr.dequantize(frames.mean(axis=0)), atol=1e-5)
    ours_seq = SequenceExample()
    ours_seq.ParseFromString(
        tfr.encode_frame_level("Ww22", [9], frames.astype(np.uint8), np.zeros((3, 128), np.uint8))
    )
    assert ours_seq == seq
