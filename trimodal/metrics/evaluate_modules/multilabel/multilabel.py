"""Multilabel probe metrics (weighted/micro/macro F1, precision, recall, subset accuracy, Hamming
loss, macro ROC-AUC) as a local ``evaluate`` metric.

``predictions`` are per-example class scores [num_classes], ``references`` the multi-hot ground
truth. Delegates to :func:`trimodal.metrics.probe.multilabel_metrics` (scikit-learn).

Example::

    import evaluate
    from trimodal.metrics import EVALUATE_MODULES

    metric = evaluate.load(EVALUATE_MODULES["multilabel"])
    metric.compute(predictions=probs, references=multi_hot, threshold=0.5)
"""

import datasets
import evaluate
import numpy as np

from trimodal.metrics.probe import multilabel_metrics

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: [N, C] scores.
    references: [N, C] multi-hot labels.
    threshold: a class is predicted when its score is >= threshold (default 0.5).
Returns:
    f1/precision/recall (weighted, _micro, _macro), subset_accuracy, hamming_loss,
    roc_auc_macro, map_macro, num_auc_classes, threshold.
"""


class Multilabel(evaluate.Metric):
    """Multilabel probe metrics."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references, threshold=0.5):
        return multilabel_metrics(
            np.asarray(references), np.asarray(predictions, dtype=np.float64), threshold
        )
