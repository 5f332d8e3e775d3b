"""Shared machinery of the pairwise objectives: input checks, pair loop, weights, gathering.

Every objective is a sum over the modality pairs present in the batch, in the fixed order
text-audio, text-video, audio-video (TA, TV, AV)::

    loss = Σ_pairs  w_pair · L_pair(x, y)

where ``x`` is the first modality of the pair and ``y`` the second.

Repeated texts: ``forward(..., text_keys=[B] int64)`` says which items carry the same text
(equal keys: the same string after the text channel's normalisation,
:meth:`trimodal.modeling.TrimodalModel.text_keys`). In the pairs with text those items are
positives of each other — multi-positive targets (supervised-contrastive / UniCL style),
never one another's negatives: a batch of 1,024 clips with 45 label texts holds each text
about 20 times, and treating the other 19 as negatives would push apart what the data says is
identical. Without ``text_keys`` every item is its own text (the plain objectives).
Objectives are pure
functions of their inputs (apart from the random-negative generator of ``cosine``), so they can
be used with gradient caching (GradCache): compute embeddings without graph, call the objective
on them with ``requires_grad``, back-propagate the cached embedding gradients chunk by chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from trimodal.distributed import gather_with_grad, get_world_size
from trimodal.modalities import MODALITIES, PAIRS, pair_name

__all__ = ["PairwiseObjective", "same_group", "text_groups"]

_PAIR_NAMES = tuple(pair_name(x, y) for x, y in PAIRS)


def _canonical_pair(key: str) -> str:
    """Map ``"audio-text"`` to ``"text-audio"``; refuse anything that is not a pair name."""
    if key in _PAIR_NAMES:
        return key
    parts = key.split("-")
    if len(parts) == 2 and pair_name(parts[1], parts[0]) in _PAIR_NAMES:
        return pair_name(parts[1], parts[0])
    raise ValueError(
        f"unknown modality pair {key!r} in pair_weights; expected one of {_PAIR_NAMES}"
    )


def text_groups(text_keys: Tensor) -> Tensor:
    """``[N]`` text identities (any int64 values) → ``[N]`` group codes ``0..G-1`` (equal
    codes for equal keys)."""
    return torch.unique(text_keys, return_inverse=True)[1]


def same_group(groups: Tensor, rows: slice = slice(None)) -> Tensor:
    """``[R, N]`` bool: ``[i, j]`` is true when row ``i`` (of ``groups[rows]``) and item ``j``
    share a group — item i's positives (itself included)."""
    return groups[rows, None] == groups[None, :]


