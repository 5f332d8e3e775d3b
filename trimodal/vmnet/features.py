"""VM-NET input features: one music vector and one video vector per clip, stored per split.

Feature files
-------------
One file per split holds, row by row, ``video_id`` (str), ``clip_index`` (int64), ``audio``
(float32 ``[N, F_A]``, the music features) and ``video`` (float32 ``[N, F_V]``), plus a JSON
``metadata`` mapping (extractors, sources, split). Two formats, chosen by the suffix:

* ``.npz`` — arrays ``video_id`` (unicode), ``clip_index``, ``audio``, ``video``, and
  ``metadata`` (a 0-d unicode array holding JSON); loads with ``allow_pickle=False``.
* ``.safetensors`` — tensors ``clip_index``, ``audio``, ``video``; the ids and the metadata as
  JSON strings in the header metadata (safetensors stores no strings).

Music features (``--audio``)
----------------------------
* ``musicnn``: musicnn's ``pooled`` output (1506-d: mean and max over time of the 753-channel
  feature map, averaged over the clip's 3-s patches), MTT weights converted by
  ``python -m trimodal.backbones.musicnn convert``; 16-kHz audio.
* ``clap``: LAION-CLAP's 512-d audio embedding (10-s centre window in eval mode); 48-kHz audio;
  ``--audio-source`` is the checkpoint file or Hugging Face directory.
* ``librosa``: the handcrafted statistics VM-NET was designed for (:func:`handcrafted_features`,
  1140-d).
* ``array``: rows looked up by id in a precomputed file (``--audio-array``), e.g. YouTube-8M's
  ``mean_audio`` (the "AudioSet" features of seed 003) or OpenL3 statistics.

Video features (``--video``)
----------------------------
* ``r2plus1d``: R(2+1)D-18's pooled 512-d features (16 frames at 112²).
* ``videomae``: VideoMAE's mean-pooled tokens (768-d for base; 16 frames at 224²).
* ``array``: rows looked up in a precomputed file (``--video-array``), e.g. YouTube-8M's
  ``mean_rgb`` (what VM-NET used: 1024-d means of per-second ImageNet features).

Backbones run in eval mode (no dropout, deterministic crops) under ``torch.no_grad``, batched.

A lookup file (``array``) is a ``.npz`` or ``.safetensors`` with ``video_id`` and the feature
array under ``--audio-key``/``--video-key`` (default: the first of ``audio``/``features``/
``mean_audio`` resp. ``video``/``features``/``mean_rgb`` present; our own feature files and the
``.npz`` read by ``python -m trimodal.evaluate --baseline-features`` therefore work as they
are). With a ``clip_index`` array rows are matched per clip, otherwise per video (the video's
vector is repeated for each of its clips). Ids without features are an error that lists them,
or with ``--skip-missing`` those clips are left out and counted in the metadata.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimodal.utils import atomic_path

logger = logging.getLogger(__name__)

AUDIO_EXTRACTORS = ("musicnn", "clap", "librosa", "array")
VIDEO_EXTRACTORS = ("r2plus1d", "videomae", "array")
# Extractor name on the command line → backbone adapter name.
_BACKBONE_NAMES = {
    "musicnn": "musicnn",
    "clap": "clap_htsat",
    "r2plus1d": "r2plus1d",
    "videomae": "videomae",
}
_ARRAY_KEYS = {
    "audio": ("audio", "features", "mean_audio"),
    "video": ("video", "features", "mean_rgb"),
}


class FeatureFileError(ValueError):
    """A feature file is malformed (missing arrays, inconsistent rows, non-finite values)."""


# ============================================================================ feature files


@dataclasses.dataclass
class FeatureSet:
    """Paired features of one split: row i of ``audio`` and ``video`` is clip i.

    Attributes:
        video_ids: ``[N]`` video id of each row.
        clip_indices: int64 ``[N]`` clip number inside its video.
        audio: float32 ``[N, F_A]`` music features.
        video: float32 ``[N, F_V]`` video features.
        metadata: JSON-serialisable description (extractors, sources, split, ...).
    """

    video_ids: list[str]
    clip_indices: np.ndarray
    audio: np.ndarray
    video: np.ndarray
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.video_ids = [str(v) for v in self.video_ids]
        self.clip_indices = np.asarray(self.clip_indices, dtype=np.int64).reshape(-1)
        self.audio = np.ascontiguousarray(self.audio, dtype=np.float32)
        self.video = np.ascontiguousarray(self.video, dtype=np.float32)
        n = len(self.video_ids)
        if self.audio.ndim != 2 or self.video.ndim != 2:
            raise FeatureFileError(
                f"audio and video features must be 2-D [N, F], got {self.audio.shape} and "
                f"{self.video.shape}"
            )
        if not (self.clip_indices.shape[0] == self.audio.shape[0] == self.video.shape[0] == n):
            raise FeatureFileError(
                f"rows disagree: {n} video ids, {self.clip_indices.shape[0]} clip indices, "
                f"{self.audio.shape[0]} audio rows, {self.video.shape[0]} video rows"
            )
        for name in ("audio", "video"):
            bad = ~np.isfinite(getattr(self, name)).all(axis=1)
            if bad.any():
                rows = np.flatnonzero(bad)[:5].tolist()
                raise FeatureFileError(
                    f"{int(bad.sum())} rows of {name} features are not finite (rows {rows}...)"
                )
        keys = set(zip(self.video_ids, self.clip_indices.tolist()))
        if len(keys) != n:
            raise FeatureFileError("duplicate (video_id, clip_index) rows")

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def audio_dim(self) -> int:
        return int(self.audio.shape[1])

    @property
    def video_dim(self) -> int:
        return int(self.video.shape[1])


def save_features(path: str | Path, features: FeatureSet) -> Path:
    """Write ``features`` to ``path`` (``.npz`` or ``.safetensors``) atomically."""
    path = Path(path)
    meta_json = json.dumps(features.metadata, sort_keys=True, default=str)
    if path.suffix == ".npz":
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            # A file object: np.savez would append ".npz" to the temporary name.
            np.savez(
                f,
                video_id=np.asarray(features.video_ids, dtype=np.str_),
                clip_index=features.clip_indices,
                audio=features.audio,
                video=features.video,
                metadata=np.asarray(meta_json, dtype=np.str_),
            )
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        with atomic_path(path) as tmp:
            save_file(
                {
                    "clip_index": features.clip_indices,
                    "audio": features.audio,
                    "video": features.video,
                },
                str(tmp),
                metadata={"video_ids": json.dumps(features.video_ids), "metadata": meta_json},
            )
    else:
        raise ValueError(f"feature files end in .npz or .safetensors, got {path}")
    return path


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None, dict[str, Any]]:
    """All arrays, the ids (if any) and the metadata of an ``.npz``/``.safetensors`` file."""
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        ids = arrays.pop("video_id", None)
        meta_raw = arrays.pop("metadata", None)
        meta = json.loads(str(meta_raw)) if meta_raw is not None else {}
        return arrays, (ids.astype(str).tolist() if ids is not None else None), meta
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
        arrays = load_file(str(path))
        ids = json.loads(header["video_ids"]) if "video_ids" in header else None
        meta = json.loads(header["metadata"]) if "metadata" in header else {}
        return arrays, ids, meta
    raise ValueError(f"feature files end in .npz or .safetensors, got {path}")


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature file written by :func:`save_features` (checked on load).

    Raises:
        FileNotFoundError: no such file.
        FeatureFileError: arrays missing, rows inconsistent, duplicates or non-finite values.
    """
    path = Path(path)
    arrays, ids, meta = _read_arrays(path)
    missing = [k for k in ("clip_index", "audio", "video") if k not in arrays]
    if ids is None:
        missing.insert(0, "video_id")
    if missing:
        raise FeatureFileError(
            f"{path} is not a VM-NET feature file: missing {missing} (write one with "
            "`python -m trimodal.vmnet features`)"
        )
    try:
        return FeatureSet(ids, arrays["clip_index"], arrays["audio"], arrays["video"], meta)
    except FeatureFileError as err:
        raise FeatureFileError(f"{path}: {err}") from None


