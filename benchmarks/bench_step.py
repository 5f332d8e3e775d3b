"""Benchmark one training step: clips/s, FLOPs, MFU, peak memory, data wait, speed switches.

The model is the trainer's own (:class:`trimodal.training.Trainer`, objective
``weighted_contrastive``, all three channels): ``--preset full`` is VideoMAE-B (16 × 224²),
CLAP HTSAT-base (10-s windows at 48 kHz) and BPEmb (frozen, 300-d; a small vocabulary built
locally, the table lookup costs no FLOPs), with random weights built from their
configurations, nothing downloaded; ``--preset tiny`` the small presets of the tests. A
synthetic corpus is generated and prepared at the model's sizes (``--videos`` videos), then:

1. **Step** (compute): one batch of ``--batch`` clips (drawn from the prepared train split,
   repeated where the batch is larger than the split) is stepped ``--repeats`` times after
   one warm-up step (the trainer's ``_forward_backward`` and ``_optimizer_step``: forward,
   loss, backward, clipping, AdamW); time per step = the median. With ``--grad-cache-chunk``
   the step runs under gradient caching.
2. **FLOPs**: counted explicitly per channel from the configurations (:func:`channel_flops`:
   the matmuls and convolutions of each layer, attention included; backward = 2 × forward,
   less the input gradient of the first layer and of frozen parts) and cross-checked against
   ``torch.utils.flop_counter.FlopCounterMode`` on a forward of each channel and on a
   whole training step. (FlopCounterMode has no formula for the CPU kernel of SDPA; the
   benchmark registers the library's own SDPA formulas for it.) MFU = explicit step FLOPs ÷
   step time ÷ the device's peak: a table of accelerator peaks (dense, per precision), or on
   the CPU a float32 GEMM (4096², best of 5) measured in the same run. Under gradient caching
   the first (graph-less) forward is not counted: MFU counts model FLOPs, not recomputation.
3. **Memory**: the peak over the step (CUDA: ``max_memory_allocated``; CPU: the process's
   RSS high-water mark during the first step, reset before it, less the RSS before it).
4. **Data wait** (``--loader-steps``, when the train split has ``--batch`` videos): steps fed
   by the trainer's own DataLoader (its default workers, prefetch and pinning), timed with
   the trainer's :class:`~trimodal.training.speed.StepTimer`: the share of the step time
   spent waiting for the next batch.
5. **Switches** (``--switches``): the same step with each speed switch flipped, in the same
   run, as a ratio of the default's time (> 1: the switch is faster) and the largest
   difference of the embeddings of the batch from the default's (same seed, eval mode):
   ``attn_implementation=eager``, ``compile=true`` (compilation excluded from the timing), ``frozen_no_grad=false`` (with the audio channel frozen to give it work),
   and AdamW ``for_loop``/``foreach``/``fused``, timed as ``optimizer.step()`` alone on the
   model's gradients (its share of the step is small).

    nice python benchmarks/bench_step.py --preset tiny --batch 64 --switches
    nice python benchmarks/bench_step.py --preset tiny --batch 1024 --grad-cache-chunk 64
    nice python benchmarks/bench_step.py --preset full --batch 2 --repeats 1 --switches attn optimizer
    python benchmarks/bench_step.py --preset full --batch 256 --precision bf16  # accelerator
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

#: Dense peak FLOP/s by device name and precision (vendor datasheets; fp32 = TF32 tensor
#: cores). The first name contained in the device's name wins.
PEAKS = {
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "fp32": 378e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 494.7e12},
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 494.7e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 156e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 60e12},
}


SWITCHES = ("attn", "compile", "frozen", "optimizer")
OPTIMIZER_ROUNDS = 8

# ----------------------------------------------------------------------------- FLOPs


def _videomae_flops(config: Any) -> dict[str, float]:
    """Forward FLOPs of one clip through ``VideoMAEModel``: ``front`` (none: the
    preprocessing is elementwise), ``first`` (the tubelet embedding, a Conv3d) and ``body`` (per layer: QKV and output projections 4·N·d², MLP
    2·N·d·I, attention scores and values 2·N²·d; in multiply-adds, × 2 FLOPs)."""
    n = (config.num_frames // config.tubelet_size) * (config.image_size // config.patch_size) ** 2
    d, inner = config.hidden_size, config.intermediate_size
    first = n * 3 * config.tubelet_size * config.patch_size**2 * d
    layer = 4 * n * d * d + 2 * n * d * inner + 2 * n * n * d
    return {"front": 0.0, "first": 2.0 * first, "body": 2.0 * config.num_hidden_layers * layer}


def _htsat_flops(config: Any, frames: int, fft_bins: int) -> dict[str, float]:
    """Forward FLOPs of one window through the CLAP HTSAT: ``front`` (the mel filter bank, a
    matmul frames × bins × mels, without gradients), ``first`` (the patch-embedding Conv2d)
    and ``body`` (Swin
    stages: per block 4·N·C² projections, 2·r·N·C² MLP and 2·N·w²·C windowed attention,
    where N = tokens, C = width, w² = tokens per window; patch merging 2·N·C²; then the
    two-layer projection)."""
    stride = config.patch_stride
    stride = stride[0] if isinstance(stride, (list, tuple)) else stride
    side = config.spec_size // stride
    width = config.patch_embeds_hidden_size
    front = frames * fft_bins * config.num_mel_bins
    # The patch embedding follows a BatchNorm with trainable parameters, so its input needs
    # a gradient: it counts as body (3 ×), not as a first layer (2 ×).
    first = 0
    body = side * side * config.patch_size**2 * width
    for stage, depth in enumerate(config.depths):
        res = side // 2**stage
        n, c = res * res, width * 2**stage
        window = min(config.window_size, res)
        block = 4 * n * c * c + 2 * config.mlp_ratio * n * c * c + 2 * n * window**2 * c
        body += depth * block
        if stage < len(config.depths) - 1:
            body += (n // 4) * 4 * c * 2 * c
    body += config.hidden_size * config.projection_dim + config.projection_dim**2
    return {"front": 2.0 * front, "first": 2.0 * first, "body": 2.0 * body}


def _head_flops(head: torch.nn.Module) -> float:
    """Forward FLOPs of one example through a projection head (its Linear layers)."""
    return sum(
        2.0 * m.in_features * m.out_features
        for m in head.modules()
        if isinstance(m, torch.nn.Linear)
    )


def channel_flops(model: Any) -> dict[str, dict[str, float]]:
    """Per channel and clip: forward FLOPs (``forward``) and training-step FLOPs
    (``train``: a trainable part costs 3 × its forward, the backward computing input and
    weight gradients; the first layer of a trainable backbone 2 × (no input gradient); the
    front end without parameters and a frozen backbone 1 ×; a head above a frozen backbone
    2 ×)."""
    out = {}
    for modality, backbone in model.backbones.items():
        name = type(backbone).__name__
        if name == "VideoMAEBackbone":
            parts = _videomae_flops(backbone.model.config)
        elif name == "ClapHTSATBackbone":
            opts = backbone.options
            frames = int(opts.window_seconds * opts.sample_rate) // opts.hop_size + 1
            parts = _htsat_flops(backbone.hf_model.config, frames, opts.fft_size // 2 + 1)
        else:  # BPEmb: a table lookup and a mean, no matmul
            parts = {"front": 0.0, "first": 0.0, "body": 0.0}
        head = _head_flops(model.heads[modality])
        trainable = modality not in model.frozen_modalities()
        backbone_fwd = parts["front"] + parts["first"] + parts["body"]
        if trainable:
            train = parts["front"] + 2 * parts["first"] + 3 * parts["body"] + 3 * head
        else:
            train = backbone_fwd + 2 * head
        out[modality] = {"forward": backbone_fwd + head, "train": train, "trainable": trainable}
    return out


def loss_flops(model: Any, batch: int) -> float:
    """FLOPs of the contrastive loss of one step: per pair of channels the ``[B, B]``
    similarities (2·B²·D) forward and their two input gradients (4·B²·D) backward."""
    n = len(model.modalities)
    return n * (n - 1) / 2 * 6.0 * batch * batch * model.config.embed_dim


def _cpu_sdpa_mapping() -> dict:
    """FlopCounterMode formulas for the CPU SDPA kernels (the library registers the CUDA
    ones only), reusing its own SDPA counts."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out, query, key, value)

    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def counted_flops(fn: Any) -> float:
    """FLOPs FlopCounterMode counts while ``fn()`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping()) as counter:
        fn()
    return float(counter.get_total_flops())


# ----------------------------------------------------------------------------- data


def prepared_split(root: Path, preset: str, videos: int) -> tuple[Path, dict[str, Any]]:
    """Generate ``videos`` + 1 synthetic videos (the last one dev) and prepare them at the
    preset's sizes; returns the prepared directory and the data overrides."""
    from trimodal.config import DataConfig
    from trimodal.prepare import prepare
    from trimodal.prepare.corpus import read_corpus, write_corpus
    from trimodal.prepare.synthetic import SynthOptions, generate_corpus

    if preset == "tiny":
        data = {"clip_seconds": 4.0, "frame_sizes": [32], "frame_margin": 1.25,
                "num_frames": 4, "audio_rates": [48000], "video_size": 32}  # fmt: skip
        seconds = (9, 10)
    else:
        data = {"clip_seconds": 8.0, "frame_sizes": [224], "num_frames": 16,
                "audio_rates": [48000], "video_size": 224}  # fmt: skip
        seconds = (9, 10)
    opts = SynthOptions(min_seconds=seconds[0], max_seconds=seconds[1])
    generate_corpus(root / "corpus", videos + 1, seed=0, opts=opts, workers=2, progress=False)
    records = read_corpus(root / "corpus")
    for i, record in enumerate(records):
        record.split = "dev" if i == len(records) - 1 else "train"
    write_corpus(root / "corpus", records)
    loading = {"video_size"}
    config = DataConfig(sparse_train=False, prepare_workers=2,
                        **{k: v for k, v in data.items() if k not in loading})  # fmt: skip
    prepare(root / "corpus", root / "prepared", config, workers=2, show_progress=False)
    return root / "prepared", data


