"""Whole-set retrieval evaluation of VM-NET, on the project's embedding and retrieval path.

:func:`evaluate_vmnet` embeds the **whole** split with
:func:`trimodal.embedding.embed_batches` (eval mode, batched) and ranks each query's
partner against every item of the other modality with
:func:`trimodal.metrics.retrieval.cross_modal_retrieval` (1-based, pessimistic ties), in both
directions, with the chance row ``R@k = k/N``. At clip level every row is one query; the video
level (each video's clip embeddings pooled) is added only when some video has several clips.
Directions are named in VM-NET's words: ``music→video`` and ``video→music``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimodal.embedding import embed_batches
from trimodal.evaluation.reports import retrieval_table
from trimodal.metrics.retrieval import cross_modal_retrieval
from trimodal.utils import atomic_write_json, atomic_write_text
from trimodal.vmnet.features import FeatureSet
from trimodal.vmnet.model import VMNet, VMNetModelConfig

#: Retrieval direction names of :mod:`trimodal.metrics.retrieval` → VM-NET's (music = audio).
DIRECTIONS = {"audio→video": "music→video", "video→audio": "video→music"}


class FeatureBatches:
    """A feature file's rows in order, as the batches :func:`~trimodal.embedding.embed_batches` reads:
    ``{"audio": float32 [b, F_M], "video": float32 [b, F_V], "video_id": list[str],
    "clip_index": list[int]}`` on ``device``."""

    def __init__(
        self, features: FeatureSet, batch_size: int, device: str | torch.device = "cpu"
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.features, self.batch_size, self.device = features, batch_size, torch.device(device)

    def __len__(self) -> int:
        return -(-len(self.features) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        f = self.features
        for start in range(0, len(f), self.batch_size):
            rows = slice(start, start + self.batch_size)
            yield {
                "audio": torch.from_numpy(f.audio[rows]).to(self.device),
                "video": torch.from_numpy(f.video[rows]).to(self.device),
                "video_id": f.video_ids[rows],
                "clip_index": f.clip_indices[rows].tolist(),
            }


def embed_features(
    model: VMNet, features: FeatureSet, batch_size: int = 4096, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of every row in eval mode: ``(music [N, D], video [N, D])`` on the CPU."""
    embedded = embed_batches(
        model,
        FeatureBatches(features, batch_size, device),
        modalities=model.modalities,
        desc="embedding",
    )
    return embedded.embeddings["audio"], embedded.embeddings["video"]


def retrieval_results(
    music: torch.Tensor | np.ndarray,
    video: torch.Tensor | np.ndarray,
    video_ids: Sequence[str],
    ks: Sequence[int] = (1, 10, 25),
) -> dict[str, dict[str, dict[str, float]]]:
    """Music→video and video→music retrieval over the whole set, plus chance.

    Args:
        music, video: ``[N, D]`` embeddings; row i of each is clip i (its true partner).
        video_ids: ``[N]``; the video level is added when some video has several clips.
    Returns:
        ``{"clip": {"music→video": m, "video→music": m, "chance": m}, ["video": {...}]}`` with
        ``m`` as :func:`trimodal.metrics.retrieval.retrieval_metrics` returns (R@k fractions,
        mean/median rank, MRR, ``num_queries``, ``gallery_size``).
    """
    levels = ["clip"]
    if len(set(video_ids)) < len(video_ids):
        levels.append("video")
    raw = cross_modal_retrieval(
        {"audio": music, "video": video}, list(video_ids), levels=levels, ks=tuple(ks)
    )
    return {
        level: {DIRECTIONS.get(name, name): metrics for name, metrics in table.items()}
        for level, table in raw.items()
    }


def results_markdown(results: dict[str, Any], ks: Sequence[int], title: str) -> str:
    """One table per level (R@k in %, median and mean rank), rendered by the project's one
    retrieval-table renderer, :func:`trimodal.evaluation.reports.retrieval_table`."""
    lines = [f"# {title}", ""]
    for level, table in results.items():
        n = table["chance"]["num_queries"]
        lines += [
            f"## {level} level (N = {n}, whole set as gallery)",
            "",
            retrieval_table({"VM-NET": results}, [level], ks, directions=list(DIRECTIONS.values())),
            "",
        ]
    lines.append("R@k in %; ranks are 1-based, ties counted against the model.")
    return "\n".join(lines) + "\n"


def check_feature_sizes(config: VMNetModelConfig | Any, features: FeatureSet, name: str) -> None:
    """Refuse features whose sizes differ from the model's inputs (``None``: any size).

    Raises:
        ValueError: naming the split, the modality and both sizes.
    """
    for modality, want, got in (
        ("music (audio)", config.music_input_dim, features.audio_dim),
        ("video", config.video_input_dim, features.video_dim),
    ):
        if want is not None and want != got:
            raise ValueError(
                f"{name} features have {modality} size {got} but the model takes {want} "
                "(extract every split with the same extractors)"
            )


def evaluate_vmnet(
    model: VMNet,
    features: FeatureSet,
    output_dir: str | Path | None = None,
    *,
    ks: Sequence[int] | None = None,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    name: str = "test",
) -> dict[str, Any]:
    """Retrieval results of ``model`` on the whole of ``features`` (see the module docstring);
    with ``output_dir`` also writes ``results.json`` and ``results.md`` there.

    Raises:
        ValueError: the feature sizes do not match the model's inputs.
    """
    check_feature_sizes(model.config, features, name)
    ks = tuple(ks or model.config.eval_ks)
    music, video = embed_features(model, features, batch_size, device)
    results = retrieval_results(music, video, features.video_ids, ks)
    if output_dir is not None:
        output_dir = Path(output_dir)
        payload = {
            "split": name,
            "num_clips": len(features),
            "num_videos": len(set(features.video_ids)),
            "ks": list(ks),
            "features": features.metadata,
            "results": results,
        }
        atomic_write_json(output_dir / "results.json", payload)
        markdown = results_markdown(results, ks, f"VM-NET retrieval ({name})")
        atomic_write_text(output_dir / "results.md", markdown)
    return results


__all__ = [
    "DIRECTIONS",
    "FeatureBatches",
    "check_feature_sizes",
    "embed_features",
    "evaluate_vmnet",
    "results_markdown",
    "retrieval_results",
]
