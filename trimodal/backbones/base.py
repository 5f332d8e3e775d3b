"""The one small interface every backbone adapter implements.

A backbone adapter turns raw inputs of one modality (strings, waveforms or frames) into one
feature vector per example, ``[B, output_dim]``. Everything modality-specific — tokenising,
resampling windows, resizing and normalising frames — happens inside the adapter, so a
saved model carries its own preprocessing settings.

Reduced precision: a model loaded in bf16/fp16 (``from_pretrained(..., dtype=...)``) or run
under autocast keeps its preprocessing in float32 (:func:`float32_preprocessing`): power
spectrograms overflow fp16 (a full-scale 1024-point frame reaches 2.6e5 > 65504), and
bf16's 8-bit mantissa would round resized and normalised pixels to ~0.4 %. The result is
then cast to :func:`parameter_dtype`, what the network's layers compute in; a backbone's
features come back in that dtype.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


class MissingCheckpointError(FileNotFoundError):
    """A pretrained-weights file or directory that a backbone needs is not there."""


def default_cache_dir() -> Path:
    """Where trimodal keeps generated assets (``$TRIMODAL_CACHE`` or ``~/.cache/trimodal``):
    converted and generated backbone weights, and the demo's corpus."""
    return Path(os.environ.get("TRIMODAL_CACHE", Path.home() / ".cache" / "trimodal"))


def parameter_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of ``module``'s first floating-point parameter (float32 if it has none):
    what its layers compute in outside autocast, so what preprocessed inputs are cast to."""
    for param in module.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.float32


def float32_preprocessing(device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context in which autocast is off on ``device``, so preprocessing (spectrograms,
    resizing, normalisation) runs in the float32 its inputs are given in."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, enabled=False)


class Backbone(nn.Module):
    """Base class of backbone adapters.

    Subclasses set ``modality``, define a dataclass ``Options`` of architecture settings
    (stored in the model config, so a model can be rebuilt without the original files) and
    implement :meth:`forward` (raw inputs → ``[B, output_dim]``), :meth:`blocks` and
    :meth:`load_pretrained`.
    """

    modality: ClassVar[str]
    Options: ClassVar[type]
    #: Named option sets: ``"tiny"`` (random, small, for tests and the demo) and ``"full"``.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, options: Any):
        super().__init__()
        self.options = options

    @classmethod
    def resolve_options(
        cls, options: dict[str, Any], preset: str, source: str | None = None
    ) -> Any:
        """Build the typed ``Options``: preset values, then the architecture recorded in the
        checkpoint at ``source`` (where the format records one), then explicit ``options``."""
        from trimodal.config import from_dict

        merged = {**cls.presets.get(preset, {}), **options}
        if source is not None:
            merged = {**merged, **cls.options_from_source(source), **options}
        return from_dict(cls.Options, merged, prefix=f"model.channels.{cls.modality}.options")

    @classmethod
    def options_from_source(cls, source: str) -> dict[str, Any]:
        """Architecture options read from a checkpoint (e.g. its ``config.json``)."""
        return {}

    @property
    def output_dim(self) -> int:
        """Size of the feature vector :meth:`forward` returns."""
        raise NotImplementedError

    def data_options(self) -> dict[str, Any]:
        """What this backbone needs from the data loader, as
        :class:`~trimodal.data.PreparedClips` keyword arguments (e.g. ``audio_rate``)."""
        return {}

    def blocks(self) -> list[nn.Module]:
        """The trainable blocks in input-to-output order (for ``trainable_blocks=N``)."""
        raise NotImplementedError

    def normalize_text(self, text: str) -> str:
        """A text backbone's input as it reads it (its own normalisation): two texts that
        normalise alike embed alike. Default: the string unchanged."""
        return text

    def load_pretrained(self, source: str | Path) -> None:
        """Load pretrained weights (and assets such as a tokenizer) from ``source``."""
        raise NotImplementedError

    def save_assets(self, directory: Path) -> None:
        """Write non-tensor assets (e.g. a tokenizer model) that ``save_pretrained`` needs."""

    def load_assets(self, directory: Path) -> None:
        """Read what :meth:`save_assets` wrote."""

    #: Whether :meth:`set_gradient_checkpointing` can turn activation checkpointing on.
    supports_gradient_checkpointing: ClassVar[bool] = False

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Trade compute for memory where the backbone supports it: in training mode with
        gradients on, each block's activations are recomputed in the backward pass instead
        of being kept (non-reentrant checkpointing, so frozen earlier blocks are fine)."""
        if enabled:
            raise ValueError(f"{type(self).__name__} does not support gradient checkpointing")

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether activation checkpointing is on."""
        return False

    @property
    def attn_implementation(self) -> str:
        """The attention kernel in use: ``"eager"`` unless the backbone offers a choice."""
        return "eager"

    def set_attn_implementation(self, implementation: str) -> bool:
        """Use attention kernel ``implementation`` (``"sdpa"`` or ``"eager"``) where the
        backbone offers a choice; returns whether it does. Same results, other speed."""
        return False

    def set_trainable(self, trainable_blocks: str | int) -> None:
        """Freeze the backbone: ``"all"`` trainable, ``"none"`` frozen, or the last N blocks."""
        if trainable_blocks == "all":
            self.requires_grad_(True)
            return
        self.requires_grad_(False)
        if trainable_blocks == "none":
            return
        blocks = self.blocks()
        if not isinstance(trainable_blocks, int) or not 0 <= trainable_blocks <= len(blocks):
            raise ValueError(
                f"trainable_blocks must be 'all', 'none' or an integer in [0, {len(blocks)}] "
                f"for {type(self).__name__}, got {trainable_blocks!r}"
            )
        for block in blocks[len(blocks) - trainable_blocks :]:
            block.requires_grad_(True)

    def forward(self, inputs: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def clip_frames(frames: torch.Tensor) -> torch.Tensor:
    """Check a batch of clips and return it channels-first: ``[B, T, 3, H, W]``.

    Accepts ``[B, T, 3, H, W]`` or ``[B, T, H, W, 3]`` (decoders give channels last).
    """
    if frames.ndim != 5:
        raise ValueError(f"expected frames [B, T, 3, H, W], got shape {tuple(frames.shape)}")
    if frames.shape[2] != 3 and frames.shape[-1] == 3:
        frames = frames.permute(0, 1, 4, 2, 3)
    if frames.shape[2] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(frames.shape)}")
    return frames
