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

The extractors that compute the features are in :mod:`trimodal.vmnet.extractors`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from trimodal.utils import atomic_path


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


def read_feature_arrays(
    path: Path,
) -> tuple[dict[str, np.ndarray], list[str] | None, dict[str, Any]]:
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
    arrays, ids, meta = read_feature_arrays(path)
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
