"""Clip → video pooling: the one definition of a video's embedding, and the grouping it uses.

A video is represented by several clips. Everything that compares videos by cosine
similarity (video-level retrieval, zero-shot tagging and label queries, nearest neighbours,
the trainer's validation and the demo's table) uses :func:`aggregate_by_video`:

    ``video(v) = normalise( mean_{clips c of v} normalise(clip_c) )``

each clip embedding scaled to unit length (so every clip weighs the same), averaged over the
video's clips, and the mean scaled back to unit length (a mean of unit vectors is shorter
than one, by how much its clips disagree; cosine retrieval compares directions only).

The probes do not compare directions: they learn from feature *values* (shared-space
embeddings as well as backbone features, which have no unit-length meaning), and the study
they reproduce fed them the plain average of each video's clip features. They pool with
:func:`pool_by_video` (``how="mean"``), the grouping primitive the definition above is built
on, without the two normalisations.

Rows of every video-level result are in sorted video-id order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _group_index(video_ids: Sequence, num_rows: int) -> tuple[torch.Tensor, list]:
    """``(row → video number [N] int64, sorted distinct ids)``."""
    ids = np.asarray(list(video_ids))
    if ids.shape[0] != num_rows:
        raise ValueError(f"{num_rows} rows but {ids.shape[0]} video ids")
    uniq, inverse = np.unique(ids, return_inverse=True)
    return torch.as_tensor(inverse.reshape(-1), dtype=torch.int64), uniq.tolist()


def _sum_or_max(x: torch.Tensor, index: torch.Tensor, num_videos: int, how: str) -> torch.Tensor:
    """Per-video sum (``"mean"``, the caller divides or normalises) or element-wise max."""
    out = torch.zeros((num_videos, x.shape[1]), dtype=x.dtype, device=x.device)
    index = index.to(x.device)
    if how == "mean":
        out.index_add_(0, index, x)
    elif how == "max":
        out.scatter_reduce_(0, index[:, None].expand_as(x), x, "amax", include_self=False)
    else:
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
    return out


def _as_rows(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"expected rows [N, F], got shape {tuple(t.shape)}")
    return t if t.is_floating_point() else t.float()


def pool_by_video(
    features: ArrayLike, video_ids: Sequence, how: str = "mean"
) -> tuple[torch.Tensor, list]:
    """Pool clip rows ``[N, F]`` per video, without any normalisation.

    Args:
        features: ``[N, F]`` (tensor or array; float dtypes kept, others become float32).
        video_ids: length-N video id of each row.
        how: ``"mean"`` (plain average of the video's rows) or ``"max"`` (element-wise).

    Returns:
        ``(pooled [V, F] tensor, ids)`` with ``ids`` the V sorted distinct video ids.
    """
    x = _as_rows(features)
    index, ids = _group_index(video_ids, x.shape[0])
    out = _sum_or_max(x, index, len(ids), how)
    if how == "mean":
        counts = torch.bincount(index, minlength=len(ids)).to(out)
        out /= counts[:, None]
    return out, ids


def aggregate_by_video(
    embeddings: ArrayLike, video_ids: Sequence, aggregation: str = "mean"
) -> tuple[torch.Tensor, list]:
    """The unit-length embedding of each video (the module docstring's definition).

    Each clip embedding is L2-normalised, the clips of a video are pooled (``"mean"``:
    average; ``"max"``: element-wise maximum) and the result re-normalised. (The mean is
    computed as the sum: the final normalisation removes the 1 / count.)

    Args:
        embeddings: ``[N_clips, D]``.
        video_ids: length-N_clips sequence of hashable ids (str or int).
        aggregation: ``"mean"`` or ``"max"``.

    Returns:
        ``(video_embeddings [V, D], ids)`` with ``ids`` the V distinct video ids in sorted
        order (row ``v`` belongs to ``ids[v]``).
    """
    x = torch.nn.functional.normalize(_as_rows(embeddings), p=2.0, dim=1, eps=1e-12)
    index, ids = _group_index(video_ids, x.shape[0])
    pooled = _sum_or_max(x, index, len(ids), aggregation)
    return torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12), ids
