"""YouTube-8M starter-code metrics (Hit@1, PERR, GAP, mAP) as a local ``evaluate`` metric.

``predictions`` are per-video class scores [num_classes], ``references`` the multi-hot ground
truth [num_classes]. Delegates to :func:`trimodal.metrics.youtube8m.youtube8m_metrics`, which
follows ``eval_util.py`` of the YouTube-8M starter code exactly (see its docstring).

Example::

    import evaluate
    from trimodal.metrics import EVALUATE_MODULES

    metric = evaluate.load(EVALUATE_MODULES["youtube8m"])
    metric.compute(predictions=probs, references=multi_hot, top_k=20)
"""

import datasets
import evaluate
import numpy as np

from trimodal.metrics.youtube8m import youtube8m_metrics

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: [N, C] scores (probabilities).
    references: [N, C] multi-hot labels.
    top_k: predictions kept per video for GAP and mAP (default 20).
Returns:
    hit_at_1, perr, gap, map (fractions) and counts.
"""


class Youtube8m(evaluate.Metric):
    """YouTube-8M Hit@1, PERR, GAP and mAP."""

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

    def _compute(self, predictions, references, top_k=20):
        return youtube8m_metrics(
            np.asarray(predictions, dtype=np.float64), np.asarray(references), top_k=top_k
        )
