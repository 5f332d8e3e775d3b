"""The VM-NET two-branch network over precomputed feature vectors (Hong et al. 2018).

As re-examined by Prétet et al. (docs/research.md#the-vm-net-study). Layout (Prétet et al.,
§III "Network architecture": "two independent branches made of
fully-connected layers with ReLU activations. The audio branch consists in 3 fully-connected
layers of 2048, 1024, and 512 units respectively. The video branch consists in 2
fully-connected layers of 2048 and 512 units respectively. Linear activations and batch
normalization are applied at the end of each branch"; §V-A: "a dropout scheme with probability
0.5"; the embeddings are compared by Euclidean distance, on L2-normalised vectors in the VM-NET
code)::

    music  x_M [B, F_M] → (z-score) → FC 2048 → ReLU → Dropout .5
                                    → FC 1024 → ReLU → Dropout .5
                                    → FC  512 → BatchNorm → L2 normalise → e_M [B, 512]
    video  x_V [B, F_V] → (z-score) → FC 2048 → ReLU → Dropout .5
                                    → FC  512 → BatchNorm → L2 normalise → e_V [B, 512]

So batch normalisation sits once per branch, after the last (linear, no activation) FC layer
and before the L2 normalisation: it rescales each embedding dimension to unit variance over the
batch before the projection onto the sphere, which keeps every dimension in use.
``hidden_batch_norm=True`` also normalises every hidden FC output before its ReLU (FC → BN →
ReLU → Dropout), a common variant that is not in the paper. The z-score of the inputs
(``standardize``) is ours, see :class:`~trimodal.vmnet.config.VMNetConfig`.

:class:`VMNet` is a transformers ``PreTrainedModel``: ``save_pretrained`` writes
``model.safetensors`` (weights and the standardisation buffers) and ``config.json``
(:class:`VMNetModelConfig`), ``from_pretrained`` reads them back offline — and also reads the
directories the earlier ``VMNet.save`` wrote (same weights; their ``config.json`` nested the
settings under ``"config"``).

Because both outputs have unit norm, ``‖e_M − e_V‖² = 2 − 2·cos``: ranking by Euclidean
distance (the paper) and by cosine similarity (:mod:`trimodal.metrics.retrieval`) agree.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from trimodal.config import from_dict
from trimodal.vmnet.config import VMNetConfig

CONFIG_FILE = "config.json"


class VMNetBranch(nn.Module):
    """One branch: ``[B, in_dim]`` features → ``[B, layers[-1]]`` unit-norm embeddings.

    Args:
        in_dim: input feature size (the first FC layer's fan-in).
        layers: FC widths, e.g. ``[2048, 1024, 512]``; every layer but the last is followed by
            (BatchNorm if ``hidden_batch_norm``), ReLU and dropout; the last by BatchNorm only.
        dropout: dropout probability after each hidden ReLU.
    """

    def __init__(
        self,
        in_dim: int,
        layers: Sequence[int],
        *,
        dropout: float = 0.5,
        hidden_batch_norm: bool = False,
        batch_norm_eps: float = 1e-3,
        batch_norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if in_dim < 1 or not layers:
            raise ValueError(f"need in_dim >= 1 and at least one layer, got {in_dim}, {layers}")
        modules: list[nn.Module] = []
        width = in_dim
        for hidden in layers[:-1]:
            modules.append(nn.Linear(width, hidden))
            if hidden_batch_norm:
                modules.append(
                    nn.BatchNorm1d(hidden, eps=batch_norm_eps, momentum=batch_norm_momentum)
                )
            modules += [nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        modules.append(nn.Linear(width, layers[-1]))
        modules.append(nn.BatchNorm1d(layers[-1], eps=batch_norm_eps, momentum=batch_norm_momentum))
        self.layers = nn.Sequential(*modules)
        self.in_dim = int(in_dim)
        self.out_dim = int(layers[-1])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The VM-NET code initialises FC weights from N(0, 2/fan_in) (He) with zero biases,
        # which suits the ReLUs; torch's default (uniform, gain 1/3) starts with smaller
        # activations.
        for module in self.layers:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim]`` → ``[B, out_dim]`` with unit L2 norm per row."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected features [B, {self.in_dim}], got {tuple(x.shape)}")
        return F.normalize(self.layers(x), p=2.0, dim=1)


class VMNetModelConfig(PretrainedConfig):
    """Configuration of :class:`VMNet` (stored as ``config.json``): the network part of a
    :class:`~trimodal.vmnet.config.VMNetConfig` (see it for each setting), with the input sizes
    resolved, plus ``eval_ks``, the k of R@k that ``evaluate`` reports for this model."""

    model_type = "vmnet"
    #: The :class:`VMNetConfig` fields this config takes over.
    RUN_FIELDS = (
        "music_input_dim",
        "video_input_dim",
        "music_layers",
        "video_layers",
        "dropout",
        "hidden_batch_norm",
        "batch_norm_eps",
        "batch_norm_momentum",
        "eval_ks",
    )

    def __init__(
        self,
        music_input_dim: int | None = None,
        video_input_dim: int | None = None,
        music_layers: list[int] | None = None,
        video_layers: list[int] | None = None,
        dropout: float = 0.5,
        hidden_batch_norm: bool = False,
        batch_norm_eps: float = 1e-3,
        batch_norm_momentum: float = 0.01,
        eval_ks: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        defaults = VMNetConfig()
        self.music_input_dim = music_input_dim
        self.video_input_dim = video_input_dim
        self.music_layers = list(music_layers or defaults.music_layers)
        self.video_layers = list(video_layers or defaults.video_layers)
        self.dropout = dropout
        self.hidden_batch_norm = hidden_batch_norm
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        self.eval_ks = list(eval_ks or defaults.eval_ks)
        super().__init__(**kwargs)

    @classmethod
    def from_run_config(cls, config: VMNetConfig) -> VMNetModelConfig:
        """The network settings of a run's (validated) :class:`VMNetConfig`."""
        return cls(**{name: getattr(config, name) for name in cls.RUN_FIELDS})

    @property
    def embed_dim(self) -> int:
        return int(self.music_layers[-1])


@dataclasses.dataclass
class VMNetOutput(ModelOutput):
    """Output of :meth:`VMNet.forward`: unit-norm embeddings ``[B, D]`` of the modalities
    given (music is the audio modality; the other is ``None``)."""

    audio_embeds: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None

    @property
    def embeddings(self) -> dict[str, torch.Tensor]:
        """``{"audio": e_M [B, D], "video": e_V [B, D]}`` for the modalities present — the
        form the objectives take."""
        pairs = (("audio", self.audio_embeds), ("video", self.video_embeds))
        return {m: e for m, e in pairs if e is not None}


class VMNet(PreTrainedModel):
    """Music and video branches into one unit-norm embedding space.

    Args:
        config: the network; ``music_input_dim`` and ``video_input_dim`` must be set
            (:func:`build_vmnet` and the trainer fill them from the feature files).

    Buffers ``music_mean``/``music_std``/``video_mean``/``video_std`` hold the input
    standardisation (identity until :meth:`set_standardization`); ``save_pretrained`` writes
    them with the weights.
    """

    config_class = VMNetModelConfig
    base_model_prefix = "vmnet"
    main_input_name = "audio"

    def __init__(self, config: VMNetModelConfig) -> None:
        super().__init__(config)
        if config.music_input_dim is None or config.video_input_dim is None:
            raise ValueError(
                "VMNet needs music_input_dim and video_input_dim (set them, or train from a "
                "feature file, which fills them in)"
            )
        branch_options = {
            "dropout": config.dropout,
            "hidden_batch_norm": config.hidden_batch_norm,
            "batch_norm_eps": config.batch_norm_eps,
            "batch_norm_momentum": config.batch_norm_momentum,
        }
        self.music = VMNetBranch(config.music_input_dim, config.music_layers, **branch_options)
        self.video = VMNetBranch(config.video_input_dim, config.video_layers, **branch_options)
        for name, dim in (("music", config.music_input_dim), ("video", config.video_input_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Each branch initialises itself when built (VMNetBranch.reset_parameters); the
        # transformers default (normal, std 0.02) would replace that He initialisation.
        pass

    @property
    def modalities(self) -> list[str]:
        """The embedded modalities, as :func:`trimodal.embedding.embed_batches` reads
        them (music is the audio modality)."""
        return ["audio", "video"]

    @torch.no_grad()
    def set_standardization(self, music: Tensor, video: Tensor, eps: float = 1e-6) -> None:
        """Fit the input z-score on training features ``music [N, F_M]`` and ``video [N, F_V]``.

        Constant dimensions (std < ``eps``) are left unscaled (std 1) rather than blown up.
        """
        for name, x in (("music", music), ("video", video)):
            x = torch.as_tensor(x, dtype=torch.float64)
            mean = x.mean(dim=0)
            std = x.std(dim=0, unbiased=False)
            std = torch.where(std < eps, torch.ones_like(std), std)
            getattr(self, f"{name}_mean").copy_(mean)
            getattr(self, f"{name}_std").copy_(std)

    def standardized(self, modality: str, x: Tensor) -> Tensor:
        """The branch input: ``x [B, F]`` z-scored with the stored statistics (``modality``:
        ``"music"`` or ``"video"``)."""
        mean, std = getattr(self, f"{modality}_mean"), getattr(self, f"{modality}_std")
        if x.ndim != 2 or x.shape[1] != mean.shape[0]:
            raise ValueError(
                f"expected {modality} features [B, {mean.shape[0]}], got {tuple(x.shape)}"
            )
        return (x.to(mean.dtype) - mean) / std

    def encode_music(self, x: Tensor) -> Tensor:
        """Music features ``[B, F_M]`` → embeddings ``[B, D]`` (unit norm)."""
        return self.music(self.standardized("music", x))

    def encode_video(self, x: Tensor) -> Tensor:
        """Video features ``[B, F_V]`` → embeddings ``[B, D]`` (unit norm)."""
        return self.video(self.standardized("video", x))

    def forward(
        self, audio: Tensor | None = None, video: Tensor | None = None, return_dict: bool = True
    ) -> VMNetOutput | tuple:
        """Embed music features ``audio [B, F_M]`` and/or video features ``video [B, F_V]``;
        see :class:`VMNetOutput`."""
        if audio is None and video is None:
            raise ValueError("forward needs audio= (music features) or video=")
        output = VMNetOutput(
            audio_embeds=None if audio is None else self.encode_music(audio),
            video_embeds=None if video is None else self.encode_video(video),
        )
        return output if return_dict else output.to_tuple()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """Load a model saved with ``save_pretrained`` (or the earlier ``VMNet.save``) from a
        local directory, in eval mode.

        Raises:
            FileNotFoundError: the directory has no ``config.json``.
        """
        directory = Path(pretrained_model_name_or_path)
        if not (directory / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"not a VM-NET model directory: {directory / CONFIG_FILE} is missing (train one "
                "with `python -m trimodal.vmnet train`)"
            )
        kwargs.setdefault("local_files_only", True)
        legacy = _legacy_config(directory / CONFIG_FILE)
        if legacy is not None and "config" not in kwargs:
            kwargs["config"] = legacy
        return super().from_pretrained(directory, *args, **kwargs).eval()


def _legacy_config(path: Path) -> VMNetModelConfig | None:
    """The config of a directory written by the earlier ``VMNet.save`` (``{"model_type":
    "vmnet", "config": {run settings}, ...}``), or ``None`` for a ``save_pretrained`` one."""
    meta = json.loads(path.read_text())
    if meta.get("model_type") != "vmnet":
        raise ValueError(f"{path} is not a VM-NET config (model_type {meta.get('model_type')!r})")
    if not isinstance(meta.get("config"), dict) or "music_layers" in meta:
        return None
    return VMNetModelConfig.from_run_config(from_dict(VMNetConfig, meta["config"]))


def build_vmnet(config: VMNetConfig) -> VMNet:
    """A freshly initialised :class:`VMNet` for the network settings of ``config`` (its input
    sizes must be set)."""
    return VMNet(VMNetModelConfig.from_run_config(config))


AutoConfig.register("vmnet", VMNetModelConfig)
AutoModel.register(VMNetModelConfig, VMNet)

__all__ = ["VMNet", "VMNetBranch", "VMNetModelConfig", "VMNetOutput", "build_vmnet"]
