"""The one embedding path: a prepared split (or any batches) through the model, clip by clip.

Everything that needs clip embeddings goes through here: the trainer's validation, the demo's
table, evaluation (which stores the result on disk, :mod:`trimodal.evaluation.extraction`):

- :func:`data_options` / :func:`open_split`: the loader settings a model's channels need and
  the deterministic dataset of a prepared split with them (the one place that turns the
  backbones' ``data_options()`` into a :class:`~trimodal.data.PreparedClips`);
- :func:`embed_batches`: any iterable of :func:`~trimodal.data.collate_clips` batches through
  the model in eval mode, gathered across processes, optionally with the backbone features;
- :func:`extract_split`: both, plus the split's label names and titles.

The result is a :class:`SplitEmbeddings`. Video-level embeddings are pooled from it with
:func:`trimodal.metrics.aggregate_by_video` (the one definition of a video's embedding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from trimodal.metrics.pooling import pool_by_video
from trimodal.modalities import MODALITIES


@dataclasses.dataclass
class SplitEmbeddings:
    """Clip-level embeddings of one split (or of any batches), row ``i`` = clip ``i``.

    Attributes:
        split: ``"train"``, ``"dev"``, ``"test"`` (``""`` when not from a named split).
        embeddings: ``{modality: float32 [N, D]}`` unit-norm shared-space embeddings.
        backbone: ``{modality: float32 [N, F_m]}`` backbone features (before the heads);
            empty unless captured.
        video_id: length-N video id of each clip.
        clip_index: length-N clip number inside its video.
        labels: ``int64 [N, L]`` multi-hot labels of each clip's video (``[N, 0]`` when the
            data has none).
        first_label: length-N index of the video's first label (-1 when it has none).
        label_names: the L label names.
        titles: ``{video_id: title}``.
        fingerprint: hash of model files, data and loader settings that produced this.
        texts: length-N text of each clip (the string its text embedding was made from);
            empty when the text channel was not embedded. Retrieval from and to text reads
            it: clips that share a text are equally relevant (docs/evaluation.md#repeated-texts).
    """

    split: str
    embeddings: dict[str, torch.Tensor]
    backbone: dict[str, torch.Tensor]
    video_id: list[str]
    clip_index: list[int]
    labels: np.ndarray | None = None
    first_label: list[int] = dataclasses.field(default_factory=list)
    label_names: list[str] = dataclasses.field(default_factory=list)
    titles: dict[str, str] = dataclasses.field(default_factory=dict)
    fingerprint: str = ""
    # Last, so that positional construction keeps its meaning.
    texts: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.labels is None:
            self.labels = np.zeros((len(self.video_id), 0), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.video_id)

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if m in self.embeddings]

    def video_ids(self) -> list[str]:
        """The distinct video ids, sorted (the row order of every video-level array)."""
        return sorted(set(self.video_id))

    def video_labels(self) -> np.ndarray:
        """``int64 [V, L]``: each video's multi-hot labels (rows in :meth:`video_ids` order)."""
        labels = np.asarray(self.labels, dtype=np.float64)
        return pool_by_video(labels, self.video_id, "max")[0].numpy().astype(np.int64)


def data_options(model: Any) -> dict[str, Any]:
    """The :class:`~trimodal.data.PreparedClips` keyword arguments the model's channels need
    (modalities, audio rate, frame size and count)."""
    inner = getattr(model, "module", model)
    options: dict[str, Any] = {"modalities": list(inner.modalities)}
    for backbone in inner.backbones.values():
        options.update(backbone.data_options())
    return options


def open_split(prepared_dir: str | Path, split: str, model: Any) -> Any:
    """The deterministic evaluation dataset (no augmentation) of ``split`` for ``model``.

    Raises:
        FileNotFoundError: when the prepared directory has no such split.
    """
    from trimodal.data import PreparedClips

    reason = missing_split(prepared_dir, split)
    if reason is not None:
        raise FileNotFoundError(reason)
    return PreparedClips(prepared_dir, split, train=False, **data_options(model))


def missing_split(prepared_dir: str | Path, split: str) -> str | None:
    """Why ``split`` cannot be opened (no such directory, with the splits there are), or None."""
    root = Path(prepared_dir)
    if (root / split).is_dir():
        return None
    available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return f"split {split!r} not found in {root} (available: {', '.join(available) or 'none'})"


@torch.no_grad()
def embed_batches(
    model: torch.nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    modalities: list[str] | None = None,
    accelerator: Any = None,
    inputs_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    capture_backbone: bool = False,
    desc: str | None = "embedding",
) -> SplitEmbeddings:
    """Embed every clip of ``batches`` with ``model`` in eval mode (restored afterwards).

    The research code extracted embeddings with dropout active
    (docs/defects.md#embeddings-in-eval-mode); here every forward runs in
    eval mode, so an embedding does not depend on the batch it came in.

    Args:
        model: a :class:`~trimodal.modeling.TrimodalModel` (possibly wrapped by Accelerate).
        batches: yields :func:`trimodal.data.collate_clips` batches (``video_id``,
            ``clip_index``, the modalities' inputs, ``labels_multi_hot`` if labelled); a
            deterministic evaluation loader gives reproducible results.
        modalities: which channels to embed (default: all the model has).
        accelerator: with several processes, results are gathered with
            ``gather_for_metrics`` (which drops the padding duplicates of the last batch).
        inputs_fn: ``batch -> model keyword arguments`` (default: the raw inputs of each
            modality); the trainer uses it to feed cached backbone features.
        capture_backbone: also keep each backbone's output (the heads' input), read with a
            forward hook during the same pass.
        desc: the progress bar's label; ``None``: no bar (a caller that shows its own).

    Returns:
        A :class:`SplitEmbeddings` with ``split=""``: embeddings ``float32 [N, D]``, video ids,
        clip indices, labels ``[N, L]`` (``[N, 0]`` without labels) and, if captured, the
        backbone features ``[N, F_m]``; no label names or titles (see :func:`extract_split`).
    """
    inner = getattr(model, "module", model)
    modalities = [m for m in MODALITIES if m in (modalities or inner.modalities)]
    parts: dict[str, list] = {m: [] for m in modalities}
    parts.update({f"backbone.{m}": [] for m in modalities}, labels=[], video_id=[], clip_index=[])
    parts["texts"] = []
    captured: dict[str, torch.Tensor] = {}
    handles = []
    if capture_backbone:
        for m in modalities:
            hook = _capture_hook(captured, m)
            handles.append(inner.backbones[m].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(
            batches, desc=desc, leave=False, disable=desc is None or not _is_main(accelerator)
        ):
            result = model(**(inputs_fn(batch) if inputs_fn else {m: batch[m] for m in modalities}))
            for m in modalities:
                parts[m].append(_gather(getattr(result, f"{m}_embeds").float(), accelerator))
                if capture_backbone:
                    if m not in captured:
                        raise RuntimeError(f"the {m} backbone did not run (cached features?)")
                    parts[f"backbone.{m}"].append(_gather(captured.pop(m), accelerator))
            parts["video_id"].extend(_gather_objects(batch["video_id"], accelerator))
            if "text" in modalities:
                parts["texts"].extend(_gather_objects(list(batch["text"]), accelerator))
            clip_index = list(map(int, batch["clip_index"]))
            parts["clip_index"].extend(_gather_objects(clip_index, accelerator))
            if "labels_multi_hot" in batch:
                parts["labels"].append(_gather(batch["labels_multi_hot"], accelerator))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return _assemble(parts, modalities, capture_backbone)


def _capture_hook(captured: dict[str, torch.Tensor], modality: str) -> Callable:
    def hook(module: Any, inputs: Any, output: torch.Tensor) -> None:
        captured[modality] = output.detach().float()

    return hook


def _assemble(parts: dict[str, list], modalities: list[str], backbone: bool) -> SplitEmbeddings:
    labels = None
    if parts["labels"]:
        labels = torch.cat(parts["labels"]).cpu().numpy().astype(np.int64)
    return SplitEmbeddings(
        split="",
        embeddings={m: torch.cat(parts[m]).cpu().contiguous() for m in modalities},
        backbone={
            m: torch.cat(parts[f"backbone.{m}"]).cpu().contiguous() for m in modalities if backbone
        },
        video_id=list(parts["video_id"]),
        clip_index=[int(i) for i in parts["clip_index"]],
        labels=labels,
        texts=[str(t) for t in parts["texts"]],
    )


def extract_split(
    model: Any,
    prepared_dir: str | Path,
    split: str,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    capture_backbone: bool = True,
    fingerprint: str = "",
    desc: str | None = None,
) -> SplitEmbeddings:
    """Embed every clip of ``split`` (eval mode, no augmentation, fixed order).

    Args:
        model: a :class:`~trimodal.modeling.TrimodalModel`.
        prepared_dir: the prepared output root (with ``train/``, ``dev/``, ``test/``).
        split: the split to embed.
        batch_size, num_workers: the DataLoader's.
        capture_backbone: also keep the backbone features (evaluation's probe baselines).
        fingerprint: recorded in the result (see
            :func:`trimodal.evaluation.extraction.load_or_extract`).

    Returns:
        A :class:`SplitEmbeddings` of every modality, with the split's labels, label names
        and titles.

    Raises:
        FileNotFoundError: no such split; ValueError: the split has no clips.
    """
    from trimodal.data import collate_clips

    dataset = open_split(prepared_dir, split, model)
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} in {prepared_dir} has no clips")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=collate_clips,
    )  # fmt: skip
    out = embed_batches(
        model, loader, capture_backbone=capture_backbone, desc=desc or f"embedding {split}"
    )
    if out.video_id != list(dataset.video_ids):
        raise RuntimeError("extraction order does not match the dataset order")
    titles: dict[str, str] = {}
    for vid, title in zip(dataset.video_ids, dataset.titles):
        titles.setdefault(vid, title)
    label_names = list(dataset.label_names)
    return dataclasses.replace(
        out,
        split=split,
        labels=out.labels
        if out.labels.shape[1]
        else np.zeros((len(out), len(label_names)), np.int64),
        first_label=[int(ids[0]) if ids else -1 for ids in dataset.label_ids],
        label_names=label_names,
        titles=titles,
        fingerprint=fingerprint,
    )


def _is_main(accelerator: Any) -> bool:
    return accelerator is None or accelerator.is_main_process


def _gather(tensor: torch.Tensor, accelerator: Any) -> torch.Tensor:
    if accelerator is None or accelerator.num_processes == 1:
        return tensor
    return accelerator.gather_for_metrics(tensor)


def _gather_objects(values: list, accelerator: Any) -> list:
    if accelerator is None or accelerator.num_processes == 1:
        return list(values)
    return accelerator.gather_for_metrics(list(values), use_gather_object=True)
