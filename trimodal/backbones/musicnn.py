"""Audio backbone: musicnn (Pons & Serra, 2019) in PyTorch, with the real MTT/MSD weights.

musicnn is a music-tagging CNN on log-mel spectrograms: a musically motivated front end
(*timbral* filters spanning 40 % and 70 % of the mel axis over 7 frames, *temporal* filters
spanning 128/64/32 frames on one band, each max-pooled over frequency), a 1-D mid end of three
7-frame convolutions with residual connections, and a back end that pools the dense
concatenation of front- and mid-end features over time (mean and max) into a penultimate dense
layer and the 50-tag output. This module reimplements that network; the weights are the
authors' MTT_musicnn / MSD_musicnn TF1 checkpoints from the ``musicnn`` 0.1.0 package,
converted once by::

    python -m trimodal.backbones.musicnn convert [--model MTT_musicnn|MSD_musicnn|all]
        [--wheel PATH | --sdist PATH] [--cache-dir DIR]

which runs ``pip download --no-deps musicnn==0.1.0`` (unless given the package file), reads
the checkpoints without TensorFlow (:mod:`trimodal.backbones._tf_checkpoint`) and writes
``<cache>/<model>.safetensors`` plus ``<cache>/<model>.json`` (tag names, source package and
hashes); ``<cache>`` defaults to ``$TRIMODAL_CACHE/musicnn`` (``~/.cache/trimodal/musicnn``).

Input: mono waveforms at 16 kHz, ``[B, S]`` or a list of 1-D tensors. The log-mel front end
is musicnn's own (``extractor.batch_data``) done in torch so it runs batched and on GPU:
power STFT (512-point periodic Hann window, hop 256, centred), 96 Slaney mel bands
(``librosa.filters.mel``), rounded to float16 as musicnn does before the compression
``log10(10000·x + 1)``; then non-overlapping 3-s patches of 187 frames, as musicnn's
extractor cuts them at inference (trailing frames that do not fill a patch are dropped; a
clip shorter than one patch is first repeated to fill it, like musicnn's training
"repeat-pad"). Each patch goes through the network; a clip's output is the mean over its
patches.

Output (``output`` option), ``[B, D]``:

* ``pooled`` (default, D = 1506): the back end's temporal pooling — mean over time (753) then
  max over time (753) of the 753-channel feature map — i.e. the network without its two dense
  layers. This is what the dual-encoder thesis used (docs/research.md#dual-encoder-study-model;
  Veldkamp's thesis, appendix: "only the first seven layers … omitting the two dense
  classification layers. The output are vectors of size 1506"). Note the order: ours is
  ``[mean, max]``; musicnn's dense layer reads the interleaved
  ``[max_0, mean_0, max_1, mean_1, …]`` internally.
* ``penultimate`` (D = 200): the penultimate dense layer (after ReLU and batch norm).
* ``taggram`` (D = 50): sigmoid tag probabilities (names in ``tag_names``).

Batch-norm layers use TF's epsilon (1e-3); in eval mode they equal TF's ``training=False``.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trimodal.backbones.base import (
    Backbone,
    MissingCheckpointError,
    default_cache_dir,
    float32_preprocessing,
)
from trimodal.utils import atomic_write_bytes

MUSICNN_PACKAGE = "musicnn"
MUSICNN_VERSION = "0.1.0"
MUSICNN_MODELS = ("MTT_musicnn", "MSD_musicnn")
# PyPI files never change once published: pin what we convert. The wheel is what PyPI serves
# for musicnn 0.1.0; the checkpoint hashes are the same in any copy of the package.
MUSICNN_WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
CHECKPOINT_SHA256 = {
    "MTT_musicnn": {
        ".index": "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
        ".data-00000-of-00001": "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
    },
    "MSD_musicnn": {
        ".index": "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
        ".data-00000-of-00001": "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    },
}
_LABEL_VARIABLES = {"MTT_musicnn": "MTT_LABELS", "MSD_musicnn": "MSD_LABELS"}
CONVERT_COMMAND = "python -m trimodal.backbones.musicnn convert"

# musicnn's configuration.py: the signal processing the models were trained with.
SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1
TF_BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default
FLOAT16_MAX = 65504.0


def default_musicnn_dir() -> Path:
    """Where ``convert`` writes and the backbone looks: ``<default_cache_dir()>/musicnn``."""
    return default_cache_dir() / "musicnn"


def _missing_message(path: Path, model: str) -> str:
    return (
        f"converted musicnn weights not found: {path}. Create them (downloads the musicnn "
        f"{MUSICNN_VERSION} package from PyPI, ~30 MB, and converts its TF checkpoints; no "
        f"TensorFlow needed) with `{CONVERT_COMMAND} --model {model}"
        + (f" --cache-dir {path.parent}`" if path.parent != default_musicnn_dir() else "`")
        + ", then set model.channels.audio.source to that directory or .safetensors file."
    )


@dataclasses.dataclass
class MusicnnOptions:
    """Architecture, front end and output of the musicnn channel (defaults: MTT_musicnn)."""

    checkpoint: Literal["MTT_musicnn", "MSD_musicnn"] = "MTT_musicnn"
    output: Literal["pooled", "penultimate", "taggram"] = "pooled"
    # musicnn's build_musicnn: int(1.6*128) timbral and int(1.6*32) temporal filters.
    timbral_filters: int = 204
    temporal_filters: int = 51
    midend_filters: int = 64
    backend_units: int = 200
    num_classes: int = 50
    # Front end (musicnn configuration.py); the models were trained with exactly these.
    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    patch_frames: int = PATCH_FRAMES
    # librosa < 0.10 (musicnn's era, librosa 0.7) padded the centred STFT by reflection;
    # librosa ≥ 0.10 pads with zeros by default. "reflect" reproduces the training data.
    pad_mode: Literal["reflect", "constant"] = "reflect"
    # musicnn casts the mel power to float16 before the log (its training data was stored so).
    float16_rounding: bool = True


# ----------------------------------------------------------------------------- network


def _tf_same_pad(kernel: int) -> tuple[int, int]:
    """TF "SAME" padding of a stride-1 convolution: the extra row goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


