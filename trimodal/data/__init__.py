"""Training and evaluation data: prepared clip datasets as torch datasets.

``python -m data_prep prepare`` writes one Hugging Face dataset per split; this package reads
them memory-mapped and yields model-ready tensors:

- :class:`PreparedClips`: a ``torch.utils.data.Dataset`` of clips (text, audio, video),
  augmented reproducibly per ``(seed, epoch, index)`` in training, deterministic in evaluation;
- :class:`VideoBatchSampler`: batches that never hold two clips of one video;
- :func:`collate_clips`: stacks the tensors, keeps texts and ids as lists.
"""

from trimodal.data.clips import PreparedClips, collate_clips
from trimodal.data.sampler import VideoBatchSampler

__all__ = ["PreparedClips", "VideoBatchSampler", "collate_clips"]
