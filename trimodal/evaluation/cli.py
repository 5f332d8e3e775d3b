"""``python -m trimodal.evaluate``: evaluate a saved model, or ``merge`` several results.

::

    python -m trimodal.evaluate --model runs/x/best --data data/prepared --split test \\
        --tasks retrieval,probe,zero_shot,neighbours --output eval/x [--batch-size 16] \\
        [--baseline-features yt8m_features.npz] [--config experiment.yaml]
    python -m trimodal.evaluate --model runs/x/best --data data/prepared --tasks thesis_probes \\
        --output eval/x [--genre-labels genres.csv] [--top-tags 10] [--tag-threshold dev]
    python -m trimodal.evaluate merge eval/a/results.json eval/b/results.json \\
        --output comparison.md

Every setting option is generated from a field of :class:`~trimodal.config.EvalConfig`
(``--field-name``, or the field's ``flag``; help from its metadata); ``--config`` reads a
YAML experiment config whose ``eval:`` section gives the defaults the options override.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from trimodal.config import ConfigError, EvalConfig, from_dict, load_config, to_dict


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _scalar(value: str) -> Any:
    """A command-line value as YAML reads it (``0.5`` → float, ``dev`` → str); the typed
    loader then checks it against the field's type."""
    return yaml.safe_load(value) if value else value


def _converter(tp: Any) -> Callable[[str], Any]:
    """The argparse ``type`` of a field annotation: comma lists for lists, else scalars."""
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    lists = [a for a in options if typing.get_origin(a) is list]
    if lists:
        item = (typing.get_args(lists[0]) or (str,))[0]
        return _csv if item is str else lambda value: [_scalar(v) for v in _csv(value)]
    return str if str in options else _scalar


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of dataclass ``cls``; only the options given end up in the
    namespace (``argparse.SUPPRESS``), so they override the YAML/defaults."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
        default = field.default_factory() if callable(field.default_factory) else field.default
        help_text = field.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
        if hints[field.name] is bool:
            # A flag that flips the default: --no-plots, --no-backbone-baselines, --recompute.
            kwargs["action"] = "store_false" if default else "store_true"
            help_text = f"do not {help_text}" if default else help_text
        else:
            kwargs["type"] = _converter(hints[field.name])
            help_text = f"{help_text} (default: {default})"
        parser.add_argument(flag, help=help_text, **kwargs)


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trimodal evaluate",
        description="Evaluate a saved trimodal model on a prepared split "
        "(use `trimodal evaluate merge ...` to compare results).",
    )
    parser.add_argument("--model", required=True, help="directory written by save_pretrained")
    parser.add_argument("--data", required=True, help="prepared dataset root")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--config", help="YAML experiment config: its eval: section's settings")
    add_config_arguments(parser, EvalConfig)
    return parser


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` of parsed options: defaults, then ``--config``'s ``eval:``
    section, then the options given.

    Raises:
        ConfigError: a value of the wrong type; FileNotFoundError: no such config file.
    """
    base = load_config(args.config).eval if args.config else EvalConfig()
    names = [f.name for f in dataclasses.fields(EvalConfig)]
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return from_dict(EvalConfig, {**to_dict(base), **given})


def _merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trimodal evaluate merge",
        description="One comparison table (one row per run) from several results.json files.",
    )
    parser.add_argument("results", nargs="+", help="results.json files")
    parser.add_argument("--output", required=True, help="comparison markdown file")
    parser.add_argument(
        "--level",
        choices=["video", "clip"],
        default="video",
        help="compare whole-video or clip retrieval (default: video)",
    )
    return parser


def _merge_main(argv: Sequence[str]) -> int:
    from trimodal.evaluation.reports import merge_results

    args = _merge_parser().parse_args(argv)
    try:
        text = merge_results(args.results, args.output, args.level)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {args.output}")
    return 0


def _check_paths(model: str, data: str, split: str) -> None:
    """The model and data directories, before anything is loaded (FileNotFoundError)."""
    if not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(
            f"--model: {model} is not a saved model (no config.json); give a directory "
            "written by training, e.g. runs/NAME/best"
        )
    if not (Path(data) / split).is_dir():
        raise FileNotFoundError(
            f"--data: {data} has no {split} split; give the output directory of "
            "`trimodal prepare` (or choose --split)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trimodal evaluate`` (and ``python -m trimodal.evaluate``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "merge":
        return _merge_main(argv[1:])
    args = _evaluate_parser().parse_args(argv)
    try:
        config = eval_config_from_args(args)
        _check_paths(args.model, args.data, config.split)
        from trimodal.evaluation.runner import evaluate

        results = evaluate(args.model, args.data, args.output, config)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        # Settings and paths the user gave: reported, not a traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    for name, reason in results["skipped"].items():
        print(f"skipped {name}: {reason}")
    return 0
