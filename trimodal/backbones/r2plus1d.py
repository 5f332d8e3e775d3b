"""Video backbone: R(2+1)D-18 (Tran et al., 2018), torchvision's ``r2plus1d_18`` without its
classifier: globally average-pooled ``layer4`` features, ``[B, 512]``.

Weights: torchvision's Kinetics-400 file ``r2plus1d_18-91a641e6.pth``
(``R2Plus1D_18_Weights.KINETICS400_V1``), given as a local file — the ``.pth`` (loaded with
``torch.load(weights_only=True)``, never unpickling code) or a ``.safetensors`` with the same
keys — or a directory holding it (e.g. torch hub's ``~/.cache/torch/hub/checkpoints``). This
adapter never downloads; a missing file raises :class:`MissingCheckpointError` with the URL.
The classifier (``fc.*``) in the file is ignored.

Input: clips ``[B, T, 3, H, W]`` (or ``[B, T, H, W, 3]``), uint8 in [0, 255] or float in
[0, 1]; 16 frames for the Kinetics weights (any T ≥ 1 runs: the network is fully
convolutional in time). Preprocessing is torchvision's ``KINETICS400_V1.transforms()``:
bilinear resize to 128×171 (no antialiasing), centre crop 112², scale to [0, 1], normalise
with mean (0.43216, 0.394666, 0.37645) and std (0.22803, 0.22145, 0.216989). Frames that
already have the crop size (the data loader's ``frames_112``, resized and cropped when the
data were prepared) are only normalised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
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

KINETICS_MEAN = [0.43216, 0.394666, 0.37645]
KINETICS_STD = [0.22803, 0.22145, 0.216989]
WEIGHTS_FILE = "r2plus1d_18-91a641e6.pth"
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"


@dataclasses.dataclass
class R2Plus1DOptions:
    """Architecture and preprocessing of the R(2+1)D channel (defaults: r2plus1d_18)."""

    # Channels of layer1..layer4 and BasicBlocks per layer (r2plus1d_18: 64..512, 2 each).
    widths: list[int] = dataclasses.field(default_factory=lambda: [64, 128, 256, 512])
    layers: list[int] = dataclasses.field(default_factory=lambda: [2, 2, 2, 2])
    # Middle channels of the (2+1)D stem (torchvision hard-codes 45).
    stem_channels: int = 45
    num_frames: int = 16
    crop_size: int = 112
    resize_size: list[int] = dataclasses.field(default_factory=lambda: [128, 171])
    mean: list[float] = dataclasses.field(default_factory=lambda: list(KINETICS_MEAN))
    std: list[float] = dataclasses.field(default_factory=lambda: list(KINETICS_STD))


def _missing_message(path: Path) -> str:
    return (
        f"R(2+1)D-18 weights not found: {path}. This adapter never downloads: on a machine "
        f"with network fetch {WEIGHTS_URL} (torchvision R2Plus1D_18_Weights.KINETICS400_V1, "
        f"{WEIGHTS_FILE}), copy it here and set model.channels.video.source to the file or to "
        "its directory."
    )


def _build_network(o: R2Plus1DOptions) -> nn.Module:
    """torchvision's ``VideoResNet`` (BasicBlock, Conv2Plus1D, (2+1)D stem) with configurable
    widths, without ``fc``. Module names equal torchvision's, so its state dicts load as-is."""
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, VideoResNet

    if len(o.widths) != 4 or len(o.layers) != 4:
        raise ValueError(f"widths and layers need 4 entries each, got {o.widths}, {o.layers}")

    class _Features(VideoResNet):
        def __init__(self) -> None:
            # VideoResNet.__init__ hard-codes the widths; build the same modules with ours.
            nn.Module.__init__(self)
            self.stem = nn.Sequential(
                nn.Conv3d(3, o.stem_channels, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
                nn.BatchNorm3d(o.stem_channels),
                nn.ReLU(inplace=True),
                nn.Conv3d(o.stem_channels, o.widths[0], (3, 1, 1), 1, (1, 0, 0), bias=False),
                nn.BatchNorm3d(o.widths[0]),
                nn.ReLU(inplace=True),
            )
            self.inplanes = o.widths[0]
            for i, (width, blocks) in enumerate(zip(o.widths, o.layers, strict=True)):
                layer = self._make_layer(BasicBlock, Conv2Plus1D, width, blocks, 1 if i == 0 else 2)
                setattr(self, f"layer{i + 1}", layer)
            self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
            # torchvision's initialisation (used when no weights are loaded).
            for m in self.modules():
                if isinstance(m, nn.Conv3d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm3d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    return _Features()


def preprocess_clips(
    frames: torch.Tensor,
    crop_size: int,
    resize_size: list[int],
    mean: list[float],
    std: list[float],
) -> torch.Tensor:
    """torchvision's ``VideoClassification`` transform on a batch of clips.

    Args:
        frames: ``[B, T, 3, H, W]`` or ``[B, T, H, W, 3]``; uint8 in [0, 255] or float in [0, 1].
    Returns:
        ``[B, 3, T, crop_size, crop_size]`` float32, normalised (the network's layout).
    """
    # The v1 functional API, as torchvision's preset uses: v2's uint8 resize kernel rounds
    # differently, so it would not reproduce the transform the weights were evaluated with.
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    frames = clip_frames(frames)
    b, t, c, h, w = frames.shape
    x = frames.reshape(b * t, c, h, w)
    if (h, w) != (crop_size, crop_size):
        # antialias=False as torchvision's preset: the Kinetics weights were trained so.
        x = TF.resize(x, resize_size, interpolation=InterpolationMode.BILINEAR, antialias=False)
        x = TF.center_crop(x, [crop_size, crop_size])
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = TF.normalize(x, mean=mean, std=std)
    return x.reshape(b, t, c, crop_size, crop_size).permute(0, 2, 1, 3, 4)


def _verify_torchvision_hash(path: Path) -> None:
    """torchvision names its files ``<name>-<first 8 hex of sha256>.pth``; check that prefix
    (catches partial downloads, which otherwise fail later with an unpickling error)."""
    match = re.fullmatch(r".*-([0-9a-f]{8,})\.pth", path.name)
    if match is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise ValueError(
            f"{path}: sha256 {digest.hexdigest()[:16]}… does not start with {match.group(1)} "
            f"as its name says: incomplete or corrupt download; fetch {WEIGHTS_URL} again"
        )


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a torchvision ``.pth`` (pickle, loaded with ``weights_only=True``) or a
    ``.safetensors`` file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    _verify_torchvision_hash(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


class R2Plus1DBackbone(Backbone):
    """R(2+1)D-18: clips ``[B, T, 3, H, W]`` → pooled ``layer4`` features ``[B, 512]``."""

    modality = "video"
    Options = R2Plus1DOptions
    presets = {
        "tiny": {
            "widths": [8, 16, 16, 32],
            "layers": [1, 1, 1, 1],
            "stem_channels": 6,
            "num_frames": 4,
            "crop_size": 32,
            "resize_size": [36, 48],
        },
        "full": {},
    }

    def __init__(self, options: R2Plus1DOptions):
        super().__init__(options)
        self.network = _build_network(options)
        self._checkpointing = False

    @property
    def output_dim(self) -> int:
        return self.options.widths[-1]

    def data_options(self) -> dict[str, Any]:
        return {"video_size": self.options.crop_size, "num_frames": self.options.num_frames}

    def blocks(self) -> list[nn.Module]:
        net = self.network
        return [net.stem, *net.layer1, *net.layer2, *net.layer3, *net.layer4]

    supports_gradient_checkpointing = True

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self._checkpointing = enabled

    @property
    def gradient_checkpointing(self) -> bool:
        return self._checkpointing

    def load_pretrained(self, source: str | Path) -> None:
        """Load torchvision-format weights from a ``.pth``/``.safetensors`` file or a
        directory holding ``r2plus1d_18-91a641e6.pth`` (or ``r2plus1d_18.safetensors``)."""
        path = Path(source).expanduser()
        if path.is_dir():
            candidates = [path / WEIGHTS_FILE, path / "r2plus1d_18.safetensors"]
            path = next((p for p in candidates if p.is_file()), candidates[0])
        if not path.is_file():
            raise MissingCheckpointError(_missing_message(path))
        state = load_state_file(path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        # The Kinetics classifier is not part of the backbone.
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        hint = "(r2plus1d_18 needs the 'full' preset: widths [64,128,256,512], layers [2,2,2,2])"
        try:
            self.network.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path} does not match the configured R(2+1)D {hint}: {err}") from err

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames → the normalised ``[B, 3, T, crop, crop]`` network input."""
        o = self.options
        return preprocess_clips(frames, o.crop_size, o.resize_size, o.mean, o.std)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Embed clips: frames ``[B, T, 3, H, W]`` → ``[B, widths[-1]]`` (512 for R(2+1)D-18),
        in the parameters' dtype (preprocessing in float32, then cast)."""
        net = self.network
        weight = net.stem[0].weight
        with float32_preprocessing(weight.device):
            x = self.preprocess(frames.to(weight.device))
        x = x.to(weight.dtype)
        for block in self.blocks():
            if self._checkpointing and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return net.avgpool(x).flatten(1)
