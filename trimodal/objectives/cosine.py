"""Cosine objectives of the trimodal study: ``cosine`` and ``weighted_cosine``.

The study's definitions: docs/research.md#trimodal-study-objectives.

For a pair (x, y) with N rows (N = global batch) and ``c_ij = cos(x_i, y_j)``::

    L_pair = mean_i (1 − c_ii)  +  mean_{(i, j) ∈ Neg} max(0, c_ij − margin)

``Neg`` is every non-matching pair (i, j ≠ i) by default, or ``num_negatives`` distinct random
j ≠ i per anchor i. With repeated texts (``text_keys``, in the pairs with text) items with
i's text are not negatives of i: ``Neg`` holds only pairs of different texts (the positive
term stays the matching pair's). The study used a batch of 2 and took "the other instance" as the negative,
implemented as a fixed half-batch swap that leaves an odd last batch without negatives (NaN
loss; docs/defects.md#contrastive-and-cosine-losses). Here the negative set is defined for
every N ≥ 2; for N = 1 there is no negative at all, so the negative term is 0 (with a one-time
warning) and only the positive term trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from trimodal.modalities import STUDY_PAIR_WEIGHTS
from trimodal.objectives.base import PairwiseObjective, same_group
from trimodal.objectives.registry import register_objective

__all__ = ["CosineObjective", "WeightedCosineObjective", "cosine_matrix"]


def cosine_matrix(x: Tensor, y: Tensor) -> Tensor:
    """``[N, D] × [M, D] → [N, M]`` cosine similarities (a zero vector has cosine 0, not NaN)."""
    return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T


@register_objective("cosine")
class CosineObjective(PairwiseObjective):
    """Positive ``1 − cos`` plus hinged negative ``max(0, cos − margin)``, summed over pairs.

    Args:
        margin: negatives with cosine below ``margin`` cost nothing (default 0).
        num_negatives: ``None`` (default): every non-matching in-batch item, averaged. An int
            ``k``: ``min(k, N − 1)`` distinct random non-matching items per anchor.
        seed: seed of the private generator that draws random negatives (``None``: torch's
            global generator). With several processes and ``gather``, give a seed so that every
            process draws the same negatives for the gathered batch (otherwise each process
            computes a different, equally valid, sample of the loss).
        pair_weights, gather: see :class:`~trimodal.objectives.base.PairwiseObjective`.

    Output components per pair: ``positive``, ``negative``.
    """

    def __init__(
        self,
        *,
        margin: float = 0.0,
        num_negatives: int | None = None,
        seed: int | None = None,
        pair_weights: Mapping[str, float] | None = None,
        gather: bool | None = None,
    ) -> None:
        super().__init__(pair_weights=pair_weights, gather=gather)
        if num_negatives is not None and num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1 or None, got {num_negatives}")
        self.margin = float(margin)
        self.num_negatives = num_negatives
        self.seed = seed
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(seed)

    def sample_negatives(self, n: int, k: int, excluded: Tensor | None = None) -> Tensor:
        """``[n, k]`` long tensor (on CPU): for each anchor i, k distinct random j ≠ i.

        Ranking i.i.d. uniform keys and keeping the k smallest gives a uniformly random
        k-subset; the keys of i itself (and of the ``excluded`` ``[n, n]`` bool entries: the
        items with i's text) are set above every other so that they are never chosen while
        others are left. An anchor with fewer than k candidates gets them all first, then
        excluded items in its last slots (the caller drops those).
        """
        if not 1 <= k <= n - 1:
            raise ValueError(f"need 1 <= k <= n - 1, got k={k}, n={n}")
        keys = torch.rand(n, n, generator=self._generator)
        keys.fill_diagonal_(2.0)
        if excluded is not None:
            keys.masked_fill_(excluded.cpu(), 2.0)
        return keys.argsort(dim=1)[:, :k]

    def pair_loss(self, x, y, *, names, logit_scale, features, groups):
        sim = cosine_matrix(x, y)  # [N, N]
        n = sim.shape[0]
        positive = (1.0 - sim.diagonal()).mean()
        same = None if groups is None else same_group(groups)
        if n == 1:
            self.warn_once(
                "single",
                f"{type(self).__name__}: batch of 1 has no negatives; the negative term is 0",
            )
            negative = sim.new_zeros(())
        elif self.num_negatives is None or self.num_negatives >= n - 1:
            negatives = (
                ~torch.eye(n, dtype=torch.bool, device=sim.device) if same is None else ~same
            )
            # No negative at all (one text repeated over the batch): the term is 0.
            hinge = F.relu(sim[negatives] - self.margin)
            negative = hinge.mean() if hinge.numel() else sim.new_zeros(())
        else:
            idx = self.sample_negatives(n, self.num_negatives, same).to(sim.device)
            hinge = F.relu(sim.gather(1, idx) - self.margin)
            if same is None:
                negative = hinge.mean()
            else:
                valid = (~same.gather(1, idx)).to(sim.dtype)
                negative = (hinge * valid).sum() / valid.sum().clamp(min=1.0)
        return {"loss": positive + negative, "positive": positive, "negative": negative}

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, num_negatives={self.num_negatives}, seed={self.seed}, "
            + super().extra_repr()
        )


@register_objective("weighted_cosine")
class WeightedCosineObjective(CosineObjective):
    """:class:`CosineObjective` with the study's pair weights TA .15, TV .15, AV .70.

    (The slides print the last negative term as A_p vs A_n; that is a typo for A vs V.)
    """

    default_pair_weights: ClassVar[Mapping[str, float]] = STUDY_PAIR_WEIGHTS
