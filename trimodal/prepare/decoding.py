"""Decoding one video for ``prepare``: its duration, clip waveforms and square frames.

The interface is one function, :func:`decode_media`, on top of :mod:`trimodal.media` (the
decoding layer every command shares: backends, timing, rotation, bounded memory)::

    media = decode_media(video_path, audio_path, side=256, audio_rates=[48000, 16000],
                         decoder="auto")
    media.duration_s            # seconds that every stream covers (from timestamps)
    media.audio_at(48000, a, n) # float32 [n]: mono samples a .. a + n at 48 kHz
    media.frames_at(times)      # uint8 [T, 3, side, side]: the centred square of the frames
                                # shown at ``times`` (float64 [T], seconds), upright
    media.decoder, media.fallback  # the backend that read the frames, why not decord

It raises :class:`~trimodal.prepare.errors.VideoSkipped` for media it cannot use
(``unreadable``, ``no_video_stream``, ``no_audio_stream``). Read the clips in increasing
time: the audio is decoded forward and only the samples not yet read are held.
:func:`downscale` then makes the smaller stored sizes from the largest one.

Runs in the decoding worker processes: torch is imported only for a non-integer downscale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from trimodal.media import Media, MediaError, open_media
from trimodal.prepare.errors import VideoSkipped


@dataclasses.dataclass
class DecodedMedia:
    """One video's decoded streams (see the module docstring for the shapes)."""

    duration_s: float
    audio_at: Callable[[int, int, int], np.ndarray]
    frames_at: Callable[[np.ndarray], np.ndarray]
    media: Media

    @property
    def decoder(self) -> str:
        return self.media.decoder

    @property
    def fallback(self) -> str | None:
        return self.media.fallback

    def close(self) -> None:
        self.media.close()


def decode_media(
    video_path: str,
    audio_path: str,
    side: int,
    audio_rates: Sequence[int],
    decoder: str = "auto",
    blank_video: bool = False,
) -> DecodedMedia:
    """Open ``video_path`` (frames) and ``audio_path`` (sound; often the same file);
    ``blank_video``: a file without a video stream gets black frames (``decoder`` "none")."""
    try:
        media = open_media(video_path, audio_path, audio_rates, decoder, blank_video)
    except MediaError as err:
        raise VideoSkipped(err.reason, err.detail) from err

    def frames_at(times: np.ndarray) -> np.ndarray:
        return centre_square(media.frames_at(times, side), side)

    return DecodedMedia(
        duration_s=media.info.duration_s,
        audio_at=media.audio_at,
        frames_at=frames_at,
        media=media,
    )


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
