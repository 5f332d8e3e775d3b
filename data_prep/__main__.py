"""``python -m data_prep COMMAND``: every dataset-preparation command behind one entry point.

Each module in ``COMMAND_MODULES`` defines ``add_commands(subparsers)``, which adds its
sub-commands and sets ``func`` on each parser to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("data_prep.synthetic", "data_prep.prepare", "data_prep.youtube8m")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
