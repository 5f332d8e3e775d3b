"""YouTube-8M classification metrics, as the starter code's ``eval_util.py`` defines them.

``youtube8m_metrics`` reproduces ``EvaluationMetrics`` of the public YouTube-8M starter code
(``eval_util.py`` with ``average_precision_calculator.py`` and
``mean_average_precision_calculator.py``) fed all videos at once. Written here from the
definitions, because no library ships them (sklearn's ``average_precision_score`` normalises
recall by the positives *present in the scored list*, not by all true labels, and knows no
per-video top-k filtering):

* **Hit@1**: share of videos whose arg-max class (first one on ties, ``numpy.argmax``) is a
  true label.
* **PERR** (precision at equal recall rate): for a video with ``k`` true labels, the share of
  its ``k`` highest-scored classes that are true labels, averaged over videos. As in the starter
  code, a class only counts as a hit when its score is ``> 0`` (scores are meant to be
  probabilities), and a video **without** true labels counts as precision 0 and stays in the
  denominator (there ``numpy.argpartition(p, -0)[-0:]`` selects every class, none of them
  positive).
* **GAP** (global average precision): each video's ``top_k`` (class, score) pairs are pooled
  and sorted by score, descending; ``GAP = Σ_i precision@i · Δrecall_i`` where recall is
  normalised by the **total** number of true labels of all videos, so true labels that are not
  among a video's top ``k`` count against it.
* **mAP**: per class, the AP of the same top-``k``-filtered entries of that class, normalised
  by all of that class's true labels; averaged over the classes with at least one true label
  (the starter code's ``MeanAveragePrecisionCalculator`` with ``filter_empty_classes``).

Ties. The starter code orders equal scores by a fixed pseudo-random permutation
(``random.seed(0); random.sample``) of its heap's storage order. Without tied scores the order
and hence the result is unique and a plain sort is used; with tied scores this module replays
the same heap and permutation (with a private ``random.Random(0)``, leaving the global random
state alone) so the numbers match the starter code exactly. Which of several classes tied at
a video's k-th place enter its top k follows ``numpy.argpartition``, as in the starter code.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence


def labels_to_multi_hot(label_lists: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Turn per-video label index lists into a [N, num_classes] int 0/1 matrix."""
    out = np.zeros((len(label_lists), num_classes), dtype=np.int64)
    for row, labels in enumerate(label_lists):
        out[row, list(labels)] = 1
    return out


