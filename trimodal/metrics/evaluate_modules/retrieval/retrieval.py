"""Paired cross-modal retrieval as a local ``evaluate`` metric (offline: load it by path).

``predictions`` are the query embeddings, ``references`` the gallery embeddings; row ``i`` of
``predictions`` should retrieve row ``i`` of ``references``. Delegates to
:func:`trimodal.metrics.retrieval.retrieval_metrics` (cosine similarity, 1-based pessimistic
ranks against the whole gallery, cumulative R@k as fractions, mean/median rank, MRR).

Example::

    import evaluate
    from trimodal.metrics import EVALUATE_MODULES

    metric = evaluate.load(EVALUATE_MODULES["retrieval"])
    metric.compute(predictions=audio_emb, references=video_emb, ks=[1, 5, 10])
"""

import datasets
import evaluate
import numpy as np

from trimodal.metrics.retrieval import DEFAULT_CHUNK_SIZE, DEFAULT_KS, retrieval_metrics

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: [N, D] query embeddings.
    references: [N, D] gallery embeddings; references[i] is the partner of predictions[i].
    ks: cut-offs for R@k (default 1, 5, 10, 25).
    chunk_size: queries per chunk (bounds memory to chunk_size x N similarities).
Returns:
    R@k (fractions), mean_rank, median_rank, mrr, num_queries, gallery_size.
"""


class Retrieval(evaluate.Metric):
    """Paired retrieval metrics (query i's partner is gallery item i)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, ks=DEFAULT_KS, chunk_size=DEFAULT_CHUNK_SIZE):
        queries = np.asarray(predictions, dtype=np.float32)
        gallery = np.asarray(references, dtype=np.float32)
        return retrieval_metrics(queries, gallery, tuple(ks), chunk_size=chunk_size)
