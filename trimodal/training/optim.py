"""Optimiser and learning-rate schedule of the study: AdamW, linear warm-up then decay."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from trimodal.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed matrices and undecayed everything else.

    Biases, normalisation weights and the logit scale (all with fewer than two dimensions)
    get no weight decay: decaying them pulls scales and offsets towards zero for no
    regularisation benefit (the rule open_clip and most CLIP trainers use).
    """
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameter")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# Devices with a fused AdamW kernel (torch.optim.adamw: _get_fused_kernels_supported_devices).
FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")


def optimizer_mode(impl: str, device: torch.device | str) -> dict[str, bool]:
    """AdamW's ``fused``/``foreach`` keywords for ``train.optimizer_impl`` on ``device``.

    ``auto`` is ``fused`` where the device has the kernel, else ``foreach``: on the CPU the
    fused step measured 1.4× faster than the for-loop and 2.1× faster than foreach for the
    full-size channels (BENCHMARKS.md, "Training step"); on CUDA it is one kernel launch
    for all parameters.
    """
    if impl == "auto":
        impl = "fused" if torch.device(device).type in FUSED_DEVICES else "foreach"
    if impl not in ("fused", "foreach", "for_loop"):
        raise ValueError(f"unknown train.optimizer_impl {impl!r}")
    return {"fused": impl == "fused", "foreach": impl == "foreach"}


def build_optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device | str = "cpu"
) -> torch.optim.AdamW:
    """AdamW with the study's betas (.9, .98), eps 1e-9 and decoupled weight decay, in the
    implementation ``train.optimizer_impl`` picks for ``device`` (:func:`optimizer_mode`:
    the same update up to float rounding)."""
    betas = tuple(config.adam_betas)
    if len(betas) != 2:
        raise ValueError(f"train.adam_betas needs two values, got {config.adam_betas}")
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.lr,
        betas=betas,
        eps=config.adam_eps,
        **optimizer_mode(config.optimizer_impl, device),
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_ratio: float,
    schedule: str = "linear",
    steps_per_epoch: int = 1,
    gamma: float = 0.95,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate schedule over optimiser steps.

    ``linear``: warm-up over ``warmup_ratio`` of the steps, then linear decay to 0 (the
    study). ``exponential``: the same warm-up, then the rate is multiplied by ``gamma`` once
    per epoch (the thesis). ``constant``: warm-up, then constant.
    """
    warmup = int(round(warmup_ratio * total_steps))
    if schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "exponential":
            return gamma ** (step // max(steps_per_epoch, 1))
        return 1.0

    if schedule not in ("exponential", "constant"):
        raise ValueError(f"unknown lr_schedule {schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
