"""``trimodal train --help``: every config key reachable from the experiment config has its
type, default and a line of help (the field's metadata, :mod:`trimodal.config`)."""

from __future__ import annotations

import dataclasses
import typing

from trimodal.config import ChannelConfig, ExperimentConfig, ModelConfig
from trimodal.help import config_reference


def _keys(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every (dotted key, field) of ``cls`` and the dataclasses it nests, with the help's
    ``MODALITY`` standing for a channel's name."""
    hints = typing.get_type_hints(cls)
    keys = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        keys.append((key, field))
        if dataclasses.is_dataclass(hints[field.name]):
            keys += _keys(hints[field.name], f"{key}.")
    if cls is ModelConfig:
        keys += _keys(ChannelConfig, f"{prefix}channels.MODALITY.")
    return keys


def _help_of(lines: list[str], key: str) -> str:
    """The help text under ``--KEY``'s line in the reference (its indented lines)."""
    (start,) = [i for i, line in enumerate(lines) if line.startswith(f"  --{key} ")]
    text = []
    for line in lines[start + 1 :]:
        if not line.startswith("      "):
            break
        text.append(line.strip())
    return " ".join(text)


def test_every_config_key_has_a_plain_help_line():
    lines = config_reference().splitlines()
    sections = {"model", "data", "train", "eval", "channels", "head"}
    keys = [(k, f) for k, f in _keys(ExperimentConfig) if f.name not in sections]
    walked = {k for k, _ in keys}
    assert {"objective", "model.channels.MODALITY.head.dropout", "eval.top_tags"} <= walked
    for key, field in keys:
        text = _help_of(lines, key)
        assert text, f"--{key} has no help"
        assert text == " ".join(field.metadata["help"].split())
        assert "``" not in text and ":class:" not in text, key