# ============================================================================ handcrafted audio


@dataclasses.dataclass(frozen=True)
class HandcraftedOptions:
    """Signal processing of :func:`handcrafted_features` (the VM-NET feature extractor's:
    12 kHz, 512-point frames, hop 256 = 21.3 ms — seed 003's "1 frame ≈ 21 ms")."""

    sample_rate: int = 12000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    n_mfcc: int = 20
    # Delta window (librosa's default); clips shorter than this many frames are refused.
    delta_width: int = 9


# Per-frame descriptors of one source (harmonic or percussive), in output order, with their
# row counts for the default options (n_mels, n_mfcc substituted in _descriptor_rows).
_DESCRIPTORS = (
    "chroma_stft",
    "chroma_cens",
    "log_mel",
    "mfcc",
    "mfcc_delta",
    "mfcc_delta2",
    "rms_db",
    "spectral_centroid",
    "spectral_bandwidth",
    "spectral_rolloff",
    "poly1",
    "poly2",
    "zero_crossing_rate",
)
_SOURCES = ("harmonic", "percussive")
_STATS = ("mean", "var", "max")


def _descriptor_rows(o: HandcraftedOptions) -> dict[str, int]:
    return {
        "chroma_stft": 12,
        "chroma_cens": 12,
        "log_mel": o.n_mels,
        "mfcc": o.n_mfcc,
        "mfcc_delta": o.n_mfcc,
        "mfcc_delta2": o.n_mfcc,
        "rms_db": 1,
        "spectral_centroid": 1,
        "spectral_bandwidth": 1,
        "spectral_rolloff": 1,
        "poly1": 2,
        "poly2": 3,
        "zero_crossing_rate": 1,
    }


