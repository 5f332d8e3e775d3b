"""The embedded demo's test report: the trained and the untrained model, and chance.

:func:`demo_results` embeds the test split with each model once and computes what the demo
reports: cross-modal retrieval at clip and video level
(:func:`trimodal.metrics.cross_modal_retrieval`), zero-shot tagging and label-as-query
retrieval (:func:`trimodal.evaluation.tasks.zero_shot_task`), and the chance of every number
that has one, computed for this test set (:func:`trimodal.metrics.chance_metrics`,
:func:`trimodal.metrics.label_retrieval_chance`). :func:`write_demo_report` saves all of it
in the run directory and returns the compact table the demo prints
(:func:`trimodal.evaluation.reports.demo_summary_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trimodal.evaluation.registry import jsonable
from trimodal.evaluation.reports import demo_full_markdown, demo_summary_table
from trimodal.utils import atomic_write_json, atomic_write_text

#: Files the demo writes into its run directory.
DEMO_RESULTS_JSON = "test_results.json"
DEMO_RESULTS_MD = "test_results.md"


def demo_results(
    prepared_dir: str | Path,
    models: Mapping[str, str | Path],
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 32,
) -> dict[str, Any]:
    """Test-split results of each model, and chance.

    Args:
        prepared_dir: the prepared corpus (with a ``test`` split).
        models: ``{name: saved model directory}``, e.g. ``{"trained": ..., "untrained": ...}``.

    Returns:
        ``{"models": {name: {"retrieval": cross_modal_retrieval, "zero_shot":
        zero_shot_task}}, "chance": {"retrieval": {level: chance_metrics},
        "label_retrieval": {level: label_retrieval_chance}}, "test": {"videos", "clips",
        "labels"}}``.
    """
    from trimodal.embedding import extract_split
    from trimodal.evaluation.tasks import embed_labels, zero_shot_task
    from trimodal.metrics.retrieval import cross_modal_retrieval, label_retrieval_chance
    from trimodal.modeling import TrimodalModel

    out: dict[str, Any] = {"models": {}}
    for name, path in models.items():
        model = TrimodalModel.from_pretrained(path)
        test = extract_split(
            model, prepared_dir, "test", batch_size=batch_size, capture_backbone=False,
            desc=f"test ({name})",
        )  # fmt: skip
        retrieval = cross_modal_retrieval(
            test.embeddings, test.video_id, texts=test.texts or None, ks=tuple(ks)
        )
        zero_shot = zero_shot_task(test, embed_labels(model, test.label_names), ks=tuple(ks))
        out["models"][name] = {"retrieval": retrieval, "zero_shot": zero_shot}
    truth = {"clip": test.labels, "video": test.video_labels()}
    out["chance"] = {
        "retrieval": {level: r["chance"] for level, r in retrieval.items()},
        "label_retrieval": {
            level: label_retrieval_chance(truth[level], ks=tuple(ks)) for level in truth
        },
    }
    out["test"] = {
        "videos": int(retrieval["video"]["chance"]["gallery_size"]),
        "clips": int(retrieval["clip"]["chance"]["gallery_size"]),
        "labels": int(out["chance"]["label_retrieval"]["video"]["num_labels"]),
    }
    return out


def write_demo_report(
    prepared_dir: str | Path,
    models: Mapping[str, str | Path],
    output_dir: str | Path,
    ks: Sequence[int] = (1, 5, 10),
) -> str:
    """Compute :func:`demo_results`, save them as ``test_results.json`` and the full tables
    as ``test_results.md`` in ``output_dir``, and return the compact table."""
    results = demo_results(prepared_dir, models, ks)
    output_dir = Path(output_dir)
    atomic_write_json(output_dir / DEMO_RESULTS_JSON, jsonable(results))
    atomic_write_text(output_dir / DEMO_RESULTS_MD, demo_full_markdown(results, ks))
    return demo_summary_table(results) + f"\n\nAll test results: {output_dir / DEMO_RESULTS_MD}"
