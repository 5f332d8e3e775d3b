"""musicnn backbone: TF checkpoint reader, conversion, log-mel front end, and the port
against the original TF graph's outputs (``tests/data/musicnn``).

The reference comparison needs the converted weights. CI runs
``python -m trimodal.backbones.musicnn convert`` first; locally, without them, the test fails
with that command unless ``TRIMODAL_ALLOW_MISSING_MUSICNN=1`` is set (then it skips).
``TRIMODAL_MUSICNN_DIR`` points at another output directory of ``convert``.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_DATA

from trimodal.backbones import MissingCheckpointError, get_backbone_class
from trimodal.backbones import _tf_checkpoint as tfc
from trimodal.backbones.musicnn import (
    MUSICNN_MODELS,
    MusicnnBackbone,
    MusicnnOptions,
    convert,
)

REFERENCE = TEST_DATA / "musicnn"


@pytest.fixture(scope="module")
def converted_dir(musicnn_dir: Path) -> Path:
    """The converted weights (see conftest's ``musicnn_dir``)."""
    return musicnn_dir


# ----------------------------------------------------------------------------- (a) vs TF


@pytest.mark.parametrize("model", MUSICNN_MODELS)
def test_port_reproduces_the_tf_graph(converted_dir, model):
    ref = np.load(REFERENCE / f"ref_{model}.npz")
    backbone = MusicnnBackbone(MusicnnOptions(checkpoint=model)).eval()
    backbone.load_pretrained(converted_dir)
    with torch.no_grad():
        out = backbone.forward_patches(torch.from_numpy(ref["batch"]))
    n, t = ref["batch"].shape[:2]

    def check(name, got, atol):
        np.testing.assert_allclose(got, ref[name], rtol=1e-5, atol=atol, err_msg=name)

    check("taggram", out["taggram"].numpy(), 1e-5)
    check("mean_pool", out["mean_pool"].numpy(), 1e-4)
    check("max_pool", out["max_pool"].numpy(), 1e-4)
    # Frame-level features: musicnn's extractor stacks the patches' frames, [n·t, C].
    check("timbral", out["timbral"].reshape(n * t, -1).numpy(), 1e-4)
    check("temporal", out["temporal"].reshape(n * t, -1).numpy(), 1e-4)

    # musicnn 0.1.0's extractor appends the *first* batch's penultimate and cnn1..3 again for
    # every later batch (stale variables in its loop; it runs one patch per batch), so the
    # reference holds patch 0 three times. Compare patch 0 and confirm the repetition; the
    # later patches' penultimate is still checked through the taggram (sigmoid of its logits).
    penultimate, cnn3 = ref["penultimate"], ref["cnn3"].reshape(n, t, -1)
    assert all(np.array_equal(penultimate[i], penultimate[0]) for i in range(n))
    assert all(np.array_equal(cnn3[i], cnn3[0]) for i in range(n))
    np.testing.assert_allclose(out["penultimate"][0].numpy(), penultimate[0], rtol=1e-5, atol=1e-4)
    # cnn3 (values up to ~13, three convolutions deep) differs from TF's by up to 1.9e-4 in a
    # few elements with torch 2.14's CPU convolutions: float32 accumulation order, not the port.
    np.testing.assert_allclose(out["cnn3"][0].numpy(), cnn3[0], rtol=1e-5, atol=3e-4)
    assert not torch.allclose(out["penultimate"][1], out["penultimate"][0])

    assert backbone.tag_names is not None and len(backbone.tag_names) == 50
    assert backbone.tag_names[0] == ("guitar" if model == "MTT_musicnn" else "rock")


def test_outputs_options_and_registry(converted_dir):
    cls = get_backbone_class("musicnn")
    assert cls is MusicnnBackbone and cls.modality == "audio"
    waves = torch.from_numpy(
        np.sin(2 * np.pi * 220 * np.arange(2 * 16000 * 7) / 16000).astype(np.float32)
    ).reshape(2, -1)
    dims = {"pooled": 1506, "penultimate": 200, "taggram": 50}
    for output, dim in dims.items():
        backbone = MusicnnBackbone(MusicnnOptions(output=output)).eval()
        backbone.load_pretrained(converted_dir / "MTT_musicnn.safetensors")
        assert backbone.output_dim == dim
        assert backbone.data_options() == {"audio_rate": 16000}
        with torch.no_grad():
            assert backbone(waves).shape == (2, dim)
    # A converted file says which model it is; the options follow it.
    options = MusicnnBackbone.resolve_options(
        {}, "full", str(converted_dir / "MSD_musicnn.safetensors")
    )
    assert options.checkpoint == "MSD_musicnn" and options.output == "pooled"


# ----------------------------------------------------------------------------- (b) front end


def _musicnn_log_mel(y: np.ndarray, pad_mode: str, float16: bool = True) -> np.ndarray:
    """musicnn extractor.batch_data's representation, computed with librosa as it does."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, hop_length=256, n_fft=512, n_mels=96, pad_mode=pad_mode
    ).T
    if float16:
        # musicnn ran under numpy 1, whose value-based casting made ``10000 * float16`` a
        # float32 product; numpy 2 keeps float16 (and overflows), so the cast back is explicit.
        mel = mel.astype(np.float16).astype(np.float32)
    return np.log10(10000 * mel + 1)


def _test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    chirp = 0.5 * np.sin(2 * np.pi * 300 * t * (1 + 0.2 * t))
    return (chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_log_mel_matches_librosa_as_musicnn_computes_it(pad_mode):
    y = _test_signal(7.3)
    exact = MusicnnBackbone(MusicnnOptions(pad_mode=pad_mode, float16_rounding=False))
    with torch.no_grad():
        got = exact.log_mel(torch.from_numpy(y)[None])[0].numpy()
    expected = _musicnn_log_mel(y, pad_mode, float16=False)
    assert got.shape == expected.shape == (1 + y.size // 256, 96)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=0)

    # With musicnn's float16 cast, float32 noise can flip a value to the neighbouring float16
    # (at most one float16 step: 2^-10 relative → 4.3e-4 after log10); that must stay rare.
    rounded = MusicnnBackbone(MusicnnOptions(pad_mode=pad_mode))
    with torch.no_grad():
        got16 = rounded.log_mel(torch.from_numpy(y)[None])[0].numpy()
    diff = np.abs(got16 - _musicnn_log_mel(y, pad_mode))
    assert diff.max() < 4.5e-4
    assert (diff > 1e-5).mean() < 0.01
    # and the cast itself is visible: without it the values differ by more than float32 noise
    assert np.abs(got16 - got).max() > 1e-4


def test_waveform_forward_is_the_mean_over_musicnn_patches():
    torch.manual_seed(0)
    backbone = MusicnnBackbone(
        MusicnnBackbone.resolve_options({"output": "penultimate"}, "tiny")
    ).eval()
    y = _test_signal(10.0, seed=1)  # 626 frames → 3 patches of 187, 65 frames dropped
    log_mel = _musicnn_log_mel(y, "reflect").astype(np.float32)
    patches = np.stack([log_mel[i : i + 187] for i in range(0, log_mel.shape[0] - 186, 187)])
    assert patches.shape == (3, 187, 96)
    with torch.no_grad():
        expected = backbone.forward_patches(torch.from_numpy(patches))["penultimate"].mean(0)
        batched = backbone(torch.from_numpy(np.stack([y, y[::-1].copy()])))
        listed = backbone([torch.from_numpy(y), torch.from_numpy(y[: 16000 * 4])])
        short = backbone(torch.from_numpy(y[:8000])[None])  # 0.5 s: repeated to one patch
    torch.testing.assert_close(batched[0], expected, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(listed[0], batched[0])
    assert backbone.patches(torch.from_numpy(y[: 16000 * 4])[None]).shape == (1, 1, 187, 96)
    assert short.shape == (1, 16) and torch.isfinite(short).all()
    with pytest.raises(ValueError, match="mono waveforms"):
        backbone(torch.zeros(1, 2, 16000))


# ----------------------------------------------------------------------------- (c) TF bundle


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    """A LevelDB block: prefix-compressed entries, restart array, restart count."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return (
        bytes(out)
        + b"".join(struct.pack("<I", r) for r in restarts)
        + struct.pack("<I", len(restarts))
    )


