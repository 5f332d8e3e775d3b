"""Evaluation metrics: cross-modal retrieval, YouTube-8M classification, multilabel probes.

The same metrics are also available as local ``evaluate`` modules, loadable offline by path:
``evaluate.load(trimodal.metrics.EVALUATE_MODULES["retrieval"])``.
"""

from pathlib import Path

from trimodal.metrics.pooling import aggregate_by_video, pool_by_video
from trimodal.metrics.probe import choose_threshold, multilabel_metrics
from trimodal.metrics.retrieval import (
    chance_metrics,
    cross_modal_retrieval,
    l2_normalize,
    label_retrieval_chance,
    label_retrieval_metrics,
    metrics_from_ranks,
    multi_relevant_metrics,
    retrieval_metrics,
    retrieval_ranks,
    video_texts,
)
from trimodal.metrics.youtube8m import labels_to_multi_hot, youtube8m_metrics

_MODULES_DIR = Path(__file__).resolve().parent / "evaluate_modules"
#: Paths of the local ``evaluate`` modules (pass one to ``evaluate.load``).
EVALUATE_MODULES: dict[str, str] = {
    name: str(_MODULES_DIR / name / f"{name}.py")
    for name in ("retrieval", "youtube8m", "multilabel")
}

__all__ = [
    "EVALUATE_MODULES",
    "aggregate_by_video",
    "chance_metrics",
    "choose_threshold",
    "cross_modal_retrieval",
    "l2_normalize",
    "label_retrieval_chance",
    "label_retrieval_metrics",
    "labels_to_multi_hot",
    "metrics_from_ranks",
    "multilabel_metrics",
    "multi_relevant_metrics",
    "pool_by_video",
    "retrieval_metrics",
    "retrieval_ranks",
    "video_texts",
    "youtube8m_metrics",
]
