"""A corpus of tiny media files in the formats YouTube downloads come in, written with PyAV.

Every picture carries its own time code: picture ``i`` has a white top half and a bottom
half at grey level :func:`level` ``(i)``, so the frame a decoder returns tells which picture
it is (and, through the white half, which way up it is shown). The audio is a 440-Hz sine.
:data:`SPECS` lists the files; :func:`write_media` writes one (PyAV's wheels bundle every
encoder used here, so the tests need no FFmpeg program).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np

TONE_HZ = 440.0


@dataclasses.dataclass(frozen=True)
class Spec:
    """One test file. ``video_s``/``audio_s``: how long each stream is; ``pts``: the frames'
    presentation times in 1/24 s (variable frame rate) instead of ``fps``; ``audio_file``:
    the suffix of a separate audio file (the video file then has no audio)."""

    name: str
    suffix: str
    vcodec: str
    acodec: str
    width: int = 80
    height: int = 64
    fps: int = 6
    video_s: float = 2.5
    audio_s: float | None = None
    rate: int = 16000
    layout: str = "mono"
    pix_fmt: str = "yuv420p"
    rotation: int = 0
    pts: tuple[int, ...] | None = None
    audio_file: str | None = None
    gop: int | None = None  # key frame interval (the encoder's default if None)

    @property
    def clips(self) -> int:
        """The clips of 1 s the shorter stream holds."""
        return int(min(self.video_s, self.audio_s or self.video_s) // 1.0)

    def frame_times(self) -> np.ndarray:
        """float64 [N]: each picture's presentation time in seconds."""
        if self.pts is not None:
            return np.asarray(self.pts, np.float64) / 24.0
        return np.arange(int(round(self.video_s * self.fps)), dtype=np.float64) / self.fps


def _vfr_pts(seconds: float) -> tuple[int, ...]:
    """Dense frames (1/24 s apart) for a second, then sparse ones (up to 1/2 s), never on a
    multiple of 1/4 s (where the tests sample, so that no sample falls on a frame change)."""
    steps = [1] * 24 + [12, 5, 9, 3, 7, 11] * 20
    pts, t = [], 1
    for step in steps:
        if t >= seconds * 24:
            break
        pts.append(t if t % 6 else t + 1)
        t = pts[-1] + step
    return (0, *pts)


SPECS = [
    Spec("h264_aac_mp4", ".mp4", "libx264", "aac", video_s=3.5),
    Spec("hevc_aac_mp4", ".mp4", "libx265", "aac"),
    Spec("vp9_opus_webm", ".webm", "libvpx-vp9", "libopus", rate=48000),
    Spec("av1_opus_webm", ".webm", "libsvtav1", "libopus", rate=48000),
    Spec("av1_aac_mp4", ".mp4", "libsvtav1", "aac"),
    Spec("h264_vorbis_mkv", ".mkv", "libx264", "vorbis", rate=44100, layout="stereo"),
    Spec("h264_flac_mkv", ".mkv", "libx264", "flac"),
    Spec("mpeg4_mp3_avi", ".avi", "mpeg4", "libmp3lame", rate=22050),
    Spec("h264_pcm_mov", ".mov", "libx264", "pcm_s16le"),
    Spec("h264_10bit_mp4", ".mp4", "libx264", "aac", pix_fmt="yuv420p10le"),
    Spec("stereo_44k_mp4", ".mp4", "libx264", "aac", rate=44100, layout="stereo"),
    Spec("surround_51_mp4", ".mp4", "libx264", "aac", rate=48000, layout="5.1"),
    Spec("rate_22k_mp4", ".mp4", "libx264", "aac", rate=22050),
    Spec("vfr_h264_mkv", ".mkv", "libx264", "aac", video_s=4.5, pts=_vfr_pts(4.5)),
    Spec("rotated_90_mp4", ".mp4", "libx264", "aac", rotation=90),
    Spec("portrait_mp4", ".mp4", "libx264", "aac", width=64, height=80),
    Spec("short_audio_mp4", ".mp4", "libx264", "aac", video_s=3.5, audio_s=2.5),
    Spec("audio_opus", ".mp4", "libx264", "libopus", rate=48000, audio_file=".opus"),
    Spec("audio_flac", ".mp4", "libx264", "flac", audio_file=".flac"),
    Spec("audio_mp3", ".mp4", "libx264", "libmp3lame", rate=44100, audio_file=".mp3"),
]