def _write_table(path: Path, items: list[tuple[bytes, bytes]], per_block: int = 2) -> None:
    """A LevelDB table: data blocks of ``per_block`` entries, an empty metaindex, an index."""
    data = bytearray()

    def append_block(contents: bytes) -> bytes:
        handle = _varint(len(data)) + _varint(len(contents))
        trailer = b"\x00" + struct.pack("<I", tfc.mask_crc(tfc.crc32c(contents + b"\x00")))
        data.extend(contents + trailer)
        return handle

    index = []
    for start in range(0, len(items), per_block):
        chunk = items[start : start + per_block]
        index.append((chunk[-1][0], append_block(_block(chunk))))
    meta_handle = append_block(_block([]))
    index_handle = append_block(_block(index, restart_interval=1))
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", tfc.TABLE_MAGIC)
    path.write_bytes(bytes(data) + footer)


_NP_TO_TF = {np.dtype("<f4"): 1, np.dtype("<i8"): 9, np.dtype("<f2"): 19, np.dtype("u1"): 4}


def write_bundle(prefix: str, tensors: dict[str, np.ndarray]) -> None:
    """A TF1 tensor bundle (one shard) as TensorFlow's BundleWriter lays it out."""
    data, entries = bytearray(), {}
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        dims = b"".join(_field(2, 2, _bytes(_field(1, 0, _varint(d)))) for d in tensors[name].shape)
        proto = (
            _field(1, 0, _varint(_NP_TO_TF[tensors[name].dtype]))
            + _field(2, 2, _bytes(dims))
            + (_field(4, 0, _varint(len(data))) if data else b"")  # proto3 omits zeros
            + _field(5, 0, _varint(len(raw)))
            + _field(6, 5, struct.pack("<I", tfc.mask_crc(tfc.crc32c(raw))))
        )
        entries[name.encode()] = proto
        data += raw
    header = _field(1, 0, _varint(1)) + _field(3, 2, _bytes(_field(1, 0, _varint(1))))
    items = [(b"", header)] + sorted(entries.items())
    _write_table(Path(prefix + ".index"), items)
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(data))


