"""The ``trimodal`` command: one entry point with a subcommand for every job.

``trimodal COMMAND [OPTIONS]`` (also ``python -m trimodal COMMAND``); ``trimodal COMMAND --help``
describes one command. The subcommands are a table (:data:`COMMANDS`): a name, the function
that runs it as ``"module:function"`` and one line of help. A command's module is imported
only when that command runs, so ``trimodal --help`` and each command's ``--help`` answer
quickly; adding a command is one line in the table. Every function takes the command's
arguments (``argv``, the words after its name) and returns the exit status.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple


class Command(NamedTuple):
    """One subcommand: ``target`` (``"module:function"``) is called as
    ``function([*args, *argv])`` and returns the exit status."""

    name: str
    target: str
    help: str
    args: tuple[str, ...] = ()


_DATA_PREP = "data_prep.__main__:main"

COMMANDS: tuple[Command, ...] = (
    Command("train", "trimodal.cli:train_main", "train a model (--demo: the built-in demo)"),
    Command("evaluate", "trimodal.evaluation.cli:main", "evaluate a saved model; `evaluate merge` compares runs"),
    Command("synthetic", _DATA_PREP, "write the built-in synthetic music-video corpus", ("synthetic",)),
    Command("prepare", _DATA_PREP, "turn a raw corpus into clip datasets for training", ("prepare",)),
    Command("yt8m-labels", _DATA_PREP, "YouTube-8M step 1: choose the labels", ("yt8m-labels",)),
    Command("yt8m-records", _DATA_PREP, "YouTube-8M step 2: keep the videos with those labels", ("yt8m-records",)),
    Command("yt8m-ids", _DATA_PREP, "YouTube-8M step 3: map pseudo ids to YouTube ids", ("yt8m-ids",)),
    Command("yt8m-metadata", _DATA_PREP, "YouTube-8M step 4: fetch video metadata (YouTube Data API)", ("yt8m-metadata",)),
    Command("yt8m-filter", _DATA_PREP, "YouTube-8M step 5: quality filters and age splits", ("yt8m-filter",)),
    Command("yt8m-corpus", _DATA_PREP, "YouTube-8M step 6: write the raw corpus for downloaded media", ("yt8m-corpus",)),
    Command("embed", "trimodal.search.cli:main_embed", "embed media files, a corpus, a prepared split or texts"),
    Command("index", "trimodal.search.cli:main_index", "build a vector index per modality from embed's output"),
    Command("search", "trimodal.search.cli:main_search", "query an index by text, audio, video or --like ID"),
    Command("serve", "trimodal.search.cli:main_serve", "serve the local search page (127.0.0.1)"),
    Command("vmnet", "trimodal.vmnet.__main__:main", "the VM-NET baseline: features, train, evaluate"),
    Command("convert-musicnn", "trimodal.backbones.musicnn_cli:main", "convert the pretrained musicnn weights (downloads ~30 MB)", ("convert",)),
)  # fmt: skip

_HELP_FLAGS = ("-h", "--help")


def usage(commands: Sequence[Command] = COMMANDS) -> str:
    """The top-level help: the commands and one line each."""
    width = max(len(c.name) for c in commands)
    lines = [
        "usage: trimodal COMMAND [OPTIONS]    (trimodal COMMAND --help: its options)",
        "",
        "Train, evaluate and prepare data for trimodal models (text, audio, video).",
        "",
        "commands:",
        *(f"  {c.name:<{width}}  {c.help}" for c in commands),
        "",
        "options:",
        f"  {'--version':<{width}}  print the version and exit",
    ]
    return "\n".join(lines)


def resolve(command: Command) -> Callable[[list[str]], int]:
    """Import the command's module and return its function."""
    module_name, function_name = command.target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv: Sequence[str] | None = None, commands: Sequence[Command] = COMMANDS) -> int:
    """Run ``trimodal COMMAND ...``; returns the exit status (2 for a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in _HELP_FLAGS:
        print(usage(commands))
        return 0 if argv else 2
    if argv[0] == "--version":
        from trimodal import __version__

        print(f"trimodal {__version__}")
        return 0
    by_name = {c.name: c for c in commands}
    command = by_name.get(argv[0])
    if command is None:
        import difflib

        close = difflib.get_close_matches(argv[0], list(by_name), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(
            f"trimodal: unknown command {argv[0]!r}{hint}; run `trimodal --help` for the list",
            file=sys.stderr,
        )
        return 2
    return int(resolve(command)([*command.args, *argv[1:]]) or 0)
