"""Benchmark gradient caching: peak memory of one training step vs the contrastive batch size.

A training step here is forward + contrastive loss + backward of a ``TrimodalModel`` with a
text channel (tiny BPEmb, frozen table, trainable head) and a fully trainable video channel: a
small VideoMAE (``--model.channels.video.options.hf_config``: 32² frames, patch 8, 4 frames,
tubelet 2, i.e. 32 tokens per clip; hidden size, depth and width set by the flags) chosen so
that its activations dominate the step's memory while 4096 clips still fit in RAM without
caching and the whole benchmark runs in minutes on 2 CPU cores. Each configuration (effective
batch B × {plain, gradient caching with ``--chunk`` examples per chunk}) runs in a fresh
subprocess that:

1. builds the model and runs one warm-up step on 2 clips (one-time allocations: thread pools,
   kernels), then builds the inputs (B texts, B uint8 clips), runs ``gc.collect`` and
   ``malloc_trim`` and reads the RSS from ``/proc/self/statm``: the baseline;
2. resets the kernel's RSS high-water mark (``echo 5 > /proc/self/clear_refs``), starts a
   thread that samples ``/proc/self/statm`` every ~1 ms, runs the step (gradients set to
   ``None`` first, so their allocation counts too), and reads both the sampled maximum and the
   kernel's ``VmHWM`` (``/proc/self/status``, exact: the mm's high-water RSS). Memory = peak −
   baseline; the table shows the sampled one and the high-water one (they should agree: the
   sampler is the method the issue asks for, the high-water mark shows it misses nothing);
3. times ``--repeats`` further steps (time per step = the minimum over all timed steps).

Separately, the contrastive loss alone (its forward and backward on B × D leaf embeddings,
no model) is measured the same way for each B: with gradient caching the encoder's memory no
longer grows with B, but the loss needs B × B similarity, log-softmax and gradient matrices,
so that part is what remains — unless the loss is computed in row blocks: the grad-cache
runs use ``get_objective("contrastive", block_size=--loss-block)`` (default 64), which keeps
one ``[block, B]`` block of logits alive at a time (recomputed in the backward pass) and
gives the same loss and gradients; ``--loss-block 0`` restores the full matrix.

Once, in a further subprocess, the gradients of one step on ``--check-batch`` clips are computed
plainly and with gradient caching (same seed) and compared: the maximum absolute difference
over all parameters, and the largest gradient for scale, are printed.

    .venv/bin/python benchmarks/bench_grad_cache.py --json /tmp/bench_grad_cache.json
    .venv/bin/python benchmarks/bench_grad_cache.py --batch-sizes 64 256 --chunk 32 --layers 2
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakSampler:
    """Samples the process RSS from ``/proc/self/statm`` every ``interval`` seconds and keeps
    the maximum per phase (the phase is whatever the measured code last set)."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.phase = "step"
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _record(self, rss: int) -> None:
        phase = self.phase
        self.peaks[phase] = max(self.peaks.get(phase, 0), rss)

    def _run(self) -> None:
        with open("/proc/self/statm") as f:
            while not self._stop.is_set():
                f.seek(0)
                self._record(int(f.read().split()[1]) * PAGE)
                self.samples += 1
                time.sleep(self.interval)

    @property
    def peak(self) -> int:
        return max(self.peaks.values())

    def __enter__(self) -> PeakSampler:
        self._record(_rss())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._record(_rss())


def _measure(step, sampler: PeakSampler) -> dict:
    """Run ``step()`` once under ``sampler``; RSS increase over the baseline (sampled, per
    phase, and the kernel's high-water mark)."""
    _trim()
    base = _rss()
    hwm_ok = _reset_hwm()
    with sampler:
        step()
    hwm = _hwm() if hwm_ok else None
    return {
        "baseline_rss_bytes": base,
        "peak_sampled_bytes": sampler.peak - base,
        "peak_hwm_bytes": None if hwm is None else hwm - base,
        "phase_peak_bytes": {k: v - base for k, v in sampler.peaks.items()},
        "samples": sampler.samples,
    }