def _bytes(payload: bytes) -> bytes:
    return _varint(len(payload)) + payload


def _sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv2d/kernel": rng.standard_normal((7, 3, 1, 4)).astype(np.float32),
        "conv2d/bias": rng.standard_normal(4).astype(np.float32),
        "conv2d/kernel/Adam": rng.standard_normal((7, 3, 1, 4)).astype(np.float32),
        "beta1_power": np.array(0.9, dtype=np.float32),
        "global_step": np.array([12345678901], dtype=np.int64),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "bytes": np.arange(200, dtype=np.uint8).reshape(2, 100),
    }


def test_crc32c_known_value_both_implementations():
    # The CRC-32C check value (RFC 3720, iSCSI).
    assert tfc.crc32c(b"123456789") == 0xE3069283
    assert tfc.crc32c_python(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 3
    assert tfc.crc32c_python(data[100:], tfc.crc32c_python(data[:100])) == tfc.crc32c(data)


def test_bundle_reader_round_trip(tmp_path):
    tensors = _sample_tensors()
    write_bundle(str(tmp_path / "model.ckpt"), tensors)
    # prefix, .index path and directory all resolve to the same checkpoint
    for where in (tmp_path / "model.ckpt", tmp_path / "model.ckpt.index", tmp_path):
        loaded = tfc.read_checkpoint(where)
        assert list(loaded) == sorted(tensors)
        for name, array in tensors.items():
            assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
            np.testing.assert_array_equal(loaded[name], array)
    num_shards, entries = tfc.read_bundle_entries(tmp_path)
    assert num_shards == 1 and entries["conv2d/bias"].shape == (4,)
    subset = tfc.read_checkpoint(tmp_path, names=["conv2d/bias"])
    assert list(subset) == ["conv2d/bias"]
    with pytest.raises(KeyError, match="no tensor named 'nope'"):
        tfc.read_checkpoint(tmp_path, names=["nope"])

    # musicnn's layout: the prefix is a directory ("MTT_musicnn/" → ".index", ".data-…")
    musicnn_dir = tmp_path / "MTT_musicnn"
    musicnn_dir.mkdir()
    write_bundle(str(musicnn_dir) + "/", tensors)
    np.testing.assert_array_equal(tfc.read_checkpoint(musicnn_dir)["half"], tensors["half"])


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("data_byte", "checksum mismatch for"),
        ("data_truncated", "past the end of its data shard"),
        ("index_block_byte", "checksum mismatch in the block"),
        ("index_truncated", "bad SSTable magic number"),
        ("index_magic", "bad SSTable magic number"),
    ],
)
def test_bundle_reader_reports_corrupt_files(tmp_path, damage, message):
    write_bundle(str(tmp_path / "ckpt"), _sample_tensors())
    index, data = tmp_path / "ckpt.index", tmp_path / "ckpt.data-00000-of-00001"
    size = data.stat().st_size
    if damage == "data_byte":
        _flip_byte(data, size - 1)
    elif damage == "data_truncated":
        _truncate(data, size - 8)
    elif damage == "index_block_byte":
        _flip_byte(index, 10)  # inside the first data block
    elif damage == "index_truncated":
        _truncate(index, index.stat().st_size - 20)
    else:
        _flip_byte(index, index.stat().st_size - 1)
    with pytest.raises(tfc.CheckpointFormatError, match=message) as info:
        tfc.read_checkpoint(tmp_path / "ckpt")
    assert "ckpt" in str(info.value)  # the message names the file