def build_trainer(args: argparse.Namespace, prepared: Path, data: dict, out: Path, **train: Any):
    """A Trainer on the prepared split with the benchmark's settings and ``train`` overrides
    (``audio_frozen``: the audio channel frozen)."""
    from trimodal.config import load_config
    from trimodal.training.trainer import Trainer

    audio_frozen = train.pop("audio_frozen", False)
    overrides: dict[str, Any] = {
        "model": {"preset": args.preset, "modalities": ["text", "audio", "video"]},
        "data": {"prepared_dir": str(prepared), **data, "crop_seconds": None},
        "objective": "weighted_contrastive",
        "train": {
            "output_dir": str(out),
            "batch_size": args.batch,
            "gradient_accumulation_steps": 1,
            "log_with": [],
            "feature_cache": False,
            "grad_cache_chunk": args.grad_cache_chunk,
            "mixed_precision": None if args.precision == "fp32" else args.precision,
            **train,
        },  # fmt: skip
    }
    if args.preset == "full":
        # BPEmb's published tables have 10k-200k rows; a random 500-row one costs the same
        # (nothing: a lookup) and needs no download.
        from trimodal.backbones.tiny import make_tiny_bpemb

        bpemb = make_tiny_bpemb(out / "bpemb", vocab_size=500, dim=300)
        overrides["model"]["channels"] = {
            "text": {"backbone": "bpemb", "source": str(bpemb), "trainable_blocks": "none",
                     "options": {"vocab_size": 500, "dim": 300}},
        }  # fmt: skip
    if audio_frozen:
        overrides["model"].setdefault("channels", {})["audio"] = {
            "backbone": "clap_htsat", "trainable_blocks": "none"}  # fmt: skip
    if args.precision == "fp32":
        overrides["train"]["mixed_precision"] = "no"
    return Trainer(load_config(None, overrides))


