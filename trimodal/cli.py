"""``trimodal train``: train a model on a prepared dataset, or run the embedded demo.

``trimodal train --config NAME_OR_FILE --data PREPARED [--output RUN] [--KEY VALUE ...]``;
``accelerate launch train.py ...`` is the same command under a launcher. ``trimodal train``
with no arguments, or with ``--demo``, runs the embedded demo: it generates the built-in
synthetic music-video corpus and prepares it (once, into the trimodal cache directory),
trains the tiny model presets on it and prints test retrieval for the trained model next to
the same model untrained and chance.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from trimodal.config import (
    ALIASES,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    load_config,
    merge_config_dicts,
    parse_overrides,
    read_config_file,
)
from trimodal.help import config_reference, configs_dir, resolve_config, shipped_configs

# 720 videos: 504 to train on, so that most of the 45 labels are seen often enough for text
# to learn them (with 360, text→audio stayed below 3x chance); generated once, in ~2 minutes.
DEMO_VIDEOS = 720
CONFIGS_DIR = configs_dir()
DEMO_CONFIG = CONFIGS_DIR / "demo.yaml"
DEMO_DATA_CONFIG = CONFIGS_DIR / "demo_data.yaml"

_DESCRIPTION = """\
Train a trimodal model on a prepared dataset (see `trimodal prepare`).

  trimodal train --config weighted_contrastive --data data/prepared --output runs/wc
  accelerate launch --num_processes 4 train.py --config contrastive --data data/prepared
  trimodal train --demo          (or no arguments: the built-in demo, on synthetic data)

Every config key below is an option too (--section.key VALUE, or --section.key=VALUE; lists
and mappings in YAML flow form: --eval.ks [1,5,10]). Order of precedence: the defaults, then
--config, then the options. The run directory gets config.yaml (the resolved config),
run.json (versions, git commit, launcher settings, command line), metrics.jsonl, and the
best and last models (best/, last/: weights, config.json, assets, README.md model card).
"""


class UsageError(Exception):
    """A mistake in what the user asked for: reported in a line or two, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trimodal train",
        description=_DESCRIPTION,
        epilog=config_reference(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = ", ".join(shipped_configs())
    parser.add_argument(
        "--config",
        metavar="NAME_OR_FILE",
        help=f"an experiment YAML file, or a shipped config by name: {names} (default: none)",
    )
    parser.add_argument("--demo", action="store_true", help="run the built-in demo (synthetic data, tiny models); a --config and options apply on top of its settings")  # fmt: skip
    parser.add_argument("--data", metavar="DIR", help="prepared dataset (data.prepared_dir; default: none, required unless --demo)")  # fmt: skip
    parser.add_argument("--output", metavar="DIR", help="run directory (train.output_dir; default: runs/trimodal)")  # fmt: skip
    parser.add_argument("--objective", metavar="NAME", help="training objective, listed below (default: weighted_contrastive)")  # fmt: skip
    parser.add_argument("--resume", metavar="latest|DIR", help="continue from the newest checkpoint of the run, or a checkpoint directory (train.resume; default: none)")  # fmt: skip
    parser.add_argument("--grad-cache-chunk", metavar="N", help="gradient caching in chunks of N clips, for large contrastive batches (train.grad_cache_chunk; default: off)")  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def _overrides(args: argparse.Namespace, rest: list[str]) -> dict[str, Any]:
    """The options as a nested mapping: the named ones (--data ...) and every --section.key."""
    named = []
    for option in ("objective", *ALIASES):
        value = getattr(args, option, None)
        if value is not None:
            named += [f"--{ALIASES.get(option, option)}", value]
    return parse_overrides([*named, *rest])


def _demo_file(path: Path) -> Path:
    """``path`` if it is there, else an error that says where the demo's settings live."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo's settings {path} are missing: they live in the repository's configs/ "
            "directory, shipped in the package as trimodal/configs (reinstall trimodal, or "
            "install the checkout with `pip install -e .`)"
        )
    return path


def demo_data_config() -> DataConfig:
    """Preparation of the demo corpus (``configs/demo_data.yaml``): 4-s clips, small frames,
    48-kHz audio only."""
    return load_config(_demo_file(DEMO_DATA_CONFIG)).data


def prepare_demo_data(cache_dir: Path | None = None, videos: int = DEMO_VIDEOS) -> Path:
    """Generate and prepare the synthetic demo corpus (reused when already there)."""
    import json

    from trimodal.modeling import default_cache_dir
    from trimodal.prepare import prepare
    from trimodal.prepare.synthetic import GENERATOR_VERSION, SynthOptions, generate_corpus
    from trimodal.utils import atomic_write_json

    # 8–10-s videos (two 4-s clips each) at 80×60: the demo's frames are 32², so larger
    # media would only make generation and decoding slower.
    options = SynthOptions(min_seconds=8, max_seconds=10, width=80, height=60)
    root = (cache_dir or default_cache_dir()) / "demo"
    corpus = root / "corpus"
    # What the cached corpus was generated with: anything else is regenerated, not reused.
    key = {
        "videos": videos,
        "seed": 0,
        "generator_version": GENERATOR_VERSION,
        "options": dataclasses.asdict(options),
    }
    marker = root / "corpus.json"
    current = marker.is_file() and json.loads(marker.read_text()) == key
    if not current or not (corpus / "videos.jsonl").is_file():
        print(f"generating the synthetic demo corpus ({videos} videos) in {corpus}", flush=True)
        generate_corpus(corpus, videos, seed=0, opts=options, workers=2)
        atomic_write_json(marker, key)
    prepared = root / "prepared"
    prepare(corpus, prepared, demo_data_config(), workers=2)
    return prepared


def _demo_config(argv_overrides: dict[str, Any], path: str | None) -> ExperimentConfig:
    """The demo's experiment: defaults, then ``configs/demo.yaml``, then ``path`` (a
    --config file), then the command line's overrides."""
    demo = read_config_file(_demo_file(DEMO_CONFIG))
    if path is not None:
        demo = merge_config_dicts(demo, read_config_file(path))
    return load_config(None, merge_config_dicts(demo, argv_overrides))


