"""VM-NET's handcrafted music features: statistics of librosa descriptors over a clip.

:func:`handcrafted_features` turns one mono clip into the 1140-d vector VM-NET was designed
for (the ``librosa`` audio extractor of :mod:`trimodal.vmnet.extractors`);
:func:`handcrafted_feature_names` names its dimensions.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class HandcraftedOptions:
    """Signal processing of :func:`handcrafted_features` (the VM-NET feature extractor's:
    12 kHz, 512-point frames, hop 256 = 21.3 ms — Prétet et al.'s "1 frame ≈ 21 ms")."""

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

    Prétet et al. (§III): "handcrafted features (such as spectral centroid, MFCCs, and Chromas)
    are extracted at each time frame (1 frame ≈ 21 ms) and statistically aggregated (using mean,
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
