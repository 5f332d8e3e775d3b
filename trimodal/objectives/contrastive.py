"""Softmax objectives over the N×N similarity matrix: ``contrastive``, ``weighted_contrastive``
(CLIP-style, as in the trimodal study: docs/research.md#trimodal-study-objectives) and
``nt_xent`` (the dual-encoder paper).

All three L2-normalise the embeddings first: the study's contrastive loss on raw dot products
without temperature was one of its defects (docs/defects.md#contrastive-and-cosine-losses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from trimodal.modalities import STUDY_PAIR_WEIGHTS
from trimodal.objectives.base import PairwiseObjective, same_group
from trimodal.objectives.cosine import cosine_matrix
from trimodal.objectives.registry import register_objective

__all__ = ["ContrastiveObjective", "NTXentObjective", "WeightedContrastiveObjective"]


@register_objective("contrastive")
class ContrastiveObjective(PairwiseObjective):
    """CLIP symmetric cross-entropy per pair::

        S = s · x̂ ŷᵀ                    (x̂, ŷ: L2-normalised rows; S is [N, N])
        L_pair = ½ [CE(S, I) + CE(Sᵀ, I)]  (CE averaged over rows; target of row i is column i)

    The scale ``s`` is ``exp(logit_scale)`` when ``forward`` gets ``logit_scale`` — the model's
    learnable **log** scale (0-d tensor, initialised at ln(1/0.07), clamped at ln(100) by the
    model; it receives gradient through this objective) — and ``1 / temperature`` otherwise.

    Args:
        temperature: fixed temperature used when no ``logit_scale`` is passed (default 0.07,
            CLIP's initial value).
        pair_weights, gather: see :class:`~trimodal.objectives.base.PairwiseObjective`.

    A batch of 1 gives a 1×1 matrix whose cross-entropy is exactly 0 (no negatives, no
    gradient); that is reported once as a warning. Output components per pair:
    ``<x>_to_<y>`` (rows: x queries, y candidates) and ``<y>_to_<x>``.

    With repeated texts (``text_keys``, in the pairs with text) the target of row i is
    uniform over its positives P(i), the items with i's text (supervised-contrastive /
    UniCL multi-positive cross-entropy)::

        CE_i = −(1/|P(i)|) Σ_{j∈P(i)} log softmax(S_i)_j

    minimal (log |P(i)|) when the softmax puts 1/|P(i)| on each positive; with every text
    distinct it is CLIP's cross-entropy.

    ``block_size``: compute the loss over blocks of ``block_size`` rows, recomputing each
    block's logits in the backward pass, so memory is O(block_size × N + N × D) instead of
    O(N²) — the same loss and gradients, in float32 even under autocast. For gradient
    caching, where the full-batch loss is otherwise what bounds memory (4096² float32 logits
    and their softmaxes are ~350 MiB); the trainer sets it to the chunk size there.
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        block_size: int | None = None,
        pair_weights: Mapping[str, float] | None = None,
        gather: bool | None = None,
    ) -> None:
        super().__init__(pair_weights=pair_weights, gather=gather)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.temperature = float(temperature)
        self.block_size = block_size

    def scale(self, logit_scale: Tensor | float | None, like: Tensor) -> Tensor:
        """The multiplicative scale ``s`` as a 0-d tensor on ``like``'s device and dtype."""
        if logit_scale is None:
            return like.new_tensor(1.0 / self.temperature)
        logit_scale = torch.as_tensor(logit_scale, device=like.device)
        if logit_scale.numel() != 1:
            raise ValueError(
                f"logit_scale must be a scalar (the log of the scale), got shape "
                f"{tuple(logit_scale.shape)}"
            )
        return logit_scale.reshape(()).to(like.dtype).exp()

    def pair_loss(self, x, y, *, names, logit_scale, features, groups):
        n = x.shape[0]
        if n == 1:
            self.warn_once(
                "single", f"{type(self).__name__}: batch of 1 has no negatives; the loss is 0"
            )
        if self.block_size is not None and self.block_size < n:
            # In float32 whatever the autocast dtype: the loss of every block is summed into
            # one value, and the scale (up to 100) amplifies bf16 rounding of the cosines.
            with torch.autocast(device_type=x.device.type, enabled=False):
                x_hat = F.normalize(x.float(), dim=-1)
                y_hat = F.normalize(y.float(), dim=-1)
                scale = self.scale(logit_scale, x_hat)
                x_to_y, y_to_x = _BlockwiseClipLoss.apply(
                    x_hat, y_hat, scale, self.block_size, groups
                )
        else:
            scale = self.scale(logit_scale, x)
            logits = scale * cosine_matrix(x, y)  # [N, N]
            if groups is None:
                target = torch.arange(n, device=logits.device)
            else:
                # Row i's target: uniform over its positives (a symmetric relation, so the
                # same matrix is the target of the columns).
                positives = same_group(groups).to(logits.dtype)
                target = positives / positives.sum(dim=1, keepdim=True)
            x_to_y = F.cross_entropy(logits, target)
            y_to_x = F.cross_entropy(logits.T, target)
        x_name, y_name = names
        return {
            "loss": 0.5 * (x_to_y + y_to_x),
            f"{x_name}_to_{y_name}": x_to_y,
            f"{y_name}_to_{x_name}": y_to_x,
        }

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, " + super().extra_repr()