def handcrafted_feature_names(options: HandcraftedOptions | None = None) -> list[str]:
    """Names of the :func:`handcrafted_features` dimensions, ``"<stat>/<source>/<descriptor>_<i>"``
    (1140 with the default options)."""
    o = options or HandcraftedOptions()
    rows = _descriptor_rows(o)
    per_frame = [
        f"{source}/{name}_{i}"
        for source in _SOURCES
        for name in _DESCRIPTORS
        for i in range(rows[name])
    ]
    return [f"{stat}/{name}" for stat in _STATS for name in per_frame]


def handcrafted_dim(options: HandcraftedOptions | None = None) -> int:
    """Size of :func:`handcrafted_features`' output: 3 stats × 2 sources × 190 = 1140."""
    o = options or HandcraftedOptions()
    return len(_STATS) * len(_SOURCES) * sum(_descriptor_rows(o).values())


def _source_descriptors(y: np.ndarray, o: HandcraftedOptions, tuning: float) -> np.ndarray:
    """Per-frame descriptors ``[190, T]`` of one (harmonic or percussive) signal."""
    import librosa

    sr, n_fft, hop = o.sample_rate, o.n_fft, o.hop_length
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))  # [1 + n_fft/2, T]
    power = magnitude**2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=o.n_mels)
    # Absolute dB (ref 1, floor 1e-10 = -100 dB): keeps the loudness, which ref=max would
    # remove, and stays finite on silence.
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=o.n_mfcc)
    rms = librosa.feature.rms(S=magnitude, frame_length=n_fft, hop_length=hop)
    parts = [
        librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, tuning=tuning),
        librosa.feature.chroma_cens(y=y, sr=sr, hop_length=hop, tuning=tuning),
        log_mel,
        mfcc,
        librosa.feature.delta(mfcc, width=o.delta_width, order=1),
        librosa.feature.delta(mfcc, width=o.delta_width, order=2),
        librosa.amplitude_to_db(rms, ref=1.0, amin=1e-5, top_db=None),
        librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=n_fft),
        librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, n_fft=n_fft),
        librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=n_fft),
        librosa.feature.poly_features(S=magnitude, sr=sr, n_fft=n_fft, order=1),
        librosa.feature.poly_features(S=magnitude, sr=sr, n_fft=n_fft, order=2),
        librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
    ]
    # Every descriptor is centred with the same hop, so the frame counts agree; trim anyway
    # in case a librosa version pads one of them differently.
    frames = min(p.shape[-1] for p in parts)
    return np.concatenate([p[..., :frames] for p in parts], axis=0)