class _FrequencyPooledConv(nn.Module):
    """Conv2d on the log-mel → ReLU → batch norm → max over frequency: ``[N, 1, T, F]`` →
    ``[N, C, T]``. Timbral blocks: kernel ``(7, k_f)``, time zero-padded 3+3, valid in
    frequency. Temporal blocks: kernel ``(k_t, 1)`` with TF "SAME" padding in time."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = nn.BatchNorm2d(filters, eps=TF_BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_pad))
        return self.bn(F.relu(self.conv(x))).amax(dim=3)


class _MidendLayer(nn.Module):
    """7-frame 1-D convolution over all channels → ReLU → batch norm: ``[N, C, T]`` →
    ``[N, midend_filters, T]`` (musicnn writes it as a 2-D conv spanning the channel axis)."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7)
        self.bn = nn.BatchNorm1d(filters, eps=TF_BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(F.pad(x, (3, 3)))))


class _Backend(nn.Module):
    """Temporal mean/max pooling → BN → dropout → dense+ReLU → BN → dropout → dense logits."""

    def __init__(self, channels: int, units: int, num_classes: int):
        super().__init__()
        self.pool_bn = nn.BatchNorm1d(2 * channels, eps=TF_BN_EPSILON)
        self.pool_dropout = nn.Dropout(0.5)
        self.dense = nn.Linear(2 * channels, units)
        self.dense_bn = nn.BatchNorm1d(units, eps=TF_BN_EPSILON)
        self.dense_dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(units, num_classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features [N, C, T]`` → ``mean_pool``/``max_pool [N, C]``, ``penultimate
        [N, units]``, ``logits [N, num_classes]``."""
        max_pool = features.amax(dim=2)
        mean_pool = features.mean(dim=2)
        # musicnn concatenates [max, mean] on a trailing axis of size 1 and flattens, so its
        # dense layer (and the checkpoint's weights) see them interleaved per channel.
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        hidden = self.dense(self.pool_dropout(self.pool_bn(flat)))
        penultimate = self.dense_bn(F.relu(hidden))
        logits = self.classifier(self.dense_dropout(penultimate))
        return {
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
            "logits": logits,
        }


class MusicnnBackbone(Backbone):
    """musicnn: 16-kHz waveforms ``[B, S]`` → ``[B, 1506]`` pooled features (or penultimate
    ``[B, 200]`` / taggram ``[B, 50]``), averaged over the clip's 3-s patches."""

    modality = "audio"
    Options = MusicnnOptions
    presets = {
        "tiny": {
            "timbral_filters": 8,
            "temporal_filters": 4,
            "midend_filters": 8,
            "backend_units": 16,
        },
        "full": {},
    }

    def __init__(self, options: MusicnnOptions):
        super().__init__(options)
        o = options
        # librosa builds the mel matrix in numpy; build the front-end constants on the CPU so
        # that transformers' meta-device construction cannot leave them uninitialised — they
        # are also saved with the model (persistent buffers), so a loaded model keeps them.
        with torch.device("cpu"):
            self.register_buffer("window", torch.hann_window(o.n_fft, periodic=True))
            self.register_buffer("mel_basis", torch.from_numpy(self._mel_filters(o)))
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPSILON)
        self.timbral = nn.ModuleList(
            _FrequencyPooledConv(o.timbral_filters, (7, int(share * o.n_mels)), (3, 3))
            for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(
            _FrequencyPooledConv(o.temporal_filters, (k, 1), _tf_same_pad(k)) for k in (128, 64, 32)
        )
        frontend_channels = 2 * o.timbral_filters + 3 * o.temporal_filters
        self.midend = nn.ModuleList(
            [
                _MidendLayer(frontend_channels, o.midend_filters),
                _MidendLayer(o.midend_filters, o.midend_filters),
                _MidendLayer(o.midend_filters, o.midend_filters),
            ]
        )
        self.pooled_channels = frontend_channels + 3 * o.midend_filters
        self.backend = _Backend(self.pooled_channels, o.backend_units, o.num_classes)
        self.tag_names: list[str] | None = None

    @staticmethod
    def _mel_filters(o: MusicnnOptions) -> np.ndarray:
        import librosa

        # librosa.feature.melspectrogram's defaults (htk=False, norm="slaney", fmax=sr/2);
        # librosa 0.7's norm=1 is the same Slaney normalisation.
        return librosa.filters.mel(sr=o.sample_rate, n_fft=o.n_fft, n_mels=o.n_mels).astype(
            np.float32
        )

    # ------------------------------------------------------------------ interface

    @property
    def output_dim(self) -> int:
        return {
            "pooled": 2 * self.pooled_channels,
            "penultimate": self.options.backend_units,
            "taggram": self.options.num_classes,
        }[self.options.output]

    def data_options(self) -> dict[str, Any]:
        return {"audio_rate": self.options.sample_rate}

    def blocks(self) -> list[nn.Module]:
        frontend = nn.ModuleList([self.input_bn, self.timbral, self.temporal])
        return [frontend, *self.midend, self.backend]

    @classmethod
    def options_from_source(cls, source: str) -> dict[str, Any]:
        path = Path(source).expanduser()
        if path.is_file():
            # A converted file records which model it is; the options must agree with it.
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                model = (f.metadata() or {}).get("model")
            if model in MUSICNN_MODELS:
                return {"checkpoint": model}
        return {}

    # ------------------------------------------------------------------ loading

    def load_pretrained(self, source: str | Path) -> None:
        """Load converted weights: ``source`` is the cache directory written by ``convert``
        (reads ``<options.checkpoint>.safetensors`` there) or a ``.safetensors`` file."""
        from safetensors.torch import load_file

        path = Path(source).expanduser()
        model = self.options.checkpoint
        file = path / f"{model}.safetensors" if path.is_dir() or not path.suffix else path
        if not file.is_file():
            raise MissingCheckpointError(_missing_message(file, model))
        meta_path = file.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("safetensors_sha256"):
            digest = _sha256(file)
            if digest != meta["safetensors_sha256"]:
                raise ValueError(
                    f"{file} does not match the sha256 recorded in {meta_path} (file changed or "
                    f"partly written): run `{CONVERT_COMMAND} --model {model}` again"
                )
        state = load_file(str(file))
        # The front-end constants are computed, not converted; everything else must match.
        frontend = {"window", "mel_basis"}
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise ValueError(
                f"{file} does not fit the configured musicnn (use the 'full' preset): {err}"
            ) from err
        if set(missing) - frontend or unexpected:
            raise ValueError(
                f"{file} is not a converted {model}: missing {sorted(set(missing) - frontend)[:5]}"
                f", unexpected {unexpected[:5]}"
            )
        self.tag_names = list(meta["labels"]) if meta.get("labels") else None

    def save_assets(self, directory: Path) -> None:
        if self.tag_names is not None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "musicnn_tags.json").write_text(json.dumps(self.tag_names))

    def load_assets(self, directory: Path) -> None:
        path = directory / "musicnn_tags.json"
        if path.is_file():
            self.tag_names = json.loads(path.read_text())

    # ------------------------------------------------------------------ forward

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """musicnn's input representation: ``[B, S]`` waveforms → ``[B, frames, n_mels]``
        with ``frames = 1 + S // hop_length``.

        ``log10(10000 · float16(mel_power) + 1)`` of librosa's
        ``melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96)`` (power 2,
        centred STFT, periodic Hann window).
        """
        o = self.options
        x = waveforms.to(self.window.device, torch.float32)
        # Float32 whatever the model's dtype: the constants too (a bf16-loaded model has them
        # in bf16), and with autocast off (it would run the mel matmul in bf16).
        with float32_preprocessing(x.device):
            spec = torch.stft(
                x,
                n_fft=o.n_fft,
                hop_length=o.hop_length,
                win_length=o.n_fft,
                window=self.window.float(),
                center=True,
                pad_mode=o.pad_mode,
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # [B, n_fft//2 + 1, frames]
            mel = torch.matmul(self.mel_basis.float(), power)  # [B, n_mels, frames]
            if o.float16_rounding:
                # Clamped: musicnn would turn a value beyond float16's range into inf (and
                # NaN further on); the largest float16 keeps the result finite.
                mel = mel.clamp(max=FLOAT16_MAX).half().float()
            return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)

    def patches(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` → log-mel patches ``[B, P, patch_frames, n_mels]``: non-overlapping,
        from the first frame; a clip shorter than one patch is repeated until it fills one."""
        o = self.options
        min_samples = (o.patch_frames - 1) * o.hop_length
        if waveforms.shape[1] == 0:
            raise ValueError("cannot embed an empty waveform")
        if waveforms.shape[1] < min_samples:
            reps = -(-min_samples // waveforms.shape[1])
            waveforms = waveforms.repeat(1, reps)[:, :min_samples]
        mel = self.log_mel(waveforms)
        n = mel.shape[1] // o.patch_frames
        return mel[:, : n * o.patch_frames].reshape(mel.shape[0], n, o.patch_frames, o.n_mels)

    def forward_patches(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on log-mel patches ``[N, T, n_mels]`` (musicnn's ``x``).

        Returns per patch: ``timbral [N, T, 2·timbral_filters]``, ``temporal
        [N, T, 3·temporal_filters]``, ``cnn1``/``cnn2``/``cnn3 [N, T, midend_filters]``,
        ``mean_pool``/``max_pool [N, 753]``, ``pooled [N, 1506]`` (mean then max),
        ``penultimate [N, backend_units]``, ``logits`` and ``taggram [N, num_classes]``.
        Frame-level features are time-major like musicnn's.
        """
        weight = self.input_bn.weight
        x = self.input_bn(patches.to(weight.device, weight.dtype).unsqueeze(1))
        timbral = [block(x) for block in self.timbral]
        temporal = [block(x) for block in self.temporal]
        frontend = torch.cat(timbral + temporal, dim=1)  # [N, 561, T]
        cnn1 = self.midend[0](frontend)
        cnn2 = self.midend[1](cnn1) + cnn1
        cnn3 = self.midend[2](cnn2) + cnn2
        out = self.backend(torch.cat([frontend, cnn1, cnn2, cnn3], dim=1))
        out["pooled"] = torch.cat([out["mean_pool"], out["max_pool"]], dim=1)
        out["taggram"] = torch.sigmoid(out["logits"])
        out["timbral"] = torch.cat(timbral, dim=1).transpose(1, 2)
        out["temporal"] = torch.cat(temporal, dim=1).transpose(1, 2)
        for name, value in (("cnn1", cnn1), ("cnn2", cnn2), ("cnn3", cnn3)):
            out[name] = value.transpose(1, 2)
        return out

    def _embed_batch(self, waveforms: torch.Tensor) -> torch.Tensor:
        patches = self.patches(waveforms)  # [B, P, T, n_mels]
        b, p = patches.shape[:2]
        features = self.forward_patches(patches.flatten(0, 1))[self.options.output]
        return features.reshape(b, p, -1).mean(dim=1)

    def forward(self, waveforms: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Mono 16-kHz waveforms ``[B, S]`` (or B tensors ``[S_i]``) → ``[B, output_dim]``,
        the mean of the selected output over each clip's 3-s patches."""
        if isinstance(waveforms, torch.Tensor):
            if waveforms.ndim != 2:
                raise ValueError(
                    f"expected mono waveforms [B, samples], got shape {tuple(waveforms.shape)}"
                )
            return self._embed_batch(waveforms)
        # Different lengths give different patch counts: one clip at a time.
        return torch.cat([self._embed_batch(torch.as_tensor(w).reshape(1, -1)) for w in waveforms])


# ----------------------------------------------------------------------------- conversion

# TF variable scope (musicnn's layer creation order) → our module path.
_TF_LAYERS = {
    "batch_normalization": "input_bn",
    "conv2d": "timbral.0.conv",
    "batch_normalization_1": "timbral.0.bn",
    "conv2d_1": "timbral.1.conv",
    "batch_normalization_2": "timbral.1.bn",
    "conv2d_2": "temporal.0.conv",
    "batch_normalization_3": "temporal.0.bn",
    "conv2d_3": "temporal.1.conv",
    "batch_normalization_4": "temporal.1.bn",
    "conv2d_4": "temporal.2.conv",
    "batch_normalization_5": "temporal.2.bn",
    "conv2d_5": "midend.0.conv",
    "batch_normalization_6": "midend.0.bn",
    "conv2d_6": "midend.1.conv",
    "batch_normalization_7": "midend.1.bn",
    "conv2d_7": "midend.2.conv",
    "batch_normalization_8": "midend.2.bn",
    "batch_normalization_9": "backend.pool_bn",
    "dense": "backend.dense",
    "batch_normalization_10": "backend.dense_bn",
    "dense_1": "backend.classifier",
}
_TF_BN_PARAMS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def tf_to_torch_state(tf_vars: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map musicnn's TF variables to this module's state dict (optimizer slots ignored).

    Layouts: TF conv kernels are ``[kh, kw, in, out]`` (NHWC, time × frequency), torch's
    ``[out, in, kh, kw]``; the mid-end kernels ``[7, C, 1, out]`` become Conv1d
    ``[out, C, 7]``; dense kernels ``[in, out]`` become Linear weights ``[out, in]``.
    """
    state: dict[str, torch.Tensor] = {}
    for scope, module in _TF_LAYERS.items():
        if scope.startswith("batch_normalization"):
            for tf_name, torch_name in _TF_BN_PARAMS.items():
                key = f"{scope}/{tf_name}"
                if key not in tf_vars:
                    raise KeyError(f"musicnn checkpoint lacks {key}")
                state[f"{module}.{torch_name}"] = torch.from_numpy(tf_vars[key].copy())
            state[f"{module}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
            continue
        kernel, bias = tf_vars[f"{scope}/kernel"], tf_vars[f"{scope}/bias"]
        if scope.startswith("dense"):
            weight = kernel.T
        elif module.startswith("midend"):
            weight = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            weight = kernel.transpose(3, 2, 0, 1)
        state[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{module}.bias"] = torch.from_numpy(bias.copy())
    return state


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _PackageFiles:
    """Read members of the musicnn wheel (zip) or sdist (tar.gz/zip) by their path inside
    the ``musicnn/`` package, without extracting anything else to disk."""

    def __init__(self, path: Path):
        self.path = path
        name = path.name
        if name.endswith(".whl") or name.endswith(".zip"):
            self._zip = zipfile.ZipFile(path)
            self._names = self._zip.namelist()
            self._tar = None
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            self._tar = tarfile.open(path)
            self._names = [m.name for m in self._tar.getmembers() if m.isfile()]
            self._zip = None
        else:
            raise ValueError(f"{path}: not a wheel (.whl) or sdist (.tar.gz/.zip) file")

    def read(self, inner: str) -> bytes:
        """Bytes of ``musicnn/<inner>`` (a wheel has it at the top, an sdist one level down)."""
        target = f"musicnn/{inner}"
        found = [n for n in self._names if n == target or n.endswith("/" + target)]
        if not found:
            raise FileNotFoundError(f"{self.path} has no {target}: not the musicnn package?")
        name = min(found, key=len)
        if self._zip is not None:
            return self._zip.read(name)
        member = self._tar.extractfile(name)
        assert member is not None
        return member.read()


def _read_labels(configuration_py: bytes, variable: str) -> list[str]:
    """A list literal from musicnn's configuration.py, parsed (never executed)."""
    tree = ast.parse(configuration_py.decode("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == variable for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"musicnn/configuration.py defines no {variable}")


def download_package(directory: Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``directory``; the wheel or sdist path.

    PyPI serves a pure-Python wheel (``musicnn-0.1.0-py3-none-any.whl``); an sdist is handled
    too. ``--no-deps``: musicnn's declared TensorFlow/librosa pins cannot be installed on
    Python 3.11, and nothing from them is needed.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        f"{MUSICNN_PACKAGE}=={MUSICNN_VERSION}",
        "-d",
        str(directory),
    ]
    print("running:", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"pip download failed (exit {result.returncode}):\n{result.stderr[-2000:]}\n"
            "Without network, download musicnn-0.1.0-py3-none-any.whl elsewhere and pass it "
            "with --wheel PATH."
        )
    files = sorted(
        p for p in directory.iterdir() if p.name.lower().startswith(f"{MUSICNN_PACKAGE}-")
    )
    if len(files) != 1:
        raise RuntimeError(f"pip download left {[p.name for p in files]} in {directory}")
    return files[0]


def _package_sha256(package: Path) -> str:
    """The package file's sha256; a wheel other than PyPI's is noted, not refused (its
    checkpoint files are verified one by one)."""
    package_sha = _sha256(package)
    if package.name.endswith(".whl") and package_sha != MUSICNN_WHEEL_SHA256:
        print(
            f"note: {package.name} sha256 {package_sha} differs from PyPI's wheel; the "
            "checkpoint files are verified individually below",
            flush=True,
        )
    return package_sha


def _extract_checkpoint(
    files: _PackageFiles,
    model: str,
    ckpt_dir: Path,
    package: Path,
    checkpoint_sha256: dict[str, dict[str, str]] | None,
) -> dict[str, str]:
    """Write ``model``'s TF checkpoint files from the package into ``ckpt_dir``, checking
    each against ``checkpoint_sha256`` (``None``: unchecked); return their sha256."""
    # musicnn saves each model with the prefix "<model>/" (files ".index", ".data-…").
    ckpt_dir.mkdir()
    hashes = {}
    for suffix in (".index", ".data-00000-of-00001"):
        data = files.read(f"{model}/{suffix}")
        hashes[suffix] = hashlib.sha256(data).hexdigest()
        expected = None if checkpoint_sha256 is None else checkpoint_sha256[model][suffix]
        if expected is not None and hashes[suffix] != expected:
            raise ValueError(
                f"{package}: musicnn/{model}/{suffix} has sha256 {hashes[suffix]}, "
                f"expected {expected} (musicnn {MUSICNN_VERSION}): corrupt or a "
                "different release"
            )
        (ckpt_dir / suffix).write_bytes(data)
    return hashes


def convert(
    models: list[str],
    cache_dir: Path | None = None,
    package: Path | None = None,
    checkpoint_sha256: dict[str, dict[str, str]] | None = CHECKPOINT_SHA256,
) -> list[Path]:
    """Convert musicnn's TF1 checkpoints to ``<cache_dir>/<model>.safetensors`` + ``.json``.

    Args:
        models: names from :data:`MUSICNN_MODELS`.
        cache_dir: output directory (default :func:`default_musicnn_dir`).
        package: a musicnn 0.1.0 wheel or sdist; ``None`` runs ``pip download``.
        checkpoint_sha256: expected sha256 of each model's ``.index``/``.data-…`` file
            (default: musicnn 0.1.0's); ``None`` skips the check (tests with synthetic
            checkpoints).
    Returns:
        The safetensors files written.
    """
    from safetensors.torch import save

    from trimodal.backbones._tf_checkpoint import read_checkpoint

    cache_dir = Path(cache_dir) if cache_dir is not None else default_musicnn_dir()
    unknown = [m for m in models if m not in MUSICNN_MODELS]
    if unknown:
        raise ValueError(f"unknown musicnn model(s) {unknown}; known: {list(MUSICNN_MODELS)}")
    written = []
    with tempfile.TemporaryDirectory(prefix="trimodal-musicnn-") as tmp:
        tmp_dir = Path(tmp)
        if package is None:
            package = download_package(tmp_dir / "download")
        package = Path(package)
        if not package.is_file():
            raise FileNotFoundError(f"musicnn package file not found: {package}")
        package_sha = _package_sha256(package)
        files = _PackageFiles(package)
        configuration = files.read("configuration.py")
        for model in models:
            ckpt_dir = tmp_dir / model
            hashes = _extract_checkpoint(files, model, ckpt_dir, package, checkpoint_sha256)
            state = tf_to_torch_state(read_checkpoint(str(ckpt_dir) + "/"))
            # Check against the architecture before writing anything.
            reference = MusicnnBackbone(MusicnnOptions(checkpoint=model))
            missing, unexpected = reference.load_state_dict(state, strict=False)
            if set(missing) != {"window", "mel_basis"} or unexpected:
                raise ValueError(f"{model}: conversion incomplete: {missing}, {unexpected}")
            labels = _read_labels(configuration, _LABEL_VARIABLES[model])
            if len(labels) != reference.options.num_classes:
                raise ValueError(f"{model}: {len(labels)} tag names for 50 outputs")
            blob = save(
                state,
                metadata={
                    "model": model,
                    "source": f"{MUSICNN_PACKAGE}=={MUSICNN_VERSION}",
                    "format": "pt",
                },
            )
            out = cache_dir / f"{model}.safetensors"
            atomic_write_bytes(out, blob)
            meta = {
                "model": model,
                "labels": labels,
                "source_package": MUSICNN_PACKAGE,
                "source_version": MUSICNN_VERSION,
                "source_file": package.name,
                "source_file_sha256": package_sha,
                "checkpoint_sha256": hashes,
                "safetensors_sha256": hashlib.sha256(blob).hexdigest(),
                "tensors": len(state),
                "licence": "ISC (musicnn, Jordi Pons and Xavier Serra)",
            }
            atomic_write_bytes(cache_dir / f"{model}.json", json.dumps(meta, indent=2).encode())
            print(f"wrote {out} ({len(state)} tensors) and {out.with_suffix('.json')}", flush=True)
            written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m trimodal.backbones.musicnn convert ...`` (:mod:`.musicnn_cli`)."""
    from trimodal.backbones.musicnn_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