# ----------------------------------------------------------------------------- the model


def _model_config(args: argparse.Namespace):
    from trimodal.config import load_config

    hf_config = {
        "image_size": args.image_size,
        "patch_size": args.patch,
        "num_frames": args.frames,
        "tubelet_size": args.tubelet,
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "intermediate_size": args.intermediate,
    }
    return load_config(
        None,
        [
            "--model.preset", "tiny",
            "--model.modalities", "[text, video]",
            "--model.embed_dim", str(args.embed_dim),
            "--model.channels.video.options.image_size", str(args.image_size),
            "--model.channels.video.options.num_frames", str(args.frames),
            "--model.channels.video.options.hf_config", json.dumps(hf_config),
        ],
    ).model  # fmt: skip


_WORDS = ["rock", "jazz", "piano", "drum", "music video", "guitar", "choir", "dance", "opera"]


def _inputs(batch: int, args: argparse.Namespace, seed: int):
    import torch

    texts = [f"{_WORDS[i % 9]} {_WORDS[(i * 5 + 2) % 9]}" for i in range(batch)]
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, args.frames, 3, args.image_size, args.image_size)
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    return {"text": texts, "video": frames}


def _setup(args: argparse.Namespace):
    import torch

    from trimodal.modeling import build_model
    from trimodal.objectives import get_objective

    torch.manual_seed(args.seed)
    model = build_model(_model_config(args)).train()
    # With gradient caching the full-batch loss is what bounds memory; computing it in row
    # blocks keeps it at O(block × B). Plain steps keep the whole matrix (as before).
    objectives = {
        "plain": get_objective("contrastive"),
        "cached": get_objective("contrastive", block_size=args.loss_block or None),
    }
    return model, objectives


def _step_fn(model, objective, inputs, chunk: int, sampler: PeakSampler | None = None):
    """One training step (gradients reset to ``None`` first). With a sampler, its phase is
    set to ``embed`` (grad-free chunk forwards), ``loss`` (the full-batch loss, forward and
    backward) and ``replay`` (chunk forwards with a graph and their backwards)."""
    import torch

    from trimodal.training.grad_cache import grad_cache_step

    def loss_fn(embeddings, logit_scale):
        if sampler is not None and chunk:
            sampler.phase = "loss"
        return objective(embeddings, logit_scale=logit_scale)

    def mark(module, args, kwargs):
        if sampler is not None:
            sampler.phase = "replay" if torch.is_grad_enabled() else "embed"

    def step() -> None:
        model.zero_grad(set_to_none=True)
        if chunk:
            hook = model.register_forward_pre_hook(mark, with_kwargs=True)
            try:
                grad_cache_step(model, inputs, loss_fn, chunk)
            finally:
                hook.remove()
        else:
            out = model(**inputs)
            loss_fn(out.embeddings, out.logit_scale)["loss"].backward()

    return step


def worker_step(batch: int, chunk: int, args: argparse.Namespace) -> dict:
    import torch

    model, objectives = _setup(args)
    objective = objectives["cached" if chunk else "plain"]
    _step_fn(model, objective, _inputs(2, args, args.seed), chunk)()  # warm-up
    inputs = _inputs(batch, args, args.seed + 1)
    sampler = PeakSampler()
    result = _measure(_step_fn(model, objective, inputs, chunk, sampler), sampler)
    # Timed steps without the sampler thread (it competes for the GIL).
    step = _step_fn(model, objective, inputs, chunk)
    times: list[float] = []
    while not times or (len(times) < args.repeats and sum(times) < args.time_budget):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    video = model.backbones["video"].model
    return {
        "batch": batch,
        "chunk": chunk,
        **result,
        "seconds": min(times),
        "all_seconds": times,
        "input_bytes": inputs["video"].numel(),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "tokens_per_clip": video.embeddings.num_patches,
        "attn_implementation": video.config._attn_implementation,
        "threads": torch.get_num_threads(),
    }