def _experiment(argv: list[str]) -> tuple[ExperimentConfig, bool, bool]:
    """``(config, demo, debug)`` from the command line, checked (:class:`UsageError`)."""
    from trimodal.training.checks import experiment_problems

    args, rest = _parser().parse_known_args(argv)
    demo = args.demo or not argv
    try:
        overrides = _overrides(args, rest)
        path = resolve_config(args.config) if args.config else None
        config = _demo_config(overrides, path) if demo else load_config(path, overrides)
    except (ConfigError, FileNotFoundError) as err:
        raise UsageError(str(err)) from err
    # The demo's data is generated and prepared after the checks.
    problems = experiment_problems(config, check_data=not demo)
    if problems:
        raise UsageError("\n".join(problems))
    return config, demo, args.debug


def train_main(argv: list[str] | None = None) -> int:
    """``trimodal train``'s main; returns the process exit status (2: a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trimodal").setLevel(logging.INFO)
    debug = "--debug" in argv
    try:
        config, demo, debug = _experiment(argv)
        if demo:
            config = dataclasses.replace(
                config,
                data=dataclasses.replace(config.data, prepared_dir=str(prepare_demo_data())),
            )
        return run_training(config, demo=demo)
    except UsageError as err:
        if debug:
            raise
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        print("(trimodal train --help lists the options; --debug shows the traceback)", file=sys.stderr)  # fmt: skip
        return 2


def _build(config: ExperimentConfig, demo: bool) -> tuple[Any, Path | None]:
    """The model and its trainer; a problem with the config or the weights is a
    :class:`UsageError`."""
    import torch

    from trimodal.backbones import MissingCheckpointError
    from trimodal.modeling import build_model
    from trimodal.training import Trainer

    torch.manual_seed(config.train.seed)
    try:
        model = build_model(config.model)
        untrained = None
        if demo:
            untrained = Path(config.train.output_dir) / "untrained"
            model.save_pretrained(untrained)
        return Trainer(config, model=model), untrained
    except (ConfigError, MissingCheckpointError, ValueError) as err:
        raise UsageError(str(err).splitlines()[0]) from err


def run_training(config: ExperimentConfig, demo: bool = False) -> int:
    """Train with ``config`` and print the run's summary (best metric, where the model is,
    how to evaluate it); for the demo then evaluate and print the comparison table."""
    trainer, untrained = _build(config, demo)
    trainer.fit()
    if trainer.accelerator.is_main_process:
        # The demo's output ends with its table (the README shows it), so the summary first.
        print("\n" + trainer.summary())
        if demo:
            print("\n" + demo_report(config, Path(config.train.output_dir) / "best", untrained))
    return 0


def demo_report(config: ExperimentConfig, trained: Path, untrained: Path) -> str:
    """The trained and the untrained model on the test split, and chance: the compact table
    (all results saved in the run directory, :mod:`trimodal.evaluation.demo`)."""
    from trimodal.evaluation.demo import write_demo_report

    models = {"trained": trained, "untrained": untrained}
    return write_demo_report(config.data.prepared_dir, models, config.train.output_dir)