def level(i: int) -> int:
    """The grey level of picture ``i``'s bottom half (6 levels apart: far above codec noise;
    at most 36 pictures a file)."""
    if not 0 <= i < 36:
        raise ValueError(f"picture {i}: the time code has 36 levels")
    return 10 + 6 * i


def picture(spec: Spec, i: int) -> np.ndarray:
    """uint8 [H, W, 3]: picture ``i`` as stored in the file (before any display rotation)."""
    img = np.full((spec.height, spec.width, 3), level(i), np.uint8)
    img[: spec.height // 2] = 235
    return img


def tone(seconds: float, rate: int) -> np.ndarray:
    """float32 [S]: the test sine."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _write_video(container, spec: Spec) -> None:
    stream = container.add_stream(spec.vcodec, rate=spec.fps if spec.pts is None else 24)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
    if spec.pts is not None:
        stream.time_base = Fraction(1, 24)
    if spec.rotation:
        stream.set_display_rotation(spec.rotation)
    if spec.gop:
        stream.codec_context.gop_size = spec.gop
    return stream


def _encode_video(container, stream, spec: Spec) -> None:
    times = spec.frame_times()
    for i, t in enumerate(times):
        frame = av_frame(picture(spec, i))
        tick = Fraction(1, 24 if spec.pts is not None else spec.fps)
        frame.pts, frame.time_base = int(round(t / tick)), tick
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def av_frame(img: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(img, format="rgb24")


def _add_audio(container, spec: Spec):
    stream = container.add_stream(spec.acodec, rate=spec.rate, layout=spec.layout)
    if spec.acodec == "vorbis":
        stream.codec_context.options = {"strict": "experimental"}
    return stream


def _encode_audio(container, stream, spec: Spec) -> None:
    import av

    wave = tone(spec.audio_s or spec.video_s, spec.rate)
    channels = len(av.AudioLayout(spec.layout).channels)
    step = 1024
    for i in range(0, len(wave), step):
        chunk = np.repeat(wave[None, i : i + step], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), "fltp", spec.layout)
        frame.sample_rate, frame.pts = spec.rate, i
        frame.time_base = Fraction(1, spec.rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_media(directory: Path, spec: Spec) -> tuple[str, str | None]:
    """Write ``spec``'s file(s) into ``directory``; return (media, audio file or None) names."""
    import av

    media = f"{spec.name}{spec.suffix}"
    # AVI has no timestamps, only frame slots: FFmpeg's default shift of every stream past
    # the MP3 encoder's negative start would leave an empty slot after the first picture.
    options = {"avoid_negative_ts": "disabled"} if spec.suffix == ".avi" else {}
    with av.open(str(directory / media), "w", options=options) as container:
        video = _write_video(container, spec)
        audio = None if spec.audio_file else _add_audio(container, spec)
        _encode_video(container, video, spec)
        if audio is not None:
            _encode_audio(container, audio, spec)
    if not spec.audio_file:
        return media, None
    return media, write_audio(directory, spec)


def write_audio(directory: Path, spec: Spec) -> str:
    """Write ``spec``'s sound alone (no video stream) as ``<name><audio_file>``; return the
    name. Its length is ``audio_s`` (else ``video_s``)."""
    import av

    audio_name = f"{spec.name}{spec.audio_file}"
    fmt = {".opus": "ogg"}.get(spec.audio_file)
    with av.open(str(directory / audio_name), "w", format=fmt) as container:
        _encode_audio(container, _add_audio(container, spec), spec)
    return audio_name
