"""Reading media files: frames at given times, mono audio at given rates, stream properties.

The interface (stable: ``prepare`` and every other command that reads media use it)::

    with open_media(video_path, audio_path, rates=[48000, 16000], decoder="auto") as media:
        media.info                        # MediaInfo: duration_s (the shorter of video and
                                          # audio, from timestamps), video_s, audio_s,
                                          # width, height (as displayed), rotation
        media.frames_at(times, side=256)  # uint8 [T, H, W, 3]: the frames shown at ``times``
                                          # (float [T], seconds), upright, short side ``side``
        media.audio_at(16000, start, n)   # float32 [n]: mono samples start .. start + n
        media.decoder                     # the backend reading the frames: "pyav" | "decord"
                                          # | "none" (blank_video, below)
        media.fallback                    # why decord is not used for this file, or None

``audio_path`` is often ``video_path``. Times count from the first frame; audio sample 0 is
the first decoded sample. Frames are chosen by presentation timestamp (the last frame that
starts at or before the time: right for variable frame rates), the display matrix is
applied (a portrait phone video comes out portrait), and the audio is decoded once,
forward, and resampled per decoded frame, so that memory holds a clip's samples, not a
track's: read clips in increasing time and the rates in step.

``open_media(..., blank_video=True)`` also opens a file with sound and no video stream (a
``.wav``, ``.mp3``, ``.flac``, ``.opus``): its ``info`` spans the audio (``width`` and
``height`` 0), ``frames_at`` returns black frames and ``decoder`` is ``"none"``; ``embed``
prepares audio-only files so and leaves their video embedding out (docs/search.md).

Backends (``decoder``):

- ``pyav`` (:mod:`~trimodal.media.pyav_backend`): FFmpeg through PyAV, whose wheels bundle
  it (AV1 included) on every platform. It also probes every file and reads all audio.
- ``decord`` (:mod:`~trimodal.media.decord_backend`): decord reads the frames; an optional
  dependency (it has no wheels for macOS arm64 or Linux aarch64). A file decord cannot read
  is an error.
- ``auto`` (the default): decord where it is available, and PyAV for each file decord
  cannot open, rotates wrongly or fails on (``fallback`` says why).

Both backends hand native-size RGB frames to the same code (:mod:`~trimodal.media.frames`:
rotation, then Pillow's antialiased bilinear resize), so they give the same frames where
they decode the same pictures (on H.264 they do, bit for bit; tests/test_media.py).

Errors: :class:`MediaError` with a ``reason`` (``unreadable``, ``no_video_stream``,
``no_audio_stream``, ``decoder_unavailable``). ``TRIMODAL_DISABLE_DECORD=1`` makes the
library behave as if decord were not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trimodal.media.base import (
    DECODERS,
    DISABLE_DECORD_ENV,
    MediaError,
    MediaInfo,
    decord_available,
    resolve_decoder,
)
from trimodal.media.frames import scale_short_side, scaled_size, upright
from trimodal.media.pyav_backend import (
    AudioTrack,
    BlankFrames,
    PyAVFrames,
    has_video_stream,
    probe,
    probe_audio,
)

__all__ = [
    "DECODERS",
    "DISABLE_DECORD_ENV",
    "Media",
    "MediaError",
    "MediaInfo",
    "decord_available",
    "has_video_stream",
    "open_media",
    "probe",
    "probe_audio",
    "resolve_decoder",
    "scale_short_side",
    "scaled_size",
    "upright",
]


class Media:
    """One opened video and its audio (see the module docstring); close it (or use ``with``)."""

    def __init__(
        self,
        video_path: str,
        audio_path: str,
        rates: Sequence[int],
        decoder: str,
        blank_video: bool = False,
    ) -> None:
        backend = resolve_decoder(decoder)
        self._path, self._strict = video_path, decoder == "decord"
        self.fallback: str | None = None
        self._frames: Any = None
        try:
            self.info = probe(video_path, audio_path)
        except MediaError as err:
            if not (blank_video and err.reason == "no_video_stream"):
                raise
            self.info, backend = probe_audio(audio_path), "none"
            self._frames, self.decoder = BlankFrames(), "none"
        if backend == "decord":
            from trimodal.media.decord_backend import DecordFrames

            try:
                self._frames, self.decoder = DecordFrames(video_path, self.info), "decord"
            except MediaError as err:
                if self._strict:
                    raise
                self.fallback = err.detail
        if self._frames is None:
            self._frames, self.decoder = PyAVFrames(video_path, self.info), "pyav"
        self._audio = AudioTrack(audio_path, rates) if rates else None

    def frames_at(self, times: np.ndarray, side: int | None) -> np.ndarray:
        """float [T] seconds → uint8 [T, H, W, 3], short side ``side`` (None: native)."""
        try:
            return self._frames.frames_at(np.asarray(times, np.float64), side)
        except Exception as err:
            if self.decoder != "decord" or self._strict:
                raise
            # The fast path failed mid-file: PyAV reads this file from here on.
            self.fallback = f"decord: {type(err).__name__}: {err}"
            self._frames.close()
            self._frames, self.decoder = PyAVFrames(self._path, self.info), "pyav"
            return self._frames.frames_at(np.asarray(times, np.float64), side)

    def audio_at(self, rate: int, start: int, n: int) -> np.ndarray:
        """float32 [n]: mono samples ``start`` .. ``start + n`` at ``rate`` (one of ``rates``)."""
        if self._audio is None:
            raise ValueError("this Media was opened without audio rates")
        return self._audio.read(rate, start, n)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        if self._audio is not None:
            self._audio.close()

    def __enter__(self) -> Media:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_media(
    video_path: str,
    audio_path: str | None = None,
    rates: Sequence[int] = (),
    decoder: str = "auto",
    blank_video: bool = False,
) -> Media:
    """Open ``video_path`` (frames) and ``audio_path`` (sound; default: the same file) for
    the audio ``rates`` with ``decoder`` (``auto``/``pyav``/``decord``); ``blank_video``:
    a file without a video stream gives black frames instead of an error. Raises
    :class:`MediaError` for files that cannot be used."""
    return Media(str(video_path), str(audio_path or video_path), list(rates), decoder, blank_video)