class PairwiseObjective(nn.Module):
    """Base class: validates inputs, gathers across processes, loops over pairs, weights terms.

    Subclasses set :attr:`default_pair_weights` and implement :meth:`pair_loss`.

    Args:
        pair_weights: weight of each pair's loss in the total, e.g.
            ``{"text-audio": .15, "text-video": .15, "audio-video": .7}``; keys may be written in
            either order (``"audio-text"``); pairs left out keep the class default. Weights are
            *not* renormalised when a modality is missing from the batch.
        gather: concatenate the embeddings of all processes (with autograd, see
            :mod:`trimodal.distributed`) before computing the loss, so that P processes with batch
            B compute the loss and gradients of one process with batch P·B. ``None`` (default):
            on when more than one process is running.
    """

    default_pair_weights: ClassVar[Mapping[str, float]] = {
        "text-audio": 1.0,
        "text-video": 1.0,
        "audio-video": 1.0,
    }
    #: Whether ``forward`` reads ``features`` (the trainer then feeds the backbone features of
    #: the same forward pass; see ``Trainer._loss_with_features``).
    uses_features: ClassVar[bool] = False

    def __init__(
        self,
        *,
        pair_weights: Mapping[str, float] | None = None,
        gather: bool | None = None,
    ) -> None:
        super().__init__()
        weights = dict(self.default_pair_weights)
        for key, value in (pair_weights or {}).items():
            weights[_canonical_pair(key)] = float(value)
        self.pair_weights: dict[str, float] = weights
        self.gather = gather
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ hooks for subclasses

    def pair_loss(
        self,
        x: Tensor,
        y: Tensor,
        *,
        names: tuple[str, str],
        logit_scale: Tensor | None,
        features: tuple[Tensor | None, Tensor | None],
        groups: Tensor | None,
    ) -> dict[str, Tensor]:
        """Loss of one pair. ``x``, ``y``: ``[N, D]`` (N = global batch); ``features``: the
        ``[N, F_x]`` / ``[N, F_y]`` input features of the two modalities or ``None``;
        ``groups``: ``None`` (item i's only positive is item i) or ``[N]`` int64 codes in
        ``0..G-1``, equal for items whose text is the same (positives of each other; given in
        the pairs with text only, see :func:`same_group`).

        Returns a dict with the pair loss under ``"loss"`` (a 0-d tensor) and any named
        components (also 0-d) for logging.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    def warn_once(self, key: str, message: str) -> None:
        """Emit ``message`` as a warning the first time ``key`` is seen by this instance."""
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def gather_active(self) -> bool:
        """Whether this call gathers across processes (``gather`` option, or auto)."""
        return get_world_size() > 1 if self.gather is None else bool(self.gather)

    def extra_repr(self) -> str:
        return f"pair_weights={self.pair_weights}, gather={self.gather}"

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        embeddings: Mapping[str, Tensor],
        logit_scale: Tensor | None = None,
        features: Mapping[str, Tensor] | None = None,
        text_keys: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Compute the objective.

        Args:
            embeddings: ``{modality: [B, D]}`` for two or three of ``"text"``, ``"audio"``,
                ``"video"``; same ``B`` (row i of every modality is the same clip) and ``D``.
            logit_scale: the model's learnable *log* scale (0-d tensor), used by
                ``contrastive`` objectives as ``exp(logit_scale)``; others ignore it.
            features: ``{modality: [B, F_m]}`` input features, used by ``vmnet_triplet``'s
                structure terms; others ignore it.
            text_keys: ``[B]`` integer identity of each item's text (equal for the same text
                after the text channel's normalisation): in the pairs with text, items with
                equal keys are positives of each other (see the module docstring). ``None``:
                every text distinct.

        Returns:
            ``{"loss": weighted total, "loss/<x>-<y>": unweighted pair loss,
            "loss/<x>-<y>/<component>": components}``, all 0-d tensors.
        """
        batch = self._check_embeddings(embeddings)
        feats = dict(features or {})
        for name, value in feats.items():
            if name not in MODALITIES:
                raise ValueError(f"unknown modality {name!r} in features; expected {MODALITIES}")
            if value.ndim != 2 or value.shape[0] != batch:
                raise ValueError(
                    f"features[{name!r}] must be [B={batch}, F], got {tuple(value.shape)}"
                )
        embs = dict(embeddings)
        keys = self._check_text_keys(text_keys, batch)
        if keys is not None:
            keys = keys.to(next(iter(embs.values())).device)
        if self.gather_active():
            embs = {m: gather_with_grad(e) for m, e in embs.items()}
            feats = {m: gather_with_grad(f) for m, f in feats.items()}
            # The same collective as the embeddings, so row i of the keys stays row i.
            keys = None if keys is None else gather_with_grad(keys)
        groups = None if keys is None else text_groups(keys)

        out: dict[str, Tensor] = {}
        total: Tensor | None = None
        for x_name, y_name in PAIRS:
            if x_name not in embs or y_name not in embs:
                continue
            name = pair_name(x_name, y_name)
            terms = self.pair_loss(
                embs[x_name],
                embs[y_name],
                names=(x_name, y_name),
                logit_scale=logit_scale,
                features=(feats.get(x_name), feats.get(y_name)),
                groups=groups if "text" in (x_name, y_name) else None,
            )
            pair_total = terms.pop("loss")
            out[f"loss/{name}"] = pair_total
            for component, value in terms.items():
                out[f"loss/{name}/{component}"] = value
            weighted = self.pair_weights[name] * pair_total
            total = weighted if total is None else total + weighted
        assert total is not None  # _check_embeddings guarantees at least one pair
        return {"loss": total, **out}

    @staticmethod
    def _check_text_keys(text_keys: Tensor | None, batch: int) -> Tensor | None:
        """``text_keys`` as a ``[B]`` int64 tensor (or ``None``), refusing another shape."""
        if text_keys is None:
            return None
        keys = torch.as_tensor(text_keys)
        if keys.shape != (batch,) or keys.is_floating_point() or keys.is_complex():
            raise ValueError(
                f"text_keys must be a [B={batch}] integer tensor, got {keys.dtype} "
                f"{tuple(keys.shape)}"
            )
        return keys.to(torch.int64)

    @staticmethod
    def _check_embeddings(embeddings: Mapping[str, Tensor]) -> int:
        """Validate the embedding dict and return the (local) batch size."""
        if not isinstance(embeddings, Mapping):
            raise TypeError(
                f"embeddings must be a dict {{modality: tensor}}, got {type(embeddings)}"
            )
        unknown = [m for m in embeddings if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; expected some of {MODALITIES}")
        if len(embeddings) < 2:
            raise ValueError(
                f"an objective needs at least two modalities, got {sorted(embeddings)}"
            )
        for m, e in embeddings.items():
            if not isinstance(e, Tensor) or e.ndim != 2:
                got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
                raise ValueError(f"embeddings[{m!r}] must be a [B, D] tensor, got {got}")
            if not torch.is_floating_point(e):
                raise TypeError(f"embeddings[{m!r}] must be floating point, got {e.dtype}")
        shapes = {m: tuple(e.shape) for m, e in embeddings.items()}
        if len({s for s in shapes.values()}) != 1:
            raise ValueError(f"all modalities need the same [B, D] shape, got {shapes}")
        batch = next(iter(shapes.values()))[0]
        if batch == 0:
            raise ValueError("empty batch (B = 0)")
        return batch
