"""Evaluation of a trained model: extraction, retrieval, probes, zero-shot, reports, plots.

The entry point is :func:`evaluate` (also ``python -m trimodal.evaluate``,
:mod:`~trimodal.evaluation.cli`), a loop over the registered tasks
(:mod:`~trimodal.evaluation.registry`) with the settings of an
:class:`~trimodal.config.EvalConfig`; the pieces are usable on their own:

- :mod:`~trimodal.evaluation.extraction`: embeddings and backbone features of a split
  (:func:`trimodal.embedding.extract_split`), stored as safetensors and reused while the model
  and data fingerprints match;
- :mod:`~trimodal.evaluation.probes`: multilabel probes (the study's 300-100 MLP, torch
  linear/MLP probes with BCE), threshold chosen on dev;
- :mod:`~trimodal.evaluation.tasks`: retrieval, probe, zero-shot and neighbour tasks;
- :mod:`~trimodal.evaluation.thesis_probes`: the dual-encoder thesis's genre and tagging
  probes (``--tasks thesis_probes``);
- :mod:`~trimodal.evaluation.reports`: ``results.md``, ``neighbours.md``, the comparison
  of several runs (:func:`merge_results`) and :func:`retrieval_table`, the one renderer of
  retrieval tables;
- :mod:`~trimodal.evaluation.plots`: t-SNE, per-label AP, similarity histograms, training
  curves.
"""

from trimodal.utils import lazy_exports

# Imported on first use, so that importing the package (and its command-line help)
# stays cheap.
__getattr__ = lazy_exports(
    __name__,
    {
        "SplitEmbeddings": "trimodal.embedding",
        "extract_split": "trimodal.embedding",
        "main": "trimodal.evaluation.cli",
        "load_or_extract": "trimodal.evaluation.extraction",
        "model_fingerprint": "trimodal.evaluation.extraction",
        "PROBES": "trimodal.evaluation.probes",
        "ProbeData": "trimodal.evaluation.probes",
        "make_probe": "trimodal.evaluation.probes",
        "run_probe": "trimodal.evaluation.probes",
        "EvalContext": "trimodal.evaluation.registry",
        "EvalTask": "trimodal.evaluation.registry",
        "TaskOutput": "trimodal.evaluation.registry",
        "register_task": "trimodal.evaluation.registry",
        "merge_results": "trimodal.evaluation.reports",
        "retrieval_table": "trimodal.evaluation.reports",
        "TASKS": "trimodal.evaluation.runner",
        "evaluate": "trimodal.evaluation.runner",
        "thesis_probes_task": "trimodal.evaluation.thesis_probes",
    },
)

__all__ = [
    "PROBES",
    "TASKS",
    "EvalContext",
    "EvalTask",
    "ProbeData",
    "SplitEmbeddings",
    "TaskOutput",
    "evaluate",
    "extract_split",
    "load_or_extract",
    "main",
    "make_probe",
    "merge_results",
    "model_fingerprint",
    "register_task",
    "retrieval_table",
    "run_probe",
    "thesis_probes_task",
]
