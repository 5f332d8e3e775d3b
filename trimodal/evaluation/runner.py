"""``evaluate()``: a saved model on a prepared split → ``results.json``, ``results.md``, plots.

The tasks are the registered :class:`~trimodal.evaluation.registry.EvalTask` units
(:mod:`~trimodal.evaluation.tasks`), the settings an :class:`~trimodal.config.EvalConfig`;
the command line is :mod:`trimodal.evaluation.cli` (``python -m trimodal.evaluate``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from trimodal.config import EvalConfig, to_dict
from trimodal.evaluation import plots as plotting
from trimodal.evaluation.extraction import model_fingerprint
from trimodal.evaluation.registry import TASKS, EvalContext, EvalTask, jsonable, selected_tasks
from trimodal.evaluation.reports import HEADLINE_PROBE, results_markdown
from trimodal.evaluation.tasks import pair_similarities  # (importing tasks registers them)
from trimodal.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

#: The tasks run when none are named (``thesis_probes``, 14 MLP fits, is asked for by name).
DEFAULT_TASKS: tuple[str, ...] = tuple(EvalConfig().tasks)

__all__ = ["DEFAULT_TASKS", "TASKS", "evaluate"]


def _run_info(model_dir: Path) -> tuple[str, str | None, Path | None]:
    """(run name, objective, metrics.jsonl) from a model directory and its run directory."""
    import yaml

    in_run = model_dir.name in ("best", "last")
    run_name = f"{model_dir.parent.name}/{model_dir.name}" if in_run else model_dir.name
    objective = None
    for candidate in (model_dir / "config.yaml", model_dir.parent / "config.yaml"):
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text()) or {}
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and data.get("objective"):
                objective = str(data["objective"])
                break
    metrics = None
    for candidate in (model_dir / "metrics.jsonl", model_dir.parent / "metrics.jsonl"):
        if candidate.is_file():
            metrics = candidate
            break
    return run_name, objective, metrics


def evaluate(
    model_dir: str | Path,
    prepared_dir: str | Path,
    output_dir: str | Path = "eval",
    config: EvalConfig | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate the model saved in ``model_dir`` on ``config.split`` of ``prepared_dir``.

    Embeddings are extracted once per split (eval mode, deterministic) and stored in
    ``output_dir`` as ``embeddings_<split>.safetensors`` + ``.json``; a re-run with the same
    model files and data reuses them (``recompute=True`` forces a new extraction). The
    probes also embed the ``train`` and ``dev`` splits.

    Args:
        model_dir: a directory written by ``TrimodalModel.save_pretrained`` (e.g. ``RUN/best``;
            the run's ``config.yaml`` and ``metrics.jsonl`` are read from its parent if there).
        prepared_dir: the prepared dataset root (``train/``, ``dev/``, ``test/``).
        output_dir: where results, embeddings and plots go.
        config: the settings (default :class:`~trimodal.config.EvalConfig`'s), including the
            split, the tasks (any of :data:`TASKS`) and each task's options.
        settings: :class:`~trimodal.config.EvalConfig` fields overriding ``config``'s.

    Each task that cannot run (:meth:`~trimodal.evaluation.registry.EvalTask.unavailable`)
    is recorded in ``skipped`` with the reason; an error inside a task is raised.

    Returns:
        The ``results.json`` content: ``meta`` (model and data paths and fingerprints, the
        settings as ``config``), one entry per task that ran, ``plots`` (name → path relative
        to ``output_dir``) and ``skipped`` (task or part → why it did not run).

    Raises:
        FileNotFoundError: the model directory or the evaluated split does not exist.
        ValueError: an unknown task or probe, or a bad setting.
    """
    config = dataclasses.replace(config or EvalConfig(), **settings)
    config.tasks = list(dict.fromkeys(config.tasks))
    tasks = selected_tasks(config.tasks)
    for task in tasks:
        task.validate(config)
    ctx = _open(Path(model_dir), Path(prepared_dir), Path(output_dir), config)
    results, sections, skipped = _run_tasks(ctx, tasks)
    run_name, objective, metrics_jsonl = _run_info(Path(model_dir))
    plots = {}
    if config.make_plots:
        plots = _make_plots(ctx, results, run_name, metrics_jsonl, skipped)
    results["meta"] = _meta(ctx, Path(model_dir), run_name, objective)
    results["plots"], results["skipped"] = plots, skipped
    results = jsonable(results)
    atomic_write_json(ctx.output_dir / "results.json", results)
    atomic_write_text(ctx.output_dir / "results.md", results_markdown(results, sections))
    return results