def handcrafted_features(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    options: HandcraftedOptions | None = None,
) -> np.ndarray:
    """VM-NET's handcrafted music features: statistics of librosa descriptors over a clip.

    Seed 003 (§III): "handcrafted features (such as spectral centroid, MFCCs, and Chromas) are
    extracted at each time frame (1 frame ≈ 21 ms) and statistically aggregated (using mean,
    variance and max) over the whole clip", 1,140 values. Our reconstruction of that set, with
    librosa (§V-A: the original used librosa too):

    1. resample to 12 kHz, split into harmonic and percussive parts (``librosa.effects.hpss``);
    2. for each part, per 512-sample frame with hop 256 (21.3 ms), 190 descriptors:
       chroma STFT (12), chroma CENS (12), log-mel power in dB (96 bands), MFCC (20) with
       first and second deltas (20 + 20), RMS energy in dB (1), spectral centroid, bandwidth
       and roll-off in Hz (3), coefficients of order-1 and order-2 polynomial fits to each
       spectrum (2 + 3), zero-crossing rate (1);
    3. mean, variance and max of each of the 380 rows over the frames.

    Output layout: ``[mean(380) | var(380) | max(380)]``, each block harmonic then percussive,
    descriptors in the order above (:func:`handcrafted_feature_names`). Chroma uses one tuning
    estimate per clip (0 for silence). Unlike the original extractor, only power-like values
    (mel bands, RMS) are put on a dB scale: MFCCs, deltas and polynomial coefficients can be
    negative, and the log of those is meaningless.

    Args:
        waveform: mono ``[S]`` float samples in [-1, 1].
        sample_rate: rate of ``waveform`` (resampled to ``options.sample_rate`` if different).
    Returns:
        float32 ``[1140]`` (``handcrafted_dim(options)``), finite (silence included).
    Raises:
        ValueError: not mono, non-finite samples, or shorter than ``delta_width`` frames.
    """
    import librosa

    o = options or HandcraftedOptions()
    y = np.asarray(
        waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else waveform,
        dtype=np.float32,
    )
    if y.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("waveform contains NaN or inf")
    if sample_rate != o.sample_rate:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=o.sample_rate)
    frames = 1 + len(y) // o.hop_length
    if frames < o.delta_width:
        raise ValueError(
            f"clip too short for handcrafted features: {len(y) / o.sample_rate:.3f} s gives "
            f"{frames} frames, the MFCC deltas need {o.delta_width}"
        )
    with warnings.catch_warnings():
        # The CQT behind chroma CENS analyses its low octaves on downsampled copies of short
        # clips and warns that n_fft exceeds them; silence warns that tuning is undefined.
        warnings.filterwarnings("ignore", message=r"n_fft=.* is too large")
        warnings.filterwarnings("ignore", message=r"Trying to estimate tuning")
        tuning = float(librosa.estimate_tuning(y=y, sr=o.sample_rate, n_fft=o.n_fft))
        if not np.isfinite(tuning):
            tuning = 0.0
        harmonic, percussive = librosa.effects.hpss(y)
        per_frame = np.concatenate(
            [_source_descriptors(s, o, tuning) for s in (harmonic, percussive)], axis=0
        ).astype(np.float64)
    out = np.concatenate([per_frame.mean(axis=1), per_frame.var(axis=1), per_frame.max(axis=1)])
    if not np.isfinite(out).all():  # pragma: no cover - guarded above; a librosa change
        raise ValueError("handcrafted features are not finite")
    return out.astype(np.float32)


# ============================================================================ extraction