class _BlockwiseClipLoss(torch.autograd.Function):
    """Both directions of the CLIP cross-entropy, streamed over row blocks of the logits.

    Forward keeps only the per-row and per-column log-sum-exps (the column ones accumulated
    online, as in flash attention); backward recomputes each ``[block, N]`` block of logits
    and writes its gradient contributions straight into preallocated ``[N, D]`` buffers. So
    at most one block of logits (and its softmaxes) is alive at a time, and nothing of size
    N² or blocks × N × D is ever allocated. No library offers a memory-bounded CLIP loss,
    hence this hand-written forward/backward (checked against autograd in the tests).

    ``groups`` (``[N]`` codes, or ``None``: item i's positive is item i) gives the
    multi-positive targets: each row's (and column's) positive term is the mean logit over
    its group, computed from per-group sums of the other side's rows (O(N·D), no N×N mask).
    """

    @staticmethod
    def forward(ctx, queries: Tensor, keys: Tensor, scale: Tensor, block: int, groups):
        n = queries.shape[0]
        row_lse = queries.new_empty(n)
        col_max = queries.new_full((n,), -math.inf)
        col_sum = queries.new_zeros(n)
        for start in range(0, n, block):
            logits = scale * (queries[start : start + block] @ keys.T)  # [block, N]
            row_lse[start : start + block] = torch.logsumexp(logits, dim=1)
            new_max = torch.maximum(col_max, logits.amax(dim=0))
            block_sum = torch.exp(logits - new_max).sum(dim=0)
            col_sum = col_sum * torch.exp(col_max - new_max) + block_sum
            col_max = new_max
        col_lse = col_max + torch.log(col_sum)
        if groups is None:
            row_pos = col_pos = scale * (queries * keys).sum(dim=-1)
            inverse_count = None
        else:
            size = (int(groups.max()) + 1, queries.shape[1])
            inverse_count = 1.0 / torch.bincount(groups).to(queries.dtype)[groups]  # [N]
            key_sums = keys.new_zeros(size).index_add_(0, groups, keys)[groups]
            query_sums = queries.new_zeros(size).index_add_(0, groups, queries)[groups]
            row_pos = scale * (queries * key_sums).sum(dim=-1) * inverse_count
            col_pos = scale * (keys * query_sums).sum(dim=-1) * inverse_count
        ctx.save_for_backward(queries, keys, scale, row_lse, col_lse, groups, inverse_count)
        ctx.block = block
        return (row_lse - row_pos).mean(), (col_lse - col_pos).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_q_to_k: Tensor, grad_k_to_q: Tensor):
        queries, keys, scale, row_lse, col_lse, groups, inverse_count = ctx.saved_tensors
        n = queries.shape[0]
        w_rows, w_cols = grad_q_to_k / n, grad_k_to_q / n
        grad_queries = torch.empty_like(queries)
        grad_keys = torch.zeros_like(keys)
        grad_scale = scale.new_zeros(())
        for start in range(0, n, ctx.block):
            rows = queries[start : start + ctx.block]
            cosines = rows @ keys.T  # [block, N]
            logits = scale * cosines
            # d loss / d logits: row softmax, column softmax, minus the positives' one-hots.
            grad_logits = w_rows * torch.exp(logits - row_lse[start : start + ctx.block, None])
            grad_logits += w_cols * torch.exp(logits - col_lse[None, :])
            if groups is None:
                grad_logits.diagonal(offset=start).sub_(w_rows + w_cols)
            else:  # the targets: 1/|P(i)| on row i's positives, in both directions
                stop = start + ctx.block
                positives = same_group(groups, slice(start, stop)).to(logits.dtype)
                grad_logits.sub_((w_rows + w_cols) * positives * inverse_count[start:stop, None])
            grad_scale += (grad_logits * cosines).sum()
            grad_logits *= scale
            torch.mm(grad_logits, keys, out=grad_queries[start : start + ctx.block])
            grad_keys.addmm_(grad_logits.T, rows)
        return grad_queries, grad_keys, grad_scale, None, None


