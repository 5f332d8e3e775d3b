"""Cross-process helpers for objectives: an all-gather that carries gradients.

Why this exists
---------------
A contrastive objective on P processes with per-process batch ``B`` should see ``P·B``
candidates per query, exactly as a single process with the concatenated batch would.
``accelerator.gather`` / ``torch.distributed.all_gather`` return tensors *without* autograd
history, so negatives from the other processes would get no gradient (a known pitfall; open_clip
solves it with ``--gather-with-grad``). :func:`gather_with_grad` concatenates the per-process
tensors and routes the gradient of every row back to the process that produced it.

Gradient scaling (why each process computes the *full-batch* loss, not ``1/P`` of it)
----------------------------------------------------------------------------------------
Let ``L`` be the loss on the concatenated batch and ``x_s`` the rows made on process ``s``.
Every process computes the same ``L`` from the same gathered tensor. In the backward pass,
process ``r`` produces ``dL/dx_s`` for every ``s``; the backward of the gather *sums* those over
``r`` (an all-reduce), so process ``s`` receives ``P · dL/dx_s`` for its own rows and therefore
``P · (dL/dθ restricted to its own rows' forward)`` for the parameters. DDP (and Accelerate)
then *average* parameter gradients over the ``P`` processes::

    (1/P) · Σ_s P · dL/dx_s · dx_s/dθ  =  Σ_s dL/dx_s · dx_s/dθ  =  dL/dθ

which is exactly the single-process gradient on the concatenated batch. So the per-process loss
must be the full-batch loss, unscaled. (Had the gather dropped gradients from the other processes,
each would receive only ``dL/dx_s`` and the averaged gradient would be ``dL/dθ / P``.)
``tests/test_distributed.py`` checks this numerically with ``accelerate launch`` on 2 processes.

Every process must call :func:`gather_with_grad` (and later run backward through it) the same
number of times in the same order, as with any collective operation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad", "get_rank", "get_world_size", "is_distributed"]


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def get_rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def _row_counts(tensor: Tensor, group) -> list[int]:
    """Number of rows of ``tensor`` on every process of ``group`` (one small collective)."""
    n_local = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    counts = [torch.zeros_like(n_local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(counts, n_local, group=group)
    return [int(c.item()) for c in counts]


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums each row's gradient over all processes.

    A custom Function rather than ``torch.distributed.nn.functional.all_gather`` because that one
    needs equal shapes on every process, and on gloo its backward relies on all-to-all; this one
    needs only ``all_gather`` and ``all_reduce`` (every backend has them) and accepts a different
    number of rows per process (e.g. an uneven last batch), by padding to the largest.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, sizes: list[int], group) -> Tensor:  # type: ignore[override]
        local = tensor.contiguous()
        n_max = max(sizes)
        if local.shape[0] < n_max:  # all_gather needs equal shapes: pad, strip afterwards
            pad = local.new_zeros((n_max - local.shape[0], *local.shape[1:]))
            local = torch.cat([local, pad], dim=0)
        parts = [torch.empty_like(local) for _ in sizes]
        dist.all_gather(parts, local, group=group)
        ctx.sizes = sizes
        ctx.rank = dist.get_rank(group)
        ctx.group = group
        return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        # Every process holds d(its loss)/d(all rows); the gradient of this process's rows is
        # the sum over processes. An all-reduce of the whole [N, ...] gradient, then slicing, is a
        # reduce-scatter that works on every backend (the tensors are embeddings: small).
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(tensor: Tensor, group=None) -> Tensor:
    """Concatenate ``tensor`` over all processes along dim 0, keeping autograd.

    Args:
        tensor: ``[B_r, ...]`` on process ``r``; the trailing shape, dtype and device kind must
            agree across processes, ``B_r`` may differ.
        group: process group (default: the global one).

    Returns:
        ``[Σ_r B_r, ...]``: the rows of process 0, then process 1, and so on. The rows of this
        process are ``tensor`` itself (not a copy that went through the collective), placed at
        this rank's offset, as in open_clip's ``gather_features``: their gradient path stays
        local, and rows of the other processes carry gradient back to their owners.
        When not distributed (or with one process) ``tensor`` is returned unchanged.

    See the module docstring for why the per-process loss must then be the full-batch loss.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return tensor
    sizes = _row_counts(tensor, group)
    gathered = _AllGatherWithGrad.apply(tensor, sizes, group)
    rank = dist.get_rank(group)
    start = sum(sizes[:rank])
    return torch.cat([gathered[:start], tensor, gathered[start + sizes[rank] :]], dim=0)
