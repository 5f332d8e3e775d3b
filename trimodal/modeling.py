"""The trimodal model: one channel per modality into one shared, L2-normalised space.

Each channel is *backbone adapter → projection head*; channels are keyed by modality
(``text``, ``audio``, ``video``), and any two or all three may be present. The model is a
``PreTrainedModel``: ``save_pretrained`` writes safetensors weights, ``config.json`` and
each channel's non-tensor assets (e.g. the BPEmb tokenizer) into ``<dir>/<modality>/``;
``from_pretrained`` reads them back, offline.

Typical use::

    from trimodal import TrimodalModel, build_model
    from trimodal.config import ModelConfig

    model = build_model(ModelConfig(preset="tiny"))      # or from local checkpoints
    out = model(text=["Music video", "Drummer"], audio=waves, video=frames)
    out.audio_embeds  # [B, embed_dim], unit norm
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from trimodal.backbones import Backbone, get_backbone_class
from trimodal.backbones.base import default_cache_dir, parameter_dtype
from trimodal.config import ChannelConfig, HeadConfig, ModelConfig, from_dict, to_dict
from trimodal.data.schema import stable_int
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


@dataclasses.dataclass
class TrimodalOutput(ModelOutput):
    """Output of :meth:`TrimodalModel.forward`: unit-norm embeddings ``[B, embed_dim]`` of
    the modalities that were given (others are ``None``) and the clamped log logit scale."""

    text_embeds: torch.Tensor | None = None
    audio_embeds: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None

    @property
    def embeddings(self) -> dict[str, torch.Tensor]:
        """``{modality: [B, embed_dim]}`` for the modalities present."""
        return {
            m: getattr(self, f"{m}_embeds")
            for m in MODALITIES
            if getattr(self, f"{m}_embeds") is not None
        }


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class ProjectionHead(nn.Sequential):
    """MLP from backbone features ``[B, in_dim]`` to the shared space ``[B, out_dim]``.

    ``hidden_sizes=[]`` is one Linear; otherwise Linear → activation → dropout per hidden
    size, then the output Linear, optionally followed by a sigmoid (the thesis's heads).
    ``kind="identity"``: no layers (features pass through unchanged).
    """

    def __init__(self, in_dim: int, out_dim: int, head: HeadConfig):
        if head.kind == "identity":
            if in_dim != out_dim:
                raise ValueError(
                    f"an identity head needs embed_dim equal to the backbone's output size "
                    f"({in_dim}), got embed_dim={out_dim}"
                )
            super().__init__()
            return
        layers: list[nn.Module] = []
        if head.input_norm == "batch":
            layers.append(nn.BatchNorm1d(in_dim))
        width = in_dim
        for hidden in head.hidden_sizes:
            layers += [
                nn.Linear(width, hidden),
                _ACTIVATIONS[head.activation](),
                nn.Dropout(head.dropout),
            ]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        if head.output_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        super().__init__(*layers)


class TrimodalModel(PreTrainedModel):
    """Text, audio and video channels projected into one L2-normalised space."""

    config_class = TrimodalConfig
    base_model_prefix = "trimodal"
    main_input_name = "audio"
    # Through the channels whose backbone supports it (gradient_checkpointing_enable); a
    # saved model starts with each channel's ChannelConfig.gradient_checkpointing.
    supports_gradient_checkpointing = True

    def __init__(self, config: TrimodalConfig):
        super().__init__(config)
        self.backbones = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for modality in config.modalities:
            channel = config.channels[modality]
            backbone_cls = get_backbone_class(channel.backbone)
            options = from_dict(
                backbone_cls.Options, channel.options, prefix=f"channels.{modality}.options"
            )
            backbone = backbone_cls(options)
            if channel.gradient_checkpointing:
                backbone.set_gradient_checkpointing(True)
            self.backbones[modality] = backbone
            self.heads[modality] = ProjectionHead(
                backbone.output_dim, config.embed_dim, channel.head
            )
        self.logit_scale = nn.Parameter(
            torch.tensor(float(config.logit_scale_init)),
            requires_grad=config.learnable_logit_scale,
        )
        self.apply_trainability()
        self.post_init()

    def apply_trainability(self) -> None:
        """Set ``requires_grad`` from the config: each channel's ``trainable_blocks`` (heads
        always train) and ``learnable_logit_scale``."""
        for modality, backbone in self.backbones.items():
            backbone.set_trainable(self.config.channels[modality].trainable_blocks)
        self.heads.requires_grad_(True)
        self.logit_scale.requires_grad_(self.config.learnable_logit_scale)

    def _init_weights(self, module: nn.Module) -> None:
        # Every sub-module initialises itself when built (and backbones then load their
        # pretrained weights); nothing to re-initialise here. The logit scale is a leaf
        # parameter of this class, so (re)set it here for loaders that init lazily.
        if module is self:
            with torch.no_grad():
                self.logit_scale.fill_(float(self.config.logit_scale_init))

    # ------------------------------------------------------------------ encoding

    @property
    def modalities(self) -> list[str]:
        return list(self.config.modalities)

    def get_logit_scale(self) -> torch.Tensor:
        """The log logit scale, clamped to ``logit_scale_max`` (ln 100)."""
        return self.logit_scale.clamp(max=self.config.logit_scale_max)

    def backbone_features(self, modality: str, inputs: Any) -> torch.Tensor:
        """Raw inputs → backbone features ``[B, backbone.output_dim]`` (before the head)."""
        if modality not in self.backbones:
            raise ValueError(f"this model has no {modality} channel (it has {self.modalities})")
        return self.backbones[modality](inputs)

    def project(self, modality: str, features: torch.Tensor) -> torch.Tensor:
        """Backbone features ``[B, F]`` → unit-norm shared-space embeddings ``[B, embed_dim]``.

        The head runs in its parameters' dtype (cached float32 features are cast to it);
        the embeddings are float32 whatever the model's dtype, so the normalisation and
        everything after it — losses, retrieval — run in full precision.
        """
        head = self.heads[modality]
        return F.normalize(head(features.to(parameter_dtype(head))).float(), dim=-1)

    def encode(self, modality: str, inputs: Any) -> torch.Tensor:
        """Raw inputs of one modality → unit-norm embeddings ``[B, embed_dim]``."""
        return self.project(modality, self.backbone_features(modality, inputs))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` of length B → ``[B, embed_dim]``."""
        return self.encode("text", texts)

    def text_keys(self, texts: list[str]) -> torch.Tensor:
        """``[B]`` int64 identity of each text as the text channel reads it: a stable 63-bit
        hash of the channel's normalised string (:meth:`Backbone.normalize_text`; BPEmb: lower
        case, digits → 0, whitespace collapsed), the same on every process and machine.
        Equal keys mark repeated texts, positives of each other in the objectives
        (:class:`trimodal.objectives.PairwiseObjective`)."""
        if "text" not in self.backbones:
            raise ValueError(f"this model has no text channel (it has {self.modalities})")
        normalize = self.backbones["text"].normalize_text
        mask = (1 << 63) - 1  # int64 holds 63 bits and a sign
        return torch.tensor(
            [stable_int("text", normalize(t)) & mask for t in texts], dtype=torch.int64
        )

    def encode_audio(self, waveforms: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Mono waveforms at the channel's rate, ``[B, S]`` or B tensors ``[S_i]`` →
        ``[B, embed_dim]``."""
        return self.encode("audio", waveforms)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, T, 3, H, W]`` (uint8 or float in [0, 1]) → ``[B, embed_dim]``."""
        return self.encode("video", frames)

    def forward(
        self,
        text: list[str] | None = None,
        audio: torch.Tensor | list[torch.Tensor] | None = None,
        video: torch.Tensor | None = None,
        features: dict[str, torch.Tensor] | None = None,
        return_dict: bool = True,
    ) -> TrimodalOutput | tuple:
        """Embed whichever modalities are given; see :class:`TrimodalOutput`.

        ``features`` maps a modality to precomputed backbone features ``[B, F]`` (the
        feature cache of frozen backbones): those skip the backbone and only run the head.
        """
        inputs = {"text": text, "audio": audio, "video": video}
        for modality, feats in (features or {}).items():
            if inputs.get(modality) is not None:
                raise ValueError(f"give {modality} either as raw inputs or as features, not both")
            inputs[modality] = feats
        embeds = {}
        for modality in MODALITIES:  # a fixed order: the RNG draws of dropout depend on it
            if inputs[modality] is None:
                continue
            if features is not None and modality in features:
                embeds[f"{modality}_embeds"] = self.project(modality, inputs[modality])
            else:
                embeds[f"{modality}_embeds"] = self.encode(modality, inputs[modality])
        if not embeds:
            raise ValueError("forward needs at least one of text=, audio=, video= or features=")
        output = TrimodalOutput(**embeds, logit_scale=self.get_logit_scale())
        return output if return_dict else output.to_tuple()

    def train(self, mode: bool = True) -> TrimodalModel:
        """Training mode, except that frozen backbones stay in eval mode: a frozen network
        is a fixed feature extractor (no dropout, no batch-norm updates), which is also what
        makes its features cacheable."""
        super().train(mode)
        if mode:
            for modality in self.frozen_modalities():
                self.backbones[modality].eval()
        return self

    def frozen_modalities(self) -> list[str]:
        """Modalities whose backbone has no trainable parameter."""
        return [
            m
            for m, backbone in self.backbones.items()
            if not any(p.requires_grad for p in backbone.parameters())
        ]

    # ------------------------------------------------------------------ checkpointing

    def checkpointable_modalities(self) -> list[str]:
        """Channels whose backbone supports activation checkpointing (VideoMAE, CLAP-HTSAT,
        R(2+1)D; not BPEmb, a table lookup, nor musicnn)."""
        return [m for m, b in self.backbones.items() if b.supports_gradient_checkpointing]

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Turn activation checkpointing on in every channel that supports it (see
        :meth:`checkpointable_modalities`); the others are left as they are. Each channel
        checkpoints every block, non-reentrant; other settings are refused, not ignored.
        A runtime switch like transformers': the config's per-channel
        ``gradient_checkpointing`` (what a loaded model starts with) is unchanged."""
        _refuse_checkpointing_settings(gradient_checkpointing_kwargs, **kwargs)
        for modality in self.checkpointable_modalities():
            self.backbones[modality].set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        """Turn activation checkpointing off in every channel that supports it."""
        for modality in self.checkpointable_modalities():
            self.backbones[modality].set_gradient_checkpointing(False)

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """transformers' newer name of :meth:`gradient_checkpointing_enable`."""
        self.gradient_checkpointing_enable(activation_checkpointing_kwargs, **kwargs)

    def activation_checkpointing_disable(self) -> None:
        """transformers' newer name of :meth:`gradient_checkpointing_disable`."""
        self.gradient_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether any channel checkpoints its activations."""
        return any(b.gradient_checkpointing for b in self.backbones.values())

    @property
    def is_activation_checkpointing(self) -> bool:
        return self.is_gradient_checkpointing

    # ------------------------------------------------------------------ persistence

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save weights (safetensors), config and each channel's assets."""
        super().save_pretrained(save_directory, **kwargs)
        for modality, backbone in self.backbones.items():
            backbone.save_assets(Path(save_directory) / modality)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """Load a model saved with :meth:`save_pretrained` from a local directory.

        ``dtype=torch.bfloat16`` (or ``torch.float16``; transformers' keyword) loads the
        weights in that precision for inference: every backbone keeps its preprocessing in
        float32 and casts to it, and the embeddings come back in float32.
        """
        kwargs.setdefault("local_files_only", True)
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        for modality, backbone in model.backbones.items():
            backbone.load_assets(Path(pretrained_model_name_or_path) / modality)
        # Loading replaces parameters, which resets their requires_grad flags.
        model.apply_trainability()
        model.eval()
        return model


def _refuse_checkpointing_settings(
    checkpoint_kwargs: dict[str, Any] | None, every_n_layers: int = 1, offload: bool = False
) -> None:
    """The channels checkpoint every block, non-reentrant, on the device: refuse anything
    else transformers' ``activation_checkpointing_enable`` could be asked for."""
    extra = {
        k: v for k, v in (checkpoint_kwargs or {}).items() if (k, v) != ("use_reentrant", False)
    }
    if extra or every_n_layers != 1 or offload:
        raise ValueError(
            "TrimodalModel checkpoints every block of each channel, non-reentrant; got "
            f"checkpoint options {extra}, every_n_layers={every_n_layers}, offload={offload}"
        )


def build_model(model_config: ModelConfig) -> TrimodalModel:
    """Build a model from a :class:`ModelConfig`, loading each channel's ``source`` weights.

    With the ``tiny`` preset and no text source, a tiny BPEmb pair is generated in
    :func:`default_cache_dir`. Any other channel without a source keeps random weights.
    """
    config = TrimodalConfig.from_model_config(model_config)
    model = TrimodalModel(config)
    for modality, backbone in model.backbones.items():
        source = config.channels[modality].source
        if source is None and modality == "text" and model_config.preset == "tiny":
            from trimodal.backbones.tiny import make_tiny_bpemb

            options = backbone.options
            source = str(
                make_tiny_bpemb(default_cache_dir() / "tiny_bpemb", options.vocab_size, options.dim)
            )
        if source is not None:
            backbone.load_pretrained(source)
        elif modality == "text":
            raise ValueError(
                "the text channel needs BPEmb files: set model.channels.text.source to a "
                "BPEmb cache directory (see the README, 'Pretrained weights')"
            )
    return model


AutoConfig.register("trimodal", TrimodalConfig)
AutoModel.register(TrimodalConfig, TrimodalModel)

__all__ = [
    "Backbone",
    "ProjectionHead",
    "TrimodalConfig",
    "TrimodalModel",
    "TrimodalOutput",
    "build_model",
    "default_cache_dir",
]
