"""The configuration of :class:`~trimodal.modeling.TrimodalModel`, apart from the model so
that registering it with ``AutoConfig`` needs no model code (:mod:`trimodal` registers it
when transformers' auto classes are first imported)."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from transformers import PretrainedConfig

from trimodal.backbones import get_backbone_class
from trimodal.config import ChannelConfig, ModelConfig, from_dict, to_dict
from trimodal.modalities import MODALITIES


class TrimodalConfig(PretrainedConfig):
    """Configuration of :class:`TrimodalModel` (stored as ``config.json``).

    Like transformers' ``ClapConfig`` with its ``text_config`` / ``audio_config``, the
    per-channel settings are typed sub-configs: ``config.channels["audio"].trainable_blocks``,
    ``config.channels["video"].head.hidden_sizes``. They are the experiment's own
    :class:`~trimodal.config.ChannelConfig` (one representation of a channel), resolved:
    ``options`` hold the adapter's *full* architecture settings, so the model can be rebuilt
    without the original files, and ``source`` (where the backbone weights were first loaded
    from) has ``~`` and ``$VAR`` expanded. The channels are keyed by modality rather than
    being one transformers sub-config each (``text_config`` ...) because any two or three
    may be present. In ``config.json`` each channel is a plain mapping under
    ``channels.<modality>`` with ``ChannelConfig``'s keys; ``__init__`` checks it key by key
    (missing keys take their defaults, unknown ones are refused by name).

    Args:
        modalities: present channels, a subset of ``("text", "audio", "video")`` (≥ 2).
        embed_dim: size of the shared space (300 in the study).
        channels: per modality a :class:`~trimodal.config.ChannelConfig` or its mapping
            (``{"backbone", "source", "options", "trainable_blocks",
            "gradient_checkpointing", "head"}``, as read from ``config.json``).
        logit_scale_init: initial log of the contrastive logit scale (ln(1/0.07)).
        learnable_logit_scale: whether the logit scale trains.
        logit_scale_max: clamp for the log scale (ln(100)), which prevents blow-ups.
    """

    model_type = "trimodal"

    def __init__(
        self,
        modalities: list[str] | None = None,
        embed_dim: int = 300,
        channels: Mapping[str, ChannelConfig | Mapping[str, Any]] | None = None,
        logit_scale_init: float = math.log(1 / 0.07),
        learnable_logit_scale: bool = True,
        logit_scale_max: float = math.log(100.0),
        **kwargs: Any,
    ):
        self.modalities = list(modalities) if modalities is not None else list(MODALITIES)
        self.embed_dim = embed_dim
        self.channels: dict[str, ChannelConfig] = {
            modality: _typed_channel(modality, channel)
            for modality, channel in (channels or {}).items()
        }
        self.logit_scale_init = logit_scale_init
        self.learnable_logit_scale = learnable_logit_scale
        self.logit_scale_max = logit_scale_max
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: as :class:`~transformers.PretrainedConfig`, with each channel as a
        plain mapping (what ``config.json`` holds and ``__init__`` reads back)."""
        output = super().to_dict()
        output["channels"] = {m: to_dict(channel) for m, channel in self.channels.items()}
        return output

    @classmethod
    def from_model_config(cls, model_config: ModelConfig) -> TrimodalConfig:
        """Resolve a :class:`~trimodal.config.ModelConfig` (presets applied) into a config."""
        modalities = list(dict.fromkeys(model_config.modalities))
        if len(modalities) < 2:
            raise ValueError(f"model.modalities needs at least two modalities, got {modalities}")
        channels = {}
        for modality in modalities:
            if modality not in model_config.channels:
                raise ValueError(f"model.channels has no entry for modality {modality!r}")
            channels[modality] = _resolve_channel(
                modality, model_config.channels[modality], model_config.preset
            )
        return cls(
            modalities=modalities,
            embed_dim=model_config.embed_dim,
            channels=channels,
            logit_scale_init=model_config.logit_scale_init,
            learnable_logit_scale=model_config.learnable_logit_scale,
            logit_scale_max=model_config.logit_scale_max,
        )


def _typed_channel(modality: str, channel: ChannelConfig | Mapping[str, Any]) -> ChannelConfig:
    """A channel as its typed config; a mapping (from ``config.json``) is checked key by key,
    missing keys taking their defaults."""
    if isinstance(channel, ChannelConfig):
        return channel
    return from_dict(ChannelConfig, dict(channel), prefix=f"channels.{modality}")


def _resolve_channel(modality: str, channel: ChannelConfig, preset: str) -> ChannelConfig:
    """The experiment's channel with its source expanded and its backbone options complete
    (preset, then the checkpoint's recorded architecture, then the explicit options)."""
    source = channel.source
    if source is not None:  # "~/..." and "$VAR/..." work in YAML configs
        source = os.path.expandvars(os.path.expanduser(source))
    backbone_cls = get_backbone_class(channel.backbone)
    if backbone_cls.modality != modality:
        raise ValueError(
            f"model.channels.{modality}.backbone={channel.backbone!r} is a "
            f"{backbone_cls.modality} backbone"
        )
    options = backbone_cls.resolve_options(channel.options, preset, source)
    # A copy: the model's config must not change when the experiment's config is edited.
    return dataclasses.replace(
        copy.deepcopy(channel), source=source, options=dataclasses.asdict(options)
    )
