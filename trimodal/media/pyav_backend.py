"""The universal backend: PyAV (FFmpeg's libraries, bundled in its wheels on every platform).

- :func:`probe` reads a file's packets (demuxing, no decoding but the first frame) and
  returns its :class:`~trimodal.media.base.MediaInfo`: durations from the timestamps,
  rotation from the first frame's display matrix, the displayed size;
- :class:`PyAVFrames` gives the frames shown at given times, choosing by presentation
  timestamp (right for variable frame rates), decoding forward and seeking over long gaps;
- :class:`AudioTrack` decodes an audio stream once, forward, resampling each decoded frame to
  mono at every requested rate (swresample), and hands out windows of samples: only the
  samples not yet read are held, never the whole track.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trimodal.media.base import MediaError, MediaInfo
from trimodal.media.frames import finish

# Decode forward through gaps up to this long; seek (to the key frame before) past longer ones.
SEEK_GAP_S = 8.0


def _open(path: str) -> Any:
    import av

    try:
        return av.open(path)
    except Exception as err:  # PyAV raises many error types for broken files
        raise MediaError("unreadable", f"{type(err).__name__}: {err}") from err


def _first_stream(container: Any, kind: str, path: str) -> Any:
    streams = [s for s in container.streams if s.type == kind]
    if not streams:
        raise MediaError(f"no_{kind}_stream", f"{path} has no {kind} stream")
    return streams[0]


def _span(pts: list[int], ends: list[int], start: int | None) -> float:
    """Ticks from ``start`` (the first pts if None) to the end of the last packet; a packet
    without a duration lasts as long as the median gap between packets."""
    if not pts:
        return 0.0
    p, e = np.asarray(pts, np.int64), np.asarray(ends, np.int64)
    end = int(e.max())
    if end <= int(p.max()) and len(p) > 1:
        end = int(p.max() + np.median(np.diff(np.unique(p))))
    return float(end - (int(p.min()) if start is None else start))


def probe(video_path: str, audio_path: str) -> MediaInfo:
    """The properties of ``video_path``'s first video stream and ``audio_path``'s first audio
    stream (often the same file; read in one pass then). Raises ``MediaError``."""
    packets: dict[int, tuple[list[int], list[int]]] = {}
    first: Any = None
    with _open(video_path) as container:
        video = _first_stream(container, "video", video_path)
        wanted = [video]
        if audio_path == video_path:
            wanted.append(_first_stream(container, "audio", audio_path))
        try:
            first = _demux(container, wanted, packets)
        except MediaError:
            raise
        except Exception as err:
            raise MediaError("unreadable", f"{type(err).__name__}: {err}") from err
        v_pts, v_ends = packets.get(video.index, ([], []))
        video_s = _span(v_pts, v_ends, None) * float(video.time_base)
        start_s = min(v_pts) * float(video.time_base) if v_pts else 0.0
        audio_s = _audio_span(wanted[1], packets) if len(wanted) > 1 else None
    if first is None:
        raise MediaError("unreadable", f"{video_path}: no video frame could be decoded")
    if audio_s is None:
        audio_s = _audio_duration(audio_path)
    rotation = int(round(float(first.rotation or 0) / 90.0)) * 90 % 360
    width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)
    if video_s <= 0 or audio_s <= 0:
        raise MediaError("unreadable", f"no timed packets (video {video_s} s, audio {audio_s} s)")
    return MediaInfo(
        duration_s=min(video_s, audio_s),
        video_s=video_s,
        audio_s=audio_s,
        width=int(width),
        height=int(height),
        rotation=rotation,
        video_start_s=start_s,
    )


def has_video_stream(path: str) -> bool:
    """Whether ``path`` holds a video stream (its header only). Raises ``MediaError``."""
    with _open(path) as container:
        return bool(container.streams.video)


def probe_audio(path: str) -> MediaInfo:
    """The properties of a file with sound and no pictures: every duration is its first
    audio stream's, the picture size 0 × 0. Raises ``MediaError``."""
    audio_s = _audio_duration(path)
    if audio_s <= 0:
        raise MediaError("unreadable", f"{path}: no timed audio packets")
    return MediaInfo(audio_s, audio_s, audio_s, width=0, height=0, rotation=0, video_start_s=0.0)


def _demux(container: Any, streams: list[Any], packets: dict[int, tuple[list, list]]) -> Any:
    """Read every packet of ``streams``, recording ``(pts, pts + duration)`` per stream;
    decode the video (``streams[0]``) until its first frame; return that frame (or None)."""
    video, first = streams[0], None
    for packet in container.demux(streams):
        if packet.pts is None:
            if packet.size == 0 and first is None and packet.stream is video:
                first = next(iter(video.decode(packet)), None)  # flushing: a delayed frame
            continue
        pts, ends = packets.setdefault(packet.stream.index, ([], []))
        pts.append(packet.pts)
        ends.append(packet.pts + (packet.duration or 0))
        if first is None and packet.stream is video:
            first = next(iter(video.decode(packet)), None)
    return first


def _audio_span(stream: Any, packets: dict[int, tuple[list, list]]) -> float:
    pts, ends = packets.get(stream.index, ([], []))
    return _span(pts, ends, stream.start_time) * float(stream.time_base)


