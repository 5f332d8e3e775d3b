"""VM-NET's feature extractors, one small class each, in a registry by modality and name.

Music features (``--audio``)
----------------------------
* ``musicnn``: musicnn's ``pooled`` output (1506-d: mean and max over time of the 753-channel
  feature map, averaged over the clip's 3-s patches), MTT weights converted by
  ``python -m trimodal.backbones.musicnn convert``; 16-kHz audio.
* ``clap``: LAION-CLAP's 512-d audio embedding (10-s centre window in eval mode); 48-kHz audio;
  ``--audio-source`` is the checkpoint file or Hugging Face directory.
* ``librosa``: the handcrafted statistics VM-NET was designed for
  (:func:`~trimodal.vmnet.handcrafted.handcrafted_features`, 1140-d).
* ``array``: rows looked up by id in a precomputed file (``--audio-array``), e.g. YouTube-8M's
  ``mean_audio`` or OpenL3 statistics.

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
vector is repeated for each of its clips).

Adding an extractor: subclass :class:`ClipExtractor` (features computed from the decoded
clips) or :class:`ArrayLookup`, decorate it with :func:`register_extractor`; the command line
offers it under its name. :func:`trimodal.vmnet.extraction.extract_features` drives them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from trimodal.vmnet.features import FeatureFileError, read_feature_arrays
from trimodal.vmnet.handcrafted import HandcraftedOptions, handcrafted_features

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExtractorSpec:
    """One modality's choice on the command line (``--audio`` and its ``--audio-*`` options).

    Attributes:
        name: the registered extractor (``musicnn``, ``librosa``, ``array``, ...).
        source: pretrained weights of a backbone extractor (``None``: musicnn's converted
            cache if present, else an error unless ``random_weights``).
        array: the lookup file of the ``array`` extractor (needed with it, refused without).
        key: the array to read in that file (default: see the module docstring).
    """

    name: str
    source: str | None = None
    array: str | None = None
    key: str | None = None


@dataclasses.dataclass(frozen=True)
class ExtractorSettings:
    """Settings shared by both modalities' extractors.

    Attributes:
        preset: architecture of backbones built *without* weights (``tiny``: small, for smoke
            tests); a backbone with weights has the published architecture, or the one its
            checkpoint records.
        random_weights: allow backbones without weights (smoke tests: the features mean
            nothing).
        device: where backbones run.
        handcrafted: signal processing of the ``librosa`` statistics.
    """

    preset: Literal["full", "tiny"] = "full"
    random_weights: bool = False
    device: str = "cpu"
    handcrafted: HandcraftedOptions = dataclasses.field(default_factory=HandcraftedOptions)


class FeatureExtractor:
    """Features of one modality for every clip of a split (see the subclasses)."""

    modality: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, spec: ExtractorSpec, settings: ExtractorSettings) -> None:
        self.spec, self.settings = spec, settings

    def metadata(self) -> dict[str, Any]:
        """What the feature file records about this extractor."""
        return {"extractor": self.name, "source": self.spec.source}


class ClipExtractor(FeatureExtractor):
    """Computes features from the decoded clips of the prepared split.

    The extraction loop reads the clips with :meth:`loader_options`, applies
    :meth:`transform_clip` to each clip inside the DataLoader workers (where CPU-heavy work
    parallelises), then :meth:`__call__` to each batch.
    """

    def loader_options(self, stored_audio_rates: Sequence[int]) -> dict[str, Any]:
        """:class:`~trimodal.data.PreparedClips` keyword arguments this extractor needs."""
        return {}

    #: Whether :meth:`transform_clip` does anything (the loop skips the wrapper otherwise).
    per_clip: ClassVar[bool] = False

    def transform_clip(self, value: Any, clips: Any) -> Any:
        """One clip's input (e.g. a waveform ``[S]``) → what :meth:`__call__` batches;
        ``clips`` is the :class:`~trimodal.data.PreparedClips` it came from."""
        return value

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """A batch of (transformed) clip inputs → float32 features ``[B, F]``."""
        return batch.float().cpu().numpy()


_REGISTRY: dict[str, dict[str, type[FeatureExtractor]]] = {"audio": {}, "video": {}}


def register_extractor(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
    """Class decorator: make ``cls`` available under ``(cls.modality, cls.name)``."""
    table = _REGISTRY[cls.modality]
    if cls.name in table:
        raise ValueError(f"a {cls.modality} extractor named {cls.name!r} is already registered")
    table[cls.name] = cls
    return cls


def extractor_names(modality: str) -> tuple[str, ...]:
    """Registered extractor names of ``modality`` (``"audio"`` or ``"video"``), in order."""
    return tuple(_REGISTRY[modality])


def build_extractor(
    modality: str, spec: ExtractorSpec, settings: ExtractorSettings
) -> FeatureExtractor:
    """The registered extractor ``spec.name`` of ``modality``, ready to run.

    Raises:
        ValueError: unknown name, or an ``array`` file given with another extractor (or none
            with ``array``), or a backbone without weights and without ``random_weights``.
    """
    table = _REGISTRY[modality]
    if spec.name not in table:
        raise ValueError(f"--{modality} must be one of {tuple(table)}, got {spec.name!r}")
    cls = table[spec.name]
    if issubclass(cls, ArrayLookup) != (spec.array is not None):
        raise ValueError(f"--{modality}-array is needed with, and only with, --{modality} array")
    return cls(spec, settings)


# ============================================================================ backbones


class BackboneExtractor(ClipExtractor):
    """A frozen backbone adapter of :mod:`trimodal.backbones`, in eval mode."""

    backbone: ClassVar[str]  # the adapter's registered name

    def __init__(self, spec: ExtractorSpec, settings: ExtractorSettings) -> None:
        from trimodal.backbones import get_backbone_class

        super().__init__(spec, settings)
        cls = get_backbone_class(self.backbone)
        source = spec.source if spec.source is not None else self.default_source()
        if source is None and not settings.random_weights:
            raise ValueError(
                f"--{cls.modality}-source is required for {self.name!r} (its pretrained weights: "
                "see the README, 'Pretrained weights'); --random-weights runs without, for "
                "smoke tests"
            )
        preset = "full" if source is not None else settings.preset
        model = cls(cls.resolve_options({}, preset, None if source is None else str(source)))
        if source is not None:
            model.load_pretrained(source)
        else:
            logger.warning(
                "%s: random weights (--random-weights): the features mean nothing", self.name
            )
        model.requires_grad_(False)
        # Eval mode: no dropout, batch-norm running statistics, deterministic crops.
        self.model = model.eval().to(torch.device(settings.device))
        self.weights_source = None if source is None else str(source)

    def default_source(self) -> str | Path | None:
        """Weights used when ``--<modality>-source`` is not given."""
        return None

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            out = self.model(batch.to(torch.device(self.settings.device)))
        return out.float().cpu().numpy()

    def metadata(self) -> dict[str, Any]:
        # What was actually loaded (musicnn's default cache included), not just what was asked.
        return {
            **super().metadata(),
            "source": self.weights_source,
            "random_weights": self.weights_source is None,
        }


class AudioBackbone(BackboneExtractor):
    """An audio backbone; resamples when the split was not prepared at its rate."""

    def __init__(self, spec: ExtractorSpec, settings: ExtractorSettings) -> None:
        super().__init__(spec, settings)
        # (stored rate read, rate the backbone takes), set by loader_options when they differ.
        self.resample: tuple[int, int] | None = None

    def loader_options(self, stored_audio_rates: Sequence[int]) -> dict[str, Any]:
        wanted = int(self.model.data_options()["audio_rate"])
        self.resample = None
        if wanted in stored_audio_rates:
            return {"audio_rate": wanted}
        # Prepared for another backbone (e.g. 48 kHz only, musicnn takes 16 kHz): read the
        # closest rate above (else the highest) and resample each batch.
        above = [r for r in stored_audio_rates if r >= wanted]
        read = min(above) if above else max(stored_audio_rates)
        self.resample = (read, wanted)
        return {"audio_rate": read}

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        if self.resample is not None:
            import librosa

            read, wanted = self.resample
            batch = torch.from_numpy(
                librosa.resample(batch.numpy(), orig_sr=read, target_sr=wanted, axis=-1)
            )
        return super().__call__(batch)

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        if self.resample is not None:
            meta["resampled"] = {"from": self.resample[0], "to": self.resample[1]}
        return meta


@register_extractor
class MusicnnAudio(AudioBackbone):
    modality, name, backbone = "audio", "musicnn", "musicnn"

    def default_source(self) -> str | Path | None:
        from trimodal.backbones.musicnn import default_musicnn_dir

        # Without --random-weights the cache is always tried: load_pretrained then explains
        # how to create it.
        cache = default_musicnn_dir()
        return cache if not self.settings.random_weights or cache.is_dir() else None

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "output": self.model.options.output}


@register_extractor
class ClapAudio(AudioBackbone):
    modality, name, backbone = "audio", "clap", "clap_htsat"


# ============================================================================ handcrafted


@register_extractor
class HandcraftedAudio(ClipExtractor):
    """The 1140-d librosa statistics, computed per clip in the loader workers."""

    modality, name = "audio", "librosa"
    per_clip = True

    def loader_options(self, stored_audio_rates: Sequence[int]) -> dict[str, Any]:
        # The lowest stored rate is closest to the 12 kHz the statistics use: least to resample.
        return {"audio_rate": min(stored_audio_rates)}

    def transform_clip(self, value: Any, clips: Any) -> torch.Tensor:
        """Waveform ``[S]`` at ``clips.audio_rate`` → ``[1140]`` statistics."""
        return torch.from_numpy(
            handcrafted_features(value, clips.audio_rate, self.settings.handcrafted)
        )

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "handcrafted": dataclasses.asdict(self.settings.handcrafted)}


class VideoBackbone(BackboneExtractor):
    """A video backbone: the clips are read at its frame size and count."""

    def loader_options(self, stored_audio_rates: Sequence[int]) -> dict[str, Any]:
        return dict(self.model.data_options())


@register_extractor
class R2Plus1DVideo(VideoBackbone):
    modality, name, backbone = "video", "r2plus1d", "r2plus1d"


@register_extractor
class VideoMAEVideo(VideoBackbone):
    modality, name, backbone = "video", "videomae", "videomae"


# ============================================================================ lookups


class ArrayLookup(FeatureExtractor):
    """Rows of a precomputed array, matched per clip or per video (module docstring)."""

    default_keys: ClassVar[tuple[str, ...]]

    def __init__(self, spec: ExtractorSpec, settings: ExtractorSettings) -> None:
        super().__init__(spec, settings)
        self.found: dict[str, Any] = {}  # the array used and the missing count, after lookup

    def lookup(
        self, video_ids: Sequence[str], clip_indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(features float32 [N, F], found bool [N])`` for the given clips; rows without a
        match are zeros. Records the array used and the missing count in :meth:`metadata`."""
        path = Path(self.spec.array)
        arrays, ids, _ = read_feature_arrays(path)
        if ids is None:
            raise FeatureFileError(f"{path} has no video_id array to match rows by")
        candidates = (self.spec.key,) if self.spec.key else self.default_keys
        key = next((k for k in candidates if k in arrays), None)
        if key is None:
            raise FeatureFileError(
                f"{path} has none of the arrays {list(candidates)} for the {self.modality} "
                f"features (it has {sorted(arrays)}); name one with --{self.modality}-key"
            )
        table = np.asarray(arrays[key], dtype=np.float32)
        if table.ndim != 2 or table.shape[0] != len(ids):
            raise FeatureFileError(f"{path}: {key} must be [{len(ids)}, F], got {table.shape}")
        if "clip_index" in arrays:
            stored = zip(ids, arrays["clip_index"].tolist())
            index = {(v, int(c)): i for i, (v, c) in enumerate(stored)}
            rows = [index.get((v, int(c)), -1) for v, c in zip(video_ids, clip_indices)]
        else:
            by_video = {v: i for i, v in enumerate(ids)}
            rows = [by_video.get(v, -1) for v in video_ids]
        rows_arr = np.asarray(rows, dtype=np.int64)
        found = rows_arr >= 0
        out = np.zeros((len(rows), table.shape[1]), dtype=np.float32)
        out[found] = table[rows_arr[found]]
        self.found = {"key": key, "missing": int((~found).sum())}
        return out, found

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": str(self.spec.array), **self.found}


@register_extractor
class AudioArray(ArrayLookup):
    modality, name = "audio", "array"
    default_keys = ("audio", "features", "mean_audio")


@register_extractor
class VideoArray(ArrayLookup):
    modality, name = "video", "array"
    default_keys = ("video", "features", "mean_rgb")


__all__ = [
    "ArrayLookup",
    "BackboneExtractor",
    "ClipExtractor",
    "ExtractorSettings",
    "ExtractorSpec",
    "FeatureExtractor",
    "build_extractor",
    "extractor_names",
    "register_extractor",
]
