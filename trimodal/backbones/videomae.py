"""Video backbone: VideoMAE (``VideoMAEModel``), mean-pooled last hidden state.

Weights come from ``VideoMAEModel.from_pretrained(source)``: a local directory saved with
``save_pretrained`` or a hub id already in the local Hugging Face cache (e.g.
``MCG-NJU/videomae-base``; this adapter passes ``local_files_only=True``, so it never
downloads).

Input: 16 frames per clip, ``[B, T, 3, H, W]`` (or ``[B, T, H, W, 3]``), uint8 in [0, 255]
or float in [0, 1]. Preprocessing follows ``VideoMAEImageProcessor``: resize the shorter
side to 224 (bilinear), centre-crop 224², scale to [0, 1], normalise with ImageNet mean/std.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trimodal.backbones.base import (
    Backbone,
    MissingCheckpointError,
    clip_frames,
    float32_preprocessing,
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclasses.dataclass
class VideoMAEOptions:
    """Architecture and preprocessing of the VideoMAE channel (defaults: videomae-base)."""

    hf_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_frames: int = 16
    image_size: int = 224
    image_mean: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))
    image_std: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))


def _missing_message(source: str | Path, err: Exception) -> str:
    return (
        f"VideoMAE checkpoint not found at {source!s} ({err}). It needs config.json and "
        "model.safetensors (or pytorch_model.bin): save a VideoMAE model with save_pretrained, "
        "or on a machine with network run `huggingface-cli download MCG-NJU/videomae-base` "
        "and copy the Hugging Face cache here; then set model.channels.video.source to the "
        "directory (or to the hub id, resolved from the local cache only)."
    )


def preprocess_frames(
    frames: torch.Tensor, size: int, mean: list[float], std: list[float]
) -> torch.Tensor:
    """``VideoMAEImageProcessor``'s transform on a batch of clips.

    Args:
        frames: ``[B, T, 3, H, W]`` or ``[B, T, H, W, 3]``; uint8 in [0, 255] or float in
            [0, 1].
    Returns:
        ``[B, T, 3, size, size]`` float32, normalised.
    """
    frames = clip_frames(frames)
    b, t, c, h, w = frames.shape
    x = frames.reshape(b * t, c, h, w)
    if (h, w) != (size, size):
        import torchvision.transforms.v2.functional as TF

        # torchvision's antialiased bilinear resize of uint8 images is a port of Pillow's,
        # so on uint8 frames this reproduces VideoMAEImageProcessor (PIL) exactly.
        x = TF.center_crop(TF.resize(x, size, antialias=True), [size, size])
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.reshape(b, t, c, size, size)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    return (x - mean_t) / std_t


class VideoMAEBackbone(Backbone):
    """VideoMAE encoder: frames ``[B, 16, 3, H, W]`` → mean-pooled tokens ``[B, hidden]``."""

    modality = "video"
    Options = VideoMAEOptions
    presets = {
        "tiny": {
            "image_size": 32,
            "num_frames": 4,
            "hf_config": {
                "image_size": 32,
                "patch_size": 16,
                "num_frames": 4,
                "tubelet_size": 2,
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            },
        },
        "full": {},
    }

    def __init__(self, options: VideoMAEOptions):
        super().__init__(options)
        from transformers import VideoMAEConfig, VideoMAEModel

        config = VideoMAEConfig(**options.hf_config)
        if config.image_size != options.image_size or config.num_frames != options.num_frames:
            raise ValueError(
                f"VideoMAE options disagree with hf_config: image_size {options.image_size} vs "
                f"{config.image_size}, num_frames {options.num_frames} vs {config.num_frames}"
            )
        self.model = VideoMAEModel(config)

    @classmethod
    def options_from_source(cls, source: str) -> dict[str, Any]:
        from transformers import VideoMAEConfig

        try:
            config = VideoMAEConfig.from_pretrained(str(source), local_files_only=True)
        except OSError as err:
            raise MissingCheckpointError(_missing_message(source, err)) from err
        return {
            "hf_config": config.to_diff_dict(),
            "image_size": config.image_size,
            "num_frames": config.num_frames,
        }

    def data_options(self) -> dict[str, Any]:
        return {"video_size": self.options.image_size, "num_frames": self.options.num_frames}

    @property
    def output_dim(self) -> int:
        return self.model.config.hidden_size

    def blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    supports_gradient_checkpointing = True

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if enabled:
            self.model.activation_checkpointing_enable()
        else:
            self.model.activation_checkpointing_disable()

    @property
    def gradient_checkpointing(self) -> bool:
        return self.model.is_activation_checkpointing

    @property
    def attn_implementation(self) -> str:
        return self.model.config._attn_implementation

    def set_attn_implementation(self, implementation: str) -> bool:
        # transformers' VideoMAE has eager and SDPA attention (SDPA: its default).
        self.model.set_attn_implementation(implementation)
        return True

    def load_pretrained(self, source: str | Path) -> None:
        from transformers import VideoMAEModel

        try:
            model = VideoMAEModel.from_pretrained(str(source), local_files_only=True)
        except OSError as err:
            raise MissingCheckpointError(_missing_message(source, err)) from err
        self.model.load_state_dict(model.state_dict(), strict=True)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames → the normalised ``[B, T, 3, S, S]`` input of the network."""
        x = preprocess_frames(
            frames, self.options.image_size, self.options.image_mean, self.options.image_std
        )
        if x.shape[1] != self.options.num_frames:
            raise ValueError(
                f"expected {self.options.num_frames} frames per clip, got {x.shape[1]}"
            )
        return x

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Embed clips: frames ``[B, T, 3, H, W]`` → ``[B, hidden_size]`` in the parameters'
        dtype (preprocessing in float32, then cast)."""
        weight = self.model.embeddings.patch_embeddings.projection.weight
        with float32_preprocessing(weight.device):
            x = self.preprocess(frames.to(weight.device))
        return self.model(pixel_values=x.to(weight.dtype)).last_hidden_state.mean(dim=1)
