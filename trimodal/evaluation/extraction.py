"""Embedding extraction for evaluation, stored on disk and reused while nothing changed.

A split is run through the model once, in eval mode (:func:`trimodal.embedding.extract_split`;
see docs/defects.md#embeddings-in-eval-mode), and two things are kept per clip and per modality:

* the shared-space embedding (unit norm, ``[N, embed_dim]``), and
* the backbone's own features before the projection head (``[N, backbone.output_dim]``), the
  baseline the dual-encoder study compared against, captured with a forward hook during the
  same pass (no second backbone run).

They are written to ``embeddings_<split>.safetensors`` (tensors) and
``embeddings_<split>.json`` (video ids, clip indices, label names, titles, each clip's text, fingerprint). The
fingerprint hashes the model directory's files, the prepared split's metadata and the loader
settings; a later run with the same fingerprint loads the files instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trimodal.data.schema import SPLIT_MANIFEST
from trimodal.embedding import SplitEmbeddings, data_options, extract_split
from trimodal.utils import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

#: Bump when the stored format or the extraction itself changes (invalidates caches).
EXTRACTION_VERSION = 2  # 2: each clip's text is stored


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
    """Hash of a prepared split's metadata (``split.json``, the Arrow files' names, sizes and
    modification times) and of the loader settings. The Arrow data itself (tens of GB at
    full size) is not read: re-preparing a split changes the mtimes."""
    split_dir = Path(prepared_dir) / split
    digest = hashlib.sha256()
    path = split_dir / SPLIT_MANIFEST
    if path.is_file():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for path in sorted(split_dir.glob("*.arrow")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(json.dumps(loader_options, sort_keys=True, default=str).encode())
    return digest.hexdigest()


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
            "texts": embeddings.texts,
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
        texts=list(meta.get("texts", [])),
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
        f"{split_fingerprint(prepared_dir, split, data_options(model))}".encode()
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
