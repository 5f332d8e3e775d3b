"""Decoding one media file: the waveforms and the frames a video's clips are cut from.

The interface is one function, :func:`decode_media`, which a backend implements::

    media = decode_media(video_path, audio_path, side=256, audio_rates=[48000, 16000])
    media.duration_s          # seconds that every stream covers
    media.waves[48000]        # float32 [S] mono waveform of the whole track at 48 kHz
    media.frames_at(times)    # uint8 [T, 3, side, side]: the centred square of the frames
                              # shown at ``times`` (float64 [T], seconds)

It raises :class:`~trimodal.prepare.errors.VideoSkipped` for media it cannot use
(``unreadable``, ``no_video_stream``, ``no_audio_stream``). The backend here is decord:
PyAV only probes the container (cheap, and it tells a missing stream from a broken file),
decord decodes, scaling while decoding (FFmpeg's swscale) so that the short side becomes
``side``, and resamples the audio to each rate. :func:`downscale` then makes the smaller
stored sizes from the largest one.

Runs in the decoding worker processes: torch is imported only for a non-integer downscale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trimodal.prepare.errors import VideoSkipped


@dataclasses.dataclass
class DecodedMedia:
    """One video's decoded streams (see the module docstring for the shapes)."""

    duration_s: float
    waves: dict[int, np.ndarray]
    frames_at: Callable[[np.ndarray], np.ndarray]


def decode_media(
    video_path: str, audio_path: str, side: int, audio_rates: Sequence[int]
) -> DecodedMedia:
    """Open ``video_path`` (frames) and ``audio_path`` (sound; often the same file) with decord."""
    import decord

    info = _probe(video_path, "video")
    _probe(audio_path, "audio")
    width, height = decode_size(info["width"], info["height"], side)
    try:
        vr = decord.VideoReader(
            video_path, ctx=decord.cpu(0), width=width, height=height, num_threads=1
        )
        n_frames, fps = len(vr), float(vr.get_avg_fps())
    except Exception as err:
        raise VideoSkipped("unreadable", f"video: {type(err).__name__}: {err}") from err
    if n_frames < 1 or not fps > 0:
        raise VideoSkipped("unreadable", f"video has {n_frames} frames at {fps} fps")
    waves = {rate: _read_audio(audio_path, rate) for rate in audio_rates}
    duration = min([n_frames / fps] + [len(w) / r for r, w in waves.items()])

    def frames_at(times: np.ndarray) -> np.ndarray:
        # The frame on screen at each time (the last one past the end).
        fidx = np.minimum(np.floor(times * fps).astype(np.int64), n_frames - 1)
        return centre_square(vr.get_batch(fidx.tolist()).asnumpy(), side)

    return DecodedMedia(duration_s=duration, waves=waves, frames_at=frames_at)


def _read_audio(path: str, rate: int) -> np.ndarray:
    """The whole track of ``path`` as a mono waveform at ``rate`` Hz (float32 [S])."""
    import decord

    try:
        ar = decord.AudioReader(path, ctx=decord.cpu(0), sample_rate=rate, mono=True)
        # The reader decodes the whole track into ``_array`` on construction; ``ar[:]``
        # would copy it again through a Python list of indices (seconds per track).
        wave = ar._array if hasattr(ar, "_array") else ar[:].asnumpy()
    except Exception as err:
        raise VideoSkipped("unreadable", f"audio: {type(err).__name__}: {err}") from err
    # Clipped and converted per clip by the caller: only the samples that are kept.
    return wave.reshape(-1)


def _probe(path: str, want: str) -> dict[str, Any]:
    """Check that ``path`` opens with PyAV and has a ``want`` stream; return its properties.

    Raises ``VideoSkipped`` (``unreadable`` or ``no_<want>_stream``) otherwise. Cheap: it
    reads the container header, not the media.
    """
    import av

    try:
        with av.open(path) as container:
            streams = [s for s in container.streams if s.type == want]
            if not streams:
                raise VideoSkipped(f"no_{want}_stream", f"{path} has no {want} stream")
            stream = streams[0]
            info: dict[str, Any] = {}
            if want == "video":
                info["width"] = int(stream.codec_context.width or 0)
                info["height"] = int(stream.codec_context.height or 0)
                if info["width"] < 1 or info["height"] < 1:
                    raise VideoSkipped("unreadable", f"{path}: video stream has no frame size")
            return info
    except VideoSkipped:
        raise
    except Exception as err:  # PyAV raises many error types for broken files
        raise VideoSkipped("unreadable", f"{type(err).__name__}: {err}") from err


def decode_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) that scales the short side to ``side``, keeping the aspect ratio."""
    scale = side / min(width, height)
    return max(side, int(round(width * scale))), max(side, int(round(height * scale)))


def centre_square(frames: np.ndarray, side: int) -> np.ndarray:
    """uint8 [T, H, W, 3] → uint8 [T, 3, side, side], the centred square."""
    h, w = frames.shape[1:3]
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(
        frames[:, top : top + side, left : left + side].transpose(0, 3, 1, 2)
    )


def downscale(frames: np.ndarray, side: int) -> np.ndarray:
    """uint8 [T, 3, S, S] → uint8 [T, 3, side, side].

    An integer factor is an exact (rounded) box average, e.g. 256 → 128; otherwise
    antialiased bilinear interpolation.
    """
    big = frames.shape[-1]
    if big == side:
        return frames
    if big % side == 0:
        f = big // side
        # Sum of the f×f strided views: much faster than a reshaped mean over two axes.
        # uint16 holds the sum (and the rounding term) up to f = 15: half the memory traffic.
        acc_type = np.uint16 if f * f * 255 + (f * f) // 2 < 2**16 else np.uint32
        acc = frames[:, :, 0::f, 0::f].astype(acc_type)
        for dy in range(f):
            for dx in range(f):
                if dy or dx:
                    acc += frames[:, :, dy::f, dx::f]
        acc += (f * f) // 2
        acc //= f * f
        return acc.astype(np.uint8)
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).float()
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()
