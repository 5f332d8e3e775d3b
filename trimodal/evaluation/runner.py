"""``evaluate()``: a saved model on a prepared split → ``results.json``, ``results.md``, plots.

Command line (``python -m trimodal.evaluate``)::

    python -m trimodal.evaluate --model runs/x/best --data data/prepared --split test \\
        --tasks retrieval,probe,zero_shot,neighbours --output eval/x [--batch-size 16] \\
        [--baseline-features yt8m_features.npz]
    python -m trimodal.evaluate --model runs/x/best --data data/prepared --tasks thesis_probes \\
        --output eval/x [--genre-labels genres.csv] [--top-tags 10] [--tag-threshold dev]
    python -m trimodal.evaluate merge eval/a/results.json eval/b/results.json \\
        --output comparison.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimodal.evaluation import plots as plotting
from trimodal.evaluation.extraction import (
    SplitEmbeddings,
    load_or_extract,
    model_fingerprint,
)
from trimodal.evaluation.probes import PROBES
from trimodal.evaluation.reports import (
    HEADLINE_PROBE,
    merge_results,
    neighbours_markdown,
    results_markdown,
)
from trimodal.evaluation.tasks import (
    load_youtube8m_features,
    neighbours_task,
    pair_similarities,
    probe_task,
    retrieval_task,
    thesis_probes_task,
    zero_shot_task,
)
from trimodal.evaluation.thesis_probes import load_genre_labels
from trimodal.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

#: The tasks :func:`evaluate` knows.
TASKS: tuple[str, ...] = ("retrieval", "probe", "zero_shot", "neighbours", "thesis_probes")
#: The tasks run when none are named (``thesis_probes``, 14 MLP fits, is asked for by name).
DEFAULT_TASKS: tuple[str, ...] = ("retrieval", "probe", "zero_shot", "neighbours")


def _jsonable(value: Any) -> Any:
    """Plain JSON data: numpy scalars/arrays converted, NaN and inf as ``null``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


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


