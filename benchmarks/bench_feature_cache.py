"""Benchmark the feature cache: training time per epoch with frozen full-size backbones.

Setup: a small synthetic corpus (``trimodal.prepare.synthetic``; ``--train-videos`` videos of one
``--clip-seconds`` clip each for training, one for dev, one for test) prepared at the study's
input sizes (16 frames of 224² — stored at 256² for crops — and 48 kHz mono audio). The model
is ``--model.preset full`` with the audio (CLAP HTSAT-base, 512-d projection) and video
(VideoMAE-base, 86 M parameters) channels only, both ``trainable_blocks none``; only the heads
and the logit scale train. **Random weights**: the pretrained checkpoints cannot be downloaded
here, and the backbone cost does not depend on the weights' values.

The ``Trainer`` runs ``--epochs`` epochs twice, each run in a fresh subprocess, with
``train.feature_cache true`` and ``false`` (same data, seed and config otherwise). The
benchmark does not change the trainer; it wraps two of its methods on the instance:

- ``Trainer._batches(epoch)`` (the generator ``fit`` iterates once per epoch): the epoch's
  wall time runs from its first call to its exhaustion, and the time spent inside the data
  loader (``next`` on it) is recorded too;
- ``Trainer.validate``: its time (retrieval on the 1-clip dev split, which runs both
  backbones, plus saving the best model) is subtracted from the epoch it falls in, since it
  is the same work with or without the cache.

Forward hooks on the two backbones count the training-time backbone calls per epoch (with the
cache they must run in the first epoch only). The speed-up is the mean training time of the
epochs after the first without the cache over the same with it (target: >= 20x).

    .venv/bin/python benchmarks/bench_feature_cache.py --json /tmp/bench_feature_cache.json
    .venv/bin/python benchmarks/bench_feature_cache.py --train-videos 4 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_dataset(root: Path, train_videos: int, clip_seconds: float, seed: int) -> Path:
    """Generate and prepare the synthetic set (reused if ``root/prepared`` exists)."""
    from trimodal.config import DataConfig
    from trimodal.prepare import prepare
    from trimodal.prepare.corpus import read_corpus, write_corpus
    from trimodal.prepare.synthetic import SynthOptions, generate_corpus

    prepared = root / "prepared"
    summary = prepared / "summary.json"
    if summary.is_file():
        splits = json.loads(summary.read_text())["splits"]
        if splits["train"]["clips"] == train_videos and splits["dev"]["clips"] == 1:
            return prepared  # reused
        shutil.rmtree(root)
    corpus = root / "corpus"
    # Each video a little longer than one clip: exactly one clip per video.
    length = clip_seconds + 0.5
    generate_corpus(
        corpus,
        train_videos + 2,
        seed=seed,
        opts=SynthOptions(min_seconds=length, max_seconds=length),
    )
    records = read_corpus(corpus)
    for record, split in zip(records, ["train"] * train_videos + ["dev", "test"]):
        record.split = split
    write_corpus(corpus, records)
    config = DataConfig(
        clip_seconds=clip_seconds,
        sparse_train=False,
        frame_sizes=[224],
        num_frames=16,
        audio_rates=[48000],
    )
    prepare(corpus, prepared, config, show_progress=False)
    return prepared


def _worker_config(args: argparse.Namespace):
    """The trainer's config: full preset, audio + video frozen, the cache on or off."""
    from trimodal.config import load_config

    return load_config(
        None,
        [
            "--data", args.prepared,
            "--output", args.output,
            "--model.preset", "full",
            "--model.modalities", "[audio, video]",
            "--model.channels.audio.trainable_blocks", "none",
            "--model.channels.video.trainable_blocks", "none",
            "--objective", "contrastive",
            "--train.epochs", str(args.epochs),
            "--train.batch_size", str(args.batch_size),
            "--train.gradient_accumulation_steps", "1",
            "--train.lr", "1e-4",
            "--train.validations_per_epoch", "1",
            "--train.checkpoint_every", "1000000",
            "--train.log_with", "[]",
            "--train.feature_cache", "true" if args.worker == "cache" else "false",
            "--eval.batch_size", str(args.batch_size),
        ],
    )  # fmt: skip


class EpochProbe:
    """Per-epoch timings and backbone call counts of one ``Trainer.fit``, recorded by wrapping
    the instance's ``_batches`` and ``validate`` and hooking its backbones (see the module
    docstring); the trainer itself is unchanged."""

    def __init__(self, trainer, epochs: int):
        self.wall = [0.0] * epochs
        self.data = [0.0] * epochs
        self.validation = [0.0] * epochs
        self.batches = [0] * epochs
        self.backbone_calls = {m: [0] * epochs for m in trainer.unwrapped.backbones}
        self.epoch: int | None = None
        self.validating = False
        self._batches_fn = trainer._batches
        self._validate_fn = trainer.validate
        for modality, backbone in trainer.unwrapped.backbones.items():
            backbone.register_forward_hook(self._counter(modality))
        trainer._batches = self.timed_batches
        trainer.validate = self.timed_validate

    def timed_batches(self, epoch: int):
        """The epoch's batches; its wall time runs until they are exhausted."""
        start = time.perf_counter()
        self.epoch = epoch
        iterator = self._batches_fn(epoch)
        try:
            while True:
                t = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                self.data[epoch] += time.perf_counter() - t
                self.batches[epoch] += 1
                yield item
        finally:
            self.wall[epoch] = time.perf_counter() - start
            self.epoch = None

    def timed_validate(self):
        t = time.perf_counter()
        self.validating = True
        try:
            return self._validate_fn()
        finally:
            self.validating = False
            if self.epoch is not None:
                self.validation[self.epoch] += time.perf_counter() - t

    def _counter(self, modality: str):
        def hook(module, inputs, output):
            # Training-time calls only: validation runs the backbones with or without cache.
            if self.epoch is not None and not self.validating:
                self.backbone_calls[modality][self.epoch] += 1

        return hook


