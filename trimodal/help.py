"""Command-line help generated from the code, so that it cannot drift: the config sections
and keys with their types, defaults and help (from the dataclasses of :mod:`trimodal.config`), the
objectives and backbones (from their registries' source), and the shipped configs.

Nothing here imports torch, so ``trimodal train --help`` answers in well under a second.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
import typing
from pathlib import Path
from typing import Any

from trimodal.config import (
    ChannelConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    HeadConfig,
    ModelConfig,
    TrainConfig,
    _type_name,
)
from trimodal.utils import plain_text

_WIDTH = 100


def configs_dir() -> Path:
    """The study's configs: ``trimodal/configs`` in an installed wheel, the repository's
    top-level ``configs/`` in a checkout (and an editable install)."""
    package = Path(__file__).resolve().parent
    shipped = package / "configs"
    return shipped if shipped.is_dir() else package.parent / "configs"


def shipped_configs() -> list[str]:
    """Names ``--config`` accepts besides a path: ``weighted_contrastive``,
    ``thesis/baseline``, ... (the experiment configs: VM-NET's has its own command)."""
    import yaml

    root = configs_dir()
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    names = []
    for path in sorted(root.rglob("*.yaml")):
        if set(yaml.safe_load(path.read_text()) or {}) <= fields:
            names.append(str(path.relative_to(root).with_suffix("")))
    return names


def resolve_config(name_or_path: str) -> str:
    """A config file's path: ``name_or_path`` itself when it is a file, else the shipped
    config of that name (``weighted_contrastive``, ``thesis/baseline.yaml``).

    Raises:
        FileNotFoundError: neither; the message lists the shipped names.
    """
    if Path(name_or_path).is_file():
        return name_or_path
    name = name_or_path.removesuffix(".yaml")
    shipped = configs_dir() / f"{name}.yaml"
    if shipped.is_file():
        return str(shipped)
    raise FileNotFoundError(
        f"--config: {name_or_path} is neither a file nor a shipped config; shipped: "
        f"{', '.join(shipped_configs())}"
    )


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _value(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if not isinstance(value, str) else value


def _field_lines(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = _default(field)
        line = f"  --{prefix}{field.name} {_type_name(hints[field.name])}"
        line += f" (default: {_value(default)})" if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING else " (required)"  # fmt: skip
        lines.append(line)
        lines += _wrapped(field.metadata.get("help", ""), indent="      ")
    return lines


def _summary(cls: type) -> str:
    return plain_text((cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))


def _wrapped(text: str, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent)


def _named(title: str, entries: dict[str, str]) -> list[str]:
    width = max(len(n) for n in entries)
    lines = [title]
    for name, text in entries.items():
        first = f"  {name:<{width}}  "
        wrapped = textwrap.wrap(plain_text(text), _WIDTH - len(first)) or [""]
        lines.append(first + wrapped[0])
        lines += [" " * len(first) + w for w in wrapped[1:]]
    return lines


def config_reference() -> str:
    """The help's reference part: every config key with type and default, by section; the
    objectives; the backbones; the shipped configs."""
    from trimodal.backbones import backbone_summaries
    from trimodal.training.checks import objective_summaries

    channels = ModelConfig().channels
    sections = [
        ("experiment", ExperimentConfig, "", ("model", "data", "train", "eval")),
        ("model", ModelConfig, "model.", ("channels",)),
        (
            "model.channels.MODALITY (text, audio, video)",
            ChannelConfig,
            "model.channels.MODALITY.",
            ("head",),
        ),  # fmt: skip
        ("model.channels.MODALITY.head", HeadConfig, "model.channels.MODALITY.head.", ()),
        ("data", DataConfig, "data.", ()),
        ("train", TrainConfig, "train.", ()),
        ("eval", EvalConfig, "eval.", ()),
    ]
    lines = ["config keys (--KEY VALUE):"]
    for title, cls, prefix, skip in sections:
        lines += ["", f"{title}:", *_wrapped(_summary(cls)), *_field_lines(cls, prefix, skip)]
        if cls is ChannelConfig:
            defaults = ", ".join(f"{m}: {c.backbone}" for m, c in channels.items())
            lines.append(f"  default backbones: {defaults}")
    lines += ["", *_named("objectives (--objective NAME):", objective_summaries())]
    backbones = backbone_summaries()
    lines += ["", *_named("backbones (--model.channels.MODALITY.backbone NAME):", backbones)]
    lines += ["", "shipped configs (--config NAME):", *_wrapped(", ".join(shipped_configs()))]
    return "\n".join(lines)
