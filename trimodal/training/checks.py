"""Checks of an experiment before any model is built: the names, paths and settings a user
gives, each problem as one line that names the key and says how to fix it.

Nothing here imports torch: the objectives and backbones are known by their registries'
source (:func:`objective_summaries`, :func:`trimodal.backbones.backbone_summaries`), so a
mistyped name is reported in a fraction of a second rather than after the model is built.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from trimodal.config import ExperimentConfig
from trimodal.modalities import MODALITIES

OBJECTIVES_DIR = Path(__file__).resolve().parents[1] / "objectives"
# A Hugging Face Hub id, which some backbones accept as a source (VideoMAE: a cached id).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def objective_summaries() -> dict[str, str]:
    """``{name: first docstring line}`` of the objectives registered with
    ``@register_objective("name")`` in ``trimodal/objectives/``, read without importing them."""
    from trimodal.utils import class_summaries

    found: dict[str, str] = {}
    for path in sorted(OBJECTIVES_DIR.glob("*.py")):
        found.update(class_summaries(path, decorator="register_objective"))
    return dict(sorted(found.items()))


def _unknown(what: str, key: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{key}: unknown {what} {name!r}; {hint}choose one of {', '.join(known)}"


def validation_metric_names(modalities: list[str], ks: list[int]) -> list[str]:
    """Every name :func:`trimodal.training.validation_metrics` can give for these channels
    and cut-offs (the multi-relevant ``mAP``/``any@k`` ones only where texts repeat)."""
    present = [m for m in MODALITIES if m in modalities]
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1 :]]
    directions = [f"{a}→{b}" for a, b in pairs] + [f"{b}→{a}" for a, b in pairs]
    metrics = [f"R@{k}" for k in ks] + ["median_rank", "mean_rank", "mAP"]
    metrics += [f"any@{k}" for k in ks]
    names = ["mean_positive_distance"] + [f"positive_distance/{a}-{b}" for a, b in pairs]
    for level in ("video", "clip"):
        names.append(f"{level}/gallery_size")
        names += [f"{level}/{d}/{m}" for d in directions for m in metrics]
        means = [m for m in metrics if m != "mean_rank"]
        names += [f"{level}/mean_{m}" for m in means]
        names += [f"{level}/{a}-{b}/mean_{m}" for a, b in pairs for m in means]
    return names


def _select_metric_problem(config: ExperimentConfig) -> str | None:
    metric = config.train.select_metric
    names = validation_metric_names(config.model.modalities, config.eval.ks)
    if metric in names:
        return None
    close = difflib.get_close_matches(metric, names, n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"train.select_metric: {metric!r} is not a validation metric; {hint}"
        "e.g. video/mean_R@10 (mean over directions), video/audio-video/mean_R@10, "
        "clip/audio→video/R@5, mean_positive_distance (with train.select_mode min)"
    )


def _source_problem(modality: str, source: str) -> str | None:
    """A channel's weights that are not there (a path, ``A,B`` file pairs, or a Hub id in
    the local Hugging Face cache)."""
    expanded = os.path.expandvars(os.path.expanduser(source))
    paths = [p for p in expanded.split(",") if p] if "," in expanded else [expanded]
    missing = [p for p in paths if not os.path.exists(p)]
    if not missing:
        return None
    if len(paths) == 1 and _HUB_ID.fullmatch(expanded):
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(expanded, "config.json"), str):
            return None
    return (
        f"model.channels.{modality}.source: {', '.join(missing)} not found (see the README, "
        "'Pretrained weights', for where to get it)"
    )


def _data_problems(config: ExperimentConfig) -> list[str]:
    prepared = config.data.prepared_dir
    if not prepared:
        return [
            "no data: give --data PREPARED_DIR (a directory written by `trimodal prepare`), "
            "or --demo for the built-in demo"
        ]
    root = Path(prepared)
    if not root.is_dir():
        return [f"--data / data.prepared_dir: {prepared} is not a directory (run `trimodal prepare` first)"]  # fmt: skip
    missing = [s for s in ("train", "dev") if not (root / s).is_dir()]
    if missing:
        return [
            f"--data / data.prepared_dir: {prepared} has no {' or '.join(missing)} split; "
            "is it the output directory of `trimodal prepare`?"
        ]
    from trimodal.data.schema import read_manifest

    for split in ("train", "dev"):
        try:
            read_manifest(root / split)
        except FileNotFoundError:  # an empty split directory: the loader says so
            pass
        except ValueError as err:  # another layout: how to prepare it again
            return [f"--data / data.prepared_dir: {err}"]
    return []


def _model_problems(config: ExperimentConfig) -> list[str]:
    from trimodal.backbones import available_backbones

    model = config.model
    problems = []
    if len(set(model.modalities)) < 2:
        problems.append(f"model.modalities: needs two or three of {', '.join(MODALITIES)}, got {model.modalities}")  # fmt: skip
    for modality in dict.fromkeys(model.modalities):
        channel = model.channels.get(modality)
        key = f"model.channels.{modality}"
        if channel is None:
            problems.append(f"{key}: missing (give its backbone: --{key}.backbone NAME)")
            continue
        if channel.backbone not in available_backbones():
            problems.append(
                _unknown("backbone", f"{key}.backbone", channel.backbone, available_backbones())
            )
        elif channel.source is not None:
            problems.append(_source_problem(modality, channel.source))
    return [p for p in problems if p]


def experiment_problems(config: ExperimentConfig, check_data: bool = True) -> list[str]:
    """Everything wrong with ``config`` that can be told without building the model: the
    data directory (unless not ``check_data``: the demo prepares its own), the objective,
    the channels' backbones and weights, the selection metric, the cut-offs. Empty when
    nothing is."""
    problems = (_data_problems(config) if check_data else []) + _model_problems(config)
    objectives = list(objective_summaries())
    if config.objective not in objectives:
        problems.append(_unknown("objective", "--objective", config.objective, objectives))
    else:
        problems += objective_option_problems(config.objective, config.objective_options)
    bad_ks = [k for k in config.eval.ks if k < 1]
    if not config.eval.ks or bad_ks:
        problems.append(f"eval.ks: cut-offs must be positive integers, got {config.eval.ks}")
    else:
        problems.append(_select_metric_problem(config))
    train = config.train
    for key in ("epochs", "batch_size", "gradient_accumulation_steps", "validations_per_epoch"):
        if getattr(train, key) < 1:
            problems.append(f"train.{key}: must be at least 1, got {getattr(train, key)}")
    if train.lr <= 0:
        problems.append(f"train.lr: must be positive, got {train.lr}")
    return [p for p in problems if p]


def objective_options() -> dict[str, list[str] | None]:
    """``{objective name: the keyword options its constructor takes}`` (``None``: any),
    read from ``trimodal/objectives/`` with :mod:`ast` (a class without ``__init__`` takes
    its base's), so options are checked without importing torch."""
    import ast

    classes: dict[str, ast.ClassDef] = {}
    registered: dict[str, str] = {}
    for path in sorted(OBJECTIVES_DIR.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "register_objective":  # fmt: skip
                        registered[dec.args[0].value] = node.name

    def accepted(name: str) -> list[str] | None:
        node = classes.get(name)
        if node is None:
            return []
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                args = item.args
                if args.kwarg is not None:
                    return None
                return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs][1:]]
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        return accepted(bases[0]) if bases else []

    return {name: accepted(cls) for name, cls in sorted(registered.items())}


def objective_option_problems(name: str, options: dict[str, Any]) -> list[str]:
    """Options the objective's constructor does not take."""
    accepted = objective_options().get(name)
    if accepted is None:
        return []
    unknown = sorted(set(options) - set(accepted))
    if not unknown:
        return []
    return [
        f"objective_options: {name} does not take {', '.join(unknown)}; it takes "
        f"{', '.join(accepted) or 'no options'}"
    ]