def worker_check(args: argparse.Namespace) -> dict:
    """Plain vs grad-cache gradients of one step on ``--check-batch`` clips."""
    import torch

    model, objectives = _setup(args)
    inputs = _inputs(args.check_batch, args, args.seed + 2)
    grads = []
    for chunk, objective in ((0, objectives["plain"]), (args.chunk, objectives["cached"])):
        torch.manual_seed(args.seed + 3)
        _step_fn(model, objective, inputs, chunk)()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    plain, cached = grads
    if plain.keys() != cached.keys():
        raise RuntimeError(f"different parameters got gradients: {plain.keys() ^ cached.keys()}")
    diffs = {n: float((plain[n] - cached[n]).abs().max()) for n in plain}
    worst = max(diffs, key=diffs.__getitem__)
    return {
        "batch": args.check_batch,
        "chunk": args.chunk,
        "parameters_compared": len(plain),
        "max_abs_diff": diffs[worst],
        "worst_parameter": worst,
        "max_abs_grad": max(float(g.abs().max()) for g in plain.values()),
    }


# ----------------------------------------------------------------------------- driver


def _run_worker(mode: str, args: argparse.Namespace, *extra: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, *extra]
    for name in (
        "image_size", "patch", "frames", "tubelet", "hidden", "layers", "heads",
        "intermediate", "embed_dim", "repeats", "time_budget", "seed", "check_batch", "chunk",
        "loss_block",
    ):  # fmt: skip
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return run_json_worker(cmd, args.mmap_threshold, f"worker {mode} {extra}")


def run_json_worker(
    cmd: list[str], mmap_threshold: int | None, what: str, env: dict[str, str] | None = None
) -> dict:
    """Run one measurement in a fresh process (its own peak memory) and return the JSON
    object on its last output line; ``mmap_threshold`` sets glibc's ``MALLOC_MMAP_THRESHOLD_``."""
    env = dict(os.environ if env is None else env)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:.0f}"


def _secs(r: dict) -> str:
    return f"{r['seconds']:.2f}" if r else "-"


