"""Training objectives over ``{modality: [B, D]}`` embeddings, found by name.

Usage (``t``, ``a``, ``v``: ``[B, D]`` embeddings; ``model.logit_scale``: a 0-d log scale)::

    from trimodal.objectives import get_objective

    objective = get_objective("weighted_contrastive")
    terms = objective({"text": t, "audio": a, "video": v}, logit_scale=model.logit_scale)
    terms["loss"].backward()

Registered names: ``cosine``, ``weighted_cosine``, ``contrastive``, ``weighted_contrastive``,
``nt_xent``, ``vmnet_triplet`` (see :func:`available_objectives`). Each returns a dict with the
weighted total under ``"loss"``, each pair's unweighted loss under ``"loss/<x>-<y>"`` and its
components under ``"loss/<x>-<y>/<component>"``. With several processes the embeddings are
gathered with autograd first (:mod:`trimodal.distributed`).
"""

from trimodal.objectives.base import PairwiseObjective
from trimodal.objectives.contrastive import (
    ContrastiveObjective,
    NTXentObjective,
    WeightedContrastiveObjective,
)
from trimodal.objectives.cosine import CosineObjective, WeightedCosineObjective, cosine_matrix
from trimodal.objectives.registry import (
    available_objectives,
    get_objective,
    objective_class,
    register_objective,
)
from trimodal.objectives.vmnet import VMNetTripletObjective, ranking_loss, structure_loss

__all__ = [
    "ContrastiveObjective",
    "CosineObjective",
    "NTXentObjective",
    "PairwiseObjective",
    "VMNetTripletObjective",
    "WeightedContrastiveObjective",
    "WeightedCosineObjective",
    "available_objectives",
    "cosine_matrix",
    "get_objective",
    "objective_class",
    "ranking_loss",
    "register_objective",
    "structure_loss",
]
