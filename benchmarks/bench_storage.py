"""Prepared-split storage before and after a storage change: bytes, loader speed, memory.

::

    git worktree add /tmp/trimodal-before <commit of the old layout>
    python benchmarks/bench_storage.py --before /tmp/trimodal-before [--videos 24]
        [--epochs 3] [--workers 2] [--batch-size 8] [--cache DIR] [--json bench_storage.json]
    git worktree remove /tmp/trimodal-before

One synthetic corpus (``--videos`` videos, generated once by this checkout; ``--cache`` keeps
it) is prepared by each checkout — ``--before`` and this one — with the default
:class:`~trimodal.config.DataConfig` (8-s clips, 256² and 128² frames, 48- and 16-kHz
audio), each in a fresh Python process that imports that checkout's ``trimodal``
(``PYTHONPATH``). Then, for each checkout and in alternation, fresh processes measure:

- **bytes per clip**: the prepared ``train``/``dev``/``test`` directories' files over their
  clips (the work area is removed, as ``prepare`` does by default);
- **loader clips/s**: a ``DataLoader`` of ``PreparedClips`` with ``--workers`` worker
  processes and ``collate_clips``, 48-kHz audio and 224² frames, over the train split with
  training augmentation (random windows and resized crops) and over the dev split in
  evaluation mode; the first epoch warms the workers and the page cache and is not
  counted, the next ``--epochs`` are;
- **batch bytes per clip**: what the workers send through the pipe (the tensors' bytes);
- **peak loader memory**: the peak resident set (``ru_maxrss``) of the loading process and
  of its largest worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _prepare(corpus: str, out: str) -> dict:
    """Prepare ``corpus`` into ``out`` with the importable trimodal's defaults."""
    from trimodal.config import DataConfig
    from trimodal.prepare import prepare

    t0 = time.perf_counter()
    summary = prepare(corpus, out, DataConfig(), show_progress=False)
    seconds = time.perf_counter() - t0
    clips = sum(s["clips"] for s in summary["splits"].values())
    files = [p for split in ("train", "dev", "test") for p in (Path(out) / split).rglob("*")]
    nbytes = sum(p.stat().st_size for p in files if p.is_file())
    return {"prepare_s": seconds, "clips": clips, "bytes": nbytes, "bytes_per_clip": nbytes / clips}


def _load(out: str, split: str, train: bool, workers: int, batch_size: int, epochs: int) -> dict:
    """Iterate the loader ``1 + epochs`` times; time the last ``epochs``."""
    import torch

    from trimodal.data import PreparedClips, collate_clips

    ds = PreparedClips(out, split, train=train, audio_rate=48000, video_size=224, seed=0)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=train, num_workers=workers,
        collate_fn=collate_clips, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    clips = batch_bytes = 0
    t0 = 0.0
    for epoch in range(1 + epochs):
        ds.set_epoch(epoch)
        if epoch == 1:
            t0 = time.perf_counter()
        for batch in loader:
            if epoch >= 1:
                clips += len(batch["video_id"])
                batch_bytes += sum(batch[k].nbytes for k in ("audio", "video"))
    seconds = time.perf_counter() - t0
    del loader  # the workers exit: their peak joins RUSAGE_CHILDREN
    kib = 1024 if sys.platform != "darwin" else 1  # ru_maxrss: KiB on Linux
    return {
        "clips_per_s": clips / seconds,
        "batch_bytes_per_clip": batch_bytes / clips,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2**20,
        "peak_worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 2**20,
    }


def _child(root: Path, *args: str) -> dict:
    """Run this file's ``--child`` mode in a fresh process importing ``root``'s trimodal."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env, cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{root}: {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(args: argparse.Namespace) -> dict:
    from trimodal.prepare.synthetic import generate_corpus

    work = Path(args.cache or tempfile.mkdtemp(prefix="bench_storage_"))
    corpus = work / "corpus"
    if not (corpus / "videos.jsonl").is_file():
        generate_corpus(corpus, args.videos, seed=0, workers=2)
    sides = {"before": Path(args.before).resolve(), "after": HERE}
    results: dict[str, dict] = {side: {} for side in sides}
    for side, root in sides.items():
        out = work / f"prepared_{side}"
        shutil.rmtree(out, ignore_errors=True)
        results[side]["prepare"] = _child(root, "prepare", str(corpus), str(out))
        print(side, "prepare", results[side]["prepare"], flush=True)
    loads = {"train": ("train", "1"), "eval": ("dev", "0")}
    for name, (split, train) in loads.items():
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for _ in range(args.repeat):  # alternate the sides: drift hits both alike
            for side, root in sides.items():
                out = str(work / f"prepared_{side}")
                opts = [str(args.workers), str(args.batch_size), str(args.epochs)]
                runs[side].append(_child(root, "load", out, split, train, *opts))
        for side in sides:
            median = {k: statistics.median(r[k] for r in runs[side]) for k in runs[side][0]}
            results[side][name] = median
            print(side, name, median, flush=True)
    if not args.cache:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, rest = sys.argv[2], sys.argv[3:]
        if mode == "prepare":
            print(json.dumps(_prepare(*rest)))
        else:
            out, split, train, workers, batch, epochs = rest
            print(
                json.dumps(_load(out, split, train == "1", int(workers), int(batch), int(epochs)))
            )
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, help="a checkout of the code before the change")
    p.add_argument("--videos", type=int, default=24, help="synthetic videos (default 24)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after a warm-up one")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    p.add_argument("--repeat", type=int, default=3, help="runs per side (median reported)")
    p.add_argument("--cache", help="keep the corpus and the prepared outputs here")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    results = _run(args)
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    b, a = results["before"], results["after"]
    print(f"bytes per clip: {b['prepare']['bytes_per_clip'] / 1e6:.3f} MB → "
          f"{a['prepare']['bytes_per_clip'] / 1e6:.3f} MB")  # fmt: skip
    for name in ("train", "eval"):
        print(
            f"{name}: {b[name]['clips_per_s']:.1f} → {a[name]['clips_per_s']:.1f} clips/s "
            f"(×{a[name]['clips_per_s'] / b[name]['clips_per_s']:.2f}); batch bytes per clip "
            f"{b[name]['batch_bytes_per_clip'] / 1e6:.2f} → {a[name]['batch_bytes_per_clip'] / 1e6:.2f} MB; "
            f"peak RSS {b[name]['peak_rss_mib']:.0f} → {a[name]['peak_rss_mib']:.0f} MiB, "
            f"largest worker {b[name]['peak_worker_rss_mib']:.0f} → "
            f"{a[name]['peak_worker_rss_mib']:.0f} MiB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
