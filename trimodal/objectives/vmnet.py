"""VM-NET / CBVMR triplet objective (Prétet et al., after Hong et al. 2018).

The study and its settings: docs/research.md#the-vm-net-study.

For the audio-video pair (music M = audio, video V)::

    L = λ1·L_VM + λ2·L_MV + λ3·L_VV + λ4·L_MM

*Inter-modal ranking* (Prétet et al., Fig. 1a): ``L_VM`` uses triplets
(a, p, n) = (e_V1, e_M1, e_M2) — a video anchor, its own music as positive, other clips' music
as negatives — and ``L_MV`` the reverse. With d the cosine distance ``1 − cos`` and, per
anchor i, the ``K`` *hardest* (closest) negatives j ≠ i::

    L_MV = mean_{i, j ∈ topK_i} max(0, margin + d(m_i, v_i) − d(m_i, v_j))

*Soft intra-modal structure* (Fig. 1b): triplets inside one modality chosen from the **input
features** x (not the embeddings): p is closer to a than n in Euclidean feature distance; the
hinge then asks the embeddings to keep that order. For every anchor a we sort the other clips by
feature distance and take each pair of consecutive neighbours (p, n) with d_x(a, p) < d_x(a, n)
(ties give no order and no triplet); satisfying all of them keeps the anchor's whole
neighbour ranking (by transitivity), at N·(N−2) triplets instead of N³::

    L_MM = mean_{(a,p,n)} max(0, structure_margin + d(e_a, e_p) − d(e_a, e_n))

``structure_margin`` defaults to 0: that is what makes the constraint *soft* — it penalises
order violations only. A positive margin between consecutive neighbours would ask the N−2 gaps of
one anchor's ranking to add up to (N−2)·margin, beyond the cosine distance's range [0, 2] for any
realistic batch. (The public VM-NET code likewise weights only order disagreements.)

Defaults (docs/research.md#vm-net-study-model-objective-and-training-settings): margin 0.1;
λ = (1, 3, 0.2, 0.2) and K = 100 are the public VM-NET code's training flags (music-anchored
ranking weighted 3, video-anchored 1, each structure term 0.2, "top_K" 100 at batch 1000),
which Prétet et al. say they kept ("we kept the original code and hyperparameters of the
triplet loss"); the paper itself prints no values. The distance is the cosine distance because
the original code ranks by the dot product of L2-normalised embeddings (same differences, so
the same margin), and Prétet et al.'s squared Euclidean distance on unit vectors is
2·(1 − cos).

Other pairs (text-audio, text-video) use the same formula with the pair's first modality in the
role of M and the second in the role of V: λ1 weights the ranking anchored on the *second*
modality, λ2 on the first, λ3 the second modality's structure, λ4 the first's. A modality's
structure term is computed once per pair it takes part in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from trimodal.objectives.base import PairwiseObjective, same_group
from trimodal.objectives.cosine import cosine_matrix
from trimodal.objectives.registry import register_objective

__all__ = ["VMNetTripletObjective", "ranking_loss", "structure_loss"]


def ranking_loss(
    anchor: Tensor, other: Tensor, margin: float, top_k: int, groups: Tensor | None = None
) -> Tensor:
    """Inter-modal triplet loss with the ``top_k`` hardest negatives per anchor.

    Args:
        anchor: ``[N, D]``; row i's positive is ``other[i]``.
        other: ``[N, D]``; its other rows are the negatives.
        groups: ``[N]`` text group codes (or ``None``): rows of i's group are not negatives
            of i (repeated texts; :class:`~trimodal.objectives.base.PairwiseObjective`).
    Returns:
        0-d mean hinge over the N·min(top_k, N−1) triplets, or over the triplets with a
        negative when groups leave an anchor fewer (0 when there is none, e.g. N = 1).
    """
    n = anchor.shape[0]
    if n < 2:
        return anchor.new_zeros(()) + 0.0 * anchor.sum()
    k = min(top_k, n - 1)
    dist = 1.0 - cosine_matrix(anchor, other)  # [N, N], rows: anchors
    positive = dist.diagonal()
    # +inf on the positives keeps them out of the smallest-k search.
    if groups is None:
        excluded = torch.eye(n, dtype=torch.bool, device=dist.device)
    else:
        excluded = same_group(groups)
    hardest = torch.topk(dist.masked_fill(excluded, float("inf")), k, dim=1, largest=False).values
    hinge = F.relu(margin + positive[:, None] - hardest)  # [N, k]
    if groups is None:
        return hinge.mean()
    valid = torch.isfinite(hardest)
    return hinge.where(valid, 0.0).sum() / valid.sum().clamp(min=1)


def structure_loss(features: Tensor, embeddings: Tensor, margin: float = 0.0) -> Tensor:
    """Soft intra-modal structure loss: embeddings keep the order of input-feature distances.

    Args:
        features: ``[N, F]`` input features (no gradient is taken through them).
        embeddings: ``[N, D]`` embeddings of the same clips.
        margin: hinge margin (0: penalise order violations only).
    Returns:
        0-d mean hinge over the ordered consecutive-neighbour triplets (0 when there are none,
        e.g. N < 3).
    """
    n = embeddings.shape[0]
    if n < 3:
        return embeddings.new_zeros(()) + 0.0 * embeddings.sum()
    feats = features.detach().to(torch.float64)
    # The mm-based cdist shortcut loses precision and can flip the order of near ties; the
    # order is all that matters here.
    d_feat = torch.cdist(feats, feats, compute_mode="donot_use_mm_for_euclid_dist")
    eye = torch.eye(n, dtype=torch.bool, device=d_feat.device)
    # The anchor itself sorts last (+inf) and is dropped; stable sort keeps ties deterministic.
    order = d_feat.masked_fill(eye, float("inf")).argsort(dim=1, stable=True)[:, : n - 1]
    near, far = order[:, :-1], order[:, 1:]  # [N, N-2] consecutive neighbours
    ordered = d_feat.gather(1, near) < d_feat.gather(1, far)
    d_emb = 1.0 - cosine_matrix(embeddings, embeddings)
    d_emb_near = d_emb.gather(1, near.to(d_emb.device))
    d_emb_far = d_emb.gather(1, far.to(d_emb.device))
    hinge = F.relu(margin + d_emb_near - d_emb_far)
    mask = ordered.to(device=hinge.device, dtype=hinge.dtype)
    return (hinge * mask).sum() / mask.sum().clamp(min=1.0)


@register_objective("vmnet_triplet")
class VMNetTripletObjective(PairwiseObjective):
    """``λ1·L_VM + λ2·L_MV + λ3·L_VV + λ4·L_MM`` per pair (see the module docstring).

    Args:
        margin: inter-modal hinge margin (default 0.1).
        top_k: hardest negatives per anchor (default 100, clamped to N − 1).
        lambdas: (λ1, λ2, λ3, λ4) = weights of the ranking anchored on the pair's second
            modality (video for AV), on its first (music/audio), the second's structure and the
            first's structure. Default (1, 3, 0.2, 0.2).
        structure_margin: margin of the structure hinge (default 0).
        pair_weights, gather: see :class:`~trimodal.objectives.base.PairwiseObjective`.

    ``forward(..., features={modality: [B, F]})`` supplies the input features the structure
    terms need; a modality without features is an error while its structure weight is non-zero
    (set λ3/λ4 to 0 to train on the ranking terms alone). ``logit_scale`` is ignored.
    Output components per pair: ``rank_<y>_anchor``, ``rank_<x>_anchor``, ``structure_<y>``,
    ``structure_<x>`` (unweighted).
    """

    uses_features = True

    def __init__(
        self,
        *,
        margin: float = 0.1,
        top_k: int = 100,
        lambdas: Sequence[float] = (1.0, 3.0, 0.2, 0.2),
        structure_margin: float = 0.0,
        pair_weights: Mapping[str, float] | None = None,
        gather: bool | None = None,
    ) -> None:
        super().__init__(pair_weights=pair_weights, gather=gather)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if len(lambdas) != 4:
            raise ValueError(f"lambdas must be 4 weights (λ1..λ4), got {list(lambdas)}")
        self.margin = float(margin)
        self.top_k = int(top_k)
        self.lambdas = tuple(float(v) for v in lambdas)
        self.structure_margin = float(structure_margin)

    def pair_loss(self, x, y, *, names, logit_scale, features, groups):
        x_name, y_name = names
        n = x.shape[0]
        if n == 1:
            self.warn_once(
                "single", "vmnet_triplet: batch of 1 has no negatives; the ranking terms are 0"
            )
        lam_y_anchor, lam_x_anchor, lam_y_struct, lam_x_struct = self.lambdas
        terms = {
            f"rank_{y_name}_anchor": ranking_loss(y, x, self.margin, self.top_k, groups),
            f"rank_{x_name}_anchor": ranking_loss(x, y, self.margin, self.top_k, groups),
        }
        total = lam_y_anchor * terms[f"rank_{y_name}_anchor"]
        total = total + lam_x_anchor * terms[f"rank_{x_name}_anchor"]
        for name, emb, feat, lam in (
            (y_name, y, features[1], lam_y_struct),
            (x_name, x, features[0], lam_x_struct),
        ):
            if lam == 0.0:
                continue
            if feat is None:
                raise ValueError(
                    f"vmnet_triplet needs features[{name!r}] for its structure term (weight "
                    f"{lam}); pass forward(..., features={{{name!r}: [B, F]}}) or set its lambda "
                    "to 0"
                )
            terms[f"structure_{name}"] = structure_loss(feat, emb, self.structure_margin)
            total = total + lam * terms[f"structure_{name}"]
        return {"loss": total, **terms}

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, top_k={self.top_k}, lambdas={self.lambdas}, "
            f"structure_margin={self.structure_margin}, " + super().extra_repr()
        )