def test_bundle_reader_checks_sizes_and_format(tmp_path):
    write_bundle(str(tmp_path / "ckpt"), {"x": np.zeros((2, 3), np.float32)})
    # An entry claiming 6 floats in 20 bytes: rewrite the index with a wrong size field.
    items = tfc.read_sstable(tmp_path / "ckpt.index")
    bad = tfc.parse_bundle_entry("x", items[1][1])
    assert (bad.shape, bad.size) == ((2, 3), 24)
    proto = items[1][1].replace(_field(5, 0, _varint(24)), _field(5, 0, _varint(20)))
    _write_table(tmp_path / "ckpt.index", [items[0], (b"x", proto)])
    with pytest.raises(tfc.CheckpointFormatError, match="stored as 20 bytes"):
        tfc.read_checkpoint(tmp_path / "ckpt")
    (tmp_path / "junk.index").write_bytes(b"\x00" * 100)
    with pytest.raises(tfc.CheckpointFormatError, match="magic"):
        tfc.read_sstable(tmp_path / "junk.index")
    with pytest.raises(FileNotFoundError, match="index not found"):
        tfc.read_checkpoint(tmp_path / "absent")


# ----------------------------------------------------------------------------- conversion


def _fake_musicnn_wheel(path: Path, model: str) -> dict[str, np.ndarray]:
    """A musicnn-like wheel: random TF variables of the real shapes (+ Adam slots)."""
    rng = np.random.default_rng(1)
    shapes = {}
    for line in (REFERENCE / "MTT_musicnn_vars_tf.txt").read_text().splitlines():
        name, shape = line.split("\t")
        shapes[name] = json.loads(shape)
    tensors = {}
    for name, shape in shapes.items():
        value = rng.standard_normal(shape).astype(np.float32)
        if name.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        tensors[name] = value
        tensors[name + "/Adam"] = np.zeros(shape, np.float32)
    tensors["beta1_power"] = np.array(0.5, np.float32)
    ckpt = path.parent / "ckpt"
    ckpt.mkdir()
    write_bundle(str(ckpt) + "/", tensors)
    labels = [f"tag {i}" for i in range(50)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("musicnn/configuration.py", f"SR = 16000\nMTT_LABELS = {labels!r}\n")
        for suffix in (".index", ".data-00000-of-00001"):
            zf.write(ckpt / suffix, f"musicnn/{model}/{suffix}")
    return tensors


def test_convert_from_a_package_file(tmp_path):
    wheel = tmp_path / "pkg" / "musicnn-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    tf_vars = _fake_musicnn_wheel(wheel, "MTT_musicnn")
    out_dir = tmp_path / "cache"
    # The real checkpoints' hashes are pinned: a different checkpoint is refused.
    with pytest.raises(ValueError, match=r"musicnn/MTT_musicnn/\.index has sha256"):
        convert(["MTT_musicnn"], cache_dir=out_dir, package=wheel)
    assert not out_dir.exists() or not any(out_dir.iterdir())

    (written,) = convert(["MTT_musicnn"], cache_dir=out_dir, package=wheel, checkpoint_sha256=None)
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "MTT_musicnn.json",
        "MTT_musicnn.safetensors",
    ]
    meta = json.loads((out_dir / "MTT_musicnn.json").read_text())
    assert meta["labels"][:2] == ["tag 0", "tag 1"] and meta["source_version"] == "0.1.0"

    backbone = MusicnnBackbone(MusicnnOptions()).eval()
    backbone.load_pretrained(out_dir)
    state = backbone.state_dict()
    # layout: TF [kh, kw, in, out] → torch [out, in, kh, kw]; dense [in, out] → [out, in]
    np.testing.assert_array_equal(
        state["timbral.1.conv.weight"].numpy(), tf_vars["conv2d_1/kernel"].transpose(3, 2, 0, 1)
    )
    np.testing.assert_array_equal(
        state["midend.0.conv.weight"].numpy(),
        tf_vars["conv2d_5/kernel"][:, :, 0].transpose(2, 1, 0),
    )
    np.testing.assert_array_equal(
        state["backend.classifier.weight"].numpy(), tf_vars["dense_1/kernel"].T
    )
    np.testing.assert_array_equal(
        state["backend.pool_bn.running_var"].numpy(),
        tf_vars["batch_normalization_9/moving_variance"],
    )
    assert backbone.tag_names == meta["labels"]

    # A changed file no longer matches its recorded hash.
    data = bytearray(written.read_bytes())
    data[-1] ^= 1
    written.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256"):
        MusicnnBackbone(MusicnnOptions()).load_pretrained(out_dir)


