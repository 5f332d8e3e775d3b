"""Backbone-feature cache for frozen channels.

A frozen backbone (in eval mode) maps a clip to the same features every epoch, so running
it again is wasted work — for VideoMAE-base that is seconds per clip on a CPU. The cache
stores its output ``[N, F]`` per split in a memory-mapped ``.npy`` file and fills it during
the first epoch(s); later epochs only run the heads.

With augmentation before the backbone (random crops), each epoch sees another view. The
cache then holds ``views`` views per clip: epoch ``e`` uses view ``e % views`` and fills it
the first time round. ``views=1`` (default) reuses the first epoch's view.

The text channel is never cached: BPEmb is a table lookup, and the text is drawn anew.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimodal.utils import atomic_write_json


class FeatureCache:
    """Memory-mapped backbone features of the frozen channels of one dataset split.

    Args:
        directory: where the cache files live (one per modality and view).
        num_items: clips in the split (rows).
        dims: ``{modality: feature size}`` of the cached channels.
        fingerprint: anything that identifies what produced the features (backbone config,
            dataset, preprocessing); a cache written under another fingerprint is discarded.
        views: augmentation views kept per clip.
    """

    def __init__(
        self,
        directory: str | Path,
        num_items: int,
        dims: dict[str, int],
        fingerprint: Any,
        views: int = 1,
    ):
        if views < 1:
            raise ValueError(f"feature-cache views must be >= 1, got {views}")
        self.directory = Path(directory)
        self.num_items = num_items
        self.dims = dict(dims)
        self.views = views
        self.fingerprint = hashlib.sha256(
            json.dumps(fingerprint, sort_keys=True, default=str).encode()
        ).hexdigest()
        self.directory.mkdir(parents=True, exist_ok=True)
        meta_path = self.directory / "meta.json"
        meta = {"fingerprint": self.fingerprint, "num_items": num_items, "dims": self.dims}
        if meta_path.is_file() and json.loads(meta_path.read_text()) != meta:
            for stale in self.directory.glob("*.npy"):
                stale.unlink()
        atomic_write_json(meta_path, meta)
        self._features: dict[tuple[str, int], np.memmap] = {}
        self._filled: dict[tuple[str, int], np.memmap] = {}
        for modality, dim in self.dims.items():
            for view in range(views):
                self._features[modality, view] = self._open(
                    f"{modality}_v{view}", (num_items, dim), np.float32
                )
                self._filled[modality, view] = self._open(
                    f"{modality}_v{view}_filled", (num_items,), np.bool_
                )

    def _open(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        path = self.directory / f"{name}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r+")
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        array[:] = 0
        array.flush()
        return array

    @property
    def modalities(self) -> list[str]:
        return list(self.dims)

    def view(self, epoch: int) -> int:
        """The view that epoch ``epoch`` reads and fills."""
        return epoch % self.views

    def has(self, modality: str, epoch: int, indices: list[int]) -> bool:
        """Whether the clips ``indices`` have features for ``modality`` in this view."""
        return bool(self._filled[modality, self.view(epoch)][np.asarray(indices)].all())

    def get(self, modality: str, epoch: int, indices: list[int]) -> torch.Tensor:
        """Features ``[len(indices), F]`` of the clips ``indices``."""
        rows = self._features[modality, self.view(epoch)][np.asarray(indices)]
        return torch.from_numpy(np.ascontiguousarray(rows))

    def put(self, modality: str, epoch: int, indices: list[int], features: torch.Tensor) -> None:
        """Store features ``[len(indices), F]`` of the clips ``indices``."""
        view = self.view(epoch)
        idx = np.asarray(indices)
        self._features[modality, view][idx] = features.detach().float().cpu().numpy()
        self._filled[modality, view][idx] = True

    def flush(self) -> None:
        """Write the memory maps to disk (before a checkpoint, say)."""
        for array in (*self._features.values(), *self._filled.values()):
            array.flush()