def worker(args: argparse.Namespace) -> dict:
    import torch

    from trimodal.training import Trainer

    torch.set_num_threads(args.threads or torch.get_num_threads())
    config = _worker_config(args)
    t0 = time.perf_counter()
    trainer = Trainer(config)
    setup_seconds = time.perf_counter() - t0
    model = trainer.unwrapped
    probe = EpochProbe(trainer, args.epochs)
    t0 = time.perf_counter()
    trainer.fit()
    fit_seconds = time.perf_counter() - t0
    return {
        "feature_cache": args.worker == "cache",
        "train_clips": len(trainer.train_set),
        "dev_clips": len(trainer.dev_set),
        "batches": probe.batches,
        "epoch_wall_seconds": probe.wall,
        "validation_seconds": probe.validation,
        "train_seconds": [w - v for w, v in zip(probe.wall, probe.validation)],
        "data_seconds": probe.data,
        "backbone_calls": probe.backbone_calls,
        "setup_seconds": setup_seconds,
        "fit_seconds": fit_seconds,
        "params": {m: sum(p.numel() for p in b.parameters()) for m, b in model.backbones.items()},
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "threads": torch.get_num_threads(),
    }


def _run_worker(mode: str, args: argparse.Namespace, prepared: Path, work: Path) -> dict:
    output = work / f"run_{mode}"
    if output.exists():
        shutil.rmtree(output)
    cmd = [
        sys.executable, os.path.abspath(__file__),
        "--worker", mode,
        "--prepared", str(prepared),
        "--output", str(output),
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(output, ignore_errors=True)  # two saved 160M-parameter models
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-videos", type=int, default=6, help="train clips (1 per video)")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    return parser


def _run_both(args: argparse.Namespace) -> dict[str, dict]:
    """Prepare the data set, then one worker with the cache and one without: their results."""
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_fc_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prepared = make_dataset(work, args.train_videos, args.clip_seconds, args.seed)
    print(f"dataset: {prepared} ({time.perf_counter() - t0:.1f} s to generate and prepare)")

    runs = {}
    for mode in ("cache", "no_cache"):
        r = _run_worker(mode, args, prepared, work)
        runs[mode] = r
        print(
            f"{mode:>8}: epochs (training, validation excluded) "
            + ", ".join(f"{s:.2f}" for s in r["train_seconds"])
            + f" s; backbone calls per epoch {r['backbone_calls']}",
            flush=True,
        )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return runs


def _print_table(args: argparse.Namespace, runs: dict[str, dict]) -> None:
    """The setup line and the Markdown table of per-epoch times, without and with the cache."""
    info = runs["cache"]
    print()
    print(
        f"{info['train_clips']} train clips, {info['dev_clips']} dev clip(s), batch "
        f"{args.batch_size}; frozen backbones (random weights): "
        + ", ".join(f"{m} {n / 1e6:.1f} M" for m, n in info["params"].items())
        + f"; trainable {info['trainable_params'] / 1e6:.2f} M; {info['threads']} threads"
    )
    header = (
        "| epoch | no cache: train (s) | no cache: data (s) | cache: train (s) "
        "| cache: data (s) | validation no cache / cache (s) | no cache / cache |"
    )
    print(header)
    print("|" + "|".join("-" * len(h) for h in header.split("|")[1:-1]) + "|")
    off, on = runs["no_cache"], runs["cache"]
    for e in range(args.epochs):
        val = f"{off['validation_seconds'][e]:.2f} / {on['validation_seconds'][e]:.2f}"
        print(
            f"| {e + 1:>5} | {off['train_seconds'][e]:19.2f} | {off['data_seconds'][e]:18.2f} "
            f"| {on['train_seconds'][e]:16.2f} | {on['data_seconds'][e]:15.2f} "
            f"| {val:>31} | {off['train_seconds'][e] / on['train_seconds'][e]:15.1f}x |"
        )


def _report_speedup(args: argparse.Namespace, runs: dict[str, dict], started: float) -> float:
    """Print and return the mean training time of epochs >= 2, without over with the cache."""
    off, on = runs["no_cache"], runs["cache"]
    later_off = sum(off["train_seconds"][1:]) / (args.epochs - 1)
    later_on = sum(on["train_seconds"][1:]) / (args.epochs - 1)
    speedup = later_off / later_on
    print()
    print(
        f"epochs >= 2: {later_off:.2f} s without the cache, {later_on:.3f} s with it: "
        f"{speedup:.1f}x (target >= 20x); whole fit {off['fit_seconds']:.0f} s vs "
        f"{on['fit_seconds']:.0f} s; benchmark took {time.perf_counter() - started:.0f} s"
    )
    return speedup


def _write_json(args: argparse.Namespace, runs: dict[str, dict], speedup: float) -> None:
    import torch

    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k not in ("worker", "prepared", "output")},
    }
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "runs": runs, "speedup_later_epochs": speedup}, f, indent=2)
    print(f"wrote {args.json}")


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch fills the cache)")
    started = time.perf_counter()
    runs = _run_both(args)
    _print_table(args, runs)
    speedup = _report_speedup(args, runs, started)
    if args.json:
        _write_json(args, runs, speedup)


if __name__ == "__main__":
    main()
