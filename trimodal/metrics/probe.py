"""Multilabel probe metrics (as in the trimodal study, plus macro ROC-AUC).

Definitions: docs/evaluation.md#multilabel-probes.

Everything is computed by scikit-learn; this module only fixes the choices:

* predictions are ``y_score >= threshold`` (one global threshold for all classes);
* precision/recall/F1 with ``average="weighted"`` (the slides' numbers), ``"micro"`` and
  ``"macro"``, ``zero_division=0`` (a class never predicted has precision 0, not a warning);
* subset accuracy (``accuracy_score`` on the multilabel matrix: the whole label set must match)
  and Hamming loss;
* macro ROC-AUC and macro average precision over the classes that have both positives and
  negatives in ``y_true`` (AUC is undefined otherwise); the number of classes used is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

ArrayLike = np.ndarray | Sequence

#: Candidate thresholds tried by :func:`choose_threshold` by default.
DEFAULT_THRESHOLDS: np.ndarray = np.round(np.linspace(0.01, 0.99, 99), 2)


def _check(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = (np.asarray(y_true) > 0).astype(np.int64)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true and y_score must both be [N, C]; got {y.shape} and {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("y_score contains NaN or inf")
    return y, s


def multilabel_metrics(
    y_true: ArrayLike, y_score: ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Threshold-based and ranking metrics of a multilabel probe.

    Args:
        y_true: [N, C] multi-hot ground truth (values > 0 are positives).
        y_score: [N, C] scores, e.g. sigmoid probabilities.
        threshold: a class is predicted when its score is ``>= threshold``.

    Returns:
        ``f1``, ``precision``, ``recall`` (weighted), the same with ``_micro`` and ``_macro``
        suffixes, ``subset_accuracy``, ``hamming_loss``, ``roc_auc_macro``, ``map_macro``
        (fractions in [0, 1]; the AUC/mAP are NaN when no class has both positives and
        negatives), ``num_auc_classes``, ``threshold``.
    """
    y, s = _check(y_true, y_score)
    pred = (s >= threshold).astype(np.int64)
    out: dict[str, float] = {}
    for average in ("weighted", "micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, average=average, zero_division=0)
        suffix = "" if average == "weighted" else f"_{average}"
        out[f"f1{suffix}"] = float(f)
        out[f"precision{suffix}"] = float(p)
        out[f"recall{suffix}"] = float(r)
    out["subset_accuracy"] = float(accuracy_score(y, pred))
    out["hamming_loss"] = float(hamming_loss(y, pred))
    positives = y.sum(axis=0)
    valid = (positives > 0) & (positives < y.shape[0])
    if valid.any():
        out["roc_auc_macro"] = float(roc_auc_score(y[:, valid], s[:, valid], average="macro"))
        out["map_macro"] = float(average_precision_score(y[:, valid], s[:, valid], average="macro"))
    else:
        out["roc_auc_macro"] = out["map_macro"] = float("nan")
    out["num_auc_classes"] = int(valid.sum())
    out["threshold"] = float(threshold)
    return out


def choose_threshold(
    y_true_dev: ArrayLike,
    y_score_dev: ArrayLike,
    average: str = "micro",
    thresholds: ArrayLike | None = None,
) -> tuple[float, float]:
    """Pick the single global threshold that maximises F1 on the dev split.

    Args:
        y_true_dev: [N, C] multi-hot dev labels.
        y_score_dev: [N, C] dev scores.
        average: F1 averaging to maximise: ``"micro"`` (default: every label decision weighs
            the same, so frequent labels dominate, as they do in the weighted F1 the slides
            report), ``"weighted"`` or ``"macro"``.
        thresholds: candidates; default 0.01, 0.02, ..., 0.99 (for probability scores).

    Returns:
        ``(threshold, dev_f1)``; on equal F1 the smallest threshold wins. Use the threshold on
        the test split with :func:`multilabel_metrics`; never choose it on test.
    """
    y, s = _check(y_true_dev, y_score_dev)
    if average not in ("micro", "weighted", "macro"):
        raise ValueError(f"average must be micro, weighted or macro, got {average!r}")
    cand = np.sort(DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, float))
    if cand.size == 0:
        raise ValueError("no candidate thresholds")
    scores = [
        f1_score(y, (s >= t).astype(np.int64), average=average, zero_division=0) for t in cand
    ]
    best = int(np.argmax(scores))  # first maximum = smallest threshold among ties (sorted cand)
    return float(cand[best]), float(scores[best])
