"""The command line of the musicnn conversion (``trimodal convert-musicnn``, also
``python -m trimodal.backbones.musicnn convert``), apart from the network's module so that
its ``--help`` needs no torch; :func:`trimodal.backbones.musicnn.convert` does the work."""

from __future__ import annotations

import argparse
from pathlib import Path

# The names of trimodal.backbones.musicnn.MUSICNN_MODELS (tests/test_cli.py checks they agree).
MODELS = ("MTT_musicnn", "MSD_musicnn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="trimodal convert-musicnn (python -m trimodal.backbones.musicnn)",
        description="Convert the pretrained musicnn TF checkpoints to safetensors.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert MTT_musicnn / MSD_musicnn (no TensorFlow)")
    conv.add_argument("--model", choices=[*MODELS, "all"], default="all", help="which model (default: all)")  # fmt: skip
    source = conv.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="a local musicnn-0.1.0 wheel (default: downloaded from PyPI)")  # fmt: skip
    source.add_argument("--sdist", type=Path, help="a local musicnn-0.1.0 sdist (no download)")
    conv.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="output directory (default: $TRIMODAL_CACHE/musicnn or ~/.cache/trimodal/musicnn)",
    )
    args = parser.parse_args(argv)
    from trimodal.backbones.musicnn import convert

    models = list(MODELS) if args.model == "all" else [args.model]
    convert(models, cache_dir=args.cache_dir, package=args.wheel or args.sdist)
    return 0