def fixed_batch(trainer: Any, size: int) -> dict[str, Any]:
    """``size`` clips of the train split (repeated when it has fewer), collated."""
    from trimodal.data import collate_clips
    from trimodal.training.trainer import _Indexed

    dataset = _Indexed(trainer.train_set)
    items = [dataset[(0, i % len(dataset))] for i in range(size)]
    return _to_device(collate_clips(items), trainer.accelerator.device)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(trainer: Any, batch: dict[str, Any]) -> None:
    """One optimiser step of the trainer on ``batch`` (no accumulation)."""
    trainer.model.train()
    terms = trainer._forward_backward(trainer._model_inputs(batch, 0))
    trainer._optimizer_step(terms is not None)


def time_steps(trainer: Any, batch: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds per step after one warm-up step, and the warm-up's peak memory."""
    device = trainer.accelerator.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = _rss_hwm(reset=True)
    t0 = time.perf_counter()
    step(trainer, batch)
    _sync(device)
    warmup = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _rss_hwm() - rss0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(trainer, batch)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "all": times, "warmup": warmup, "peak": peak}


def _rss_hwm(reset: bool = False) -> int:
    """The process's RSS high-water mark in bytes (``VmHWM``); ``reset``: first lower it to
    the current RSS (``/proc/self/clear_refs``), so the next reading is this phase's peak.
    Without /proc: ``ru_maxrss``, whose peak an earlier phase may already hold."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def embeddings(trainer: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Eval-mode embeddings of ``batch`` (seeded), to compare switches' outputs."""
    model = trainer.unwrapped
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(**{m: batch[m] for m in model.modalities})
    return {m: e.float().cpu() for m, e in out.embeddings.items()}


