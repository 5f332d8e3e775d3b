"""The real ``train.py`` under one and two processes: one schedule, one run.

Two processes with batch B must train like one process with batch 2B: the same optimiser
steps, the same learning rate at every step, the same losses. The two-process runs use
torchrun with CUDA hidden and ``ACCELERATE_USE_CPU`` (gloo); ``accelerate launch --cpu
--num_processes 2`` would start one process, so every run's process count is read back from
its own log line (``training on N process(es)``).

Runs are tiny (8 training videos of 2 clips, 3 epochs of 2 optimiser steps) and leave out the
two sources of honest differences between process counts: dropout masks (each process draws
its own) and the audio backbone's BatchNorm (statistics of the per-process batch). What is
left differs only in the order of floating-point sums.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from accelerate.state import AcceleratorState
from data_fixtures import prepared_training_corpus

from trimodal.config import load_config
from trimodal.training import Trainer

REPO = Path(__file__).resolve().parents[1]

# Same data, same weights, same global batches: only the order of float32 reductions differs
# (all-reduce of two half-batch gradients vs one full-batch sum), ~1e-7 relative per step and
# measured at ~1e-7 on the final loss after 6 AdamW steps; 1e-4 leaves room for other BLAS
# builds and is still far below what one different batch or learning rate moves the loss
# (the losses of consecutive steps differ by 10-50 %).
LOSS_RTOL = 1e-4


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Ten synthetic videos of two clips (8 train, 1 dev, 1 test): a batch of 8 distinct
    videos, twice per epoch."""
    return prepared_training_corpus(tmp_path_factory.mktemp("launch_data"), 8)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(prepared: Path, output: Path, processes: int, *extra: str) -> list[str]:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        launcher += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    return [*launcher, str(REPO / "train.py"), *_options(prepared, output, *extra)]


def _options(prepared: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--data", str(prepared),
        "--output", str(output),
        "--model.preset", "tiny",
        "--model.embed_dim", "16",
        "--model.modalities", "[text, video]",
        "--model.channels.text.head.dropout", "0",
        "--model.channels.video.head.dropout", "0",
        "--objective", "contrastive",
        "--train.lr", "1e-3",
        "--train.gradient_accumulation_steps", "1",
        "--train.epochs", "3",
        "--train.validations_per_epoch", "1",
        "--train.log_with", "[jsonl]",
        "--train.log_every", "1",
        *extra,
    ]  # fmt: skip