class _HandcraftedClips(torch.utils.data.Dataset):
    """Wraps a :class:`~trimodal.data.PreparedClips` so DataLoader workers compute the
    librosa statistics in parallel: ``"audio"`` becomes the ``[1140]`` feature vector."""

    def __init__(self, clips: Any, options: HandcraftedOptions) -> None:
        self.clips, self.options = clips, options

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.clips[index]
        item["audio"] = torch.from_numpy(
            handcrafted_features(item["audio"], self.clips.audio_rate, self.options)
        )
        return item


def _stored_audio_rates(prepared: Path, split: str) -> list[int]:
    import datasets

    rates = []
    for column in datasets.load_from_disk(str(prepared / split)).features:
        # Column names of trimodal.data.clips: audio_48k, or audio_22050hz off the kHz grid.
        match = re.fullmatch(r"audio_(\d+)(k|hz)", column)
        if match:
            rates.append(int(match[1]) * (1000 if match[2] == "k" else 1))
    return sorted(rates)


def build_backbone(
    extractor: str,
    source: str | Path | None,
    *,
    preset: str = "full",
    random_weights: bool = False,
) -> Any:
    """A frozen backbone adapter in eval mode for a feature extractor name.

    Args:
        extractor: ``musicnn``, ``clap``, ``r2plus1d`` or ``videomae``.
        source: its pretrained weights (musicnn: defaults to the converted-weights cache
            when that exists).
        preset: architecture preset of a backbone built *without* weights (``tiny``: small,
            for smoke tests); a backbone with weights always has the published ("full")
            architecture, or the one its checkpoint records.
        random_weights: allow no ``source`` and keep random weights (smoke tests only: the
            features are then meaningless).
    """
    from trimodal.backbones import get_backbone_class

    if extractor not in _BACKBONE_NAMES:
        raise ValueError(
            f"no backbone for extractor {extractor!r}; known: {sorted(_BACKBONE_NAMES)}"
        )
    cls = get_backbone_class(_BACKBONE_NAMES[extractor])
    if source is None and extractor == "musicnn":
        from trimodal.backbones.musicnn import default_musicnn_dir

        if not random_weights or default_musicnn_dir().is_dir():
            source = default_musicnn_dir()  # load_pretrained explains how to create it
    if source is None and not random_weights:
        raise ValueError(
            f"--{cls.modality}-source is required for {extractor!r} (its pretrained weights: see "
            "the README, 'Pretrained weights'); --random-weights runs without, for smoke tests"
        )
    with_weights = source is not None
    options = cls.resolve_options(
        {}, "full" if with_weights else preset, str(source) if with_weights else None
    )
    backbone = cls(options)
    backbone.weights_source = str(source) if with_weights else None
    backbone.random_weights = not with_weights
    if with_weights:
        backbone.load_pretrained(source)
    else:
        logger.warning(
            "%s: random weights (--random-weights): the features mean nothing", extractor
        )
    backbone.requires_grad_(False)
    # Eval mode: no dropout, batch-norm running statistics, deterministic crops (BRIEF §3.5).
    return backbone.eval()