def loader_wait(trainer: Any, steps: int) -> dict[str, float]:
    """Steps fed by the trainer's DataLoader: the share of time waiting for data."""
    from trimodal.training.speed import StepTimer

    timer = StepTimer()
    iterator = iter(trainer.train_loader)
    done = 0
    timer.restart()
    while done < steps:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(trainer.train_loader)
            continue
        timer.data_ready()
        step(trainer, batch)
        _sync(trainer.accelerator.device)
        timer.batch_done()
        done += 1
    return {"steps": steps, "workers": trainer.loader_workers,
            "data_fraction": timer.data_fraction,
            "data_time": timer.total_data / timer.batches,
            "batch_time": timer.total_batch / timer.batches}  # fmt: skip


def peak_flops(device: torch.device, precision: str) -> tuple[float, str]:
    """The device's peak FLOP/s: the table's for a known accelerator, else a float32 GEMM
    (4096², best of 5) measured now."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAKS.items():
            if key in name:
                return peaks[precision], f"{key} datasheet ({precision} dense)"
    n = 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(6):
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best, f"measured float32 GEMM {n}² ({torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------- runs


def flop_report(trainer: Any, batch: dict[str, Any], explicit: dict) -> dict[str, Any]:
    """Explicit against FlopCounterMode: each channel's forward, and the whole step."""
    model = trainer.unwrapped
    model.eval()
    b = len(batch["video"])
    report = {}
    for modality in model.modalities:
        counted = counted_flops(lambda m=modality: model.encode(m, batch[m]))
        mine = explicit[modality]["forward"] * b
        report[modality] = {"explicit": mine, "counted": counted, "ratio": mine / counted}
    counted = counted_flops(lambda: step(trainer, batch))
    mine = sum(c["train"] for c in explicit.values()) * b + loss_flops(model, b)
    if trainer.config.train.grad_cache_chunk:
        # Gradient caching embeds the batch twice: the graph-less pass is counted here.
        mine += sum(c["forward"] for c in explicit.values() if c["trainable"]) * b
    report["train_step"] = {"explicit": mine, "counted": counted, "ratio": mine / counted}
    return report


