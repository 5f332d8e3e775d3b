"""Audio backbone: LAION-CLAP's HTSAT audio encoder + CLAP audio projection (512-d).

Two checkpoint formats, one interface (``format`` option):

* ``laion`` — an original LAION-CLAP checkpoint file such as
  ``music_audioset_epoch_15_esc_90.14.pt`` (HTSAT-base, not fused). The network is
  laion-clap's own ``HTSAT_Swin_Transformer`` and projection, so outputs match laion-clap.
  Only the audio branch and audio projection are loaded; the text branch is ignored.
* ``hf`` — a Hugging Face CLAP directory loadable by ``ClapAudioModelWithProjection``
  (e.g. a local copy of ``laion/larger_clap_music``), with its ``preprocessor_config.json``.

Output: CLAP's audio embedding, ``F.normalize(audio_projection(htsat(x)))``, ``[B, 512]``.

Input: mono waveforms at 48 kHz, ``[B, S]`` or a list of 1-D tensors of any lengths. Each is
fitted to the 10-s window: longer ones are cropped — at random in training mode, at the
centre in eval mode (laion-clap crops at random even at inference, so its embeddings are
not reproducible) — and shorter ones are repeated then zero-padded as laion-clap does.

laion-clap loads three text tokenizers from the network when ``laion_clap`` is imported, so
this module loads laion-clap's ``clap_module`` source files under a private package name
without running ``laion_clap/__init__.py`` (see :func:`laion_clap_module`).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from trimodal.backbones.base import Backbone, MissingCheckpointError, float32_preprocessing

LAION_CLAP_MUSIC_URL = (
    "https://huggingface.co/lukewys/laion_clap/resolve/main/music_audioset_epoch_15_esc_90.14.pt"
)
_PRIVATE_PACKAGE = "_trimodal_laion_clap_module"


def laion_clap_module(name: str) -> types.ModuleType:
    """Import ``laion_clap/clap_module/<name>.py`` without importing ``laion_clap`` itself.

    ``laion_clap/__init__.py`` imports ``training/data.py``, which downloads the BERT,
    RoBERTa and BART tokenizers at import time (about 11 minutes of retries offline). The
    network code we need (``htsat``, ``model``) only uses relative imports inside
    ``clap_module``, so we register that directory as a private package and import from it.
    """
    if _PRIVATE_PACKAGE not in sys.modules:
        spec = importlib.util.find_spec("laion_clap")
        if spec is None or spec.origin is None:
            raise ImportError("laion-clap is not installed: pip install laion-clap")
        package = types.ModuleType(_PRIVATE_PACKAGE)
        package.__path__ = [str(Path(spec.origin).parent / "clap_module")]
        package.__package__ = _PRIVATE_PACKAGE
        sys.modules[_PRIVATE_PACKAGE] = package
    return importlib.import_module(f"{_PRIVATE_PACKAGE}.{name}")


@dataclasses.dataclass
class ClapHTSATOptions:
    """Architecture of the CLAP audio channel (defaults: HTSAT-base, the music checkpoint)."""

    format: Literal["laion", "hf"] = "laion"
    sample_rate: int = 48000
    window_seconds: float = 10.0
    # laion HTSAT settings (HTSAT-base.json of laion-clap)
    htsat_embed_dim: int = 128
    depths: list[int] = dataclasses.field(default_factory=lambda: [2, 2, 12, 2])
    num_heads: list[int] = dataclasses.field(default_factory=lambda: [4, 8, 16, 32])
    swin_window_size: int = 8
    spec_size: int = 256
    mel_bins: int = 64
    fft_size: int = 1024
    hop_size: int = 480
    fmin: int = 50
    fmax: int = 14000
    class_num: int = 527
    joint_dim: int = 512
    # Hugging Face ClapAudioConfig (format "hf"): its to_dict()
    hf_config: dict[str, Any] = dataclasses.field(default_factory=dict)


def _hf_missing_message(path: Path) -> str:
    return (
        f"Hugging Face CLAP file not found: {path}. The directory needs config.json, the "
        "weights and preprocessor_config.json: save a CLAP model and its ClapFeatureExtractor "
        "with save_pretrained, or on a machine with network run `huggingface-cli download "
        "laion/larger_clap_music --local-dir DIR`, and set model.channels.audio.source to DIR."
    )


def fit_to_window(waveform: torch.Tensor, length: int, random_crop: bool) -> torch.Tensor:
    """Crop or repeat-pad one mono waveform ``[S]`` to exactly ``length`` samples.

    Longer: a random window when ``random_crop`` else the centre window. Shorter: repeated
    ``length // S`` times then zero-padded (laion-clap's ``repeatpad``).
    """
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got shape {tuple(waveform.shape)}")
    n = waveform.shape[0]
    if n == 0:
        raise ValueError("cannot embed an empty waveform")
    if n > length:
        if random_crop:
            start = int(torch.randint(0, n - length + 1, (1,)).item())
        else:
            start = (n - length) // 2
        return waveform[start : start + length]
    if n < length:
        waveform = waveform.repeat(length // n)
        waveform = F.pad(waveform, (0, length - waveform.shape[0]))
    return waveform


class FFTSpectrogram(nn.Module):
    """Power spectrogram ``[B, S]`` → ``[B, 1, frames, n_fft // 2 + 1]``, as torchlibrosa's
    ``Spectrogram`` in laion-clap's HTSAT (periodic Hann window, centred, reflect-padded).

    torchlibrosa computes the STFT as a 1-D convolution with the DFT basis (two frozen
    ``[513, 1, 1024]`` weights), so that the front end can be exported; on a CPU that
    convolution is most of a tiny HTSAT's forward pass. ``torch.stft`` computes the same
    numbers (to float32 rounding, checked in the tests) about 3× faster, with no parameters.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Float32 whatever the input's dtype (powers overflow fp16), autocast off."""
        with float32_preprocessing(waveforms.device):
            spec = torch.stft(
                waveforms.float(),
                self.n_fft,
                self.hop_length,
                # Made per call rather than kept as a buffer: transformers' from_pretrained
                # builds models on the meta device, and a non-persistent buffer stays unset.
                window=torch.hann_window(self.n_fft, device=waveforms.device),
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = spec.real**2 + spec.imag**2  # [B, F, frames]
        return power.transpose(1, 2).unsqueeze(1)


class LogMelFilterBank(nn.Module):
    """Power spectrogram ``[B, 1, frames, F]`` → log-mel ``[B, 1, frames, mel_bins]`` in dB,
    as torchlibrosa's ``LogmelFilterBank`` in laion-clap's HTSAT (``ref=1``, ``amin=1e-10``,
    no ``top_db``), computed in float32 and returned in the dtype of the filter bank, i.e.
    of the model (its next layer, ``bn0``, has that dtype).

    It keeps torchlibrosa's frozen ``melW`` parameter ``[F, mel_bins]`` under the same name,
    so laion-clap checkpoints load unchanged; torchlibrosa's version multiplies in the
    parameter's dtype, which fails on a float32 spectrogram in a bf16-loaded model and would
    round the mel energies to bf16.
    """

    def __init__(self, mel_weights: torch.Tensor, amin: float, ref: float):
        super().__init__()
        self.melW = nn.Parameter(mel_weights.detach().clone(), requires_grad=False)
        self.amin, self.ref = amin, ref

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        with float32_preprocessing(power.device):
            mel = torch.matmul(power.float(), self.melW.float())
            db = 10.0 * torch.log10(mel.clamp(min=self.amin))
            db = db - 10.0 * math.log10(max(self.amin, self.ref))
        return db.to(self.melW.dtype)


def _checkpointed_forward(block: nn.Module, x: torch.Tensor) -> Any:
    """``block``'s own forward, its activations recomputed in the backward pass when
    training with gradients on (a bound method: ``copy.deepcopy`` rebinds it to the copy)."""
    forward = type(block).forward
    if block.training and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(forward, block, x, use_reentrant=False)
    return forward(block, x)


# The DFT basis of torchlibrosa's convolutional STFT, in laion-clap checkpoints; replaced by
# FFTSpectrogram, so these entries are skipped when loading.
_DFT_BASIS_PREFIX = "audio_branch.spectrogram_extractor."


class ClapHTSATBackbone(Backbone):
    """CLAP HTSAT audio encoder: waveforms ``[B, S]`` at 48 kHz → ``[B, 512]``."""

    modality = "audio"
    Options = ClapHTSATOptions
    presets = {
        "tiny": {
            "htsat_embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 2, 2, 4],
            "joint_dim": 64,
        },
        "full": {},
    }

    def __init__(self, options: ClapHTSATOptions):
        super().__init__(options)
        self.feature_extractor = None
        if options.format == "laion":
            htsat = laion_clap_module("htsat")
            audio_cfg = types.SimpleNamespace(
                model_type="HTSAT",
                sample_rate=options.sample_rate,
                window_size=options.fft_size,
                hop_size=options.hop_size,
                mel_bins=options.mel_bins,
                fmin=options.fmin,
                fmax=options.fmax,
                class_num=options.class_num,
                clip_samples=self.window_samples,
            )
            # torchlibrosa assigns `.data` on its STFT kernels, which fails under the meta
            # device that transformers' from_pretrained builds models on; build on the CPU.
            with torch.device("cpu"):
                self.audio_branch = htsat.HTSAT_Swin_Transformer(
                    spec_size=options.spec_size,
                    patch_size=4,
                    patch_stride=(4, 4),
                    num_classes=options.class_num,
                    embed_dim=options.htsat_embed_dim,
                    depths=options.depths,
                    num_heads=options.num_heads,
                    window_size=options.swin_window_size,
                    config=audio_cfg,
                    enable_fusion=False,
                    fusion_type="None",
                )
            self.audio_branch.spectrogram_extractor = FFTSpectrogram(
                options.fft_size, options.hop_size
            )
            logmel = self.audio_branch.logmel_extractor
            if logmel.top_db is not None or not logmel.is_log:
                raise ValueError("laion-clap's HTSAT changed its log-mel settings; update clap.py")
            self.audio_branch.logmel_extractor = LogMelFilterBank(
                logmel.melW, amin=logmel.amin, ref=logmel.ref
            )
            # The CLAP model's audio projection (laion-clap model.py, mlp_act "relu").
            self.audio_projection = nn.Sequential(
                nn.Linear(self.audio_branch.num_features, options.joint_dim),
                nn.ReLU(),
                nn.Linear(options.joint_dim, options.joint_dim),
            )
        else:
            from transformers import ClapAudioConfig, ClapAudioModelWithProjection

            if not options.hf_config:
                raise ValueError("format 'hf' needs options.hf_config (a ClapAudioConfig dict)")
            config = ClapAudioConfig(**options.hf_config)
            self.hf_model = ClapAudioModelWithProjection(config)

    @classmethod
    def options_from_source(cls, source: str) -> dict[str, Any]:
        path = Path(source)
        if path.is_dir():
            from transformers import ClapAudioConfig

            if not (path / "config.json").is_file():
                raise MissingCheckpointError(_hf_missing_message(path / "config.json"))
            config = ClapAudioConfig.from_pretrained(path, local_files_only=True)
            return {"format": "hf", "hf_config": config.to_diff_dict()}
        return {"format": "laion"}

    def data_options(self) -> dict[str, Any]:
        return {"audio_rate": self.options.sample_rate}

    @property
    def window_samples(self) -> int:
        return int(round(self.options.window_seconds * self.options.sample_rate))

    @property
    def output_dim(self) -> int:
        if self.options.format == "laion":
            return self.options.joint_dim
        return self.hf_model.config.projection_dim

    def blocks(self) -> list[nn.Module]:
        if self.options.format == "laion":
            stages, out = self.audio_branch.layers, [self.audio_branch.norm, self.audio_projection]
        else:
            stages = self.hf_model.audio_model.audio_encoder.layers
            out = [self.hf_model.audio_model.audio_encoder.norm, self.hf_model.audio_projection]
        blocks: list[nn.Module] = []
        for stage in stages:
            blocks.extend(stage.blocks)
            if stage.downsample is not None:
                blocks.append(stage.downsample)
        return blocks + [nn.ModuleList(out)]

    supports_gradient_checkpointing = True

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if self.options.format == "hf":
            if enabled:
                self.hf_model.activation_checkpointing_enable()
            else:
                self.hf_model.activation_checkpointing_disable()
            return
        # laion-clap's own switch (`use_checkpoint` on a stage) cannot run: it assigns the
        # block's (x, attn) pair to x and leaves attn unset in training mode. Each Swin block's
        # forward is routed through non-reentrant checkpointing instead (an instance
        # attribute, so the state dict and the stage's own loop stay as they are).
        for stage in self.audio_branch.layers:
            for block in stage.blocks:
                if enabled:
                    block.forward = types.MethodType(_checkpointed_forward, block)
                else:
                    block.__dict__.pop("forward", None)

    @property
    def gradient_checkpointing(self) -> bool:
        if self.options.format == "hf":
            return self.hf_model.is_activation_checkpointing
        return any("forward" in b.__dict__ for s in self.audio_branch.layers for b in s.blocks)

    # ------------------------------------------------------------------ loading

    def load_pretrained(self, source: str | Path) -> None:
        source = Path(source)
        if self.options.format == "laion":
            self._load_laion_checkpoint(source)
        else:
            self._load_hf_directory(source)

    def _load_laion_checkpoint(self, path: Path) -> None:
        if not path.is_file():
            raise MissingCheckpointError(
                f"LAION-CLAP checkpoint not found: {path}. Download the music checkpoint from "
                f"{LAION_CLAP_MUSIC_URL} and set model.channels.audio.source to its path."
            )
        # weights_only: an original checkpoint is a pickle; never execute code from it.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path} is not a LAION-CLAP checkpoint (no state_dict)")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        ours = {}
        for prefix in ("audio_branch.", "audio_projection."):
            ours.update({k: v for k, v in state.items() if k.startswith(prefix)})
        ours = {k: v for k, v in ours.items() if not k.startswith(_DFT_BASIS_PREFIX)}
        if not ours:
            raise ValueError(f"{path} has no audio_branch/audio_projection weights")
        hint = "(check the options: HTSAT-base is htsat_embed_dim=128, depths=[2,2,12,2])"
        try:
            missing, unexpected = self.load_state_dict(ours, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise ValueError(
                f"{path} does not match the configured HTSAT architecture {hint}: {err}"
            ) from err
        if missing or unexpected:
            raise ValueError(
                f"{path} does not match the configured HTSAT architecture {hint}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

    def _load_hf_directory(self, directory: Path) -> None:
        from transformers import ClapAudioModelWithProjection

        for name in ("config.json", "preprocessor_config.json"):
            if not (directory / name).is_file():
                raise MissingCheckpointError(_hf_missing_message(directory / name))
        model = ClapAudioModelWithProjection.from_pretrained(directory, local_files_only=True)
        self.hf_model.load_state_dict(model.state_dict(), strict=True)
        self.load_assets(directory)

    def save_assets(self, directory: Path) -> None:
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(directory)

    def load_assets(self, directory: Path) -> None:
        if self.options.format == "hf":
            from transformers import ClapFeatureExtractor

            if not (directory / "preprocessor_config.json").is_file():
                raise MissingCheckpointError(
                    _hf_missing_message(directory / "preprocessor_config.json")
                )
            self.feature_extractor = ClapFeatureExtractor.from_pretrained(directory)

    # ------------------------------------------------------------------ forward

    def prepare_waveforms(self, waveforms: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Fit each waveform to the window: ``[B, S]`` or list of ``[S_i]`` → ``[B, window]``."""
        if isinstance(waveforms, torch.Tensor):
            if waveforms.ndim == 1:
                raise ValueError("expected a batch of waveforms [B, samples]; got one waveform")
            if waveforms.ndim != 2:
                raise ValueError(
                    f"expected mono waveforms [B, samples], got shape {tuple(waveforms.shape)}"
                )
            if waveforms.shape[1] == self.window_samples:
                return waveforms.float()
        return torch.stack(
            [
                fit_to_window(torch.as_tensor(w).float(), self.window_samples, self.training)
                for w in waveforms
            ]
        )

    def forward(self, waveforms: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Embed mono 48-kHz waveforms → L2-normalised CLAP audio embeddings ``[B, 512]``."""
        x = self.prepare_waveforms(waveforms)
        if self.options.format == "laion":
            device = self.audio_projection[0].weight.device
            out = self.audio_branch({"waveform": x.to(device)}, device=device)
            embedding = self.audio_projection(out["embedding"])
        else:
            if self.feature_extractor is None:
                raise RuntimeError("CLAP (hf) backbone has no feature extractor: load it first")
            device = self.hf_model.audio_projection.linear1.weight.device
            features = self.feature_extractor(
                [w.numpy() for w in x.cpu()],
                sampling_rate=self.options.sample_rate,
                return_tensors="pt",
            )
            dtype = self.hf_model.audio_projection.linear1.weight.dtype
            embedding = self.hf_model(
                input_features=features["input_features"].to(device, dtype),
                is_longer=features.get("is_longer").to(device)
                if features.get("is_longer") is not None
                else None,
            ).audio_embeds
        return F.normalize(embedding, dim=-1)
