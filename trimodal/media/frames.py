"""What every backend does to a decoded picture: rotate it upright and scale its short side.

Both backends hand over frames at their native size in RGB (FFmpeg's swscale converts from
YUV in both), and the rest is done here, once, so that the backends give the same frames
wherever they decode the same pictures.
"""

from __future__ import annotations

import numpy as np


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """uint8 [H, W, 3] as displayed: ``rotation`` is the display matrix's counterclockwise
    angle in degrees (a multiple of 90), e.g. 90 for a phone video shot upright."""
    k = (rotation // 90) % 4
    return np.rot90(frame, k) if k else frame


def scaled_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) that scales the short side to ``side``, keeping the aspect ratio."""
    scale = side / min(width, height)
    return max(side, int(round(width * scale))), max(side, int(round(height * scale)))


def scale_short_side(frame: np.ndarray, side: int | None) -> np.ndarray:
    """uint8 [H, W, 3] → uint8 [H', W', 3] with ``min(H', W') == side`` (``None``: as is).

    Pillow's antialiased bilinear filter (a triangle filter widened by the scale factor when
    shrinking, so no aliasing from dropped pixels).
    """
    h, w = frame.shape[:2]
    if side is None or min(h, w) == side:
        return np.ascontiguousarray(frame)
    from PIL import Image

    width, height = scaled_size(w, h, side)
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def finish(frame: np.ndarray, rotation: int, side: int | None) -> np.ndarray:
    """A backend's native RGB frame [H, W, 3] → upright, short side ``side`` [H', W', 3]."""
    return scale_short_side(upright(frame, rotation), side)