def _check(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(
            f"predictions and labels must both be [num_videos, num_classes]; "
            f"got {p.shape} and {y.shape}"
        )
    if p.shape[0] == 0:
        raise ValueError("no videos")
    if not np.isfinite(p).all():
        raise ValueError("predictions contain NaN or inf")
    return p, (y > 0).astype(np.int64)


def hit_at_one(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Share of videos ([N, C] scores, [N, C] multi-hot) whose top-scored class is a true label."""
    p, y = _check(predictions, labels)
    top = np.argmax(p, axis=1)
    return float(np.mean(y[np.arange(p.shape[0]), top]))


def precision_at_equal_recall_rate(predictions: ArrayLike, labels: ArrayLike) -> float:
    """PERR of [N, C] scores against [N, C] multi-hot labels (see the module docstring)."""
    p, y = _check(predictions, labels)
    num_labels = y.sum(axis=1)
    precision = np.zeros(p.shape[0])  # videos without labels keep 0, as in the starter code
    # Rows with the same number of labels share one vectorised argpartition (row-wise, the same
    # selection as the starter code's per-row call).
    for k in np.unique(num_labels):
        if k == 0:
            continue
        rows = np.flatnonzero(num_labels == k)
        top = np.argpartition(p[rows], -k, axis=1)[:, -k:]
        hit = (np.take_along_axis(y[rows], top, axis=1) > 0) & (
            np.take_along_axis(p[rows], top, axis=1) > 0
        )
        precision[rows] = hit.sum(axis=1) / k
    return float(precision.mean())


def top_k_entries(
    predictions: ArrayLike, labels: ArrayLike, top_k: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each video's ``top_k`` (class, score, label) entries, flattened class by class.

    Returns ``(classes, scores, entry_labels, positives_per_class)``: three [N·k] arrays in the
    starter code's ``flatten(top_k_by_class(...))`` order (by class, then by video), and [C]
    the number of true labels per class over all videos (not only the kept entries).
    """
    p, y = _check(predictions, labels)
    if top_k <= 0:
        raise ValueError("top_k must be a positive integer")
    n, c = p.shape
    k = min(top_k, c)
    top = np.argpartition(p, -k, axis=1)[:, -k:]  # [N, k]
    video = np.repeat(np.arange(n), k)
    cls = top.reshape(-1)
    order = np.lexsort((video, cls))  # by class, then video
    cls = cls[order]
    video = video[order]
    return cls, p[video, cls], y[video, cls], y.sum(axis=0)


def _starter_code_order(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Order in which the starter code's AveragePrecisionCalculator visits tied entries.

    Replays it: entries pushed one by one onto a ``heapq`` min-heap of ``(score, label)``
    tuples, the heap's storage order permuted by ``random.sample`` seeded with 0, then a stable
    sort by descending score. Only needed (and only called) when scores tie.
    """
    heap: list[tuple[float, int]] = []
    for item in zip(scores.tolist(), labels.tolist()):
        heapq.heappush(heap, item)
    heap_scores = np.array([s for s, _ in heap])
    heap_labels = np.array([lab for _, lab in heap])
    perm = np.array(random.Random(0).sample(range(len(heap)), len(heap)), dtype=np.int64)
    heap_scores, heap_labels = heap_scores[perm], heap_labels[perm]
    order = np.argsort(-heap_scores, kind="stable")
    return heap_labels[order]


def average_precision_at_n(
    scores: np.ndarray, labels: np.ndarray, total_positives: int | float
) -> float:
    """The starter code's non-interpolated AP of one ranked list, recall over ``total_positives``.

    ``AP = Σ_{i: label_i > 0} (positives in the top i / i) / total_positives`` over the list
    sorted by descending score; 0 when ``total_positives`` is 0 or the list is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.size == 0 or total_positives == 0:
        return 0.0
    if np.unique(scores).size < scores.size:
        ranked = _starter_code_order(scores, labels) > 0
    else:
        ranked = labels[np.argsort(-scores, kind="stable")] > 0
    poscount = np.cumsum(ranked)
    precision_at_hits = poscount[ranked] / (np.flatnonzero(ranked) + 1)
    return float(precision_at_hits.sum() / total_positives)


def global_average_precision(predictions: ArrayLike, labels: ArrayLike, top_k: int = 20) -> float:
    """GAP over each video's top ``top_k`` predictions (see the module docstring)."""
    _, scores, entry_labels, positives = top_k_entries(predictions, labels, top_k)
    return average_precision_at_n(scores, entry_labels, int(positives.sum()))


def mean_average_precision(
    predictions: ArrayLike, labels: ArrayLike, top_k: int = 20
) -> tuple[float, np.ndarray]:
    """Per-class AP over the top-``top_k``-filtered entries, averaged over classes with positives.

    Returns ``(mAP, aps)`` with ``aps`` [C] the per-class APs (NaN for classes without any true
    label, which are left out of the mean; mAP is NaN when no class has a true label).
    """
    cls, scores, entry_labels, positives = top_k_entries(predictions, labels, top_k)
    num_classes = positives.shape[0]
    aps = np.full(num_classes, np.nan)
    bounds = np.searchsorted(cls, np.arange(num_classes + 1))
    for c in np.flatnonzero(positives > 0):
        lo, hi = bounds[c], bounds[c + 1]
        aps[c] = average_precision_at_n(scores[lo:hi], entry_labels[lo:hi], int(positives[c]))
    kept = aps[positives > 0]
    return (float(kept.mean()) if kept.size else float("nan")), aps


def youtube8m_metrics(
    predictions: ArrayLike, labels: ArrayLike, top_k: int = 20
) -> dict[str, float]:
    """Hit@1, PERR, GAP and mAP of the YouTube-8M starter code.

    Args:
        predictions: [num_videos, num_classes] scores, ideally probabilities (PERR only counts
            classes with a score > 0, as the starter code does).
        labels: [num_videos, num_classes] multi-hot ground truth (values > 0 are positives); use
            :func:`labels_to_multi_hot` for label index lists.
        top_k: entries per video kept for GAP and mAP (20 in the starter code).

    Returns:
        ``{"hit_at_1", "perr", "gap", "map", "num_videos", "num_classes_with_positives",
        "num_videos_without_labels"}``; the four metrics are fractions in [0, 1].
    """
    p, y = _check(predictions, labels)
    map_, _ = mean_average_precision(p, y, top_k)
    return {
        "hit_at_1": hit_at_one(p, y),
        "perr": precision_at_equal_recall_rate(p, y),
        "gap": global_average_precision(p, y, top_k),
        "map": map_,
        "num_videos": int(p.shape[0]),
        "num_classes_with_positives": int((y.sum(axis=0) > 0).sum()),
        "num_videos_without_labels": int((y.sum(axis=1) == 0).sum()),
    }