@torch.no_grad()
def embed_labels(model: Any, label_names: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """``[L, D]`` text-channel embeddings of the label names (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.encode_text(list(label_names[i : i + batch_size])).float().cpu()
            for i in range(0, len(label_names), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def evaluate(
    model_dir: str | Path,
    prepared_dir: str | Path,
    split: str = "test",
    tasks: Sequence[str] = DEFAULT_TASKS,
    output_dir: str | Path = "eval",
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    baseline_features: str | Path | None = None,
    probes: Sequence[str] = ("sklearn_mlp", "torch_linear"),
    probe_levels: Sequence[str] = ("video", "clip"),
    probe_modalities: Sequence[str] | None = None,
    backbone_baselines: bool = True,
    ks: Sequence[int] = (1, 5, 10),
    num_seeds: int = 10,
    genre_labels: str | Path | dict[str, str] | None = None,
    thesis_levels: Sequence[str] = ("video",),
    top_tags: int = 10,
    tag_threshold: str | float = "dev",
    min_genre_videos: int = 2,
    thesis_epochs: int = 300,
    make_plots: bool = True,
    recompute: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate the model saved in ``model_dir`` on ``split`` of ``prepared_dir``.

    Embeddings are extracted once per split (eval mode, deterministic) and stored in
    ``output_dir`` as ``embeddings_<split>.safetensors`` + ``.json``; a re-run with the same
    model files and data reuses them (``recompute=True`` forces a new extraction). The
    probes also embed the ``train`` and ``dev`` splits.

    Args:
        model_dir: a directory written by ``TrimodalModel.save_pretrained`` (e.g. ``RUN/best``;
            the run's ``config.yaml`` and ``metrics.jsonl`` are read from its parent if there).
        prepared_dir: the prepared dataset root (``train/``, ``dev/``, ``test/``).
        split: the split reported on.
        tasks: any of :data:`TASKS` (default :data:`DEFAULT_TASKS`).
        output_dir: where results, embeddings and plots go.
        batch_size, num_workers: for extraction.
        baseline_features: an ``.npz`` of YouTube-8M video-level features (``video_id``,
            ``mean_rgb``, ``mean_audio``) probed as a baseline.
        probes: probe names (:data:`trimodal.evaluation.probes.PROBES`).
        probe_levels: ``"video"`` (per-video mean features, the study's) and/or ``"clip"``.
        probe_modalities: single modalities probed (default audio and video; ``text`` is
            allowed but leaks the labels, since a clip's text is one of them).
        backbone_baselines: also probe the backbones' features (before the heads).
        ks: the R@k cut-offs.
        num_seeds: seed videos of the nearest-neighbour report.
        genre_labels: ``thesis_probes``' genres: a CSV/JSON file of ``video_id → genre``
            (:func:`~trimodal.evaluation.thesis_probes.load_genre_labels`) or a mapping;
            default each video's first label.
        thesis_levels: ``thesis_probes`` levels, ``"video"`` and/or ``"clip"``.
        top_tags: ``thesis_probes`` tagging: the N labels with the most training videos.
        tag_threshold: ``thesis_probes`` tagging: ``"dev"`` (best macro F1 on dev) or a number.
        min_genre_videos: ``thesis_probes`` genre: training videos a genre needs to be kept.
        thesis_epochs: ``thesis_probes``: most epochs per probe (early stop on the dev loss).
        make_plots: write the PNG figures.
        recompute: ignore stored embeddings.
        seed: probe and t-SNE seed.

    Returns:
        The ``results.json`` content: ``meta`` (model and data paths and fingerprints, the
        settings), one key per task that ran, ``plots`` (name → path relative to
        ``output_dir``) and ``skipped`` (what did not run and why).

    Raises:
        FileNotFoundError: the model directory or the evaluated split does not exist.
        ValueError: an unknown task or probe.
    """
    from trimodal import __version__
    from trimodal.modeling import TrimodalModel

    tasks = list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    bad = [p for p in probes if p not in PROBES]
    if bad:
        raise ValueError(f"unknown probes {bad}; known: {', '.join(PROBES)}")
    genre_file = None
    if "thesis_probes" in tasks:
        if tag_threshold != "dev":
            tag_threshold = float(tag_threshold)
            if not 0.0 < tag_threshold < 1.0:
                raise ValueError(f"tag_threshold must be 'dev' or in (0, 1), got {tag_threshold}")
        if not thesis_levels or any(lv not in ("video", "clip") for lv in thesis_levels):
            raise ValueError(f"thesis levels must be video and/or clip, got {list(thesis_levels)}")
        if isinstance(genre_labels, (str, Path)):
            genre_file, genre_labels = str(genre_labels), load_genre_labels(genre_labels)
    model_dir, prepared_dir, output_dir = Path(model_dir), Path(prepared_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no saved model at {model_dir} (expected config.json)")
    if not (prepared_dir / split).is_dir():
        raise FileNotFoundError(f"split {split!r} not found in {prepared_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)

    model = TrimodalModel.from_pretrained(model_dir).eval()
    model_fp = model_fingerprint(model_dir)
    run_name, objective, metrics_jsonl = _run_info(model_dir)
    skipped: dict[str, str] = {}
    reused: dict[str, bool] = {}
    splits: dict[str, SplitEmbeddings] = {}

    def get(split_name: str) -> SplitEmbeddings:
        data, was_reused = load_or_extract(
            model, model_fp, prepared_dir, split_name, output_dir,
            batch_size=batch_size, num_workers=num_workers, recompute=recompute,
        )  # fmt: skip
        reused[split_name] = was_reused
        return data

    data = get(split)
    results: dict[str, Any] = {}

    if "retrieval" in tasks:
        try:
            results["retrieval"] = retrieval_task(data, ks)
        except ValueError as err:
            skipped["retrieval"] = str(err)
        if "audio" in data.embeddings and "video" in data.embeddings:
            sims = pair_similarities(data, "audio", "video")
            results["av_similarity"] = {
                k: v for k, v in sims.items() if not isinstance(v, np.ndarray)
            }

    if "probe" in tasks:
        try:
            splits = {"train": get("train"), "dev": get("dev"), split: data}
        except (FileNotFoundError, ValueError) as err:
            skipped["probe"] = f"the probes need the train and dev splits: {err}"
        else:
            youtube8m = None
            if baseline_features is not None:
                youtube8m = load_youtube8m_features(baseline_features)
            probe_out = probe_task(
                splits, split, probes=probes, levels=probe_levels, modalities=probe_modalities,
                baselines=backbone_baselines, youtube8m=youtube8m, seed=seed,
            )  # fmt: skip
            for key, reason in probe_out.pop("skipped").items():
                skipped[f"probe/{key}"] = reason
            results["probe"] = probe_out

    if "thesis_probes" in tasks:
        try:
            if not {"train", "dev"} <= splits.keys():  # not already loaded for `probe`
                splits = {"train": get("train"), "dev": get("dev"), split: data}
        except (FileNotFoundError, ValueError) as err:
            skipped["thesis_probes"] = f"the thesis probes need the train and dev splits: {err}"
        else:
            thesis_out = thesis_probes_task(
                splits, split, levels=thesis_levels, genre_labels=genre_labels,
                min_class_videos=min_genre_videos, top_n=top_tags, tag_threshold=tag_threshold,
                seed=seed, epochs=thesis_epochs,
            )  # fmt: skip
            if genre_file is not None:
                thesis_out["settings"]["genre_source"] = f"file {genre_file}"
            for key, reason in thesis_out.pop("skipped").items():
                skipped[f"thesis_probes/{key}"] = reason
            results["thesis_probes"] = thesis_out

    if "zero_shot" in tasks:
        if "text" not in model.modalities:
            skipped["zero_shot"] = f"the model has no text channel (it has {model.modalities})"
        else:
            try:
                label_embeddings = embed_labels(model, data.label_names)
                results["zero_shot"] = zero_shot_task(data, label_embeddings, ks=ks)
            except ValueError as err:
                skipped["zero_shot"] = str(err)

    if "neighbours" in tasks:
        try:
            results["neighbours"] = neighbours_task(data, num_seeds=num_seeds)
        except ValueError as err:
            skipped["neighbours"] = str(err)
        else:
            atomic_write_text(
                output_dir / "neighbours.md", neighbours_markdown(results["neighbours"], split)
            )

    plot_paths: dict[str, str] = {}
    if make_plots:
        plot_paths = _make_plots(data, results, output_dir, run_name, metrics_jsonl, skipped, seed)

    results["meta"] = {
        "run_name": run_name,
        "objective": objective,
        "model_dir": str(model_dir.resolve()),
        "model_fingerprint": model_fp,
        "data_dir": str(prepared_dir.resolve()),
        "split": split,
        "embedding_fingerprints": {s: d.fingerprint for s, d in {**splits, split: data}.items()},
        "embeddings_reused": reused,
        "tasks": tasks,
        "num_clips": len(data),
        "num_videos": len(data.video_ids()),
        "modalities": data.modalities,
        "label_names": data.label_names,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trimodal_version": __version__,
        "config": {
            "batch_size": batch_size,
            "baseline_features": str(baseline_features) if baseline_features else None,
            "probes": list(probes),
            "probe_levels": list(probe_levels),
            "probe_modalities": list(probe_modalities) if probe_modalities else None,
            "backbone_baselines": backbone_baselines,
            "ks": list(ks),
            "num_seeds": num_seeds,
            "genre_labels": genre_file,
            "thesis_levels": list(thesis_levels),
            "top_tags": top_tags,
            "tag_threshold": tag_threshold,
            "min_genre_videos": min_genre_videos,
            "thesis_epochs": thesis_epochs,
            "seed": seed,
            "headline_probe": list(HEADLINE_PROBE),
        },
    }
    results["plots"] = plot_paths
    results["skipped"] = skipped
    results = _jsonable(results)
    atomic_write_json(output_dir / "results.json", results)
    atomic_write_text(output_dir / "results.md", results_markdown(results))
    return results


def _make_plots(
    data: SplitEmbeddings,
    results: dict[str, Any],
    output_dir: Path,
    run_name: str,
    metrics_jsonl: Path | None,
    skipped: dict[str, str],
    seed: int,
) -> dict[str, str]:
    """Write the PNGs under ``output_dir/plots``; returns ``{name: relative path}``."""
    plot_dir = output_dir / "plots"
    made: dict[str, str] = {}

    def attempt(name: str, fn, *args, **kwargs) -> None:
        path = plot_dir / f"{name}.png"
        try:
            fn(*args, path=path, **kwargs)
        except ValueError as err:
            skipped[f"plots/{name}"] = str(err)
        else:
            made[name] = path.relative_to(output_dir).as_posix()

    for m in data.modalities:
        attempt(
            f"tsne_{m}", plotting.plot_tsne, data.embeddings[m].numpy(), data.first_label,
            data.label_names, title=f"{run_name}: {m} clip embeddings ({data.split})", seed=seed,
        )  # fmt: skip
    tagging = results.get("zero_shot", {}).get("tagging", {}).get("video", {})
    if tagging:
        gallery = "audio+video" if "audio+video" in tagging else next(iter(tagging))
        attempt(
            "per_label_ap_zero_shot", plotting.plot_per_label_ap,
            tagging[gallery]["per_label_ap"], data.label_names,
            title=f"Zero-shot AP per label ({gallery}, video level, {data.split})",
        )  # fmt: skip
    probe_results = results.get("probe", {}).get("results", {})
    level, features, probe = HEADLINE_PROBE
    headline = probe_results.get(level, {}).get(features, {}).get(probe)
    if headline is None:
        for lvl, by_f in probe_results.items():
            for feat, by_p in by_f.items():
                for name, m in by_p.items():
                    if headline is None:
                        headline, level, features, probe = m, lvl, feat, name
    if headline is not None:
        attempt(
            "per_label_ap_probe", plotting.plot_per_label_ap, headline["per_label_ap"],
            data.label_names, title=f"Probe AP per label ({probe} on {features}, {level} level)",
        )  # fmt: skip
    if "audio" in data.embeddings and "video" in data.embeddings:
        sims = pair_similarities(data, "audio", "video")
        attempt(
            "similarity_audio_video", plotting.plot_similarity_histogram,
            sims["positive"], sims["negative"],
            title=f"Audio–video cosine, same clip vs other videos ({data.split})",
        )  # fmt: skip
    if metrics_jsonl is not None:
        attempt(
            "training_curves", plotting.plot_training_curves, metrics_jsonl,
            title=f"{run_name} ({metrics_jsonl})",
        )  # fmt: skip
    else:
        skipped["plots/training_curves"] = "no metrics.jsonl in the model directory or its parent"
    return made


# ----------------------------------------------------------------------------- command line


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trimodal.evaluate",
        description="Evaluate a saved trimodal model on a prepared split "
        "(use `python -m trimodal.evaluate merge ...` to compare results).",
    )
    p.add_argument("--model", required=True, help="directory written by save_pretrained")
    p.add_argument("--data", required=True, help="prepared dataset root")
    p.add_argument("--split", default="test")
    p.add_argument("--tasks", type=_csv, default=list(DEFAULT_TASKS),
                   help=f"comma list of {TASKS} (default: all but thesis_probes)")  # fmt: skip
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--baseline-features", default=None, help="YouTube-8M features (.npz)")
    p.add_argument("--probes", type=_csv, default=["sklearn_mlp", "torch_linear"],
                   help=f"comma list of {PROBES}")  # fmt: skip
    p.add_argument("--probe-levels", type=_csv, default=["video", "clip"])
    p.add_argument("--probe-modalities", type=_csv, default=None)
    p.add_argument("--no-backbone-baselines", action="store_true")
    p.add_argument("--ks", type=lambda s: [int(k) for k in _csv(s)], default=[1, 5, 10])
    p.add_argument("--num-seeds", type=int, default=10)
    p.add_argument(
        "--genre-labels",
        default=None,
        help="thesis_probes: CSV/JSON video_id → genre (default: first label)",
    )
    p.add_argument("--thesis-levels", type=_csv, default=["video"], help="video and/or clip")
    p.add_argument("--top-tags", type=int, default=10, help="thesis_probes: number of tags")
    p.add_argument(
        "--tag-threshold",
        default="dev",
        help="thesis_probes tagging threshold: dev (best macro F1 on dev) or a number",
    )
    p.add_argument(
        "--min-genre-videos",
        type=int,
        default=2,
        help="thesis_probes: training videos a genre needs",
    )
    p.add_argument("--thesis-epochs", type=int, default=300, help="thesis_probes: most epochs")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--recompute", action="store_true", help="ignore stored embeddings")
    p.add_argument("--seed", type=int, default=0)
    return p


def _merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trimodal.evaluate merge",
        description="One comparison table (one row per run) from several results.json files.",
    )
    p.add_argument("results", nargs="+", help="results.json files")
    p.add_argument("--output", required=True, help="comparison markdown file")
    p.add_argument("--level", choices=["video", "clip"], default="video")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m trimodal.evaluate``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "merge":
        args = _merge_parser().parse_args(argv[1:])
        try:
            text = merge_results(args.results, args.output, args.level)
        except (FileNotFoundError, ValueError, KeyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(text)
        print(f"wrote {args.output}")
        return 0
    args = _evaluate_parser().parse_args(argv)
    try:
        results = evaluate(
            args.model, args.data, args.split, args.tasks, args.output,
            batch_size=args.batch_size, num_workers=args.num_workers,
            baseline_features=args.baseline_features, probes=args.probes,
            probe_levels=args.probe_levels, probe_modalities=args.probe_modalities,
            backbone_baselines=not args.no_backbone_baselines, ks=args.ks,
            num_seeds=args.num_seeds, genre_labels=args.genre_labels,
            thesis_levels=args.thesis_levels, top_tags=args.top_tags,
            tag_threshold=args.tag_threshold, min_genre_videos=args.min_genre_videos,
            thesis_epochs=args.thesis_epochs,
            make_plots=not args.no_plots,
            recompute=args.recompute, seed=args.seed,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    for name, reason in results["skipped"].items():
        print(f"skipped {name}: {reason}")
    return 0