def switch_runs(args, prepared, data, tmp, batch, base) -> dict[str, Any]:
    """Each switch flipped: time ratio (default ÷ switched) and largest embedding change."""
    # The default is rebuilt and timed again first: a process's first model pays for fresh
    # memory (page faults) that later ones reuse, so every ratio compares equals.
    variants: dict[str, dict[str, Any]] = {"default (rebuilt)": {}}
    if "attn" in args.switches:
        variants["attn_implementation=eager"] = {"attn_implementation": "eager"}
    if "compile" in args.switches:
        variants["compile=true"] = {"compile": True}
    results: dict[str, Any] = {}
    reference = None
    for name, overrides in variants.items():
        trainer = build_trainer(args, prepared, data, tmp / name, **overrides)
        before = embeddings(trainer, batch)
        if overrides.get("compile"):
            t0 = time.perf_counter()
            step(trainer, batch)  # compiles (the warm-up of time_steps then runs compiled)
            results[f"{name} compile_s"] = time.perf_counter() - t0
        timing = time_steps(trainer, batch, args.repeats)
        reference = reference or timing["seconds"]
        diff = max((before[m] - base["embeddings"][m]).abs().max().item() for m in before)
        results[name] = {"seconds": timing["seconds"], "ratio": reference / timing["seconds"],
                         "max_abs_embedding_diff": diff}  # fmt: skip
        _progress(name, results[name])
        del trainer
        gc.collect()
    if "frozen" in args.switches:
        results["frozen_no_grad"] = frozen_runs(args, prepared, data, tmp, batch)
    if "optimizer" in args.switches:
        results["optimizer"] = optimizer_runs(args, prepared, data, tmp, batch)
    return results


def frozen_runs(args, prepared, data, tmp, batch) -> dict[str, Any]:
    """Audio channel frozen: the step with and without ``frozen_no_grad``."""
    times = {}
    for flag in (True, False):
        trainer = build_trainer(args, prepared, data, tmp / f"frozen{flag}", audio_frozen=True,
                                frozen_no_grad=flag)  # fmt: skip
        times[flag] = time_steps(trainer, batch, args.repeats)["seconds"]
        del trainer
        gc.collect()
    return {"on_s": times[True], "off_s": times[False], "ratio": times[False] / times[True]}


