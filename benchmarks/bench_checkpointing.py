"""Benchmark gradient checkpointing: activation memory of a full-size channel, on vs off.

The channel is a ``TrimodalModel``'s video channel with the full VideoMAE-B architecture
(``VideoMAEConfig()``'s defaults: 16 frames of 224², patch 16, tubelet 2 → 1568 tokens,
hidden 768, 12 layers, 86 M parameters) built from its config with **random weights** (no
download; memory and time do not depend on the values), fully trainable, next to a tiny
text channel that does not run. Each mode runs in a fresh subprocess that:

1. builds the model (``model.gradient_checkpointing_enable()`` in the checkpointed mode) and
   ``--clips`` random uint8 clips, and runs one warm-up forward+backward: one-time
   allocations (thread pools, kernels) and the parameters' ``.grad`` tensors (kept, set to
   zero), which are the same in both modes and not activations;
2. measures one forward (``model.encode("video", clips)``) + backward of a scalar loss with
   ``bench_grad_cache._measure``: RSS increase over the baseline, sampled every ~1 ms and
   the kernel's exact high-water mark (``VmHWM`` after ``clear_refs``), with glibc's
   ``MALLOC_MMAP_THRESHOLD_`` fixed so that freed blocks leave the RSS (see the grad-cache
   section of BENCHMARKS.md);
3. times that step (wall clock; the machine is shared, so the time ratio is indicative).

The two modes' losses and gradient norms are printed: they must agree (same weights and
inputs; VideoMAE's default config has no dropout, so training mode is deterministic).

    .venv/bin/python benchmarks/bench_checkpointing.py --clips 1 --json /tmp/bench_ckpt.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from bench_grad_cache import MiB, PeakSampler, _measure, run_json_worker


def _model(checkpointing: bool):
    from trimodal import build_model
    from trimodal.config import load_config

    overrides = [
        "--model.preset", "tiny",  # the text channel: a tiny generated BPEmb, never run
        "--model.modalities", "[text, video]",
        # Explicit options replace the tiny preset's: the full VideoMAE-B architecture.
        "--model.channels.video.options", "{hf_config: {}, image_size: 224, num_frames: 16}",
    ]  # fmt: skip
    model = build_model(load_config(None, overrides).model).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing == checkpointing
    return model


def worker(checkpointing: bool, clips: int, seed: int) -> dict:
    """Inside a subprocess: the measurement of one mode (see the module docstring)."""
    import torch

    torch.manual_seed(seed)
    model = _model(checkpointing)
    frames = torch.randint(0, 256, (clips, 16, 3, 224, 224), dtype=torch.uint8)
    parameters = sum(p.numel() for p in model.backbones["video"].parameters())
    result: dict = {}

    def step() -> None:
        start = time.perf_counter()
        loss = model.encode("video", frames).sum()
        loss.backward()
        result["seconds"] = time.perf_counter() - start
        result["loss"] = float(loss.detach())

    step()  # warm-up; allocates the .grad tensors
    model.zero_grad(set_to_none=False)
    memory = _measure(step, PeakSampler())
    grad_norm = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
    )
    return {
        "checkpointing": checkpointing,
        "clips": clips,
        "video_parameters": parameters,
        "seconds": result["seconds"],
        "loss": result["loss"],
        "grad_norm": float(grad_norm),
        **memory,
    }


def _run_worker(checkpointing: bool, args: argparse.Namespace, cache: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(int(checkpointing))]
    cmd += ["--clips", str(args.clips), "--seed", str(args.seed)]
    # A private cache: the tiny BPEmb is generated there, not in the user's ~/.cache.
    env = {**os.environ, "TRIMODAL_CACHE": cache}
    return run_json_worker(
        cmd, args.mmap_threshold, f"worker checkpointing={checkpointing}", env=env
    )


def _report(plain: dict, checkpointed: dict) -> str:
    rows = [
        "| mode | peak, sampled (MiB) | peak, high-water (MiB) | step (s) | loss | grad norm |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (("plain", plain), ("checkpointing", checkpointed)):
        hwm = "-" if r["peak_hwm_bytes"] is None else f"{r['peak_hwm_bytes'] / MiB:.0f}"
        rows.append(
            f"| {name} | {r['peak_sampled_bytes'] / MiB:.0f} | {hwm} | {r['seconds']:.1f} | "
            f"{r['loss']:.6g} | {r['grad_norm']:.6g} |"
        )
    key = "peak_hwm_bytes" if plain["peak_hwm_bytes"] is not None else "peak_sampled_bytes"
    ratio = checkpointed[key] / plain[key]
    rows.append("")
    rows.append(
        f"activation memory with / without checkpointing: {ratio:.3f} "
        f"({plain['clips']} clip(s), {plain['video_parameters'] / 1e6:.1f} M parameters); "
        f"time ratio {checkpointed['seconds'] / plain['seconds']:.2f}"
    )
    return "\n".join(rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1, help="clips per forward+backward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=131072,
        help="glibc MALLOC_MMAP_THRESHOLD_ for the workers (bytes; omit with -1)",
    )
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mmap_threshold < 0:
        args.mmap_threshold = None
    return args


def main() -> None:
    args = _parse_args()
    if args.worker is not None:
        print(json.dumps(worker(bool(int(args.worker)), args.clips, args.seed)))
        return
    with tempfile.TemporaryDirectory() as cache:
        plain = _run_worker(False, args, cache)
        checkpointed = _run_worker(True, args, cache)
    print(_report(plain, checkpointed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"plain": plain, "checkpointing": checkpointed}, f, indent=2)


if __name__ == "__main__":
    main()
