"""Run under ``accelerate launch --num_processes 2 --cpu``: one training step per case.

Each case builds the same small "model" (one linear layer per modality, optionally a learnable
log logit scale), splits a fixed global batch between the processes (possibly unevenly), wraps
the model with ``accelerator.prepare`` (DDP, which averages gradients over processes), computes
the objective with its default ``gather`` (on, since there are 2 processes) and back-propagates.
Every process saves its loss and parameter gradients to ``<out_dir>/rank<r>.pt``.

``tests/test_distributed.py`` imports :func:`run_single_process` from here to compute the
reference: the same model and objective on the whole batch in one process.

Usage: ``accelerate launch ... tests/_dist_objective_script.py OUT_DIR``
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trimodal.objectives import get_objective

FEATURE_DIMS = {"text": 6, "audio": 7, "video": 5}
EMBED_DIM = 4

# name -> (objective, options, modalities, rows per process, learnable logit scale)
CASES: dict[str, dict[str, Any]] = {
    "contrastive": dict(
        objective="contrastive",
        options={},
        modalities=("text", "audio", "video"),
        sizes=(3, 3),
        logit_scale=True,
    ),
    "contrastive_uneven": dict(
        objective="contrastive",
        options={},
        modalities=("text", "audio", "video"),
        sizes=(3, 4),
        logit_scale=True,
    ),
    "weighted_contrastive_fixed_temperature": dict(
        objective="weighted_contrastive",
        options={"temperature": 0.2},
        modalities=("text", "audio", "video"),
        sizes=(2, 2),
        logit_scale=False,
    ),
    "cosine": dict(
        objective="cosine",
        options={"margin": 0.1},
        modalities=("text", "audio", "video"),
        sizes=(3, 3),
        logit_scale=False,
    ),
    "cosine_uneven": dict(
        objective="cosine",
        options={},
        modalities=("audio", "video"),
        sizes=(4, 3),
        logit_scale=False,
    ),
    "weighted_cosine_random_negatives": dict(
        objective="weighted_cosine",
        options={"num_negatives": 2, "seed": 7},
        modalities=("text", "audio", "video"),
        sizes=(3, 3),
        logit_scale=False,
    ),
    "nt_xent": dict(
        objective="nt_xent",
        options={"temperature": 0.3},
        modalities=("audio", "video"),
        sizes=(3, 3),
        logit_scale=False,
    ),
    "vmnet_triplet": dict(
        objective="vmnet_triplet",
        options={"top_k": 2},
        modalities=("audio", "video"),
        sizes=(4, 4),
        logit_scale=False,
    ),
    # Repeated texts: the text identities are gathered with the embeddings, so each process
    # sees which rows of the other process share its texts.
    "contrastive_repeated_texts": dict(
        objective="contrastive",
        options={},
        modalities=("text", "audio", "video"),
        sizes=(3, 4),
        logit_scale=True,
        text_keys=(5, 1, 5, 1, 2, 5, 0),
    ),
    "contrastive_blocks_repeated_texts": dict(
        objective="weighted_contrastive",
        options={"block_size": 2},
        modalities=("text", "video"),
        sizes=(4, 3),
        logit_scale=True,
        text_keys=(3, 3, 0, 1, 3, 1, 1),
    ),
    "cosine_repeated_texts": dict(
        objective="cosine",
        options={"margin": 0.1},
        modalities=("text", "audio"),
        sizes=(3, 3),
        logit_scale=False,
        text_keys=(0, 1, 0, 0, 1, 2),
    ),
    "nt_xent_repeated_texts": dict(
        objective="nt_xent",
        options={"temperature": 0.3},
        modalities=("text", "audio"),
        sizes=(3, 3),
        logit_scale=False,
        text_keys=(4, 4, 2, 2, 4, 9),
    ),
    "vmnet_triplet_repeated_texts": dict(
        objective="vmnet_triplet",
        options={"top_k": 2},
        modalities=("text", "audio"),
        sizes=(3, 3),
        logit_scale=False,
        text_keys=(1, 2, 1, 1, 3, 2),
    ),
    # Without gathering each process only sees its own rows: the loss and the gradients must
    # then differ from the single-process ones (shows the comparison can fail).
    "contrastive_no_gather": dict(
        objective="contrastive",
        options={"gather": False},
        modalities=("text", "audio", "video"),
        sizes=(3, 3),
        logit_scale=True,
    ),
}


class TinyEmbedder(nn.Module):
    """One linear map per modality into a shared ``EMBED_DIM`` space (+ optional log scale)."""

    def __init__(self, modalities: tuple[str, ...], logit_scale: bool) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(FEATURE_DIMS[m], EMBED_DIM) for m in modalities})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07))) if logit_scale else None

    def forward(self, inputs: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
        return {m: head(inputs[m]) for m, head in self.heads.items()}, self.logit_scale


def build_case(name: str) -> tuple[TinyEmbedder, dict[str, Tensor]]:
    """The case's freshly initialised model and its whole batch ``{modality: [N, F_m]}``
    (and ``"text_keys"``: ``[N]`` when the case has repeated texts)."""
    case = CASES[name]
    generator = torch.Generator().manual_seed(1234)
    n = sum(case["sizes"])
    inputs = {m: torch.randn(n, FEATURE_DIMS[m], generator=generator) for m in case["modalities"]}
    if "text_keys" in case:
        inputs["text_keys"] = torch.tensor(case["text_keys"])
    torch.manual_seed(99)
    model = TinyEmbedder(case["modalities"], case["logit_scale"])
    return model, inputs


def _step(
    model: nn.Module, inputs: dict[str, Tensor], objective: nn.Module, needs_features: bool
) -> Tensor:
    features = {m: x for m, x in inputs.items() if m != "text_keys"}
    embeddings, logit_scale = model(features)
    return objective(
        embeddings,
        logit_scale=logit_scale,
        features=features if needs_features else None,
        text_keys=inputs.get("text_keys"),
    )["loss"]


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {
        name.removeprefix("module."): p.grad.detach().clone()
        for name, p in model.named_parameters()
        if p.grad is not None
    }


def run_single_process(name: str) -> dict[str, Any]:
    """Loss and parameter gradients of one process on the case's whole batch."""
    case = CASES[name]
    model, inputs = build_case(name)
    options = {k: v for k, v in case["options"].items() if k != "gather"}
    objective = get_objective(case["objective"], gather=False, **options)
    loss = _step(model, inputs, objective, case["objective"] == "vmnet_triplet")
    loss.backward()
    return {"loss": loss.item(), "grads": _grads(model)}


def main(out_dir: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    results: dict[str, Any] = {"world_size": world}
    for name, case in CASES.items():
        model, inputs = build_case(name)
        sizes = case["sizes"]
        assert len(sizes) == world, f"case {name} is written for {len(sizes)} processes"
        start = sum(sizes[:rank])
        local = {m: x[start : start + sizes[rank]] for m, x in inputs.items()}
        model = accelerator.prepare(model)
        objective = get_objective(case["objective"], **case["options"])
        loss = _step(model, local, objective, case["objective"] == "vmnet_triplet")
        accelerator.backward(loss)
        results[name] = {"loss": loss.item(), "grads": _grads(model)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