def _lookup(
    path: Path,
    modality: str,
    key: str | None,
    video_ids: Sequence[str],
    clip_indices: Sequence[int],
) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows of a precomputed array for the given clips: ``(features [N, F], found [N], key)``."""
    arrays, ids, _ = _read_arrays(path)
    if ids is None:
        raise FeatureFileError(f"{path} has no video_id array to match rows by")
    candidates = (key,) if key else _ARRAY_KEYS[modality]
    key = next((k for k in candidates if k in arrays), None)
    if key is None:
        raise FeatureFileError(
            f"{path} has none of the arrays {list(candidates)} for the {modality} features "
            f"(it has {sorted(arrays)}); name one with --{modality}-key"
        )
    table = np.asarray(arrays[key], dtype=np.float32)
    if table.ndim != 2 or table.shape[0] != len(ids):
        raise FeatureFileError(f"{path}: {key} must be [{len(ids)}, F], got {table.shape}")
    if "clip_index" in arrays:
        index = {(v, int(c)): i for i, (v, c) in enumerate(zip(ids, arrays["clip_index"].tolist()))}
        rows = [index.get((v, int(c)), -1) for v, c in zip(video_ids, clip_indices)]
    else:
        index = {v: i for i, v in enumerate(ids)}
        rows = [index.get(v, -1) for v in video_ids]
    rows_arr = np.asarray(rows, dtype=np.int64)
    found = rows_arr >= 0
    out = np.zeros((len(rows), table.shape[1]), dtype=np.float32)
    out[found] = table[rows_arr[found]]
    return out, found, key


def extract_features(
    prepared: str | Path,
    split: str,
    audio: str,
    video: str,
    *,
    audio_source: str | Path | None = None,
    video_source: str | Path | None = None,
    audio_array: str | Path | None = None,
    video_array: str | Path | None = None,
    audio_key: str | None = None,
    video_key: str | None = None,
    preset: str = "full",
    random_weights: bool = False,
    handcrafted: HandcraftedOptions | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    skip_missing: bool = False,
    progress: bool = True,
) -> FeatureSet:
    """Compute the music and video features of every clip of a prepared split.

    Args:
        prepared: the ``python -m data_prep prepare`` output directory.
        split: ``train``, ``dev`` or ``test``.
        audio: one of :data:`AUDIO_EXTRACTORS`; video: one of :data:`VIDEO_EXTRACTORS`.
        audio_source / video_source: backbone weights (see :func:`build_backbone`).
        audio_array / video_array: lookup files for the ``array`` extractors.
        audio_key / video_key: the array to read in those files.
        batch_size: clips per backbone call; num_workers: DataLoader workers (they also
            compute the librosa statistics).
        skip_missing: drop clips an ``array`` file has no row for, instead of failing.
    Returns:
        A :class:`FeatureSet` in the split's clip order.
    """
    from torch.utils.data import DataLoader

    from trimodal.data import PreparedClips, collate_clips

    if audio not in AUDIO_EXTRACTORS:
        raise ValueError(f"--audio must be one of {AUDIO_EXTRACTORS}, got {audio!r}")
    if video not in VIDEO_EXTRACTORS:
        raise ValueError(f"--video must be one of {VIDEO_EXTRACTORS}, got {video!r}")
    for name, extractor, array in (("audio", audio, audio_array), ("video", video, video_array)):
        if (extractor == "array") != (array is not None):
            raise ValueError(f"--{name}-array is needed with, and only with, --{name} array")
    prepared = Path(prepared)
    handcrafted = handcrafted or HandcraftedOptions()
    device = torch.device(device)

    ids_only = PreparedClips(prepared, split, modalities=())
    video_ids, clip_indices = list(ids_only.video_ids), list(ids_only.clip_indices)
    n = len(video_ids)
    if n == 0:
        raise ValueError(f"{prepared / split} has no clips")

    loader_kwargs: dict[str, Any] = {}
    modalities: list[str] = []
    models: dict[str, Any] = {}
    resample: tuple[int, int] | None = None  # (stored rate read, rate the backbone takes)
    if audio in ("musicnn", "clap", "librosa"):
        rates = _stored_audio_rates(prepared, split)
        if not rates:
            raise ValueError(f"{prepared / split} stores no audio")
        modalities.append("audio")
    if audio in ("musicnn", "clap"):
        models["audio"] = build_backbone(
            audio, audio_source, preset=preset, random_weights=random_weights
        )
        wanted = int(models["audio"].data_options()["audio_rate"])
        if wanted in rates:
            loader_kwargs["audio_rate"] = wanted
        else:
            # Prepared for another backbone (e.g. 48 kHz only, musicnn takes 16 kHz): read the
            # closest rate above (else the highest) and resample each batch.
            above = [r for r in rates if r >= wanted]
            loader_kwargs["audio_rate"] = min(above) if above else max(rates)
            resample = (loader_kwargs["audio_rate"], wanted)
    elif audio == "librosa":
        # The lowest stored rate is closest to the 12 kHz the statistics use: least to resample.
        loader_kwargs["audio_rate"] = rates[0]
    if video in ("r2plus1d", "videomae"):
        models["video"] = build_backbone(
            video, video_source, preset=preset, random_weights=random_weights
        )
        loader_kwargs.update(models["video"].data_options())
        modalities.append("video")
    for model in models.values():
        model.to(device)

    columns: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "split": split,
        "prepared": str(prepared),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "audio": {"extractor": audio, "source": str(audio_source) if audio_source else None},
        "video": {"extractor": video, "source": str(video_source) if video_source else None},
    }
    if audio == "librosa":
        meta["audio"]["handcrafted"] = dataclasses.asdict(handcrafted)
    if audio == "musicnn":
        meta["audio"]["output"] = models["audio"].options.output
    for modality, model in models.items():
        # What was actually loaded (musicnn's default cache included), not just what was asked.
        meta[modality]["random_weights"] = model.random_weights
        meta[modality]["source"] = model.weights_source
    if resample is not None:
        meta["audio"]["resampled"] = {"from": resample[0], "to": resample[1]}
    if modalities:
        clips = PreparedClips(prepared, split, modalities=modalities, **loader_kwargs)
        dataset = _HandcraftedClips(clips, handcrafted) if audio == "librosa" else clips
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate_clips,
        )
        outputs: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"features {split}", unit="clip", disable=not progress)
        with torch.no_grad():
            for batch in loader:
                for modality in modalities:
                    x = batch[modality]
                    if modality == "audio" and resample is not None:
                        import librosa

                        x = torch.from_numpy(
                            librosa.resample(
                                x.numpy(), orig_sr=resample[0], target_sr=resample[1], axis=-1
                            )
                        )
                    if modality in models:
                        x = models[modality](x.to(device))
                    outputs[modality].append(x.float().cpu().numpy())
                bar.update(len(batch["video_id"]))
        bar.close()
        for modality in modalities:
            columns[modality] = np.concatenate(outputs[modality])

    keep = np.ones(n, dtype=bool)
    for modality, extractor, array, key in (
        ("audio", audio, audio_array, audio_key),
        ("video", video, video_array, video_key),
    ):
        if extractor != "array":
            continue
        table, found, used_key = _lookup(Path(array), modality, key, video_ids, clip_indices)
        meta[modality].update(
            {"source": str(array), "key": used_key, "missing": int((~found).sum())}
        )
        if not found.all():
            missing = sorted({video_ids[i] for i in np.flatnonzero(~found)})
            message = (
                f"{array} has no {modality} features for {int((~found).sum())} of {n} clips "
                f"({len(missing)} videos, e.g. {missing[:5]})"
            )
            if not skip_missing:
                raise FeatureFileError(message + "; --skip-missing leaves those clips out")
            logger.warning("%s; left out (--skip-missing)", message)
        keep &= found
        columns[modality] = table
    if not keep.any():
        raise FeatureFileError("no clip has both audio and video features")
    meta["skipped_clips"] = int((~keep).sum())
    rows = np.flatnonzero(keep)
    return FeatureSet(
        [video_ids[i] for i in rows],
        np.asarray(clip_indices, dtype=np.int64)[rows],
        columns["audio"][rows],
        columns["video"][rows],
        meta,
    )


def features_main(args: Any, log: Callable[[str], None] = print) -> FeatureSet:
    """The ``features`` command (arguments parsed by :mod:`trimodal.vmnet.__main__`)."""
    features = extract_features(
        args.data,
        args.split,
        args.audio,
        args.video,
        audio_source=args.audio_source,
        video_source=args.video_source,
        audio_array=args.audio_array,
        video_array=args.video_array,
        audio_key=args.audio_key,
        video_key=args.video_key,
        preset=args.preset,
        random_weights=args.random_weights,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        skip_missing=args.skip_missing,
        progress=not args.no_progress,
    )
    save_features(args.out, features)
    log(
        f"wrote {args.out}: {len(features)} clips of {len(set(features.video_ids))} videos, "
        f"audio {args.audio} [{features.audio_dim}], video {args.video} [{features.video_dim}]"
        + (
            f", {features.metadata['skipped_clips']} clips skipped"
            if features.metadata["skipped_clips"]
            else ""
        )
    )
    return features
