"""The ``features`` step: every clip of a prepared split through two registered extractors.

:func:`extract_features` takes typed :class:`ExtractionOptions` (the command line in
:mod:`trimodal.vmnet.__main__` builds them), runs the audio and the video extractor of
:mod:`trimodal.vmnet.extractors` and returns a :class:`~trimodal.vmnet.features.FeatureSet`
in the split's clip order; :func:`write_features` also saves it. Clips that a lookup array has
no row for are an error that lists them, or with ``skip_missing`` they are left out and counted
in the metadata.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimodal.modalities import model_input
from trimodal.vmnet.extractors import (
    ArrayLookup,
    ClipExtractor,
    ExtractorSettings,
    ExtractorSpec,
    FeatureExtractor,
    build_extractor,
)
from trimodal.vmnet.features import FeatureFileError, FeatureSet, save_features

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExtractionOptions:
    """What the ``features`` command does.

    Attributes:
        prepared: the ``python -m data_prep prepare`` output directory.
        split: ``train``, ``dev`` or ``test``.
        audio / video: each modality's extractor and its sources.
        settings: backbone preset, random weights, device, librosa settings.
        batch_size: clips per backbone call; num_workers: DataLoader workers (they also
            compute the per-clip transforms, e.g. the librosa statistics).
        skip_missing: drop clips a lookup array has no row for, instead of failing.
        progress: show a progress bar.
    """

    prepared: Path
    split: str
    audio: ExtractorSpec
    video: ExtractorSpec
    settings: ExtractorSettings = dataclasses.field(default_factory=ExtractorSettings)
    batch_size: int = 8
    num_workers: int = 0
    skip_missing: bool = False
    progress: bool = True


class _TransformedClips(torch.utils.data.Dataset):
    """A :class:`~trimodal.data.PreparedClips` whose items go through the extractors'
    per-clip transforms, so that DataLoader workers compute them in parallel."""

    def __init__(self, clips: Any, extractors: dict[str, ClipExtractor]) -> None:
        self.clips, self.extractors = clips, extractors

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.clips[index]
        for modality, extractor in self.extractors.items():
            item[modality] = extractor.transform_clip(model_input(item[modality]), self.clips)
        return item


def stored_audio_rates(prepared: Path, split: str) -> list[int]:
    """Sample rates of the audio columns a prepared split stores, ascending."""
    from trimodal.data.schema import load_split

    rates = []
    for column in load_split(prepared / split)[0].features:
        # Column names of trimodal.data.clips: audio_48k, or audio_22050hz off the kHz grid.
        match = re.fullmatch(r"audio_(\d+)(k|hz)", column)
        if match:
            rates.append(int(match[1]) * (1000 if match[2] == "k" else 1))
    return sorted(rates)


def _clip_features(
    options: ExtractionOptions, extractors: dict[str, ClipExtractor], total: int
) -> dict[str, np.ndarray]:
    """``{modality: float32 [N, F]}`` of the extractors that read the decoded clips."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from trimodal.data import PreparedClips, collate_clips

    loader_kwargs: dict[str, Any] = {}
    if "audio" in extractors:
        rates = stored_audio_rates(options.prepared, options.split)
        if not rates:
            raise ValueError(f"{options.prepared / options.split} stores no audio")
        loader_kwargs.update(extractors["audio"].loader_options(rates))
    if "video" in extractors:
        loader_kwargs.update(extractors["video"].loader_options(()))
    modalities = [m for m in ("audio", "video") if m in extractors]
    clips = PreparedClips(options.prepared, options.split, modalities=modalities, **loader_kwargs)
    per_clip = {m: e for m, e in extractors.items() if e.per_clip}
    loader = DataLoader(
        _TransformedClips(clips, per_clip) if per_clip else clips,
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=options.num_workers,
        collate_fn=collate_clips,
    )
    outputs: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    bar = tqdm(
        total=total, desc=f"features {options.split}", unit="clip", disable=not options.progress
    )
    for batch in loader:
        for modality in modalities:
            outputs[modality].append(extractors[modality](model_input(batch[modality])))
        bar.update(len(batch["video_id"]))
    bar.close()
    return {m: np.concatenate(rows) for m, rows in outputs.items()}


def _looked_up_features(
    options: ExtractionOptions,
    lookups: dict[str, ArrayLookup],
    video_ids: list[str],
    clip_indices: list[int],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({modality: float32 [N, F]}, found bool [N])`` of the lookup extractors."""
    n = len(video_ids)
    columns, keep = {}, np.ones(n, dtype=bool)
    for modality, lookup in lookups.items():
        columns[modality], found = lookup.lookup(video_ids, clip_indices)
        if not found.all():
            missing = sorted({video_ids[i] for i in np.flatnonzero(~found)})
            message = (
                f"{lookup.spec.array} has no {modality} features for {int((~found).sum())} of "
                f"{n} clips ({len(missing)} videos, e.g. {missing[:5]})"
            )
            if not options.skip_missing:
                raise FeatureFileError(message + "; --skip-missing leaves those clips out")
            logger.warning("%s; left out (--skip-missing)", message)
        keep &= found
    return columns, keep


def extract_features(options: ExtractionOptions) -> FeatureSet:
    """The music and video features of every clip of ``options.split``.

    Raises:
        ValueError: unknown extractor, missing weights or lookup file, a split without clips
            or without the audio an extractor needs.
        FeatureFileError: a lookup file is malformed, or lacks rows (without ``skip_missing``).
    """
    from trimodal.data import PreparedClips

    extractors: dict[str, FeatureExtractor] = {
        modality: build_extractor(modality, spec, options.settings)
        for modality, spec in (("audio", options.audio), ("video", options.video))
    }
    ids_only = PreparedClips(options.prepared, options.split, modalities=())
    video_ids, clip_indices = list(ids_only.video_ids), list(ids_only.clip_indices)
    if not video_ids:
        raise ValueError(f"{options.prepared / options.split} has no clips")
    decoded = {m: e for m, e in extractors.items() if isinstance(e, ClipExtractor)}
    lookups = {m: e for m, e in extractors.items() if isinstance(e, ArrayLookup)}
    columns = _clip_features(options, decoded, len(video_ids)) if decoded else {}
    looked_up, keep = _looked_up_features(options, lookups, video_ids, clip_indices)
    columns.update(looked_up)
    if not keep.any():
        raise FeatureFileError("no clip has both audio and video features")
    rows = np.flatnonzero(keep)
    metadata = {
        "split": options.split,
        "prepared": str(options.prepared),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **{modality: extractor.metadata() for modality, extractor in extractors.items()},
        "skipped_clips": int((~keep).sum()),
    }
    return FeatureSet(
        [video_ids[i] for i in rows],
        np.asarray(clip_indices, dtype=np.int64)[rows],
        columns["audio"][rows],
        columns["video"][rows],
        metadata,
    )


def write_features(
    options: ExtractionOptions, out: str | Path, log: Callable[[str], None] = print
) -> FeatureSet:
    """:func:`extract_features`, saved to ``out`` (``.npz`` or ``.safetensors``), with a
    one-line summary through ``log``."""
    features = extract_features(options)
    save_features(out, features)
    skipped = features.metadata["skipped_clips"]
    log(
        f"wrote {out}: {len(features)} clips of {len(set(features.video_ids))} videos, "
        f"audio {options.audio.name} [{features.audio_dim}], video {options.video.name} "
        f"[{features.video_dim}]" + (f", {skipped} clips skipped" if skipped else "")
    )
    return features


__all__ = ["ExtractionOptions", "extract_features", "stored_audio_rates", "write_features"]
