"""Batches without false negatives: never two clips of the same video in one batch."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch


class VideoBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields batches of dataset indices in which every clip comes from a different video.

    In a contrastive batch, two clips of one video would be treated as negatives of each
    other although they share labels, tags and often sound; the dual-encoder study kept one
    segment per video per batch for that reason.

    Every index is yielded exactly once per epoch (except the last incomplete batch with
    ``drop_last``). The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` before
    each epoch to reshuffle (Accelerate's prepared data loaders call it for you); a resumed
    run that sets the same epoch replays the same batches.

    Args:
        video_ids: the video id of each dataset index (``PreparedClips.video_ids``).
        batch_size: clips per batch. A batch can be smaller when only clips of videos already
            in it remain (at the end of an epoch dominated by one long video).
        shuffle: shuffle videos and clips; ``False`` keeps dataset order (still one clip per
            video per batch).
        seed: base seed of the shuffling.
        drop_last: drop batches smaller than ``batch_size``.
        yield_epoch: yield ``(epoch, index)`` pairs instead of indices, so that a dataset
            whose ``__getitem__`` accepts them (``PreparedClips`` does) draws its
            augmentation from the right epoch even in persistent data-loader workers.
    """

    def __init__(
        self,
        video_ids: Sequence[str],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        yield_epoch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.video_ids = list(video_ids)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.yield_epoch = yield_epoch
        self.epoch = 0
        groups: dict[str, list[int]] = {}
        for i, vid in enumerate(self.video_ids):
            groups.setdefault(vid, []).append(i)
        self._groups = list(groups.values())
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of ``epoch`` (default: the current one), as lists of indices."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        groups = [list(g) for g in self._groups]
        if self.shuffle:
            for g in groups:
                rng.shuffle(g)
        # The stream: pass p holds the p-th clip of every video that still has one, videos in
        # a fresh random order each pass. Consecutive clips of a stream are from different
        # videos except across pass boundaries, which the greedy packing below handles.
        stream: list[int] = []
        owner: dict[int, int] = {}
        for gi, g in enumerate(groups):
            for i in g:
                owner[i] = gi
        depth = max((len(g) for g in groups), default=0)
        for p in range(depth):
            alive = [gi for gi, g in enumerate(groups) if len(g) > p]
            if self.shuffle:
                alive = [alive[j] for j in rng.permutation(len(alive))]
            stream.extend(groups[gi][p] for gi in alive)

        batches: list[list[int]] = []
        current: list[int] = []
        members: set[int] = set()
        deferred: deque[int] = deque()
        for i in stream:
            # A deferred clip goes into the first batch that has no clip of its video.
            if owner[i] in members:
                deferred.append(i)
                continue
            current.append(i)
            members.add(owner[i])
            if len(current) == self.batch_size:
                batches.append(current)
                current, members = [], set()
                retry, deferred = deferred, deque()
                for j in retry:
                    if owner[j] in members or len(current) == self.batch_size:
                        deferred.append(j)
                    else:
                        current.append(j)
                        members.add(owner[j])
                if len(current) == self.batch_size:
                    batches.append(current)
                    current, members = [], set()
        # Leftovers: pack them greedily into batches of distinct videos.
        rest = deque(current + list(deferred))
        while rest:
            batch, seen, keep = [], set(), deque()
            while rest:
                j = rest.popleft()
                if owner[j] in seen or len(batch) == self.batch_size:
                    keep.append(j)
                else:
                    batch.append(j)
                    seen.add(owner[j])
            batches.append(batch)
            rest = keep
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        self._cache = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list]:
        epoch = self.epoch
        for batch in self.batches(epoch):
            yield [(epoch, i) for i in batch] if self.yield_epoch else list(batch)

    def __len__(self) -> int:
        return len(self.batches())
