"""The preparation's settings: a :class:`~trimodal.config.DataConfig`, checked and reduced.

- :func:`load_data_config` reads one from YAML (its ``data:`` section, or the whole file);
- :func:`validate_config` refuses settings that cannot produce a dataset (before any work);
- :func:`preparation_settings` is the part that determines the prepared data: the loader's
  settings (and the worker count) are left out, so that changing them neither invalidates
  finished shards nor changes the preparation's fingerprint;
- :func:`label_vocabulary` is the list ``label_ids`` index into.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any

from trimodal.config import DataConfig, from_dict
from trimodal.data.schema import audio_column
from trimodal.media import MediaError, resolve_decoder
from trimodal.prepare.corpus import MUSIC45_LABELS
from trimodal.prepare.errors import PrepareError
from trimodal.prepare.splits import age_splits_of, check_age_splits

# DataConfig fields that only the loader (or the scheduling of the work) reads.
LOADER_ONLY = frozenset(
    {
        "prepared_dir",
        "num_workers",
        "prepare_workers",
        "prepare_executor",
        "ray_address",
        "audio_rate",
        "video_size",
        "crop_seconds",
        "augment",
        "crop_scale",
        "eval_text",
        "train_text",
    }
)


def load_data_config(path: str | Path | None) -> DataConfig:
    """A :class:`DataConfig` from a YAML file: its ``data:`` section, or the whole file."""
    import yaml

    if path is None:
        return DataConfig()
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise PrepareError(f"{path}: the top level must be a mapping")
    if isinstance(data.get("data"), dict):
        data = data["data"]
    return from_dict(DataConfig, data, prefix="data")


def preparation_settings(config: DataConfig) -> dict[str, Any]:
    """``config`` as a dict without the loader-only fields: what the prepared data depends on.
    ``audio_only`` appears only when not ``skip``: data prepared before the setting existed
    keeps its fingerprint (nothing is prepared again)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in LOADER_ONLY}
    if settings.get("audio_only") == "skip":
        del settings["audio_only"]
    return settings


def label_vocabulary(config: DataConfig) -> list[str]:
    """The label names of the prepared data (``label_ids`` index into them)."""
    return list(config.label_vocabulary or MUSIC45_LABELS)


def validate_config(config: DataConfig) -> None:
    """Raise :class:`PrepareError` naming the first setting that cannot work."""

    def bad(msg: str) -> PrepareError:
        return PrepareError(f"invalid data config: {msg}")

    if config.clip_seconds <= 0 or config.segment_seconds <= 0:
        raise bad("clip_seconds and segment_seconds must be > 0")
    if config.num_segments < 1 or config.num_frames < 1:
        raise bad("num_segments and num_frames must be >= 1")
    if not config.frame_sizes or any(s < 8 for s in config.frame_sizes):
        raise bad("frame_sizes must list sizes >= 8")
    if len(set(config.frame_sizes)) != len(config.frame_sizes):
        raise bad("frame_sizes has duplicates")
    if config.frame_margin < 1.0:
        raise bad("frame_margin must be >= 1")
    if not config.audio_rates or any(r < 1000 for r in config.audio_rates):
        raise bad("audio_rates must list rates >= 1000 Hz")
    if len({audio_column(r) for r in config.audio_rates}) != len(config.audio_rates):
        raise bad("audio_rates has duplicates")
    if (
        len(config.split_ratios) != 3
        or min(config.split_ratios) < 0
        or sum(config.split_ratios) <= 0
    ):
        raise bad("split_ratios must be three non-negative numbers (train, dev, test)")
    for pair in config.sparse_fractions:
        if len(pair) != 2 or pair[0] < 0 or not 0 < pair[1] <= 1:
            raise bad(f"sparse_fractions entries are [share>=0, keep in (0,1]], got {pair}")
    try:
        _dt.date.fromisoformat(config.reference_date)
    except ValueError as err:
        raise bad(f"reference_date {config.reference_date!r} is not YYYY-MM-DD") from err
    if config.split_by == "age":
        try:
            check_age_splits(age_splits_of(config))
        except ValueError as err:
            raise bad(f"age splits (test_min/test_max/dev_max_age_years): {err}") from err
    vocab = config.label_vocabulary
    if vocab is not None and len(set(vocab)) != len(vocab):
        raise bad("label_vocabulary has duplicates")
    try:
        resolve_decoder(config.decoder)
    except MediaError as err:
        raise bad(err.detail) from err
