"""Every option of every ``trimodal`` command (``train`` aside: its help is generated from
the config dataclasses and tested in ``tests/test_cli.py``) has a line of help, and every
option with a default shows it in ``--help``."""

from __future__ import annotations

import argparse

import pytest

from trimodal.commands import COMMANDS, resolve

# (command name, words before --help): each command, plus `evaluate merge`, which is its own parser.
CASES = [(c.name, c.args) for c in COMMANDS if c.name != "train"]
CASES.append(("evaluate", ("merge",)))
_FLAGS = (
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._SubParsersAction,
)


class _Captured(SystemExit):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(0)
        self.parser = parser


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and, depth first, every parser below it (sub-commands)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


def _captured(monkeypatch: pytest.MonkeyPatch, name: str, words: tuple[str, ...]):
    """The parsers the command builds to answer ``--help``."""

    def record(self: argparse.ArgumentParser, file=None) -> None:
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "print_help", record)
    command = next(c for c in COMMANDS if c.name == name)
    with pytest.raises(_Captured) as caught:
        resolve(command)([*command.args, *words[len(command.args) :], "--help"])
    return _parsers(caught.value.parser)


def _shown_forms(default: object) -> list[str]:
    """How a default may read in the help, after ``default: ``: ``30.0`` also as ``30``,
    lists joined or not."""
    if isinstance(default, float):
        forms = [str(default), f"{default:g}"]
    elif isinstance(default, (list, tuple)):
        items = [str(v) for v in default]
        forms = [str(default), " ".join(items), ", ".join(items), ",".join(items)]
    else:
        forms = [str(default)]
    return [f"default: {form}" for form in forms]


def _has_default(action: argparse.Action) -> bool:
    if isinstance(action, _FLAGS) or action.default is argparse.SUPPRESS:
        return False
    # Identity, not ==: a default of 0 is a value to show, unlike False.
    empty = isinstance(action.default, (list, tuple)) and not action.default
    return not (action.default is None or action.default is False or empty)


@pytest.mark.parametrize(("name", "words"), CASES, ids=[" ".join((n, *w)) for n, w in CASES])
def test_every_option_has_help_and_shows_its_default(monkeypatch, name, words):
    parsers = _captured(monkeypatch, name, words)
    problems = []
    for parser in parsers:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            text = formatter._expand_help(action) if action.help else ""
            if not text.strip():
                problems.append(f"{label}: no help")
            elif _has_default(action) and not any(f in text for f in _shown_forms(action.default)):
                problems.append(f"{label}: help {text!r} does not show the default {action.default!r}")  # fmt: skip
    assert not problems, "\n".join(problems)


def test_every_sub_command_is_reached(monkeypatch):
    """The capture reaches below a command's top parser (vmnet's features/train/evaluate)."""
    progs = {p.prog for p in _captured(monkeypatch, "vmnet", ())}
    assert {"trimodal vmnet features", "trimodal vmnet train", "trimodal vmnet evaluate"} <= progs
