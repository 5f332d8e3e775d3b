"""Autoencoder initialisation of the projection heads (the dual-encoder thesis's variant).

Before contrastive training, each trainable head is fitted as the encoder of an
autoencoder of its backbone's features: ``decoder(head(f)) ≈ f`` under a mean-squared error,
with a decoder that mirrors the head. The head then starts from a projection that keeps
the information in the features instead of a random one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm


def _mirror_decoder(head: nn.Sequential, in_dim: int) -> nn.Sequential:
    """A decoder from the head's output back to ``in_dim``: its Linear sizes in reverse."""
    linears = [m for m in head if isinstance(m, nn.Linear)]
    sizes = [linears[-1].out_features] + [lin.in_features for lin in reversed(linears)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    assert sizes[-1] == in_dim
    return nn.Sequential(*layers)


@torch.no_grad()
def collect_features(model: Any, loader: Any, modalities: list[str]) -> dict[str, torch.Tensor]:
    """Backbone features ``{modality: [N, F]}`` of every batch of ``loader`` (eval mode)."""
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    try:
        for batch in tqdm(loader, desc="head autoencoder: features", leave=False):
            for modality in modalities:
                out[modality].append(model.backbone_features(modality, batch[modality]).float())
    finally:
        model.train(was_training)
    return {m: torch.cat(v) for m, v in out.items()}


def pretrain_heads(
    model: Any,
    features: dict[str, torch.Tensor],
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Fit each head in ``features`` as an autoencoder's encoder; returns the final MSE.

    Args:
        model: a :class:`~trimodal.modeling.TrimodalModel` (unwrapped).
        features: ``{modality: [N, F]}`` backbone features of the training set.
        epochs: passes over the features.
    """
    generator = torch.Generator().manual_seed(seed)
    losses = {}
    for modality, feats in features.items():
        head = model.heads[modality]
        if not any(p.requires_grad for p in head.parameters()):
            continue  # identity heads have nothing to fit
        decoder = _mirror_decoder(head, feats.shape[1]).to(feats.device)
        # Standardised targets: feature scales differ by orders of magnitude across backbones.
        mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
        targets = (feats - mean) / std
        params = [p for p in head.parameters() if p.requires_grad] + list(decoder.parameters())
        optimizer = torch.optim.Adam(params, lr=lr)
        head.train()
        loss = torch.tensor(float("nan"))
        for _ in range(epochs):
            order = torch.randperm(len(feats), generator=generator)
            for start in range(0, len(feats), batch_size):
                idx = order[start : start + batch_size]
                loss = nn.functional.mse_loss(decoder(head(feats[idx])), targets[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        losses[modality] = float(loss.detach())
    return losses
