"""Audio backbone: CLAP's HTSAT audio encoder + CLAP audio projection (512-d).

One network: transformers' ``ClapAudioModelWithProjection``. Two checkpoint formats
(``format`` option):

* ``laion`` — an original LAION-CLAP checkpoint file such as
  ``music_audioset_epoch_15_esc_90.14.pt`` (HTSAT-base, not fused). Its audio branch and
  audio projection are converted onto transformers' module names on load by an explicit key
  mapping (:func:`laion_to_hf_state_dict`); the text branch is ignored. The architecture is
  read from the checkpoint's shapes (:func:`laion_architecture`), so HTSAT-tiny, -base and
  -large files all load. :func:`convert_laion_checkpoint` writes the converted weights once as
  a Hugging Face directory.
* ``hf`` — a Hugging Face CLAP directory loadable by ``ClapAudioModelWithProjection``
  (e.g. a local copy of ``laion/larger_clap_music``), with its ``preprocessor_config.json``.

The front end is ours, in torch: the power spectrogram (:class:`FFTSpectrogram`) and the
log-mel filter bank (:class:`LogMelFilterBank`) of laion-clap's HTSAT, which transformers'
``ClapFeatureExtractor`` also computes (in numpy, one clip at a time). That extractor is never
run; an ``hf`` directory's ``preprocessor_config.json`` only sets our front end's parameters.

Output: CLAP's audio embedding, ``F.normalize(audio_projection(htsat(x)))``, ``[B, 512]``.

Input: mono waveforms at 48 kHz, ``[B, S]`` or a list of 1-D tensors of any lengths. Each is
fitted to the 10-s window: longer ones are cropped — at random in training mode, at the
centre in eval mode (laion-clap crops at random even at inference, so its embeddings are
not reproducible) — and shorter ones are repeated then zero-padded as laion-clap does.

Training differs from laion-clap's own network in one respect: laion-clap's HTSAT also
applies SpecAugment (time and frequency stripes dropped) in training mode; transformers'
HTSAT, and so this channel, does not. Stochastic depth (0.1) and dropout (none) match.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import tempfile
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from trimodal.backbones.base import (
    Backbone,
    MissingCheckpointError,
    float32_preprocessing,
    parameter_dtype,
)

LAION_CLAP_MUSIC_URL = (
    "https://huggingface.co/lukewys/laion_clap/resolve/main/music_audioset_epoch_15_esc_90.14.pt"
)


@dataclasses.dataclass
class ClapHTSATOptions:
    """Architecture of the CLAP audio channel (defaults: HTSAT-base, the music checkpoint).

    The front end (``sample_rate`` … ``fmax``, ``window_seconds``) applies to both formats;
    the HTSAT settings build the network for ``laion``, ``hf_config`` for ``hf``.
    """

    format: Literal["laion", "hf"] = "laion"
    sample_rate: int = 48000
    window_seconds: float = 10.0
    mel_bins: int = 64
    fft_size: int = 1024
    hop_size: int = 480
    fmin: int = 50
    fmax: int = 14000
    # laion HTSAT settings (HTSAT-base.json of laion-clap)
    htsat_embed_dim: int = 128
    depths: list[int] = dataclasses.field(default_factory=lambda: [2, 2, 12, 2])
    num_heads: list[int] = dataclasses.field(default_factory=lambda: [4, 8, 16, 32])
    swin_window_size: int = 8
    spec_size: int = 256
    joint_dim: int = 512
    # Hugging Face ClapAudioConfig (format "hf"): its to_diff_dict()
    hf_config: dict[str, Any] = dataclasses.field(default_factory=dict)


def audio_config(options: ClapHTSATOptions):
    """The ``ClapAudioConfig`` of the network ``options`` describe."""
    from transformers import ClapAudioConfig

    if options.format == "hf":
        if not options.hf_config:
            raise ValueError("format 'hf' needs options.hf_config (a ClapAudioConfig dict)")
        config = ClapAudioConfig(**options.hf_config)
    else:
        embed = options.htsat_embed_dim
        config = ClapAudioConfig(
            spec_size=options.spec_size,
            num_mel_bins=options.mel_bins,
            window_size=options.swin_window_size,
            patch_embeds_hidden_size=embed,
            hidden_size=embed * 2 ** (len(options.depths) - 1),
            depths=list(options.depths),
            num_attention_heads=list(options.num_heads),
            projection_dim=options.joint_dim,
            projection_hidden_act="relu",
            # laion-clap's HTSAT: stochastic depth 0.1, no dropout.
            drop_path_rate=0.1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    if config.enable_fusion:
        raise ValueError(
            "fused CLAP models (enable_fusion) are not supported: they take four mel crops "
            "of a long clip; use a non-fused checkpoint such as the music one"
        )
    if config.num_mel_bins != options.mel_bins:
        raise ValueError(
            f"the HTSAT takes {config.num_mel_bins} mel bins but the front end makes "
            f"{options.mel_bins} (options.mel_bins)"
        )
    return config


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


def mel_filter_bank(options: ClapHTSATOptions) -> torch.Tensor:
    """The Slaney mel filter bank ``[n_fft // 2 + 1, mel_bins]`` of laion-clap's HTSAT:
    torchlibrosa's ``LogmelFilterBank`` is ``librosa.filters.mel(...).T`` with librosa's
    defaults (``htk=False``, ``norm="slaney"``), as is transformers' non-fusion extractor."""
    import librosa

    mel = librosa.filters.mel(
        sr=options.sample_rate,
        n_fft=options.fft_size,
        n_mels=options.mel_bins,
        fmin=options.fmin,
        fmax=options.fmax,
    )
    return torch.from_numpy(mel.T.copy()).float()


class LogMelFilterBank(nn.Module):
    """Power spectrogram ``[B, 1, frames, F]`` → log-mel ``[B, 1, frames, mel_bins]`` in dB,
    float32, as torchlibrosa's ``LogmelFilterBank`` in laion-clap's HTSAT (``ref=1``,
    ``amin=1e-10``, no ``top_db``) and transformers' ``ClapFeatureExtractor`` (``log_mel="dB"``).

    The filter bank ``mel_weights`` ``[F, mel_bins]`` is a persistent buffer built on the CPU,
    so that transformers' meta-device construction cannot leave it unset and a saved model
    carries it; it is multiplied in float32 whatever dtype the model was loaded in.
    """

    def __init__(self, mel_weights: torch.Tensor, amin: float = 1e-10, ref: float = 1.0):
        super().__init__()
        with torch.device("cpu"):
            self.register_buffer("mel_weights", mel_weights.detach().float().clone())
        self.amin, self.ref = amin, ref

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        with float32_preprocessing(power.device):
            mel = torch.matmul(power.float(), self.mel_weights.float())
            db = 10.0 * torch.log10(mel.clamp(min=self.amin))
            return db - 10.0 * math.log10(max(self.amin, self.ref))


# ------------------------------------------------------------------ the LAION-CLAP key mapping

_ENCODER = "audio_model.audio_encoder."
_BLOCK = "audio_branch.layers.{i}.blocks.{j}."
_HF_BLOCK = _ENCODER + "layers.{i}.blocks.{j}."

# Original LAION-CLAP audio keys (laion-clap's htsat.py and the audio projection of its
# model.py) → ClapAudioModelWithProjection's. A template ending in "." names a module: the
# parameter name after it (weight, bias, running_mean, ...) is kept. {i} a stage, {j} a block.
LAION_TO_HF_KEYS: dict[str, str] = {
    "audio_branch.bn0.": _ENCODER + "batch_norm.",
    "audio_branch.patch_embed.proj.": _ENCODER + "patch_embed.proj.",
    "audio_branch.patch_embed.norm.": _ENCODER + "patch_embed.norm.",
    _BLOCK + "norm1.": _HF_BLOCK + "layernorm_before.",
    _BLOCK + "attn.relative_position_bias_table": _HF_BLOCK
    + "attention.self.relative_position_bias_table",
    _BLOCK + "attn.proj.": _HF_BLOCK + "attention.output.dense.",
    _BLOCK + "norm2.": _HF_BLOCK + "layernorm_after.",
    _BLOCK + "mlp.fc1.": _HF_BLOCK + "intermediate.dense.",
    _BLOCK + "mlp.fc2.": _HF_BLOCK + "output.dense.",
    "audio_branch.layers.{i}.downsample.reduction.": _ENCODER + "layers.{i}.downsample.reduction.",
    "audio_branch.layers.{i}.downsample.norm.": _ENCODER + "layers.{i}.downsample.norm.",
    "audio_branch.norm.": _ENCODER + "norm.",
    "audio_projection.0.": "audio_projection.linear1.",
    "audio_projection.2.": "audio_projection.linear2.",
}
# laion-clap's fused query-key-value projection: its output rows are q, k, v in that order.
LAION_QKV_KEY = _BLOCK + "attn.qkv."
HF_QKV_KEYS = tuple(_HF_BLOCK + f"attention.self.{name}." for name in ("query", "key", "value"))
# In a LAION-CLAP file but not weights of the network: the fixed DFT basis of torchlibrosa's
# STFT (FFTSpectrogram replaces it), buffers both implementations derive from the architecture
# (relative position indices, shifted-window masks), and HTSAT's AudioSet classifier
# (``tscam_conv``, ``head``), which CLAP's embedding does not use.
LAION_DROPPED_KEYS = (
    "audio_branch.spectrogram_extractor.stft.",
    _BLOCK + "attn.relative_position_index",
    _BLOCK + "attn_mask",
    "audio_branch.tscam_conv.",
    "audio_branch.head.",
)
# The mel filter bank: not copied, compared with the one the front end builds.
LAION_MEL_KEY = "audio_branch.logmel_extractor.melW"


def _template_regex(template: str, prefix: bool = False) -> re.Pattern[str]:
    """A key template as a regex: the whole key, or with ``prefix`` any key it starts."""
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    if prefix:
        return re.compile(pattern)
    return re.compile(pattern + (r"(?P<rest>\w+)" if template.endswith(".") else "") + "$")


_RENAMES = [(_template_regex(k), v) for k, v in LAION_TO_HF_KEYS.items()]
_QKV = _template_regex(LAION_QKV_KEY)
_DROPPED = [_template_regex(k, prefix=True) for k in LAION_DROPPED_KEYS]
_BIAS_TABLE = _template_regex(_BLOCK + "attn.relative_position_bias_table")


def _formatted(template: str, match: re.Match[str]) -> str:
    groups = match.groupdict()
    return template.format(**groups) + groups.get("rest", "")


def laion_to_hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original LAION-CLAP audio weights → a ``ClapAudioModelWithProjection`` state dict.

    ``state`` holds ``audio_branch.*`` and ``audio_projection.*`` keys (``module.`` removed,
    as :func:`read_laion_checkpoint` returns them). Every key is renamed, split (``qkv``) or
    dropped as listed above; an unknown key is an error naming it (fused checkpoints, whose
    fusion layers transformers' non-fused network has no place for, end there).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == LAION_MEL_KEY or any(p.match(key) for p in _DROPPED):
            continue
        if match := _QKV.match(key):
            for template, part in zip(HF_QKV_KEYS, value.chunk(3, dim=0)):
                out[_formatted(template, match)] = part.clone()
            continue
        for pattern, template in _RENAMES:
            if match := pattern.match(key):
                out[_formatted(template, match)] = value
                break
        else:
            fused = " (a fused checkpoint: not supported)" if "fusion" in key else ""
            raise ValueError(f"unexpected LAION-CLAP audio weight {key!r}{fused}")
    return out


def read_laion_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The audio weights of an original LAION-CLAP checkpoint file: its ``audio_branch.*``
    and ``audio_projection.*`` entries, DataParallel's ``module.`` prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(
            f"LAION-CLAP checkpoint not found: {path}. Download the music checkpoint from "
            f"{LAION_CLAP_MUSIC_URL} and set model.channels.audio.source to its path."
        )
    # weights_only: an original checkpoint is a pickle; never execute code from it.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a LAION-CLAP checkpoint (no state_dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    audio = {k: v for k, v in state.items() if k.startswith(("audio_branch.", "audio_projection."))}
    if not audio:
        raise ValueError(f"{path} has no audio_branch/audio_projection weights")
    return audio


def laion_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The HTSAT options of a LAION-CLAP audio state dict, read from its shapes:
    ``htsat_embed_dim``, ``depths``, ``num_heads``, ``swin_window_size``, ``mel_bins`` and
    ``joint_dim`` (``spec_size`` is not recorded; every LAION-CLAP model uses 256)."""
    try:
        blocks: dict[int, list[torch.Tensor]] = {}
        for key, value in state.items():
            if match := _BIAS_TABLE.match(key):  # [(2 window - 1)², heads]
                blocks.setdefault(int(match["i"]), []).append(value)
        stages = [blocks[i] for i in range(len(blocks))]
        cells = stages[0][0].shape[0]
        return {
            "htsat_embed_dim": state["audio_branch.patch_embed.proj.weight"].shape[0],
            "depths": [len(tables) for tables in stages],
            "num_heads": [tables[0].shape[1] for tables in stages],
            "swin_window_size": (math.isqrt(cells) + 1) // 2,  # cells = (2w - 1)²
            "mel_bins": state["audio_branch.bn0.weight"].shape[0],
            "joint_dim": state["audio_projection.0.weight"].shape[0],
        }
    except (KeyError, IndexError) as err:
        raise ValueError(f"not an HTSAT LAION-CLAP checkpoint (missing {err})") from err


# ------------------------------------------------------------------ the backbone


def _checkpointed_forward(block: nn.Module, *args: Any) -> Any:
    """``block``'s own forward, its activations recomputed in the backward pass when
    training with gradients on (a bound method: ``copy.deepcopy`` rebinds it to the copy)."""
    forward = type(block).forward
    if block.training and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(forward, block, *args, use_reentrant=False)
    return forward(block, *args)


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
        from transformers import ClapAudioModelWithProjection

        self.spectrogram = FFTSpectrogram(options.fft_size, options.hop_size)
        self.logmel = LogMelFilterBank(mel_filter_bank(options))
        self.hf_model = ClapAudioModelWithProjection(audio_config(options))

    @classmethod
    def options_from_source(cls, source: str) -> dict[str, Any]:
        path = Path(source)
        if path.is_dir():
            return _hf_directory_options(path)
        return {"format": "laion", **laion_architecture(read_laion_checkpoint(path))}

    def data_options(self) -> dict[str, Any]:
        return {"audio_rate": self.options.sample_rate}

    @property
    def window_samples(self) -> int:
        return int(round(self.options.window_seconds * self.options.sample_rate))

    @property
    def output_dim(self) -> int:
        return self.hf_model.config.projection_dim

    def blocks(self) -> list[nn.Module]:
        encoder = self.hf_model.audio_model.audio_encoder
        blocks: list[nn.Module] = []
        for stage in encoder.layers:
            blocks.extend(stage.blocks)
            if stage.downsample is not None:
                blocks.append(stage.downsample)
        return blocks + [nn.ModuleList([encoder.norm, self.hf_model.audio_projection])]

    supports_gradient_checkpointing = True

    def _swin_blocks(self) -> list[nn.Module]:
        return [b for stage in self.hf_model.audio_model.audio_encoder.layers for b in stage.blocks]

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        # transformers' CLAP refuses activation_checkpointing_enable (it does not declare
        # support), so each Swin block's forward is routed through non-reentrant
        # checkpointing instead (an instance attribute: the state dict and the stage's own
        # loop stay as they are).
        for block in self._swin_blocks():
            if enabled:
                block.forward = types.MethodType(_checkpointed_forward, block)
            else:
                block.__dict__.pop("forward", None)

    @property
    def gradient_checkpointing(self) -> bool:
        return any("forward" in block.__dict__ for block in self._swin_blocks())

    # ------------------------------------------------------------------ loading

    def load_pretrained(self, source: str | Path) -> None:
        source = Path(source)
        if self.options.format == "laion":
            self.load_laion_state(read_laion_checkpoint(source), str(source))
        else:
            self._load_hf_directory(source)

    def load_laion_state(self, state: Mapping[str, torch.Tensor], name: str) -> None:
        """Load an original LAION-CLAP audio state dict (:func:`read_laion_checkpoint`)."""
        hint = "(check the options: HTSAT-base is htsat_embed_dim=128, depths=[2,2,12,2])"
        if LAION_MEL_KEY in state:
            theirs = state[LAION_MEL_KEY].float()
            ours = self.logmel.mel_weights
            if theirs.shape != ours.shape or not torch.allclose(theirs, ours, atol=1e-6):
                raise ValueError(
                    f"{name}: its mel filter bank is not the one the options describe "
                    f"(sample_rate, fft_size, mel_bins, fmin, fmax) {hint}"
                )
        converted = laion_to_hf_state_dict(state)
        # transformers' relative position indices are derived buffers it builds itself.
        derived = {k for k in self.hf_model.state_dict() if k.endswith("relative_position_index")}
        try:
            missing, unexpected = self.hf_model.load_state_dict(converted, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise ValueError(
                f"{name} does not match the configured HTSAT architecture {hint}: {err}"
            ) from err
        missing = [k for k in missing if k not in derived]
        if missing or unexpected:
            raise ValueError(
                f"{name} does not match the configured HTSAT architecture {hint}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

    def _load_hf_directory(self, directory: Path) -> None:
        from transformers import ClapAudioModelWithProjection

        for name in ("config.json", "preprocessor_config.json"):
            if not (directory / name).is_file():
                raise MissingCheckpointError(_hf_missing_message(directory / name))
        model = ClapAudioModelWithProjection.from_pretrained(directory, local_files_only=True)
        self.hf_model.load_state_dict(model.state_dict(), strict=True)

    def save_hf_directory(self, directory: str | Path) -> None:
        """Write the network as a Hugging Face CLAP directory: ``config.json``, safetensors
        weights and a ``preprocessor_config.json`` with this front end's settings (loadable
        here as format ``hf``, and by transformers' ``ClapAudioModelWithProjection`` and
        ``ClapFeatureExtractor``)."""
        from transformers import ClapFeatureExtractor

        o = self.options
        if not float(o.window_seconds).is_integer():
            raise ValueError(
                f"window_seconds {o.window_seconds}: a Hugging Face CLAP directory records "
                "the window in whole seconds (max_length_s)"
            )
        self.hf_model.save_pretrained(directory)
        ClapFeatureExtractor(
            feature_size=o.mel_bins,
            sampling_rate=o.sample_rate,
            hop_length=o.hop_size,
            max_length_s=int(o.window_seconds),
            fft_window_size=o.fft_size,
            frequency_min=o.fmin,
            frequency_max=o.fmax,
            padding="repeatpad",
            truncation="rand_trunc",
        ).save_pretrained(directory)

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

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Window-length waveforms ``[B, window]`` → HTSAT's input, log-mel
        ``[B, 1, frames, mel_bins]`` in dB (float32)."""
        return self.logmel(self.spectrogram(waveforms))

    def forward(self, waveforms: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Embed mono 48-kHz waveforms → L2-normalised CLAP audio embeddings ``[B, 512]``."""
        x = self.prepare_waveforms(waveforms).to(self.logmel.mel_weights.device)
        features = self.log_mel(x).to(parameter_dtype(self.hf_model))
        return F.normalize(self.hf_model(input_features=features).audio_embeds, dim=-1)


def _hf_directory_options(directory: Path) -> dict[str, Any]:
    """Options of a Hugging Face CLAP directory: its ``config.json`` and, for our front end,
    the settings in its ``preprocessor_config.json``."""
    from transformers import ClapAudioConfig, ClapFeatureExtractor

    for name in ("config.json", "preprocessor_config.json"):
        if not (directory / name).is_file():
            raise MissingCheckpointError(_hf_missing_message(directory / name))
    config = ClapAudioConfig.from_pretrained(directory, local_files_only=True)
    extractor = ClapFeatureExtractor.from_pretrained(directory, local_files_only=True)
    if extractor.padding != "repeatpad":
        raise ValueError(
            f"{directory / 'preprocessor_config.json'}: padding {extractor.padding!r} is not "
            "supported (short clips are repeated then zero-padded: 'repeatpad')"
        )
    return {
        "format": "hf",
        "hf_config": config.to_diff_dict(),
        "sample_rate": extractor.sampling_rate,
        "window_seconds": float(extractor.max_length_s),
        "mel_bins": extractor.feature_size,
        "fft_size": extractor.fft_window_size,
        "hop_size": extractor.hop_length,
        "fmin": extractor.frequency_min,
        "fmax": extractor.frequency_max,
    }


def convert_laion_checkpoint(src: str | Path, dst_dir: str | Path) -> Path:
    """Convert an original LAION-CLAP checkpoint file to a Hugging Face CLAP directory.

    The architecture is read from the file; the weights go through the same mapping as
    loading format ``laion`` (so the directory loads as format ``hf`` to the same network).
    ``dst_dir`` must not exist or be empty; it is written whole or not at all.
    Returns ``dst_dir``.
    """
    src, dst = Path(src), Path(dst_dir)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} exists and is not an empty directory")
    state = read_laion_checkpoint(src)
    options = ClapHTSATBackbone.resolve_options(laion_architecture(state), "full")
    backbone = ClapHTSATBackbone(options)
    backbone.load_laion_state(state, str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        backbone.save_hf_directory(tmp)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
