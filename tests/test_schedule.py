"""Pinned training defaults: the schedule's shape, the weight-decay groups, the select metric.

The schedule through the real loop (one and two processes, accumulation, resume, and the
exponential recipe) is in ``tests/test_launchers.py``; here each part is stepped on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trimodal import build_model
from trimodal.config import TrainConfig, load_config
from trimodal.training.optim import build_optimizer, build_scheduler, parameter_groups

REPO = Path(__file__).resolve().parents[1]


def _rates(schedule, optimizer, steps: int) -> list[float]:
    """The learning rate after 0, 1, …, ``steps`` optimiser steps (what ``train/lr`` logs)."""
    rates = [schedule.get_last_lr()[0]]
    for _ in range(steps):
        optimizer.step()
        schedule.step()
        rates.append(schedule.get_last_lr()[0])
    return rates


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_linear_schedule_warms_up_then_falls_to_exactly_zero_at_the_last_step():
    optimizer = _optimizer(lr=1e-3)
    rates = _rates(build_scheduler(optimizer, 20, warmup_ratio=0.1), optimizer, 20)
    assert rates[0] == 0.0  # warm-up starts at 0
    assert rates[1] == pytest.approx(0.5e-3)
    assert rates[2] == pytest.approx(1e-3)  # end of warm-up (2 of 20 steps): the peak
    assert rates[20] == 0.0  # exactly 0 after the last step, not before
    assert all(r > 0 for r in rates[1:20])
    decay = rates[2:]
    steps = [a - b for a, b in zip(decay, decay[1:])]
    assert steps == pytest.approx([1e-3 / 18] * 18)  # linear: equal decrements


def test_thesis_schedule_is_exponential_per_epoch():
    """``lr_schedule: exponential`` (the thesis recipe): no warm-up, ×γ once per epoch."""
    recipe = load_config(REPO / "configs" / "thesis" / "baseline.yaml").train
    assert (recipe.lr_schedule, recipe.lr_gamma, recipe.warmup_ratio) == ("exponential", 0.95, 0)
    steps_per_epoch, epochs = 4, 5
    optimizer = _optimizer(lr=recipe.lr)
    schedule = build_scheduler(
        optimizer,
        steps_per_epoch * epochs,
        recipe.warmup_ratio,
        schedule=recipe.lr_schedule,
        steps_per_epoch=steps_per_epoch,
        gamma=recipe.lr_gamma,
    )
    rates = _rates(schedule, optimizer, steps_per_epoch * epochs - 1)
    expected = [recipe.lr * 0.95 ** (step // steps_per_epoch) for step in range(len(rates))]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_no_weight_decay_on_biases_norms_and_the_logit_scale():
    config = load_config(
        None, ["--model.preset", "tiny", "--model.embed_dim", "16",
               "--model.channels.video.head.input_norm", "batch"],
    ).model  # fmt: skip
    model = build_model(config)
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
    undecayed: set[str] = {"logit_scale"}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            is_bias = name == "bias" or name.endswith("_bias")
            if param.requires_grad and (is_bias or isinstance(module, norms)):
                undecayed.add(f"{module_name}.{name}" if module_name else name)
    named = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    groups = build_optimizer(model, TrainConfig(weight_decay=0.05)).param_groups
    by_decay = {g["weight_decay"]: {named[id(p)] for p in g["params"]} for g in groups}
    assert set(by_decay) == {0.05, 0.0}
    assert any("norm" in n.lower() for n in by_decay[0.0]), "the model has norm layers to test"
    assert by_decay[0.0] == undecayed
    assert by_decay[0.05] == set(named.values()) - undecayed


def test_parameter_groups_skip_frozen_parameters():
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.1)
    assert [p is model.weight for p in decay["params"]] == [True] and no_decay["params"] == []


def test_default_checkpoint_selection_is_a_retrieval_metric():
    """A model that retrieves every partner beats one whose pairs are merely close: the
    default ``select_metric`` must rank them that way (docs/defects.md#checkpoint-selection),
    which the mean positive distance does not."""
    from trimodal.embedding import SplitEmbeddings
    from trimodal.training import validation_metrics

    defaults = TrainConfig()
    torch.manual_seed(0)
    n = 12
    base = torch.nn.functional.normalize(torch.randn(n, 8), dim=-1)
    # Retrieves: each video's partner is the nearest, though at a large angle.
    retrieving = base + 0.6 * torch.nn.functional.normalize(torch.randn(n, 8), dim=-1)
    # Collapsed: everything sits near one point, so pairs are close and ranks are chance.
    collapsed = torch.nn.functional.normalize(torch.ones(n, 8) + 0.05 * torch.randn(n, 8), dim=-1)
    collapsed_partner = torch.nn.functional.normalize(
        torch.ones(n, 8) + 0.05 * torch.randn(n, 8), dim=-1
    )

    def metrics(audio, video):
        embeddings = SplitEmbeddings(
            split="dev",
            embeddings={"audio": audio, "video": video},
            backbone={},
            video_id=[f"v{i}" for i in range(n)],
            clip_index=[0] * n,
        )
        return validation_metrics(embeddings, ["audio", "video"], [1, 10])

    good, bad = metrics(base, retrieving), metrics(collapsed, collapsed_partner)
    assert good["video/mean_R@1"] == 1.0 and bad["video/mean_R@1"] < 0.5
    assert good["mean_positive_distance"] > bad["mean_positive_distance"]  # the trap
    key, mode = defaults.select_metric, defaults.select_mode
    assert "R@" in key or "rank" in key, f"{key} is not a retrieval metric"
    better = good[key] > bad[key] if mode == "max" else good[key] < bad[key]
    assert better, f"select_metric {key} ({mode}) prefers the collapsed model"
