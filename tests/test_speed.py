"""Speed switches reach the model and change speed, not results; the loader's defaults
follow the documented rule; training logs where its time goes (trimodal.training.speed)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trimodal import build_model
from trimodal.config import DataConfig, ModelConfig, TrainConfig, load_config
from trimodal.training.optim import build_optimizer, optimizer_mode
from trimodal.training.speed import (
    apply_speed_settings,
    available_cpus,
    data_wait_advice,
    default_num_workers,
    is_compiled,
    loader_options,
    set_tf32,
    tf32_enabled,
)

REPO = Path(__file__).resolve().parents[1]
# Float32 kernels that compute the same sums in another order: the embeddings (unit norm)
# agree to this absolute tolerance.
ATOL = 1e-5


def _model(frozen_audio: bool = False):
    config = ModelConfig(preset="tiny", embed_dim=16)
    if frozen_audio:
        config.channels["audio"].trainable_blocks = "none"
    torch.manual_seed(0)
    return build_model(config)


def _inputs(batch: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "text": ["rock music video", "a drummer", "piano"][:batch],
        "audio": torch.randn(batch, 48000, generator=g) * 0.1,
        "video": torch.randint(0, 256, (batch, 4, 3, 32, 32), dtype=torch.uint8, generator=g),
    }


def _embeddings(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(**inputs).embeddings


# ----------------------------------------------------------------------------- the loader


@pytest.mark.parametrize(
    ("cpus", "processes", "expected"),
    [(16, 1, 8), (64, 1, 8), (4, 1, 3), (8, 2, 3), (4, 2, 1), (2, 1, 1), (1, 1, 0), (2, 4, 0)],
)
def test_default_num_workers_is_min_8_and_cpus_per_process_minus_1(cpus, processes, expected):
    assert default_num_workers(processes, cpus=cpus) == expected


def test_loader_options_use_the_rule_and_pin_only_on_accelerators():
    data, train = DataConfig(), TrainConfig()
    assert data.num_workers is None  # the default is the rule
    cpu = loader_options(data, train, torch.device("cpu"))
    assert cpu["num_workers"] == default_num_workers(1, cpus=available_cpus())
    assert cpu["pin_memory"] is False
    cuda = loader_options(dataclasses.replace(data, num_workers=3), train, torch.device("cuda"))
    assert cuda == {
        "num_workers": 3,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": train.prefetch_factor,
    }
    # Without workers, DataLoader refuses persistent_workers and prefetch_factor.
    none = loader_options(dataclasses.replace(data, num_workers=0), train, torch.device("cpu"))
    assert none == {"num_workers": 0, "pin_memory": False}
    with pytest.raises(ValueError, match="num_workers"):
        loader_options(dataclasses.replace(data, num_workers=-1), train, torch.device("cpu"))


# ----------------------------------------------------------------------------- switches


def test_attention_implementation_reaches_videomae_and_keeps_its_outputs(monkeypatch):
    model, inputs = _model(), _inputs()
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    apply_speed_settings(model, TrainConfig(attn_implementation="eager"), torch.device("cpu"))
    assert model.backbones["video"].attn_implementation == "eager"
    eager = _embeddings(model, inputs)
    assert not calls
    info = apply_speed_settings(model, TrainConfig(attn_implementation="sdpa"), torch.device("cpu"))
    assert info["attn_choice"] == ["video"]
    assert info["attn_implementation"] == {"text": "eager", "audio": "eager", "video": "sdpa"}
    fast = _embeddings(model, inputs)
    assert len(calls) == 2  # the tiny VideoMAE's two layers
    for m in eager:
        torch.testing.assert_close(fast[m], eager[m], atol=ATOL, rtol=0)


def test_compile_wraps_the_trainable_backbones_in_place():
    model = _model(frozen_audio=True)
    keys = set(model.state_dict())
    info = apply_speed_settings(model, TrainConfig(compile=True), torch.device("cpu"))
    assert info["compiled"] == ["video"]
    assert is_compiled(model.backbones["video"])
    assert not is_compiled(model.backbones["audio"]) and not is_compiled(model.backbones["text"])
    assert set(model.state_dict()) == keys  # saving and checkpoints are unchanged
    plain = _model(frozen_audio=True)
    apply_speed_settings(plain, TrainConfig(), torch.device("cpu"))
    assert not any(is_compiled(b) for b in plain.backbones.values())


@pytest.mark.slow
def test_a_compiled_backbone_gives_the_eager_outputs():
    model, inputs = _model(), _inputs()
    eager = _embeddings(model, inputs)["video"]
    model.backbones["video"].compile()
    compiled = _embeddings(model, inputs)["video"]
    torch.testing.assert_close(compiled, eager, atol=ATOL, rtol=0)


def test_tf32_is_set_on_cuda_devices_only():
    before = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        info = apply_speed_settings(_model(), TrainConfig(tf32=True), torch.device("cuda"))
        assert info["tf32"] and tf32_enabled()
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert set_tf32(False, torch.device("cuda")) and not tf32_enabled()
        assert not set_tf32(True, torch.device("cpu")) and not tf32_enabled()
        info = apply_speed_settings(_model(), TrainConfig(tf32=True), torch.device("cpu"))
        assert not info["tf32"]
    finally:
        torch.backends.cuda.matmul.fp32_precision = before[0]
        torch.backends.cudnn.conv.fp32_precision = before[1]


def test_optimizer_implementation_reaches_adamw_and_gives_the_same_step():
    assert optimizer_mode("auto", "cpu") == {"fused": True, "foreach": False}
    assert optimizer_mode("auto", "cuda") == {"fused": True, "foreach": False}
    assert optimizer_mode("auto", "meta") == {"fused": False, "foreach": True}
    inputs = _inputs()
    results = {}
    for impl in ("for_loop", "foreach", "fused", "auto"):
        model = _model()
        optimizer = build_optimizer(model, TrainConfig(optimizer_impl=impl, lr=1e-2))
        expected = optimizer_mode(impl, "cpu")
        assert optimizer.defaults["fused"] is expected["fused"]
        assert optimizer.defaults["foreach"] is expected["foreach"]
        out = model.train()(**inputs)
        sum(e.pow(3).sum() for e in out.embeddings.values()).backward()
        for _ in range(2):
            optimizer.step()
        results[impl] = {n: p.detach() for n, p in model.named_parameters()}
    for impl in ("foreach", "fused", "auto"):
        for name, value in results[impl].items():
            torch.testing.assert_close(value, results["for_loop"][name], atol=1e-6, rtol=1e-5)


def test_frozen_backbones_run_without_autograd_and_give_the_same_embeddings():
    model, inputs = _model(frozen_audio=True), _inputs()
    seen = []
    model.backbones["audio"].register_forward_hook(
        lambda module, args, out: seen.append((torch.is_grad_enabled(), out.requires_grad))
    )
    apply_speed_settings(model, TrainConfig(frozen_no_grad=True), torch.device("cpu"))
    with torch.enable_grad():
        on = model.eval()(**inputs).embeddings
    apply_speed_settings(model, TrainConfig(frozen_no_grad=False), torch.device("cpu"))
    with torch.enable_grad():
        off = model.eval()(**inputs).embeddings
    assert seen == [(False, False), (True, False)]
    for m in on:
        torch.testing.assert_close(on[m], off[m], atol=0, rtol=0)
    assert on["audio"].requires_grad  # the head above still trains


def test_data_wait_advice_names_the_fixes_when_the_loader_is_the_bottleneck():
    assert data_wait_advice(0.05, 4, [], False).startswith("waited for data 5% ")
    slow = data_wait_advice(0.4, 1, ["audio"], False)
    assert "raise data.num_workers above 1" in slow and "train.feature_cache" in slow
    assert "feature_cache" not in data_wait_advice(0.4, 1, ["audio"], True)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from data_fixtures import prepared_training_corpus

    return prepared_training_corpus(tmp_path_factory.mktemp("speed_data"), 4)


def test_training_logs_data_and_batch_time_and_sums_up_the_wait(prepared, tmp_path):
    from trimodal.training.trainer import Trainer

    config = load_config(
        None,
        ["--data", str(prepared), "--output", str(tmp_path), "--model.preset", "tiny",
         "--model.embed_dim", "16", "--objective", "weighted_contrastive",
         "--train.batch_size", "2", "--train.gradient_accumulation_steps", "1",
         "--train.log_with", "[jsonl]", "--train.log_every", "1", "--train.max_steps", "2",
         "--train.validations_per_epoch", "1"],
    )  # fmt: skip
    before = set(multiprocessing.active_children())
    trainer = Trainer(config)
    assert trainer.loader_workers == default_num_workers(1)
    assert trainer.train_loader.num_workers == trainer.loader_workers
    assert trainer.optimizer.defaults["fused"] is True  # auto on the CPU
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train/loss" in r]
    assert len(steps) == 2
    for row in steps:
        assert 0 <= row["train/data_time"] <= row["train/batch_time"]
        expected = 2 / row["train/batch_time"]
        assert row["train/samples_per_s"] == pytest.approx(expected)
    assert trainer.timer.batches == 2
    # The persistent loader workers end with the training, not with the trainer object.
    assert set(multiprocessing.active_children()) <= before
    assert "waited for data" in trainer.summary().splitlines()[-1]


def test_the_step_benchmark_runs_with_the_tiny_presets(tmp_path):
    """A smoke run (not timed): the benchmark's explicit FLOP counts agree with
    FlopCounterMode within 10 %, per channel and for the whole training step."""
    out = tmp_path / "step.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_step.py"), "--preset", "tiny",
           "--batch", "2", "--videos", "2", "--repeats", "1", "--loader-steps", "1",
           "--switches", "optimizer", "--json", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp_path)
    result = json.loads(out.read_text())
    for name, check in result["flop_check"].items():
        assert 0.9 <= check["ratio"] <= 1.1, (name, check)
    assert result["clips_per_s"] > 0 and 0 < result["mfu"]
    assert 0 <= result["loader"]["data_fraction"] <= 1
    assert set(result["switches"]["optimizer"]) == {"for_loop", "foreach", "fused"}
