"""Gradient caching: contrastive batches far larger than memory allows, exactly.

A contrastive loss couples every example with every other, so the batch cannot simply be
split into accumulation steps. GradCache (Gao et al., 2021; sentence-transformers'
``CachedMultipleNegativesRankingLoss``) splits the *computation* instead:

1. embed the batch in chunks without building a graph (memory: one chunk);
2. compute the loss on the full batch of embeddings and its gradient with respect to each
   embedding (memory: B × D);
3. re-embed each chunk with a graph and back-propagate that chunk's cached embedding
   gradients into the parameters.

Step 2 is the one backward that starts from the loss, so it runs through ``backward`` (the
trainer passes ``accelerator.backward``, which divides by the accumulation count and, under
fp16, multiplies by the gradient scaler's loss scale). The cached embedding gradients then
carry that factor, and step 3 propagates them unchanged: every parameter gradient, the logit
scale's from step 2 and the channels' from step 3, holds exactly the factor a plain
``accelerator.backward(loss)`` would give it, so the scaler's unscaling, the clipping and the
optimiser step see the same gradients as without caching.

Step 3 must reproduce step 1 exactly, so the RNG state is recorded before every chunk in
step 1 and restored before the same chunk in step 3 (dropout, stochastic depth and
augmentation inside the model draw the same numbers). Chunks run modality by modality, in the
order the full forward uses, so on the CPU each channel consumes random numbers in the same
sequence as an un-chunked forward: with one random layer per channel (e.g. head dropout
above a frozen backbone) the gradients equal plain full-batch training, not only in
expectation.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from trimodal.modalities import MODALITIES


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def grad_cache_step(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    loss_fn: Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]],
    chunk_size: int,
    backward: Callable[[torch.Tensor], Any] | None = None,
    no_sync: Callable[[], Any] | None = None,
) -> dict[str, torch.Tensor]:
    """One forward/backward of ``model`` on a large batch with memory bounded by the chunk.

    Args:
        model: called as ``model(**{modality: chunk})`` (raw inputs) or
            ``model(features={modality: chunk})`` and returning a ``TrimodalOutput``.
        inputs: ``{"text": list[str] | None, "audio": [B, ...], "video": [B, ...],
            "features": {modality: [B, F]}}``; the batch to embed.
        loss_fn: ``(embeddings {modality: [B, D]}, logit_scale) -> {"loss": ..., ...}``.
        chunk_size: examples embedded at once.
        backward: back-propagates the full-batch loss (``accelerator.backward``: divided by
            the accumulation count, multiplied by the fp16 loss scale); default
            ``loss.backward()``. The replay of step 3 passes the resulting gradients on as
            they are, so it must not scale again.
        no_sync: context-manager factory that suppresses DDP's gradient all-reduce; every
            backward here runs inside it and the caller reduces gradients once afterwards.

    Returns:
        The loss terms (detached), computed on the full batch.
    """
    if chunk_size < 1:
        raise ValueError(f"grad-cache chunk size must be >= 1, got {chunk_size}")
    features = inputs.get("features") or {}
    raw = {m: inputs.get(m) for m in MODALITIES if inputs.get(m) is not None}
    order = [m for m in MODALITIES if m in raw or m in features]
    sizes = {len(raw[m]) if m in raw else features[m].shape[0] for m in order}
    if len(sizes) != 1:
        raise ValueError(f"modalities have different batch sizes: {sizes}")
    batch = sizes.pop()
    bounds = [(s, min(s + chunk_size, batch)) for s in range(0, batch, chunk_size)]

    def embed(modality: str, start: int, stop: int):
        if modality in features:
            out = model(features={modality: features[modality][start:stop]})
        else:
            out = model(**{modality: raw[modality][start:stop]})
        return getattr(out, f"{modality}_embeds"), out.logit_scale

    # 1. Embed without a graph, remembering the RNG state before every chunk.
    states, cached = {}, {m: [] for m in order}
    with torch.no_grad():
        for modality in order:
            for start, stop in bounds:
                states[modality, start] = _rng_state()
                cached[modality].append(embed(modality, start, stop)[0])
    after_forward = _rng_state()

    # 2. Full-batch loss on the cached embeddings as leaves; their .grad is the cache.
    leaves = {m: torch.cat(cached.pop(m)).requires_grad_(True) for m in order}
    sync_context = no_sync or nullcontext
    with sync_context():
        # The logit scale's own gradient flows straight into the parameter here.
        logit_scale = _logit_scale(model)
        terms = loss_fn(leaves, logit_scale)
        (backward or torch.Tensor.backward)(terms["loss"])
        terms = {k: v.detach() for k, v in terms.items()}
        # Only the gradients are needed from here on: free the embeddings themselves.
        grads = {m: leaves.pop(m).grad for m in order}

        # 3. Replay each chunk with a graph and push its cached gradient through: the cache
        # already holds the accumulation and loss-scale factors of step 2's backward.
        for modality in order:
            grad = grads.pop(modality)
            for start, stop in bounds:
                _set_rng_state(states[modality, start])
                embeds, _ = embed(modality, start, stop)
                embeds.backward(grad[start:stop])
    _set_rng_state(after_forward)
    return terms


def _logit_scale(model: torch.nn.Module) -> torch.Tensor:
    """The model's clamped log logit scale, through a DDP wrapper if there is one."""
    inner = getattr(model, "module", model)
    return inner.get_logit_scale()