def _audio_duration(path: str) -> float:
    """The duration of the first audio stream of a separate audio file."""
    packets: dict[int, tuple[list, list]] = {}
    with _open(path) as container:
        audio = _first_stream(container, "audio", path)
        try:
            for packet in container.demux(audio):
                if packet.pts is not None:
                    pts, ends = packets.setdefault(audio.index, ([], []))
                    pts.append(packet.pts)
                    ends.append(packet.pts + (packet.duration or 0))
        except Exception as err:
            raise MediaError("unreadable", f"audio: {type(err).__name__}: {err}") from err
        return _audio_span(audio, packets)


class PyAVFrames:
    """The frames of ``path``'s first video stream shown at given times (see the module
    docstring). Times count from the first frame (``info.video_start_s``)."""

    def __init__(self, path: str, info: MediaInfo) -> None:
        self._path, self._info = path, info
        self._container: Any = None
        self.frames_decoded = 0  # a statistic: what seeking saves shows here
        self._reopen()

    def _reopen(self) -> None:
        self.close()
        self._container = _open(self._path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = 1  # one process per video: the workers are the parallelism
        self._restart()

    def _restart(self) -> None:
        self._frames = self._container.decode(self._stream)
        self._cur: Any = None
        self._next: Any = self._pull()
        self._converted: tuple[Any, int | None, np.ndarray] | None = None

    def _pull(self) -> Any:
        frame = next(self._frames, None)
        self.frames_decoded += frame is not None
        return frame

    def _time(self, frame: Any) -> float:
        return float(frame.pts * frame.time_base) - self._info.video_start_s

    def _seek(self, t: float) -> None:
        """Continue at the key frame before ``t``; from the start if the seek overshoots."""
        target = int((t + self._info.video_start_s) / float(self._stream.time_base))
        try:
            self._container.seek(target, stream=self._stream, backward=True)
            self._restart()
        except Exception:  # a file that cannot seek is read forward from the start
            self._reopen()
            return
        if self._next is None or self._time(self._next) > t:
            self._reopen()

    def frames_at(self, times: np.ndarray, side: int | None) -> np.ndarray:
        """float [T] seconds → uint8 [T, H, W, 3]: the frame on screen at each time (the first
        frame before it, the last one after the end), upright, short side ``side``."""
        out: list[np.ndarray | None] = [None] * len(times)
        for i in np.argsort(times, kind="stable"):
            out[i] = self._at(float(times[i]), side)
        return np.stack(out)

    def _at(self, t: float, side: int | None) -> np.ndarray:
        if self._cur is not None and t < self._time(self._cur):
            self._reopen()  # backwards: start again
        elif self._next is not None and self._time(self._next) < t - SEEK_GAP_S:
            self._seek(t)
        while self._next is not None and self._time(self._next) <= t:
            self._cur, self._next = self._next, self._pull()
        if self._cur is None:  # before the first frame (or a stream without frames)
            if self._next is None:
                raise MediaError("unreadable", f"{self._path}: no video frame to decode")
            self._cur, self._next = self._next, self._pull()
        if self._converted is None or self._converted[:2] != (self._cur, side):
            rgb = self._cur.to_ndarray(format="rgb24")
            self._converted = (self._cur, side, finish(rgb, self._info.rotation, side))
        return self._converted[2]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class BlankFrames:
    """The frames of a file without a video stream: black, square (short side ``side``)."""

    def frames_at(self, times: np.ndarray, side: int | None) -> np.ndarray:
        """float [T] seconds → uint8 [T, side, side, 3] of zeros."""
        if side is None:
            raise MediaError("no_video_stream", "an audio-only file has no native frame size")
        return np.zeros((len(times), side, side, 3), np.uint8)

    def close(self) -> None:
        pass


class AudioTrack:
    """The first audio stream of ``path`` as mono float32 at each of ``rates`` (see the module
    docstring). Read the rates in step (clip by clip): what one rate has not read yet stays
    in memory while another rate reads on."""

    def __init__(self, path: str, rates: Sequence[int]) -> None:
        self._path, self._rates = path, list(rates)
        self._container: Any = None
        self._reopen()

    def _reopen(self) -> None:
        import av

        self.close()
        self._container = _open(self._path)
        stream = self._container.streams.audio[0]
        self._frames = self._container.decode(stream)
        self._resamplers = {
            r: av.AudioResampler(format="flt", layout="mono", rate=r) for r in self._rates
        }
        self._chunks: dict[int, list[np.ndarray]] = {r: [] for r in self._rates}
        self._start = dict.fromkeys(self._rates, 0)  # sample index of the first held sample
        self._held = dict.fromkeys(self._rates, 0)
        self._done = False

    def _decode_more(self) -> None:
        frame = next(self._frames, None)
        if frame is None:
            self._done = True
        for rate, resampler in self._resamplers.items():
            for out in resampler.resample(frame):  # None flushes the resampler
                samples = out.to_ndarray().reshape(-1)
                self._chunks[rate].append(samples)
                self._held[rate] += len(samples)

    def read(self, rate: int, start: int, n: int) -> np.ndarray:
        """float32 [n]: samples ``start`` to ``start + n`` at ``rate`` (zeros past the end).
        Reading before an earlier read's start decodes the track again from the beginning."""
        if start < self._start[rate]:
            self._reopen()
        while self._start[rate] + self._held[rate] < start + n and not self._done:
            self._decode_more()
        held = np.concatenate(self._chunks[rate]) if self._chunks[rate] else np.zeros(0, np.float32)
        held = held[start - self._start[rate] :]
        self._chunks[rate], self._start[rate], self._held[rate] = [held], start, len(held)
        segment = held[:n]
        if len(segment) < n:
            segment = np.pad(segment, (0, n - len(segment)))
        return segment.astype(np.float32, copy=True)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