def _encoder_peak(r: dict) -> int:
    phases = r["phase_peak_bytes"]
    return max(phases.get("embed", 0), phases.get("replay", 0))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--chunk", type=int, default=64, help="grad-cache chunk size")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--tubelet", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--embed-dim", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (at most)")
    parser.add_argument(
        "--time-budget", type=float, default=20.0, help="no further timed step after this (s)"
    )
    parser.add_argument(
        "--check-batch", type=int, default=256, help="gradient check batch (0: no check)"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["plain", "cached"], default=["plain", "cached"]
    )
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        help="run the workers with MALLOC_MMAP_THRESHOLD_ set (bytes): a fixed threshold stops "
        "glibc from serving large blocks from its heap, whose freed pages stay resident",
    )
    parser.add_argument(
        "--loss-block",
        type=int,
        default=64,
        help="contrastive loss computed in row blocks of this size (0: the whole B×B matrix)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _run_worker_mode(args: argparse.Namespace) -> None:
    """Inside a worker subprocess: run its one measurement, print it as a JSON line."""
    if args.worker == "check":
        res = worker_check(args)
    else:
        res = worker_step(args.batch, args.chunk if args.worker == "cached" else 0, args)
    print(json.dumps(res))


def _gradient_check(args: argparse.Namespace) -> dict | None:
    """The plain vs grad-cache gradient comparison (``None`` with ``--check-batch 0``)."""
    check = _run_worker("check", args) if args.check_batch else None
    if check:
        print(
            f"gradient check (B={check['batch']}, chunk {check['chunk']}, "
            f"{check['parameters_compared']} parameter tensors): max |grad_cache - plain| = "
            f"{check['max_abs_diff']:.2e} (largest |grad| {check['max_abs_grad']:.2e}; worst "
            f"{check['worst_parameter']})",
            flush=True,
        )
    return check


def _measure_batches(args: argparse.Namespace) -> list[dict]:
    """One row per batch size: ``{"batch": B, mode: worker result}`` for each mode."""
    rows = []
    for batch in args.batch_sizes:
        row = {"batch": batch}
        for mode in args.modes:
            r = _run_worker(mode, args, "--batch", str(batch))
            row[mode] = r
            print(
                f"B={batch:>5} {mode:>6}: {r['seconds']:7.2f} s/step (min of "
                f"{len(r['all_seconds'])})  peak +{_mib(r['peak_sampled_bytes'])} MiB sampled "
                f"({r['samples']} samples), +{_mib(r['peak_hwm_bytes'])} MiB high-water",
                flush=True,
            )
        rows.append(row)
    return rows


def _print_table(args: argparse.Namespace, rows: list[dict]) -> None:
    """The model summary line and the Markdown table of memory and time per batch size."""
    info = rows[0][args.modes[0]]
    print()
    print(
        f"model: text (tiny BPEmb, frozen) + video (VideoMAE {args.layers} layers, hidden "
        f"{args.hidden}, {info['tokens_per_clip']} tokens per clip, attention "
        f"{info['attn_implementation']}), {info['params'] / 1e6:.2f} M parameters "
        f"({info['trainable_params'] / 1e6:.2f} M trainable); contrastive loss; "
        f"grad-cache chunk {args.chunk}; {info['threads']} threads; allocator: "
        + (f"MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}" if args.mmap_threshold else "default")
    )
    header = (
        "| batch | plain: peak (MiB) | plain: s/step | grad cache: peak (MiB) "
        "| grad cache: s/step | grad cache: encoder phases (MiB) | grad cache: loss phase (MiB) "
        "| high-water plain / grad cache (MiB) |"
    )
    print(header)
    print("|" + "|".join("-" * len(h) for h in header.split("|")[1:-1]) + "|")
    for row in rows:
        p, c = row.get("plain", {}), row.get("cached", {})
        hwm = f"{_mib(p.get('peak_hwm_bytes'))} / {_mib(c.get('peak_hwm_bytes'))}"
        print(
            f"| {row['batch']:>5} | {_mib(p.get('peak_sampled_bytes')):>17} "
            f"| {_secs(p):>13} | {_mib(c.get('peak_sampled_bytes')):>22} | {_secs(c):>18} "
            f"| {_mib(_encoder_peak(c) if c else None):>32} "
            f"| {_mib(c.get('phase_peak_bytes', {}).get('loss')):>28} | {hwm:>35} |"
        )


def _report_scaling(args: argparse.Namespace, rows: list[dict]) -> dict[str, float]:
    """Print and return the peak ratios largest / smallest batch (per mode, and for the grad
    cache's encoder phases alone), then the time ratio grad cache / plain."""
    first, last = rows[0], rows[-1]
    ratios: dict[str, float] = {}
    for mode in args.modes:
        ratios[mode] = last[mode]["peak_sampled_bytes"] / first[mode]["peak_sampled_bytes"]
    if "cached" in args.modes:
        ratios["cached_encoder_phases"] = _encoder_peak(last["cached"]) / _encoder_peak(
            first["cached"]
        )
    print()
    print(
        f"peak({last['batch']}) / peak({first['batch']}): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
        + " (target for grad cache: <= 1.3)"
    )
    if len(args.modes) == 2:
        print(
            f"time per step ({last['batch']}): grad cache / plain = "
            f"{last['cached']['seconds'] / last['plain']['seconds']:.2f}"
        )
    return ratios


def _write_json(
    args: argparse.Namespace, check: dict | None, rows: list[dict], ratios: dict[str, float]
) -> None:
    import torch

    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k not in ("worker", "batch")},
    }
    with open(args.json, "w") as f:
        json.dump(
            {"meta": meta, "gradient_check": check, "rows": rows, "peak_ratios": ratios},
            f,
            indent=2,
        )
    print(f"wrote {args.json}")


def main() -> None:
    args = _parse_args()
    if args.worker:
        _run_worker_mode(args)
        return
    started = time.perf_counter()
    check = _gradient_check(args)
    rows = _measure_batches(args)
    _print_table(args, rows)
    ratios = _report_scaling(args, rows)
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    if args.json:
        _write_json(args, check, rows, ratios)


if __name__ == "__main__":
    main()
