"""Backbone adapters, one file each, found by name.

Adapters are imported lazily so that ``import trimodal`` stays fast and never imports
laion-clap, transformers' model code or torchvision; so is the base class (and with it
torch), so that the names of the registry are known without torch (command-line help).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trimodal.backbones.base import Backbone

# name -> "module:ClassName"
_BACKBONES: dict[str, str] = {
    "bpemb": "trimodal.backbones.bpemb:BPEmbBackbone",
    "clap_htsat": "trimodal.backbones.clap:ClapHTSATBackbone",
    "musicnn": "trimodal.backbones.musicnn:MusicnnBackbone",
    "r2plus1d": "trimodal.backbones.r2plus1d:R2Plus1DBackbone",
    "videomae": "trimodal.backbones.videomae:VideoMAEBackbone",
}


def available_backbones() -> list[str]:
    """Names accepted by ``ChannelConfig.backbone``."""
    return sorted(_BACKBONES)


def get_backbone_class(name: str) -> type[Backbone]:
    """The adapter class registered under ``name``."""
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    module_name, class_name = _BACKBONES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def __getattr__(name: str) -> Any:
    if name in ("Backbone", "MissingCheckpointError"):
        return getattr(importlib.import_module("trimodal.backbones.base"), name)
    raise AttributeError(f"module 'trimodal.backbones' has no attribute {name!r}")


def backbone_summaries() -> dict[str, str]:
    """``{name: first line of the adapter's docstring}``, read from the source files without
    importing them (so without torch): what ``trimodal train --help`` lists."""
    from trimodal.utils import class_summaries

    return {
        name: class_summaries(_module_file(spec.split(":")[0])).get(spec.split(":")[1], "")
        for name, spec in sorted(_BACKBONES.items())
    }


def _module_file(module_name: str) -> str:
    from pathlib import Path

    return str(Path(__file__).parent / (module_name.rsplit(".", 1)[1] + ".py"))


__all__ = [
    "Backbone",
    "MissingCheckpointError",
    "available_backbones",
    "get_backbone_class",
]
