"""The VM-NET two-branch network over precomputed feature vectors (Hong et al. 2018; seed 003).

Layout (seed 003, §III "Network architecture": "two independent branches made of
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

Because both outputs have unit norm, ``‖e_M − e_V‖² = 2 − 2·cos``: ranking by Euclidean
distance (the paper) and by cosine similarity (:mod:`trimodal.metrics.retrieval`) agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trimodal.config import from_dict
from trimodal.utils import atomic_path, atomic_write_json
from trimodal.vmnet.config import VMNetConfig, vmnet_config_to_dict

WEIGHTS_FILE = "model.safetensors"
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


class VMNet(nn.Module):
    """Music and video branches into one unit-norm embedding space.

    Args:
        config: the network settings; ``music_input_dim`` and ``video_input_dim`` must be set
            (the trainer fills them from the feature files).

    Buffers ``music_mean``/``music_std``/``video_mean``/``video_std`` hold the input
    standardisation (identity until :meth:`set_standardization`); they are saved with the
    weights.
    """

    def __init__(self, config: VMNetConfig) -> None:
        super().__init__()
        if config.music_input_dim is None or config.video_input_dim is None:
            raise ValueError(
                "VMNet needs music_input_dim and video_input_dim (set them, or train from a "
                "feature file, which fills them in)"
            )
        self.config = config
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
        """The branch input: ``x [B, F]`` z-scored with the stored statistics."""
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

    def forward(self, music: Tensor, video: Tensor) -> dict[str, Tensor]:
        """``{"audio": e_M [B, D], "video": e_V [B, D]}`` — the keys the objectives expect
        (music is the audio modality)."""
        return {"audio": self.encode_music(music), "video": self.encode_video(video)}

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (config + ``extra``) atomically."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model": "vmnet"})
        atomic_write_json(
            directory / CONFIG_FILE,
            {"model_type": "vmnet", "config": vmnet_config_to_dict(self.config), **(extra or {})},
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> VMNet:
        """Rebuild a saved model (in eval mode) from ``directory``."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"not a VM-NET model directory: {path} is missing (train one with "
                    "`python -m trimodal.vmnet train`)"
                )
        meta = json.loads(config_path.read_text())
        if meta.get("model_type") != "vmnet":
            raise ValueError(
                f"{config_path} is not a VM-NET config (model_type {meta.get('model_type')!r})"
            )
        model = cls(from_dict(VMNetConfig, meta["config"]))
        model.load_state_dict(load_file(str(weights_path), device=str(map_location)), strict=True)
        return model.eval()
