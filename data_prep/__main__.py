"""``python -m data_prep COMMAND`` (also ``trimodal COMMAND``): the dataset-preparation
commands.

Each module in ``COMMAND_MODULES`` defines ``add_commands(subparsers)``, which adds its
sub-commands and sets ``func`` on each parser to the function that runs it. A command's
module alone is imported to run it (or show its help).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = {
    "synthetic": "data_prep.synthetic",
    "prepare": "data_prep.prepare",
    **{
        f"yt8m-{step}": "data_prep.youtube8m"
        for step in ("labels", "records", "ids", "metadata", "filter", "corpus")
    },
}


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse reports anything else)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def build_parser(command: str | None = None, prog: str = "trimodal") -> argparse.ArgumentParser:
    """The parser of ``command`` (importing only its module), or of every command."""
    parser = argparse.ArgumentParser(prog=prog, description="Dataset preparation commands.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for module_name in dict.fromkeys(modules):
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None, prog: str = "trimodal") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None, prog=prog).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main(prog="python -m data_prep"))
