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

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from trimodal.backbones import Backbone, get_backbone_class
from trimodal.backbones.base import default_cache_dir, parameter_dtype
from trimodal.config import HeadConfig, ModelConfig, from_dict
from trimodal.configuration import TrimodalConfig
from trimodal.modalities import MODALITIES, model_input
from trimodal.model_card import read_training_record, write_model_card


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

    #: Run frozen backbones under ``torch.no_grad`` (``train.frozen_no_grad``). Not
    #: ``inference_mode``: its tensors cannot be saved for the trainable head's backward.
    frozen_no_grad: bool = True

    def backbone_features(self, modality: str, inputs: Any) -> torch.Tensor:
        """Raw inputs → backbone features ``[B, backbone.output_dim]`` (before the head).

        Inputs may come in their stored types (int16 waveforms, uint8 frames: the loader's
        batches); :func:`~trimodal.modalities.model_input` makes them float where they are.
        """
        if modality not in self.backbones:
            raise ValueError(f"this model has no {modality} channel (it has {self.modalities})")
        backbone, inputs = self.backbones[modality], model_input(inputs)
        if self.frozen_no_grad and not any(p.requires_grad for p in backbone.parameters()):
            with torch.no_grad():
                return backbone(inputs)
        return backbone(inputs)

    def set_attn_implementation(self, implementation: str) -> list[str]:
        """Use attention kernel ``implementation`` (``"sdpa"`` or ``"eager"``) in every
        channel that offers a choice (VideoMAE; CLAP-HTSAT's windowed attention has only
        eager); returns those channels. Same results within float tolerance, other speed."""
        return [m for m, b in self.backbones.items() if b.set_attn_implementation(implementation)]

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
        # Imported here: the schema module imports pyarrow, which the model itself never needs
        # (the laion-clap parity environment, for one, cannot import it).
        from trimodal.data.schema import stable_int

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

    #: How the model was trained (``training.json``; set by the trainer, read back by
    #: :meth:`from_pretrained`); ``None`` for a model built outside a training run.
    training_record: dict[str, Any] | None = None

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save weights (safetensors), config, each channel's assets and the model card
        (``README.md``, with ``training.json`` when the model has a training record).

        ``push_to_hub=True`` (transformers' keyword) then uploads the directory with
        :meth:`push_to_hub`, ``repo_id`` defaulting to the directory's name.
        """
        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {k: kwargs.pop(k) for k in _PUSH_OPTIONS if k in kwargs}
        super().save_pretrained(save_directory, **kwargs)
        directory = Path(save_directory)
        for modality, backbone in self.backbones.items():
            backbone.save_assets(directory / modality)
        if kwargs.get("is_main_process", True):
            write_model_card(directory, self.config, self.training_record)
        if push:
            self.push_to_hub(hub_kwargs.pop("repo_id", directory.name), **hub_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload trimodal model",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """Upload the model to the Hugging Face Hub: what :meth:`save_pretrained` writes
        (weights, ``config.json``, the channels' assets, ``README.md``, ``training.json``),
        with ``huggingface_hub.HfApi.upload_folder``. Returns the commit information."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi()
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """Load a model saved with :meth:`save_pretrained`, from a directory or a Hub id.

        A Hub id (``user/name``) is read from the local Hugging Face cache
        (``huggingface_hub.snapshot_download``, every file of the repository: weights,
        config and the channels' assets), offline unless ``local_files_only=False``;
        ``revision`` and ``cache_dir`` are passed on. ``dtype=torch.bfloat16`` (or
        ``torch.float16``; transformers' keyword) loads the weights in that precision for
        inference: every backbone keeps its preprocessing in float32 and casts to it, and
        the embeddings come back in float32.
        """
        kwargs.setdefault("local_files_only", True)
        directory = resolve_model_directory(
            pretrained_model_name_or_path,
            local_files_only=kwargs["local_files_only"],
            revision=kwargs.get("revision"),
            cache_dir=kwargs.get("cache_dir"),
            token=kwargs.get("token"),
        )
        model = super().from_pretrained(directory, *args, **kwargs)
        for modality, backbone in model.backbones.items():
            backbone.load_assets(directory / modality)
        model.training_record = read_training_record(directory)
        # Loading replaces parameters, which resets their requires_grad flags.
        model.apply_trainability()
        model.eval()
        return model


# save_pretrained's keywords that belong to push_to_hub.
_PUSH_OPTIONS = ("repo_id", "commit_message", "private", "token", "revision", "create_pr")


def resolve_model_directory(
    name_or_path: str | os.PathLike,
    local_files_only: bool = True,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
) -> Path:
    """A saved model's directory: ``name_or_path`` itself when it is a directory, else the
    snapshot of that Hub id in the Hugging Face cache (downloaded first unless
    ``local_files_only``).

    Raises:
        MissingCheckpointError: neither a directory nor (offline) in the cache.
    """
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    from trimodal.backbones.base import MissingCheckpointError

    try:
        return Path(
            snapshot_download(
                str(name_or_path),
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
            )
        )
    except (LocalEntryNotFoundError, HFValidationError) as err:
        how = (
            "pass local_files_only=False to download it" if local_files_only else "check the Hub id"
        )
        raise MissingCheckpointError(
            f"{name_or_path}: no such model directory, nor a Hub id in the local Hugging Face "
            f"cache ({how})"
        ) from err


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


AutoConfig.register("trimodal", TrimodalConfig, exist_ok=True)
AutoModel.register(TrimodalConfig, TrimodalModel)

__all__ = [
    "Backbone",
    "ProjectionHead",
    "TrimodalConfig",
    "TrimodalModel",
    "TrimodalOutput",
    "build_model",
    "default_cache_dir",
    "resolve_model_directory",
]
