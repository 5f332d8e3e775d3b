"""A prepared split as a torch ``Dataset`` of model-ready clips."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from trimodal.data.schema import audio_column, frame_columns, load_split, stable_int
from trimodal.modalities import MODALITIES


class _Column:
    """Zero-copy row access to a fixed-size array column of a memory-mapped Arrow table."""

    def __init__(self, column: pa.ChunkedArray, shape: tuple[int, ...]) -> None:
        self.chunks = column.chunks
        self.offsets = np.cumsum([0] + [len(c) for c in self.chunks])
        self.shape = shape

    def __getitem__(self, i: int) -> np.ndarray:
        c = int(np.searchsorted(self.offsets, i, side="right")) - 1
        arr = self.chunks[c].slice(i - int(self.offsets[c]), 1)
        if isinstance(arr, pa.ExtensionArray):
            arr = arr.storage
        while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
            arr = arr.flatten()
        # A read-only view into the memory map: nothing is copied until cropping.
        return arr.to_numpy(zero_copy_only=True).reshape(self.shape)


class PreparedClips(torch.utils.data.Dataset):
    """Clips of one prepared split, as tensors ready for each channel.

    Items are dicts::

        "text":        str — one of the video's labels/tags (multi-word kept)
        "audio":       int16 [S], S = round(window_s * audio_rate), mono, full scale 32767
        "video":       uint8 [T, 3, video_size, video_size] (float32 in [0, 1] where the
                       split stores float16 frames; not normalised)

    Waveforms and frames stay in their stored types through the DataLoader's workers (half
    and a quarter of float32's bytes); the model's input adapter
    (:func:`trimodal.modalities.model_input`, and the video backbones' preprocessing for
    uint8) makes them float on the batch's device.
        "video_id":    str
        "clip_index":  int
        "label_ids":   int64 [n_labels_of_the_video]
        "labels_multi_hot": float32 [len(label_names)]

    Training (``train=True`` with ``augment``): a random window of ``crop_seconds`` inside
    the clip (audio and video cut at the same times), a random resized crop of the frames
    (area share in ``crop_scale``, aspect 3/4–4/3, the same crop for every frame), a random
    text among the candidates (``train_text="texts"``: the video's labels and tags;
    ``"labels"``: its label names only, the words label queries and zero-shot tagging use;
    a video without labels keeps its texts). All of it is drawn from a generator seeded by ``(seed, epoch,
    index)``, so a resumed run replays it exactly. Evaluation is deterministic: centred
    window, centre crop, and a text fixed per clip (``eval_text="hashed"``: a stable hash of
    video id and clip index picks among the candidates; ``"first"``: the first label).

    Args:
        path: a prepared output directory (with ``split``) or one split's directory.
        split: ``"train"``, ``"dev"`` or ``"test"`` when ``path`` is the output root.
        train: training mode (augmentation) instead of deterministic evaluation.
        audio_rate: 48000 (CLAP) or 16000 (musicnn): the stored ``audio_48k``/``audio_16k``.
        video_size: output side; 224 (VideoMAE) reads ``frames_224``, 112 (R(2+1)D)
            ``frames_112``; another size is resized from the closest stored one.
        crop_seconds: window length inside the clip (``None``: the whole clip).
        num_frames: output frames (``None``: as stored); sampled uniformly in the window.
        augment: apply training augmentation (default: ``train``).
        crop_scale: area share range of the random resized crop.
        eval_text: ``"hashed"`` or ``"first"`` (see above).
        train_text: ``"texts"`` or ``"labels"`` (see above).
        seed: base seed of the augmentation.
        modalities: the modalities to read (skipping one avoids reading its arrays).
    """

    def __init__(
        self,
        path: str | Path,
        split: str | None = None,
        *,
        train: bool = False,
        audio_rate: int = 48000,
        video_size: int = 224,
        crop_seconds: float | None = None,
        num_frames: int | None = None,
        augment: bool | None = None,
        crop_scale: Sequence[float] = (0.5, 1.0),
        eval_text: str = "hashed",
        train_text: str = "texts",
        seed: int = 0,
        modalities: Sequence[str] = MODALITIES,
    ) -> None:
        path = Path(path)
        if split is not None:
            path = path / split
        _check_options(modalities, eval_text, train_text, crop_scale)
        self.path = path
        self.dataset, manifest = load_split(path)  # memory-mapped Arrow files
        self._fingerprint: str = manifest["fingerprint"]
        self.train = train
        self.augment = train if augment is None else augment
        self.audio_rate = audio_rate
        self.video_size = video_size
        self.crop_seconds = crop_seconds
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.eval_text = eval_text
        self.train_text = train_text
        self.seed = seed
        self.modalities = tuple(modalities)
        self.epoch = 0

        features = self.dataset.features
        table = self.dataset.data.table
        self.label_names: list[str] = list(features["label_ids"].feature.names)
        # Small columns are materialised once; the arrays stay memory-mapped.
        self.video_ids: list[str] = table.column("video_id").to_pylist()
        self.clip_indices: list[int] = table.column("clip_index").to_pylist()
        self._start = np.asarray(table.column("start_s").to_pylist(), dtype=np.float64)
        self._end = np.asarray(table.column("end_s").to_pylist(), dtype=np.float64)
        self._texts: list[list[str]] = table.column("texts").to_pylist()
        self._titles: list[str] = table.column("title").to_pylist()
        self._label_ids: list[list[int]] = table.column("label_ids").to_pylist()

        self._audio = None
        if "audio" in self.modalities:
            name = audio_column(audio_rate)
            if name not in features:
                stored = sorted(c for c in features if c.startswith("audio_"))
                raise ValueError(f"no {name} in {path} (audio_rate={audio_rate}); stored: {stored}")
            self._audio = _Column(table.column(name), (features[name].length,))
        self._video = None
        self.num_frames = num_frames
        if "video" in self.modalities:
            stored = frame_columns(features)
            if not stored:
                raise ValueError(f"no frames_* columns in {path}")
            # The stored size meant for this output, else the smallest larger one, else the largest.
            larger = [s for s in stored if s >= video_size]
            self._frames_size = video_size if video_size in stored else min(larger or [max(stored)])
            name = stored[self._frames_size]
            shape = tuple(features[name].shape)
            self._video = _Column(table.column(name), shape)
            self._frame_dtype = features[name].dtype
            self.num_frames = num_frames or shape[0]

    @classmethod
    def from_config(
        cls, data_config: Any, split: str, train: bool, **overrides: Any
    ) -> PreparedClips:
        """Build from a :class:`trimodal.config.DataConfig` (``prepared_dir`` and loader keys)."""
        if not data_config.prepared_dir:
            raise ValueError("data.prepared_dir is not set")
        kwargs = {
            "train": train,
            "audio_rate": data_config.audio_rate,
            "video_size": data_config.video_size,
            "crop_seconds": data_config.crop_seconds,
            "augment": data_config.augment and train,
            "crop_scale": data_config.crop_scale,
            "eval_text": data_config.eval_text,
            "train_text": data_config.train_text,
            "seed": data_config.seed,
        }
        kwargs.update(overrides)
        return cls(data_config.prepared_dir, split, **kwargs)

    @property
    def fingerprint(self) -> str:
        """The split's fingerprint (a hash of its shards' content keys, ``split.json``): it
        changes when the split is prepared anew from other media or settings."""
        return self._fingerprint

    @property
    def label_ids(self) -> list[list[int]]:
        """Per clip, the indices into :attr:`label_names` of its video's labels (read-only)."""
        return self._label_ids

    @property
    def titles(self) -> list[str]:
        """Per clip, its video's title (read-only)."""
        return self._titles

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the augmentation is drawn for (a resumed run sets the same)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.video_ids)

    def text_for(self, index: int, rng: np.random.Generator | None = None) -> str:
        """The text of clip ``index``: random with ``rng``, else the evaluation choice."""
        candidates = self._texts[index] or [self._titles[index]]
        if rng is not None:
            if self.train_text == "labels" and self._label_ids[index]:
                candidates = [self.label_names[i] for i in self._label_ids[index]]
            return candidates[int(rng.integers(len(candidates)))]
        if self.eval_text == "first":
            return candidates[0]
        key = stable_int("text", self.video_ids[index], self.clip_indices[index])
        return candidates[key % len(candidates)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        rng = np.random.default_rng([self.seed, epoch, index]) if self.augment else None
        length = float(self._end[index] - self._start[index])
        window = length if self.crop_seconds is None else min(self.crop_seconds, length)
        if rng is not None:
            offset = float(rng.uniform(0.0, length - window)) if window < length else 0.0
        else:
            offset = (length - window) / 2

        item: dict[str, Any] = {
            "video_id": self.video_ids[index],
            "clip_index": self.clip_indices[index],
        }
        if "text" in self.modalities:
            item["text"] = self.text_for(index, rng)
        if self._audio is not None:
            wave = self._audio[index]
            start = int(round(offset * self.audio_rate))
            n = int(round(window * self.audio_rate))
            seg = np.array(wave[start : start + n])  # int16, a copy out of the map
            if len(seg) < n:
                seg = np.pad(seg, (0, n - len(seg)))
            item["audio"] = torch.from_numpy(seg)
        if self._video is not None:
            item["video"] = self._frames(index, length, offset, window, rng)
        ids = self._label_ids[index]
        item["label_ids"] = torch.tensor(ids, dtype=torch.long)
        multi_hot = torch.zeros(len(self.label_names), dtype=torch.float32)
        multi_hot[ids] = 1.0
        item["labels_multi_hot"] = multi_hot
        return item

    def _frames(
        self,
        index: int,
        length: float,
        offset: float,
        window: float,
        rng: np.random.Generator | None,
    ) -> torch.Tensor:
        stored = self._video[index]  # [Ts, 3, S, S]
        ts, side = stored.shape[0], stored.shape[-1]
        # Stored frame j shows time (j + 0.5) * length / Ts; output frame k is the stored
        # frame nearest to offset + (k + 0.5) * window / T: the same window as the audio.
        times = offset + (np.arange(self.num_frames) + 0.5) * window / self.num_frames
        j = np.clip(np.floor(times * ts / length), 0, ts - 1).astype(np.int64)
        out = self.video_size
        if rng is not None:
            area = side * side * rng.uniform(*self.crop_scale)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw = min(side, max(1, int(round(math.sqrt(area * aspect)))))
            ch = min(side, max(1, int(round(math.sqrt(area / aspect)))))
            top = int(rng.integers(0, side - ch + 1))
            left = int(rng.integers(0, side - cw + 1))
        else:
            # The stored frames carry a margin around the centred view of the stored size.
            ch = cw = min(side, self._frames_size)
            top = left = (side - ch) // 2
        crop = torch.from_numpy(np.array(stored[j, :, top : top + ch, left : left + cw]))
        if (ch, cw) == (out, out) and crop.dtype == torch.uint8:
            return crop  # the centre view of the stored size: the stored bytes themselves
        x = crop.float()  # uint8 values, or float16 frames in [0, 1]
        if (ch, cw) != (out, out):
            x = F.interpolate(
                x, size=(out, out), mode="bilinear", antialias=True, align_corners=False
            )
        if self._frame_dtype != "uint8":
            return x.clamp_(0.0, 1.0)
        # Back to uint8 for the trip to the device: within half a step (1/510) of the float
        # resize, where a float32 result would be four times the bytes.
        return x.round_().clamp_(0, 255).to(torch.uint8)


def _check_options(
    modalities: Sequence[str], eval_text: str, train_text: str, crop_scale: Sequence[float]
) -> None:
    """Refuse :class:`PreparedClips` options it does not know, with the accepted ones."""
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
    if eval_text not in ("hashed", "first"):
        raise ValueError(f"eval_text must be 'hashed' or 'first', got {eval_text!r}")
    if train_text not in ("texts", "labels"):
        raise ValueError(f"train_text must be 'texts' or 'labels', got {train_text!r}")
    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`PreparedClips`.

    Returns ``"text"``: list[str]; ``"audio"``: int16 [B, S]; ``"video"``: uint8 (or
    float32, see :class:`PreparedClips`) [B, T, 3, H, W]; ``"video_id"``: list[str]; ``"clip_index"``: int64 [B];
    ``"label_ids"``: list of int64 tensors (variable length); ``"labels_multi_hot"``:
    float32 [B, num_labels]. Keys absent from the items are absent from the batch.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    first = items[0]
    for key in first:
        values = [item[key] for item in items]
        if key in ("audio", "video", "labels_multi_hot"):
            batch[key] = torch.stack(values)
        elif key == "clip_index":
            batch[key] = torch.tensor(values, dtype=torch.long)
        else:  # text, video_id, label_ids: variable length or strings
            batch[key] = values
    return batch
