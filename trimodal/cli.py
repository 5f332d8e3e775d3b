"""Command-line entry of ``train.py`` and the embedded demo.

``accelerate launch train.py [--config FILE] [--objective NAME] [--data DIR] [--output DIR]
[--resume latest] [--grad-cache-chunk N] [--section.key VALUE ...]``

Without ``--data`` (and no ``data.prepared_dir`` in the config) this runs the **embedded
demo**: it generates the built-in synthetic music-video corpus and prepares it (once, into
the trimodal cache directory), trains the tiny model presets on it and prints test retrieval
for the trained model next to the same model untrained and chance.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from trimodal.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    load_config,
    merge_config_dicts,
    parse_overrides,
    read_config_file,
)

DEMO_VIDEOS = 360
# The demo's settings ship beside the package in the repository's configs/ (an editable
# install, `pip install -e .`, keeps them there).
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
DEMO_CONFIG = CONFIGS_DIR / "demo.yaml"
DEMO_DATA_CONFIG = CONFIGS_DIR / "demo_data.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML experiment config (configs/*.yaml)")
    parser.epilog = (
        "Other options: --objective NAME, --data DIR, --output DIR, --resume latest, "
        "--grad-cache-chunk N, or any config key as --section.key VALUE."
    )
    return parser


def _demo_file(path: Path) -> Path:
    """``path`` if it is there, else an error that says where the demo's settings live."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo's settings {path} are missing: they live in the repository's configs/ "
            "directory, next to the trimodal package (install the checkout with `pip install -e .`)"
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
    """The demo's experiment: defaults, then ``path`` (a --config file), then
    ``configs/demo.yaml``, then the command line's overrides."""
    demo = read_config_file(_demo_file(DEMO_CONFIG))
    return load_config(path, merge_config_dicts(demo, argv_overrides))


def train_main(argv: list[str] | None = None) -> int:
    """``train.py``'s main; returns the process exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trimodal").setLevel(logging.INFO)
    args, rest = _parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        config = load_config(args.config, overrides)
        demo = not config.data.prepared_dir
        if demo:
            config = _demo_config(overrides, args.config)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if demo:
        config = dataclasses.replace(
            config,
            data=dataclasses.replace(config.data, prepared_dir=str(prepare_demo_data())),
        )
    return run_training(config, demo=demo)


def run_training(config: ExperimentConfig, demo: bool = False) -> int:
    """Train with ``config``; for the demo also evaluate and print the comparison table."""
    import torch

    from trimodal.modeling import build_model
    from trimodal.training import Trainer

    torch.manual_seed(config.train.seed)
    model = build_model(config.model)
    untrained = None
    if demo:
        untrained = Path(config.train.output_dir) / "untrained"
        model.save_pretrained(untrained)
    trainer = Trainer(config, model=model)
    trainer.fit()
    if demo and trainer.accelerator.is_main_process:
        print("\n" + demo_report(config, Path(config.train.output_dir) / "best", untrained))
    return 0


def demo_report(config: ExperimentConfig, trained: Path, untrained: Path) -> str:
    """The trained and the untrained model on the test split, and chance: the compact table
    (all results saved in the run directory, :mod:`trimodal.evaluation.demo`)."""
    from trimodal.evaluation.demo import write_demo_report

    models = {"trained": trained, "untrained": untrained}
    return write_demo_report(config.data.prepared_dir, models, config.train.output_dir)
