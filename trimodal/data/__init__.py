"""Training and evaluation data: prepared clip datasets as torch datasets.

``python -m data_prep prepare`` (:mod:`trimodal.prepare`) writes one Hugging Face dataset per
split, laid out as :mod:`trimodal.data.schema` describes; this package reads them
memory-mapped and yields model-ready tensors:

- :class:`PreparedClips`: a ``torch.utils.data.Dataset`` of clips (text, audio, video),
  augmented reproducibly per ``(seed, epoch, index)`` in training, deterministic in evaluation;
- :class:`VideoBatchSampler`: batches that never hold two clips of one video;
- :func:`collate_clips`: stacks the tensors, keeps texts and ids as lists.

The classes load on first use: :mod:`trimodal.data.schema` is imported by the decoding worker
processes of the preparation, which must not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PreparedClips": "trimodal.data.clips",
    "collate_clips": "trimodal.data.clips",
    "VideoBatchSampler": "trimodal.data.sampler",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trimodal.data' has no attribute {name!r}")


__all__ = ["PreparedClips", "VideoBatchSampler", "collate_clips"]