def optimizer_runs(args, prepared, data, tmp, batch) -> dict[str, Any]:
    """``optimizer.step()`` alone per AdamW implementation, on one model's gradients,
    interleaved over ``OPTIMIZER_ROUNDS`` rounds (so load drift hits all alike); median of
    all rounds but the first. The parameters' drift between implementations is shown too."""
    from trimodal.training.optim import build_optimizer

    trainer = build_trainer(args, prepared, data, tmp / "optim")
    model = trainer.unwrapped
    trainer.model.train()
    out = trainer.model(**{m: batch[m] for m in model.modalities})
    sum(e.sum() for e in out.embeddings.values()).backward()
    device = trainer.accelerator.device
    impls = ("for_loop", "foreach", "fused")
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizers = {
        i: build_optimizer(
            model, dataclasses_replace(trainer.config.train, optimizer_impl=i), device
        )
        for i in impls
    }
    times: dict[str, list[float]] = {i: [] for i in impls}
    final = {}
    for _ in range(OPTIMIZER_ROUNDS):
        for impl in impls:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(state[n])
            _sync(device)
            t0 = time.perf_counter()
            optimizers[impl].step()
            _sync(device)
            times[impl].append(time.perf_counter() - t0)
            final[impl] = {n: p.detach().clone() for n, p in model.named_parameters()}
    results = {i: {"seconds": statistics.median(times[i][1:])} for i in impls}
    for impl in impls:
        results[impl]["ratio_vs_for_loop"] = (
            results["for_loop"]["seconds"] / results[impl]["seconds"]
        )
        results[impl]["max_abs_param_diff"] = max(
            (final[impl][n] - final["for_loop"][n]).abs().max().item() for n in final[impl]
        )
    return results


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        prepared, data = prepared_split(tmp, args.preset, args.videos)
        prepare_s = time.perf_counter() - t0
        trainer = build_trainer(args, prepared, data, tmp / "base")
        device = trainer.accelerator.device
        batch = fixed_batch(trainer, args.batch)
        explicit = channel_flops(trainer.unwrapped)
        result: dict[str, Any] = {
            "preset": args.preset, "batch": args.batch, "precision": args.precision,
            "grad_cache_chunk": args.grad_cache_chunk, "device": _device_name(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "loadavg_before": os.getloadavg(), "prepare_s": prepare_s,
            "speed": trainer.speed, "flops_per_clip": explicit,
        }  # fmt: skip
        base_embeddings = embeddings(trainer, batch)
        timing = time_steps(trainer, batch, args.repeats)
        _progress("step", timing)
        step_flops = sum(c["train"] for c in explicit.values()) * args.batch
        step_flops += loss_flops(trainer.unwrapped, args.batch)
        peak, peak_source = peak_flops(device, args.precision)
        result.update({
            "step_s": timing["seconds"], "step_all_s": timing["all"], "warmup_s": timing["warmup"],
            "clips_per_s": args.batch / timing["seconds"], "step_flops": step_flops,
            "achieved_flops": step_flops / timing["seconds"], "peak_flops": peak,
            "peak_source": peak_source, "mfu": step_flops / timing["seconds"] / peak,
            "peak_memory_bytes": timing["peak"],
        })  # fmt: skip
        if not args.no_flop_check:
            result["flop_check"] = flop_report(trainer, batch, explicit)
            _progress("flop_check", result["flop_check"])
        if args.loader_steps and len(set(trainer.train_set.video_ids)) >= args.batch:
            result["loader"] = loader_wait(trainer, args.loader_steps)
            _progress("loader", result["loader"])
        base = {"seconds": timing["seconds"], "embeddings": base_embeddings}
        del trainer
        gc.collect()
        if args.switches:
            result["switches"] = switch_runs(args, prepared, data, tmp, batch, base)
        result["loadavg_after"] = os.getloadavg()
    return result


def _progress(phase: str, value: Any) -> None:
    """Each phase's figures as soon as they are measured (stderr)."""
    print(f"[{phase}] {json.dumps(value, default=str)}", file=sys.stderr, flush=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def print_report(r: dict[str, Any]) -> None:
    print(f"{r['preset']} batch {r['batch']} {r['precision']} on {r['device']} "
          f"({r['threads']} threads), grad cache {r['grad_cache_chunk']}; "
          f"load {r['loadavg_before'][0]:.2f}")  # fmt: skip
    for m, c in r["flops_per_clip"].items():
        print(f"  {m:5} forward {c['forward'] / 1e9:9.3f} GFLOP/clip, step "
              f"{c['train'] / 1e9:9.3f} GFLOP/clip ({'trainable' if c['trainable'] else 'frozen'})")  # fmt: skip
    print(f"  step {r['step_s']:.3f} s = {r['clips_per_s']:.2f} clips/s; "
          f"{r['achieved_flops'] / 1e9:.1f} GFLOP/s of {r['peak_flops'] / 1e9:.1f} "
          f"({r['peak_source']}): MFU {r['mfu']:.1%}; peak memory "
          f"{r['peak_memory_bytes'] / 2**20:.0f} MiB")  # fmt: skip
    for k, v in r.get("flop_check", {}).items():
        print(f"  FLOPs {k:10} explicit {v['explicit'] / 1e9:10.3f} G, FlopCounterMode "
              f"{v['counted'] / 1e9:10.3f} G, ratio {v['ratio']:.3f}")  # fmt: skip
    if "loader" in r:
        lo = r["loader"]
        print(f"  loader ({lo['workers']} workers): data wait {lo['data_fraction']:.1%} of "
              f"step time (data {lo['data_time']:.3f} s / batch {lo['batch_time']:.3f} s)")  # fmt: skip
    for name, v in r.get("switches", {}).items():
        print(f"  switch {name}: {json.dumps(v)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--batch", type=int, default=64, help="clips per step")
    parser.add_argument("--videos", type=int, help="train videos generated (default: batch, "
                        "at most 70)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--grad-cache-chunk", type=int, help="gradient caching chunk")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--loader-steps", type=int, default=3, help="steps fed by the loader")
    parser.add_argument("--switches", nargs="*", default=[], choices=SWITCHES,
                        help="speed switches to time against the default (none: all)")  # fmt: skip
    parser.add_argument("--no-flop-check", action="store_true", help="skip FlopCounterMode")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.switches == []:
        args.switches = list(SWITCHES) if "--switches" in sys.argv else []
    if args.videos is None:
        args.videos = min(args.batch, 70)
    result = run(args)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
