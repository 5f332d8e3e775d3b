"""The fast path: decord, where it is installed (x86-64 Linux and Windows wheels).

decord reads a file's frame index when it opens it and then decodes only around the frames
asked for (seeking to the key frame before each run of frames), which pays off when a video's
clips are sparse. It gives frames at their native size in RGB, and the frame shown at a time
is chosen from decord's own presentation timestamps, so that frames agree with the PyAV
backend's (:mod:`trimodal.media.frames` does the rest for both). Audio is always read by the
PyAV backend: decord's reader decodes a whole track into memory at once.

decord 0.6.0 mishandles the display matrix (a rotated file comes back with a wrong shape):
rotated files are refused here, and ``open_media`` reads them with PyAV.
"""

from __future__ import annotations

import numpy as np

from trimodal.media.base import MediaError, MediaInfo
from trimodal.media.frames import finish


class DecordFrames:
    """The frames of ``path`` shown at given times, read by decord (see the module docstring).

    Raises ``MediaError`` (``unreadable``) when decord cannot open the file or the file is
    rotated; a failure later (``frames_at``) raises decord's own error.
    """

    def __init__(self, path: str, info: MediaInfo) -> None:
        if info.rotation:
            raise MediaError(
                "unreadable", f"decord ignores the display rotation ({info.rotation}°)"
            )
        import decord

        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
            n = len(self._reader)
            starts = self._reader.get_frame_timestamp(np.arange(n))[:, 0] if n else np.zeros(0)
        except Exception as err:  # decord raises its own DECORDError and others
            raise MediaError("unreadable", f"decord: {type(err).__name__}: {err}") from err
        if n < 1:
            raise MediaError("unreadable", "decord: no frames")
        # Presentation times from the first frame, as in the PyAV backend.
        self._starts = np.asarray(starts, np.float64) - float(starts[0])

    def frames_at(self, times: np.ndarray, side: int | None) -> np.ndarray:
        """float [T] seconds → uint8 [T, H, W, 3] (as ``PyAVFrames.frames_at``)."""
        n = len(self._starts)
        # The last frame that starts at or before each time.
        index = np.clip(np.searchsorted(self._starts, times, side="right") - 1, 0, n - 1)
        batch = self._reader.get_batch(index.tolist()).asnumpy()
        return np.stack([finish(frame, 0, side) for frame in batch])

    def close(self) -> None:
        self._reader = None
