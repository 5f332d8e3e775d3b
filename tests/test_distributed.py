"""Cross-process negatives: 2 processes with batch B == 1 process with batch 2B.

Launches ``tests/_dist_objective_script.py`` with ``accelerate launch`` on 2 CPU processes
(gloo, DDP via ``accelerator.prepare``) and compares every process's loss and (DDP-averaged)
parameter gradients after one step with a single process on the concatenated batch.

Launch flags: ``accelerate launch --cpu --num_processes 2`` does *not* start 2 processes — with
``--cpu`` accelerate uses its single-process launcher (multi-CPU goes through ``mpirun``). So we
use the torchrun launcher (``--multi_gpu``) with CUDA hidden; ``Accelerator(cpu=True)`` in the
script then selects the gloo backend. The test also asserts that the world size really was 2.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trimodal.distributed import gather_with_grad, get_rank, get_world_size, is_distributed
from trimodal.objectives import get_objective

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "_dist_objective_script.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("_dist_objective_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load_script()
MATCHING_CASES = [name for name in script.CASES if name != "contrastive_no_gather"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate_executable() -> str:
    candidate = Path(sys.executable).parent / "accelerate"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("accelerate")
    assert found, "the accelerate command is not installed beside this Python"
    return found


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("dist")
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # CPU only, even on a machine with GPUs
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(out_dir / "hf_home"),  # no user accelerate config can leak in
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    cmd = [
        _accelerate_executable(),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        "1",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(_free_port()),
        str(SCRIPT),
        str(out_dir),
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"accelerate launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    results = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return results


def test_both_processes_ran_in_one_group_of_two(two_process_results):
    assert [r["world_size"] for r in two_process_results] == [2, 2]


@pytest.mark.parametrize("case", MATCHING_CASES)
def test_two_processes_match_one_process_on_the_whole_batch(two_process_results, case):
    reference = script.run_single_process(case)
    for rank, results in enumerate(two_process_results):
        got = results[case]
        assert got["loss"] == pytest.approx(reference["loss"], rel=1e-5, abs=1e-5), rank
        assert set(got["grads"]) == set(reference["grads"])
        for name, grad in reference["grads"].items():
            torch.testing.assert_close(
                got["grads"][name],
                grad,
                rtol=1e-5,
                atol=1e-5,
                msg=lambda m, name=name, rank=rank: f"rank {rank}, {name}: {m}",
            )


def test_without_gathering_the_processes_do_not_match(two_process_results):
    # Control: with gather=False each process sees only its own 3 rows, so neither the loss nor
    # the gradients equal the full-batch ones — the comparison above can fail.
    reference = script.run_single_process("contrastive_no_gather")
    losses = [r["contrastive_no_gather"]["loss"] for r in two_process_results]
    assert all(abs(loss - reference["loss"]) > 0.1 for loss in losses)
    diffs = [
        (two_process_results[0]["contrastive_no_gather"]["grads"][n] - g).abs().max().item()
        for n, g in reference["grads"].items()
    ]
    assert max(diffs) > 1e-2


def test_gather_with_grad_is_the_identity_without_a_process_group():
    assert not is_distributed()
    assert (get_world_size(), get_rank()) == (1, 0)
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


def test_gather_option_is_a_no_op_in_one_process():
    generator = torch.Generator().manual_seed(0)
    embs = {m: torch.randn(5, 4, generator=generator) for m in ("text", "audio", "video")}
    on = get_objective("contrastive", gather=True)(embs)["loss"]
    off = get_objective("contrastive", gather=False)(embs)["loss"]
    assert on.item() == off.item()
    assert get_objective("contrastive").gather_active() is False  # auto: 1 process