def _env(output: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # CPU and gloo, even on a machine with GPUs
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "HF_HOME": str(output.parent / f"{output.name}_hf_home"),  # no user accelerate config
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def _train(prepared: Path, output: Path, processes: int, *extra: str) -> dict:
    """Run ``train.py``; return its process count and, per optimiser step, lr and loss."""
    result = subprocess.run(
        _command(prepared, output, processes, *extra),
        env=_env(output),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return _run_records(output, result.stderr)


def _run_records(output: Path, log: str) -> dict:
    counts = {int(n) for n in re.findall(r"training on (\d+) process", log)}
    assert len(counts) == 1, f"no single process count in the log: {counts}"
    steps: dict[int, dict] = {}
    for line in (output / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train/lr" in record:  # a resumed run re-logs the steps after its checkpoint
            steps[record["step"]] = record
    return {
        "processes": counts.pop(),
        "steps": sorted(steps),
        "lr": [steps[s]["train/lr"] for s in sorted(steps)],
        "loss": [steps[s]["train/loss"] for s in sorted(steps)],
    }


def _kill_with_workers(pid: int) -> None:
    """SIGKILL a launcher and its workers (torchrun starts them in sessions of their own, so
    they outlive a killed launcher or process group) and wait until all are gone."""
    launcher = psutil.Process(pid)
    processes = [launcher, *launcher.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(processes, timeout=60)
    assert not alive, f"still running after SIGKILL: {alive}"


def _assert_same_run(got: dict, expected: dict) -> None:
    assert got["steps"] == expected["steps"]
    assert got["lr"] == pytest.approx(expected["lr"], rel=1e-12, abs=1e-15)
    assert got["loss"] == pytest.approx(expected["loss"], rel=LOSS_RTOL)


@pytest.fixture(scope="module")
def one_process(prepared, tmp_path_factory) -> dict:
    return _train(prepared, tmp_path_factory.mktemp("one") / "run", 1, "--train.batch_size", "8")


@pytest.fixture(scope="module")
def two_processes(prepared, tmp_path_factory) -> dict:
    return _train(prepared, tmp_path_factory.mktemp("two") / "run", 2, "--train.batch_size", "4")


def test_two_processes_follow_the_one_process_schedule(one_process, two_processes):
    assert (one_process["processes"], two_processes["processes"]) == (1, 2)
    # 2 global batches of 8 per epoch, 3 epochs; warm-up 1 step, then linear to 0 at step 6.
    assert one_process["steps"] == [1, 2, 3, 4, 5, 6]
    assert one_process["lr"] == pytest.approx([1e-3 * (6 - s) / 5 for s in range(1, 7)])
    _assert_same_run(two_processes, one_process)


# The heaviest case (two more runs, one on two processes): outside the default suite so that
# this file stays near two minutes on a loaded 2-core machine; `pytest -m slow` runs it.
@pytest.mark.slow
def test_accumulation_follows_the_same_schedule_on_one_and_two_processes(
    prepared, tmp_path, one_process
):
    """Effective batch 8 as 1 process × 2 micro-batches of 4 and 2 processes × 2 × 2."""
    accumulated = _train(
        prepared, tmp_path / "one", 1,
        "--train.batch_size", "4", "--train.gradient_accumulation_steps", "2",
    )  # fmt: skip
    shared = _train(
        prepared, tmp_path / "two", 2,
        "--train.batch_size", "2", "--train.gradient_accumulation_steps", "2",
    )  # fmt: skip
    assert (accumulated["processes"], shared["processes"]) == (1, 2)
    assert accumulated["steps"] == one_process["steps"]
    assert accumulated["lr"] == pytest.approx(one_process["lr"], rel=1e-12, abs=1e-15)
    _assert_same_run(shared, accumulated)


def test_two_processes_killed_and_resumed_follow_the_uninterrupted_schedule(
    prepared, tmp_path, two_processes
):
    run = tmp_path / "run"
    args = ("--train.batch_size", "4", "--train.checkpoint_every", "2")
    process = subprocess.Popen(
        _command(prepared, run, 2, *args),
        env=_env(run),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (run / "checkpoints" / "checkpoint_2").is_dir():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    _kill_with_workers(process.pid)
    process.wait()
    assert not (run / "last").exists(), "the run finished before it was killed"

    result = subprocess.run(
        [*_command(prepared, run, 2, *args), "--resume", "latest"],
        env=_env(run),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    resumed_at = re.search(r"resumed from .* step (\d+)", result.stderr)
    assert resumed_at and int(resumed_at.group(1)) < 6, "nothing left to resume"
    resumed = _run_records(run, result.stderr)
    assert resumed["processes"] == 2
    _assert_same_run(resumed, two_processes)


def test_exponential_schedule_multiplies_the_rate_by_gamma_once_per_epoch(prepared, tmp_path):
    """The thesis's schedule through the real loop: 4 batches of 4 per epoch, ×γ per epoch."""
    config = load_config(
        None,
        _options(
            prepared, tmp_path / "run",
            "--train.batch_size", "4",
            "--train.lr_schedule", "exponential",
            "--train.lr_gamma", "0.5",
            "--train.warmup_ratio", "0",
        ),
    )  # fmt: skip
    Trainer(config).fit()
    records = _run_records(tmp_path / "run", "training on 1 process")
    assert records["steps"] == list(range(1, 13))
    assert records["lr"] == pytest.approx([1e-3 * 0.5 ** (s // 4) for s in records["steps"]])


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one precision per Python process; these tests set it afresh."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_the_launchers_mixed_precision_reaches_the_accelerator(
    prepared, tmp_path, monkeypatch, caplog, fresh_accelerate_state
):
    """``accelerate launch --mixed_precision bf16`` (and ``accelerate config``) set
    ``ACCELERATE_MIXED_PRECISION``; an unset ``train.mixed_precision`` keeps it, a set one
    wins and says so."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    launcher = Trainer(load_config(None, _options(prepared, tmp_path / "launcher")))
    assert launcher.config.train.mixed_precision is None
    assert launcher.accelerator.mixed_precision == "bf16"

    AcceleratorState._reset_state(reset_partial_state=True)
    explicit = _options(prepared, tmp_path / "explicit", "--train.mixed_precision", "no")
    with caplog.at_level(logging.INFO, logger="trimodal"):
        overriding = Trainer(load_config(None, explicit))
    assert overriding.accelerator.mixed_precision == "no"
    assert "train.mixed_precision='no' overrides the launcher's mixed precision 'bf16'" in (
        caplog.text
    )