@register_objective("weighted_contrastive")
class WeightedContrastiveObjective(ContrastiveObjective):
    """:class:`ContrastiveObjective` with the study's pair weights TA .15, TV .15, AV .70."""

    default_pair_weights: ClassVar[Mapping[str, float]] = STUDY_PAIR_WEIGHTS


@register_objective("nt_xent")
class NTXentObjective(PairwiseObjective):
    """NT-Xent of the dual-encoder paper (SimCLR adapted to two modalities), per pair::

        ℓ_i(x→y) = −log[ exp(s_ii/τ) / Σ_{k≠i} exp(s_ik/τ) ]     s_ik = cos(x_i, y_k)
        ℓ_i(y→x) = −log[ exp(s_ii/τ) / Σ_{k≠i} exp(s_ki/τ) ]
        L_pair   = (1/N) Σ_i [ℓ_i(x→y) + ℓ_i(y→x)]

    This is eq. (1)–(3) of Veldkamp et al. (eq. (1) of Veldkamp's thesis; see
    docs/research.md#dual-encoder-study-objective-and-training-settings): the indicator
    𝟙[k≠i] removes the positive from the denominator, so, unlike CLIP's cross-entropy, the
    loss is unbounded below, and the two directions are *summed* (not averaged). At chance
    (s ≈ 0) it is about 2·ln(N − 1); the thesis reports 13.36 at N = 1000, τ = 1
    (2·ln 999 = 13.81).

    Args:
        temperature: τ (default 1.0, the paper's baseline; it also tried 0.3). Fixed: a
            ``logit_scale`` passed to ``forward`` is ignored.
        pair_weights, gather: see :class:`~trimodal.objectives.base.PairwiseObjective`.

    With repeated texts (``text_keys``, in the pairs with text) the positives P(i) of row i
    are the items with i's text: all of them leave the denominator and the positive term is
    their mean, ``ℓ_i = log Σ_{k∉P(i)} exp(s_ik/τ) − (1/|P(i)|) Σ_{p∈P(i)} s_ip/τ``; with
    every text distinct this is the paper's loss.

    A batch of 1 has no negatives, so the denominator would be an empty sum (log 0 = −∞):
    like the other objectives, the negative term is then 0 (reported once as a warning) and
    each direction is ``−s_ii/τ``, which still pulls the pair together (likewise for a row
    whose items all share its text).
    Output components per pair: ``<x>_to_<y>``, ``<y>_to_<x>``.
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        pair_weights: Mapping[str, float] | None = None,
        gather: bool | None = None,
    ) -> None:
        super().__init__(pair_weights=pair_weights, gather=gather)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def pair_loss(self, x, y, *, names, logit_scale, features, groups):
        sim = cosine_matrix(x, y) / self.temperature  # [N, N]
        n = sim.shape[0]
        if n == 1:
            self.warn_once(
                "single",
                f"{type(self).__name__}: batch of 1 has no negatives; the negative term is 0",
            )
        if groups is None:
            same = torch.eye(n, dtype=torch.bool, device=sim.device)
            positive_rows = positive_cols = sim.diagonal()
        else:
            same = same_group(groups)
            weights = same.to(sim.dtype) / same.sum(dim=1, keepdim=True)
            positive_rows = (sim * weights).sum(dim=1)  # mean over each row's positives
            positive_cols = (sim * weights).sum(dim=0)  # (the relation is symmetric)
        # -inf on the positives takes them out of the log-sum-exp (exp(-inf) = 0, and its
        # gradient is 0 too), which is the paper's indicator 1[k != i]. A row whose items are
        # all positives (N = 1, or one repeated text) has no negatives: its negative term is
        # 0, computed on zeros so that no -inf reaches the gradient.
        has_negative = ~same.all(dim=1)
        negatives_only = sim.masked_fill(same, -math.inf)
        safe = torch.where(has_negative[:, None], negatives_only, torch.zeros_like(sim))
        zero = sim.new_zeros(())
        x_to_y = torch.where(has_negative, torch.logsumexp(safe, dim=1), zero) - positive_rows
        y_to_x = torch.where(has_negative, torch.logsumexp(safe.T, dim=1), zero) - positive_cols
        x_name, y_name = names
        return {
            "loss": (x_to_y + y_to_x).mean(),
            f"{x_name}_to_{y_name}": x_to_y.mean(),
            f"{y_name}_to_{x_name}": y_to_x.mean(),
        }

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, " + super().extra_repr()
