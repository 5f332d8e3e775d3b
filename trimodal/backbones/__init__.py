"""Backbone adapters, one file each, found by name.

Adapters are imported lazily so that ``import trimodal`` stays fast and never imports
laion-clap, transformers' model code or torchvision.
"""

from __future__ import annotations

import importlib

from trimodal.backbones.base import Backbone, MissingCheckpointError

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


__all__ = [
    "Backbone",
    "MissingCheckpointError",
    "available_backbones",
    "get_backbone_class",
]
