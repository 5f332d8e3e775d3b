"""Media decoding (trimodal.media) and ``prepare`` on every format of tests/media_corpus.py.

Each picture of the corpus carries its time code (a grey level) and its orientation (a white
half), so the frames ``prepare`` stores are checked against the pictures the files show at
each clip's sample times; the audio against the whole track resampled in one piece and
against the sine it was made from. Tests that need decord skip where it is not installed
(or ``TRIMODAL_DISABLE_DECORD=1``); everything else runs with PyAV alone.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from data_fixtures import prepare_cmd, subprocess_env, whole_track_audio, write_config
from media_corpus import SPECS, TONE_HZ, Spec, level, picture, tone, write_media

from trimodal.config import DataConfig
from trimodal.data.schema import load_split
from trimodal.media import MediaError, decord_available, open_media, scaled_size, upright
from trimodal.modalities import model_input
from trimodal.prepare import PrepareError, VideoRecord, prepare, write_corpus

requires_decord = pytest.mark.skipif(
    not decord_available(), reason="decord is not installed (or TRIMODAL_DISABLE_DECORD=1)"
)
# Writing a display matrix needs a recent PyAV (the library only reads it: VideoFrame.rotation).
CAN_ROTATE = hasattr(av.video.stream.VideoStream, "set_display_rotation")
requires_rotation = pytest.mark.skipif(not CAN_ROTATE, reason="PyAV cannot write rotation")
SPEC = {s.name: s for s in SPECS if CAN_ROTATE or not s.rotation}
# 1-s clips, two frames each (at 0.25 s and 0.75 s into the clip), stored at 32 and 16 px.
CONFIG = DataConfig(
    clip_seconds=1.0,
    sparse_train=False,
    num_frames=2,
    frame_sizes=[32, 16],
    frame_margin=1.0,
    audio_rates=[16000, 8000],
    prepare_workers=2,
)
_prepared: dict[str, Path] = {}


@pytest.fixture(scope="session")
def media_corpus(tmp_path_factory) -> Path:
    """A corpus with one video per spec of ``SPECS`` (all in dev: every clip kept)."""
    root = tmp_path_factory.mktemp("media_corpus")
    (root / "media").mkdir()
    records = []
    for spec in SPEC.values():
        media, audio = write_media(root / "media", spec)
        records.append(
            VideoRecord(
                video_id=spec.name,
                media=f"media/{media}",
                audio=f"media/{audio}" if audio else None,
                labels=["Guitar"],
                split="dev",
            )
        )
    write_corpus(root, records)
    return root


def prepared(corpus: Path, decoder: str, tmp_path_factory) -> Path:
    """``corpus`` prepared with ``decoder`` (once per session)."""
    if decoder not in _prepared:
        out = tmp_path_factory.mktemp(f"prepared_{decoder}")
        prepare(corpus, out, dataclasses.replace(CONFIG, decoder=decoder), show_progress=False)
        _prepared[decoder] = out
    return _prepared[decoder]


def _rows(out: Path, video_id: str) -> dict[str, np.ndarray]:
    ds = load_split(out / "dev")[0].with_format("numpy")
    rows = ds.filter(lambda v: v == video_id, input_columns="video_id")
    return rows[:]


def _shown(spec: Spec, t: float) -> int:
    """The picture on screen at ``t`` seconds: the last one that starts at or before it."""
    return int(np.searchsorted(spec.frame_times(), t, side="right") - 1)


def _expected_square(displayed: np.ndarray, side: int) -> np.ndarray:
    """uint8 [3, side, side]: the centred square of ``displayed`` [H, W, 3] with its short
    side at ``side``, sampled at the pixel centres (nearest neighbour)."""
    h, w = displayed.shape[:2]
    sw, sh = scaled_size(w, h, side)
    scale = min(h, w) / side
    top, left = (sh - side) // 2, (sw - side) // 2
    rows = ((np.arange(side) + top + 0.5) * scale).astype(int).clip(0, h - 1)
    cols = ((np.arange(side) + left + 0.5) * scale).astype(int).clip(0, w - 1)
    return displayed[rows][:, cols].transpose(2, 0, 1)


# ----------------------------------------------------------------------------- every format


@pytest.mark.parametrize("decoder", ["pyav", pytest.param("auto", marks=requires_decord)])
def test_every_format_prepares_with_the_clip_count_of_its_duration(
    media_corpus, decoder, tmp_path_factory
):
    out = prepared(media_corpus, decoder, tmp_path_factory)
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "skipped.jsonl").read_text() == ""
    assert summary["videos_prepared"] == len(SPEC)
    ds = load_split(out / "dev")[0]
    counts = {name: list(ds["video_id"]).count(name) for name in SPEC}
    assert counts == {name: spec.clips for name, spec in SPEC.items()}
    # The variable-frame-rate file's duration is not its frame count / its nominal rate.
    vfr = SPEC["vfr_h264_mkv"]
    assert int(len(vfr.frame_times()) / 24) != vfr.clips


@pytest.mark.parametrize("decoder", ["pyav", pytest.param("auto", marks=requires_decord)])
def test_frames_are_the_pictures_shown_at_the_sample_times(media_corpus, decoder, tmp_path_factory):
    """Variable frame rate, rotation, portrait, 10-bit, every codec: each stored frame is
    the picture on screen at its sample time, shown upright."""
    out = prepared(media_corpus, decoder, tmp_path_factory)
    for name, spec in SPEC.items():
        rows = _rows(out, name)
        n_pictures = len(spec.frame_times())
        for clip, start in enumerate(rows["start_s"]):
            for j in range(CONFIG.num_frames):
                t = start + (j + 0.5) / CONFIG.num_frames
                for side, column in ((32, "frames_32"), (16, "frames_16")):
                    stored = rows[column][clip, j].astype(np.float32)
                    candidates = [
                        _expected_square(upright(picture(spec, i), spec.rotation), side)
                        for i in range(n_pictures)
                    ]
                    errors = [np.abs(stored - c).mean() for c in candidates]
                    where = f"{name} clip {clip} frame {j} ({side} px, t={t:.2f} s)"
                    assert int(np.argmin(errors)) == _shown(spec, t), where
                    assert errors[_shown(spec, t)] < 8, where


@pytest.mark.parametrize("decoder", ["pyav", pytest.param("auto", marks=requires_decord)])
def test_stored_audio_is_the_track_at_each_clip(media_corpus, decoder, tmp_path_factory):
    out = prepared(media_corpus, decoder, tmp_path_factory)
    for name, spec in SPEC.items():
        rows = _rows(out, name)
        audio_file = f"{spec.name}{spec.audio_file or spec.suffix}"
        for rate in CONFIG.audio_rates:
            whole = whole_track_audio(media_corpus / "media" / audio_file, rate)
            # Zeros past the end, and clipped to [-1, 1] as stored (the 5.1 downmix of six
            # equally loud channels exceeds 1).
            whole = np.clip(np.pad(whole, (0, rate)), -1.0, 1.0)
            for clip, start in enumerate(rows["start_s"]):
                a = int(round(start * rate))
                # int16 (widened by the numpy format) → [-1, 1]
                stored = model_input(rows[f"audio_{rate // 1000}k"][clip].astype(np.int16))
                # Decoding (1e-5) and int16 rounding (half a step: 1.5e-5).
                np.testing.assert_allclose(stored, whole[a : a + rate], atol=2.6e-5, err_msg=name)
                spectrum = np.abs(np.fft.rfft(stored))
                assert abs(np.argmax(spectrum) - TONE_HZ) <= 1, name  # 1-Hz bins (1-s clips)


@requires_rotation
def test_rotated_landscape_file_comes_out_portrait(media_corpus):
    spec = SPEC["rotated_90_mp4"]
    path = media_corpus / "media" / f"{spec.name}{spec.suffix}"
    with open_media(path, rates=[], decoder="pyav") as media:
        assert (media.info.rotation, media.info.width, media.info.height) == (90, 64, 80)
        frame = media.frames_at(np.array([0.1]), None)[0]
    assert frame.shape == (80, 64, 3)
    # Stored landscape with a white top half; displayed a quarter turn counterclockwise.
    assert frame[:, :28].mean() > 200 and frame[:, 36:].mean() < 60


@pytest.mark.parametrize(
    "suffix, codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".webm", "libvpx-vp9")]
)
def test_seeking_gives_the_frames_that_decoding_forward_gives(tmp_path, monkeypatch, suffix, codec):
    """PyAV seeks to the key frame before a sample time far ahead; the frames are those of
    reading every frame in order, and the pictures shown at those times."""
    from trimodal.media import pyav_backend

    spec = Spec("seek", suffix, codec, "libopus", fps=2, video_s=18.0, rate=48000, gop=4)
    media, _ = write_media(tmp_path, spec)
    times = np.array([0.2, 9.3, 17.6, 3.1, 12.4, 12.9])  # 3.1: backwards, from the start
    frames, decoded = {}, {}
    for gap in (1.0, 1000.0):
        monkeypatch.setattr(pyav_backend, "SEEK_GAP_S", gap)
        with open_media(tmp_path / media, decoder="pyav") as m:
            frames[gap] = m.frames_at(times, None)
            decoded[gap] = m._frames.frames_decoded
    np.testing.assert_array_equal(frames[1.0], frames[1000.0])
    assert decoded[1.0] < decoded[1000.0]  # the seeks skipped frames
    for frame, t in zip(frames[1.0], times):
        errors = [np.abs(frame[48:].astype(float) - level(i)).mean() for i in range(36)]
        assert int(np.argmin(errors)) == _shown(spec, t), t


# ----------------------------------------------------------------------------- audio


def test_resampled_audio_follows_the_signal_at_every_rate(tmp_path: Path):
    """Lossless 16-kHz FLAC read at other rates matches the sine it was made from
    (continuous across decoded frames: decord 0.6.0's reader drops samples at each one)."""
    spec = Spec("tone", ".mp4", "libx264", "flac", video_s=3.0, audio_file=".flac")
    media, audio = write_media(tmp_path, spec)
    with open_media(tmp_path / media, tmp_path / audio, rates=[48000, 44100, 8000]) as m:
        for rate in (48000, 44100, 8000):
            got = np.concatenate(
                [m.audio_at(rate, a, rate // 2) for a in range(0, 3 * rate, rate // 2)]
            )
            want = tone(3.0, rate)
            inner = slice(rate // 20, len(want) - rate // 20)  # the resampler's edges aside
            assert np.abs(got[inner] - want[inner]).max() < 2e-3, rate


def test_long_audio_is_streamed_in_bounded_memory(tmp_path: Path):
    """Ten minutes of audio read clip by clip: memory holds about a clip, not the track."""
    import tracemalloc

    import av

    path = tmp_path / "long.wav"
    rate, seconds = 8000, 600
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        chunk = (np.sin(np.arange(rate) * 0.1) * 8000).astype(np.int16)[None]
        for i in range(seconds):
            frame = av.AudioFrame.from_ndarray(chunk, "s16", "mono")
            frame.sample_rate, frame.pts = rate, i * rate
            for packet in stream.encode(frame):
                container.mux(packet)
    tracemalloc.start()
    try:
        from trimodal.media.pyav_backend import AudioTrack

        track = AudioTrack(str(path), [16000])
        clip = 8 * 16000
        for a in range(0, seconds * 16000, clip):
            track.read(16000, a, clip)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = seconds * 16000 * 4  # the track at 16 kHz in float32: 38 MB
    assert peak < whole / 10, f"peak {peak / 1e6:.1f} MB"


# ----------------------------------------------------------------------------- backends


@requires_decord
def test_decord_and_pyav_give_the_same_frames_and_audio_on_h264(media_corpus, tmp_path_factory):
    """Bit-identical frames (the same YUV→RGB conversion, then the same resize) and the
    same audio; decord's own audio reader agrees at the file's rate to 1e-4."""
    import decord

    spec = SPEC["h264_aac_mp4"]
    path = media_corpus / "media" / f"{spec.name}{spec.suffix}"
    times = np.linspace(0.0, spec.video_s - 0.01, 23)
    with open_media(path, rates=[16000], decoder="decord") as d:
        with open_media(path, rates=[16000], decoder="pyav") as p:
            assert d.decoder == "decord" and p.decoder == "pyav"
            for side in (None, 48, 32, 16):
                np.testing.assert_array_equal(d.frames_at(times, side), p.frames_at(times, side))
            ours = p.audio_at(16000, 0, int(spec.video_s * 16000))
    theirs = decord.AudioReader(str(path), sample_rate=16000, mono=True)._array.reshape(-1)
    np.testing.assert_allclose(ours, theirs[: len(ours)], atol=1e-4)
    # And prepare's stored clips agree bit for bit.
    a = _rows(prepared(media_corpus, "auto", tmp_path_factory), spec.name)
    b = _rows(prepared(media_corpus, "pyav", tmp_path_factory), spec.name)
    for column in ("frames_32", "frames_16", "audio_16k", "audio_8k"):
        np.testing.assert_array_equal(a[column], b[column])


@requires_decord
def test_auto_falls_back_to_pyav_per_file(media_corpus, monkeypatch):
    media = media_corpus / "media"
    with open_media(media / "av1_opus_webm.webm", decoder="auto") as m:
        assert m.decoder == "pyav" and "decord" in m.fallback
    if CAN_ROTATE:
        with open_media(media / "rotated_90_mp4.mp4", decoder="auto") as m:
            assert m.decoder == "pyav" and "rotation" in m.fallback
    with pytest.raises(MediaError, match="decord"):
        open_media(media / "av1_aac_mp4.mp4", decoder="decord")
    # A failure after opening: PyAV reads the file from there on.
    from trimodal.media.decord_backend import DecordFrames

    with open_media(media / "h264_aac_mp4.mp4", decoder="auto") as m:
        assert m.decoder == "decord" and m.fallback is None
        want = m.frames_at(np.array([0.5, 1.5]), 16)

        def broken(self, times, side):
            raise RuntimeError("decoder state lost")

        monkeypatch.setattr(DecordFrames, "frames_at", broken)
        np.testing.assert_array_equal(m.frames_at(np.array([0.5, 1.5]), 16), want)
        assert m.decoder == "pyav" and "decoder state lost" in m.fallback


def test_a_crash_with_auto_is_retried_with_pyav(media_corpus, tmp_path, monkeypatch):
    """A file that kills the worker under ``auto`` (a segfaulting fast path) is read with
    PyAV alone; one that kills it whatever the decoder is skipped as ``decoder_crash``."""
    from prepare_faults import CrashOn, CrashUnlessPyAV

    from trimodal.prepare import pipeline

    corpus = tmp_path / "corpus"
    (corpus / "media").mkdir(parents=True)
    names = ["h264_aac_mp4", "hevc_aac_mp4"]
    for name in names:
        data = (media_corpus / "media" / f"{name}.mp4").read_bytes()
        (corpus / "media" / f"{name}.mp4").write_bytes(data)
    write_corpus(
        corpus,
        [
            VideoRecord(video_id=n, media=f"media/{n}.mp4", labels=["Guitar"], split="dev")
            for n in names
        ],
    )
    monkeypatch.setattr(pipeline, "video_work", CrashUnlessPyAV(frozenset({"hevc_aac_mp4"})))
    summary = prepare(corpus, tmp_path / "auto", CONFIG, workers=2, show_progress=False)
    assert summary["videos_prepared"] == 2 and summary["videos_skipped"] == 0
    # A crash that PyAV does not escape either (CrashOn aborts whatever the decoder).
    monkeypatch.setattr(pipeline, "video_work", CrashOn(frozenset({"hevc_aac_mp4"})))
    summary = prepare(corpus, tmp_path / "again", CONFIG, workers=2, show_progress=False)
    assert summary["skipped_by_reason"] == {"decoder_crash": 1}


def test_decoder_option_reaches_the_workers_and_keys_the_preparation(media_corpus, tmp_path):
    """``--decoder`` overrides the config on the command line; changing it decodes again."""
    corpus = tmp_path / "corpus"
    (corpus / "media").mkdir(parents=True)
    record = VideoRecord(video_id="v", media="media/v.mp4", labels=["Guitar"], split="dev")
    (corpus / "media" / "v.mp4").write_bytes(
        (media_corpus / "media" / "hevc_aac_mp4.mp4").read_bytes()
    )
    write_corpus(corpus, [record])
    config = write_config(tmp_path / "data.yaml", CONFIG)
    out = tmp_path / "out"
    runs = {}
    for decoder in ("pyav", "auto", "auto"):
        proc = subprocess.run(
            prepare_cmd(corpus, out, config, "--decoder", decoder),
            capture_output=True, text=True, env=subprocess_env(),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.setdefault(decoder, []).append(proc)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["decoder"] == decoder
    assert "1 by pyav" in runs["pyav"][0].stderr
    backend = "decord" if decord_available() else "pyav"
    assert f"1 by {backend}" in runs["auto"][0].stderr  # decoded again, not reused
    assert "already prepared" in runs["auto"][1].stdout


def test_decord_requested_where_it_is_missing_is_a_clear_error(tmp_path: Path, monkeypatch):
    (tmp_path / "videos.jsonl").write_text("")
    monkeypatch.setenv("TRIMODAL_DISABLE_DECORD", "1")
    assert not decord_available()
    with pytest.raises(PrepareError, match="decoder 'decord' is not installed"):
        prepare(tmp_path, tmp_path / "out", DataConfig(decoder="decord"), show_progress=False)
    env = subprocess_env() | {"TRIMODAL_DISABLE_DECORD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "data_prep", "prepare", "--corpus", str(tmp_path),
         "--out", str(tmp_path / "out"), "--decoder", "decord"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not installed" in proc.stderr


def test_only_the_decord_backend_imports_decord():
    """Everything else must work where decord is not installed (no wheels on ARM)."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    importers = []
    for path in [*(repo / "trimodal").rglob("*.py"), *(repo / "data_prep").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "decord" or n.startswith("decord.") for n in names):
                importers.append(path.relative_to(repo).as_posix())
    assert sorted(set(importers)) == ["trimodal/media/decord_backend.py"]
