"""Embedding extraction for evaluation, stored on disk and reused while nothing changed.

A split is run through the model once, in eval mode (:func:`trimodal.embedding.extract_embeddings`,
which fixes BRIEF §3.5), and two things are kept per clip and per modality:

* the shared-space embedding (unit norm, ``[N, embed_dim]``), and
* the backbone's own features before the projection head (``[N, backbone.output_dim]``), the
  baseline the dual-encoder study compared against, captured with a forward hook during the
  same pass (no second backbone run).

They are written to ``embeddings_<split>.safetensors`` (tensors) and
``embeddings_<split>.json`` (video ids, clip indices, label names, titles, fingerprint). The
fingerprint hashes the model directory's files, the prepared split's metadata and the loader
settings; a later run with the same fingerprint loads the files instead of recomputing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trimodal.modalities import MODALITIES
from trimodal.utils import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

#: Bump when the stored format or the extraction itself changes (invalidates caches).
EXTRACTION_VERSION = 1


@dataclasses.dataclass
class SplitEmbeddings:
    """Everything the evaluation tasks need about one split, clip by clip.

    Attributes:
        split: ``"train"``, ``"dev"`` or ``"test"``.
        embeddings: ``{modality: float32 [N, D]}`` unit-norm shared-space embeddings.
        backbone: ``{modality: float32 [N, F_m]}`` backbone features (before the heads).
        video_id: length-N video id of each clip.
        clip_index: length-N clip number inside its video.
        labels: ``int64 [N, L]`` multi-hot labels of each clip's video.
        first_label: length-N index of the video's first label (-1 when it has none).
        label_names: the L label names.
        titles: ``{video_id: title}``.
        fingerprint: hash of model files, data and loader settings that produced this.
    """

    split: str
    embeddings: dict[str, torch.Tensor]
    backbone: dict[str, torch.Tensor]
    video_id: list[str]
    clip_index: list[int]
    labels: np.ndarray
    first_label: list[int]
    label_names: list[str]
    titles: dict[str, str]
    fingerprint: str

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
        return pool_by_video(self.labels.astype(np.float64), self.video_id, "max")[0].astype(
            np.int64
        )


def pool_by_video(
    features: np.ndarray | torch.Tensor, video_ids: Sequence[str], how: str = "mean"
) -> tuple[np.ndarray, list[str]]:
    """Pool clip rows ``[N, F]`` per video: ``"mean"`` (plain average, no re-normalisation,
    as the study averaged clip embeddings for its probes) or ``"max"``.

    Returns ``(pooled [V, F] float64, ids)`` with ``ids`` the sorted distinct video ids.
    """
    x = np.asarray(features, dtype=np.float64)
    ids = np.asarray(list(video_ids))
    if x.shape[0] != ids.shape[0]:
        raise ValueError(f"{x.shape[0]} rows but {ids.shape[0]} video ids")
    uniq, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1)
    if how == "mean":
        out = np.zeros((len(uniq), x.shape[1]))
        np.add.at(out, inverse, x)
        out /= np.bincount(inverse, minlength=len(uniq))[:, None]
    elif how == "max":
        out = np.full((len(uniq), x.shape[1]), -np.inf)
        np.maximum.at(out, inverse, x)
    else:
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
    return out, uniq.tolist()


# ----------------------------------------------------------------------------- fingerprints


def model_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 over the relative paths and contents of every file in a saved model directory."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no model directory at {model_dir}")
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # temporary files of an interrupted save, editor files
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def split_fingerprint(prepared_dir: str | Path, split: str, loader_options: dict[str, Any]) -> str:
    """Hash of a prepared split's metadata (``state.json``, ``dataset_info.json``, the Arrow
    files' names, sizes and modification times) and of the loader settings. The Arrow data
    itself (tens of GB at full size) is not read: re-preparing a split changes the mtimes."""
    split_dir = Path(prepared_dir) / split
    digest = hashlib.sha256()
    for name in ("state.json", "dataset_info.json"):
        path = split_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    for path in sorted(split_dir.glob("*.arrow")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(json.dumps(loader_options, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- extraction


def loader_options(model: Any) -> dict[str, Any]:
    """The :class:`~trimodal.data.PreparedClips` keyword arguments the model's channels need
    (modalities, audio rate, frame size and count)."""
    options: dict[str, Any] = {"modalities": list(model.modalities)}
    for backbone in model.backbones.values():
        options.update(backbone.data_options())
    return options


def open_split(prepared_dir: str | Path, split: str, model: Any) -> Any:
    """The deterministic evaluation dataset of ``split`` for ``model``.

    Raises:
        FileNotFoundError: when the prepared directory has no such split.
    """
    from trimodal.data import PreparedClips

    root = Path(prepared_dir)
    if not (root / split).is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"split {split!r} not found in {root} (available: {', '.join(available) or 'none'})"
        )
    return PreparedClips(prepared_dir, split, train=False, **loader_options(model))


@torch.no_grad()
def extract_split(
    model: Any,
    prepared_dir: str | Path,
    split: str,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    fingerprint: str = "",
) -> SplitEmbeddings:
    """Embed every clip of ``split`` (eval mode, no augmentation, fixed order).

    Args:
        model: a :class:`~trimodal.modeling.TrimodalModel`.
        prepared_dir: the prepared output root (with ``train/``, ``dev/``, ``test/``).
        split: the split to embed.
        batch_size, num_workers: the DataLoader's.
        fingerprint: recorded in the result (see :func:`load_or_extract`).

    Returns:
        A :class:`SplitEmbeddings` with embeddings and backbone features of every modality.
    """
    from trimodal.data import collate_clips
    from trimodal.embedding import extract_embeddings

    dataset = open_split(prepared_dir, split, model)
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} in {prepared_dir} has no clips")
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_clips,
    )
    captured: dict[str, list[torch.Tensor]] = {m: [] for m in model.modalities}

    def hook(modality: str):
        def _hook(module: Any, inputs: Any, output: torch.Tensor) -> None:
            captured[modality].append(output.detach().float().cpu())

        return _hook

    handles = [model.backbones[m].register_forward_hook(hook(m)) for m in model.modalities]
    try:
        out = extract_embeddings(model, loader, desc=f"embedding {split}")
    finally:
        for handle in handles:
            handle.remove()
    if list(out["video_id"]) != list(dataset.video_ids):
        raise RuntimeError("extraction order does not match the dataset order")
    label_ids = dataset.label_ids
    titles: dict[str, str] = {}
    for vid, title in zip(dataset.video_ids, dataset.titles):
        titles.setdefault(vid, title)
    return SplitEmbeddings(
        split=split,
        embeddings={m: out[m].float().contiguous() for m in model.modalities},
        backbone={m: torch.cat(captured[m]).contiguous() for m in model.modalities},
        video_id=list(out["video_id"]),
        clip_index=[int(i) for i in out["clip_index"]],
        labels=out["labels_multi_hot"].numpy().astype(np.int64),
        first_label=[int(ids[0]) if ids else -1 for ids in label_ids],
        label_names=list(dataset.label_names),
        titles=titles,
        fingerprint=fingerprint,
    )


def cache_paths(cache_dir: str | Path, split: str) -> tuple[Path, Path]:
    """``(embeddings_<split>.safetensors, embeddings_<split>.json)`` under ``cache_dir``."""
    cache_dir = Path(cache_dir)
    return cache_dir / f"embeddings_{split}.safetensors", cache_dir / f"embeddings_{split}.json"


def save_split(embeddings: SplitEmbeddings, cache_dir: str | Path) -> tuple[Path, Path]:
    """Write a :class:`SplitEmbeddings` (tensors as safetensors, ids as JSON), atomically."""
    tensor_path, meta_path = cache_paths(cache_dir, embeddings.split)
    tensors = {f"embeddings.{m}": t for m, t in embeddings.embeddings.items()}
    tensors.update({f"backbone.{m}": t for m, t in embeddings.backbone.items()})
    tensors["labels_multi_hot"] = torch.from_numpy(np.ascontiguousarray(embeddings.labels))
    tensors["clip_index"] = torch.tensor(embeddings.clip_index, dtype=torch.int64)
    with atomic_path(tensor_path) as tmp:
        save_file(tensors, str(tmp), metadata={"fingerprint": embeddings.fingerprint})
    atomic_write_json(
        meta_path,
        {
            "split": embeddings.split,
            "fingerprint": embeddings.fingerprint,
            "extraction_version": EXTRACTION_VERSION,
            "video_id": embeddings.video_id,
            "first_label": embeddings.first_label,
            "label_names": embeddings.label_names,
            "titles": embeddings.titles,
        },
    )
    return tensor_path, meta_path


def load_split(cache_dir: str | Path, split: str) -> SplitEmbeddings | None:
    """Read what :func:`save_split` wrote, or ``None`` when absent or inconsistent."""
    tensor_path, meta_path = cache_paths(cache_dir, split)
    if not (tensor_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensor_path))
        with safe_open(str(tensor_path), framework="pt") as f:
            stored_fp = (f.metadata() or {}).get("fingerprint")
    except (OSError, ValueError, SafetensorError) as err:  # JSONDecodeError is a ValueError
        logger.warning("ignoring unreadable embedding cache %s: %s", tensor_path, err)
        return None
    if stored_fp != meta.get("fingerprint") or meta.get("extraction_version") != EXTRACTION_VERSION:
        return None
    return SplitEmbeddings(
        split=split,
        embeddings={
            k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("embeddings.")
        },
        backbone={k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("backbone.")},
        video_id=list(meta["video_id"]),
        clip_index=tensors["clip_index"].tolist(),
        labels=tensors["labels_multi_hot"].numpy(),
        first_label=list(meta["first_label"]),
        label_names=list(meta["label_names"]),
        titles=dict(meta["titles"]),
        fingerprint=meta["fingerprint"],
    )


def load_or_extract(
    model: Any,
    model_fp: str,
    prepared_dir: str | Path,
    split: str,
    cache_dir: str | Path,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    recompute: bool = False,
) -> tuple[SplitEmbeddings, bool]:
    """The split's embeddings from ``cache_dir`` when their fingerprint matches, else extracted
    (and stored). Returns ``(embeddings, reused)``.

    The fingerprint combines ``model_fp`` (:func:`model_fingerprint`), the split's
    :func:`split_fingerprint` and :data:`EXTRACTION_VERSION`; the batch size does not enter it
    (eval-mode embeddings do not depend on it beyond float rounding).
    """
    fp = hashlib.sha256(
        f"{EXTRACTION_VERSION}:{model_fp}:"
        f"{split_fingerprint(prepared_dir, split, loader_options(model))}".encode()
    ).hexdigest()
    if not recompute:
        cached = load_split(cache_dir, split)
        if cached is not None and cached.fingerprint == fp:
            logger.info("reusing stored %s embeddings from %s", split, cache_dir)
            return cached, True
    result = extract_split(
        model,
        prepared_dir,
        split,
        batch_size=batch_size,
        num_workers=num_workers,
        fingerprint=fp,
    )
    save_split(result, cache_dir)
    return result, False
