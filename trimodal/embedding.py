"""Embedding extraction: a whole split through the model, in eval mode, deterministically."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from trimodal.modalities import MODALITIES


@torch.no_grad()
def extract_embeddings(
    model: torch.nn.Module,
    dataloader: Any,
    modalities: list[str] | None = None,
    accelerator: Any = None,
    desc: str = "embedding",
    inputs_fn: Any = None,
) -> dict[str, Any]:
    """Embed every clip of ``dataloader`` with ``model`` in eval mode.

    The research code extracted embeddings with dropout active (BRIEF §3.5); here the model
    is put in eval mode for the duration and restored afterwards.

    Args:
        model: a :class:`~trimodal.modeling.TrimodalModel` (possibly wrapped by Accelerate).
        dataloader: yields batches of :func:`trimodal.data.collate_clips`; must be
            deterministic (an evaluation dataset) for reproducible results.
        modalities: which channels to embed (default: all the model has).
        accelerator: with several processes, results are gathered with
            ``gather_for_metrics`` (which drops the padding duplicates of the last batch).
        inputs_fn: ``batch -> model keyword arguments`` (default: the raw inputs of each
            modality); the trainer uses it to feed cached backbone features.

    Returns:
        ``{"text"|"audio"|"video": float32 [N, D], "video_id": list[str],
        "clip_index": list[int], "labels_multi_hot": [N, L] (if the data has labels)}``.
    """
    inner = getattr(model, "module", model)
    modalities = [m for m in MODALITIES if m in (modalities or inner.modalities)]
    was_training = model.training
    model.eval()
    out: dict[str, list] = {m: [] for m in modalities}
    out.update(video_id=[], clip_index=[], labels_multi_hot=[])
    try:
        for batch in tqdm(dataloader, desc=desc, leave=False, disable=not _is_main(accelerator)):
            inputs = inputs_fn(batch) if inputs_fn else {m: batch[m] for m in modalities}
            result = model(**inputs)
            for m in modalities:
                out[m].append(_gather(getattr(result, f"{m}_embeds").float(), accelerator))
            out["video_id"].extend(_gather_objects(batch["video_id"], accelerator))
            out["clip_index"].extend(
                _gather_objects(list(map(int, batch["clip_index"])), accelerator)
            )
            if "labels_multi_hot" in batch:
                out["labels_multi_hot"].append(_gather(batch["labels_multi_hot"], accelerator))
    finally:
        model.train(was_training)
    result: dict[str, Any] = {m: torch.cat(out[m]).cpu() for m in modalities}
    result["video_id"], result["clip_index"] = out["video_id"], out["clip_index"]
    if out["labels_multi_hot"]:
        result["labels_multi_hot"] = torch.cat(out["labels_multi_hot"]).cpu()
    return result


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