def test_convert_command_line_reads_an_sdist(tmp_path):
    import tarfile

    from trimodal.backbones.musicnn import main

    wheel = tmp_path / "w" / "musicnn.whl"
    wheel.parent.mkdir()
    _fake_musicnn_wheel(wheel, "MTT_musicnn")
    sdist = tmp_path / "musicnn-0.1.0.tar.gz"
    with zipfile.ZipFile(wheel) as zf, tarfile.open(sdist, "w:gz") as tar:
        for name in zf.namelist():
            blob = zf.read(name)
            info = tarfile.TarInfo(f"musicnn-0.1.0/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(ValueError, match="has sha256"):  # pinned hashes apply to sdists too
        main(
            [
                "convert",
                "--model",
                "MTT_musicnn",
                "--sdist",
                str(sdist),
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
    with pytest.raises(SystemExit):
        main(["convert", "--model", "nope"])


# ----------------------------------------------------------------------------- (d) missing


def test_missing_weights_name_the_convert_command(tmp_path):
    backbone = MusicnnBackbone(MusicnnOptions(checkpoint="MSD_musicnn"))
    with pytest.raises(
        MissingCheckpointError,
        match="python -m trimodal.backbones.musicnn convert --model MSD_musicnn",
    ) as info:
        backbone.load_pretrained(tmp_path)
    assert str(tmp_path / "MSD_musicnn.safetensors") in str(info.value)
    with pytest.raises(MissingCheckpointError, match="--cache-dir"):
        backbone.load_pretrained(tmp_path / "elsewhere.safetensors")