def _run_tasks(
    ctx: EvalContext, tasks: list[EvalTask]
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Run each task that can run; returns ``(results, results.md sections, skipped)``."""
    results: dict[str, Any] = {}
    sections: list[str] = []
    skipped: dict[str, str] = {}
    for task in tasks:
        reason = task.unavailable(ctx)
        if reason is not None:
            skipped[task.name] = reason
            continue
        out = task.run(ctx)
        results.update(out.results)
        sections += out.sections
        skipped.update(out.skipped)
        for name, text in out.files.items():
            atomic_write_text(ctx.output_dir / name, text)
    return results, sections, skipped


def _open(model_dir: Path, prepared_dir: Path, output_dir: Path, config: EvalConfig) -> EvalContext:
    """The model loaded and the evaluated split's embeddings ready (extracted or reused)."""
    from trimodal.modeling import TrimodalModel

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no saved model at {model_dir} (expected config.json)")
    if not (prepared_dir / config.split).is_dir():
        raise FileNotFoundError(f"split {config.split!r} not found in {prepared_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    model = TrimodalModel.from_pretrained(model_dir).eval()
    ctx = EvalContext(model, model_fingerprint(model_dir), prepared_dir, output_dir, config)
    ctx.embeddings(config.split)  # first, so that a failed extraction fails before any task
    return ctx


def _meta(ctx: EvalContext, model_dir: Path, run_name: str, objective: str | None) -> dict:
    """``results.json``'s ``meta``: what was evaluated, with which settings, when."""
    from trimodal import __version__

    data = ctx.data
    return {
        "run_name": run_name,
        "objective": objective,
        "model_dir": str(model_dir.resolve()),
        "model_fingerprint": ctx.model_fingerprint,
        "data_dir": str(ctx.prepared_dir.resolve()),
        "split": ctx.config.split,
        "embedding_fingerprints": {s: d.fingerprint for s, d in ctx.loaded.items()},
        "embeddings_reused": dict(ctx.reused),
        "tasks": list(ctx.config.tasks),
        "num_clips": len(data),
        "num_videos": len(data.video_ids()),
        "modalities": data.modalities,
        "label_names": data.label_names,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trimodal_version": __version__,
        "headline_probe": list(HEADLINE_PROBE),
        "config": to_dict(ctx.config),
    }


def _make_plots(
    ctx: EvalContext,
    results: dict[str, Any],
    run_name: str,
    metrics_jsonl: Path | None,
    skipped: dict[str, str],
) -> dict[str, str]:
    """Write the PNGs under ``output_dir/plots``; returns ``{name: relative path}``. A figure
    without the data it needs is recorded in ``skipped`` with the reason."""
    data, seed, output_dir = ctx.data, ctx.config.seed, ctx.output_dir
    plot_dir = output_dir / "plots"
    made: dict[str, str] = {}

    def attempt(name: str, reason: str | None, fn, *args, **kwargs) -> None:
        if reason is not None:
            skipped[f"plots/{name}"] = reason
            return
        path = plot_dir / f"{name}.png"
        fn(*args, path=path, **kwargs)
        made[name] = path.relative_to(output_dir).as_posix()

    few = f"t-SNE needs at least 3 points, got {len(data)}" if len(data) < 3 else None
    for m in data.modalities:
        attempt(
            f"tsne_{m}", few, plotting.plot_tsne, data.embeddings[m].numpy(), data.first_label,
            data.label_names, title=f"{run_name}: {m} clip embeddings ({data.split})", seed=seed,
        )  # fmt: skip
    tagging = results.get("zero_shot", {}).get("tagging", {}).get("video", {})
    if tagging:
        gallery = "audio+video" if "audio+video" in tagging else next(iter(tagging))
        ap = tagging[gallery]["per_label_ap"]
        attempt(
            "per_label_ap_zero_shot", plotting.missing_ap(ap), plotting.plot_per_label_ap, ap,
            data.label_names, title=f"Zero-shot AP per label ({gallery}, video level, {data.split})",
        )  # fmt: skip
    headline = _headline_probe_row(results.get("probe", {}).get("results", {}))
    if headline is not None:
        (level, features, probe), ap = headline
        attempt(
            "per_label_ap_probe", plotting.missing_ap(ap), plotting.plot_per_label_ap, ap,
            data.label_names, title=f"Probe AP per label ({probe} on {features}, {level} level)",
        )  # fmt: skip
    if "audio" in data.embeddings and "video" in data.embeddings:
        sims = pair_similarities(data, "audio", "video")
        attempt(
            "similarity_audio_video", None, plotting.plot_similarity_histogram,
            sims["positive"], sims["negative"],
            title=f"Audio–video cosine, same clip vs other videos ({data.split})",
        )  # fmt: skip
    if metrics_jsonl is not None:
        attempt(
            "training_curves", plotting.missing_training_metrics(metrics_jsonl),
            plotting.plot_training_curves, metrics_jsonl, title=f"{run_name} ({metrics_jsonl})",
        )  # fmt: skip
    else:
        skipped["plots/training_curves"] = "no metrics.jsonl in the model directory or its parent"
    return made


def _headline_probe_row(
    probe_results: dict[str, Any],
) -> tuple[tuple[str, str, str], list] | None:
    """``((level, features, probe), per-label AP)`` of :data:`HEADLINE_PROBE`, else of the
    first probe that ran (None when none ran)."""
    level, features, probe = HEADLINE_PROBE
    headline = probe_results.get(level, {}).get(features, {}).get(probe)
    if headline is not None:
        return (level, features, probe), headline["per_label_ap"]
    for lvl, by_f in probe_results.items():
        for feat, by_p in by_f.items():
            for name, m in by_p.items():
                return (lvl, feat, name), m["per_label_ap"]
    return None
