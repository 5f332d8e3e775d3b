"""Throughput of ``prepare`` next to the decode-only rate of the same files.

::

    python benchmarks/bench_prepare.py [--videos 24] [--workers 2] [--sizes 160x120,640x360]
        [--repeat 3] [--cache DIR] [--corpus DIR] [--json bench_prepare.json]

For each media size it builds a synthetic corpus (or uses ``--corpus``; ``--cache`` keeps the
generated corpora for later runs), then measures, with the same number of processes:

- **decode-only**: decord reads exactly what ``prepare`` needs, with the calls ``prepare``
  makes, and nothing else: the ``num_frames`` frames of every clip (one ``get_batch`` per
  clip) at the size ``prepare`` has decord scale them to (short side = the largest stored
  side, 256 by default), and the whole audio track at every audio rate (48 kHz and 16 kHz);
  the frame size comes from a PyAV header read, as in ``prepare``. The decode-only rate at
  the media's native size (the baseline of earlier versions) is printed for reference;
- **prepare**: the full ``prepare`` call (probe, decode, crop, resize, write shards,
  assemble the split datasets), every clip kept (no sparse sampling) so both do the same
  clips.

Each measurement runs in a fresh Python process, timed from just before the work (so both
count their worker start-up, and ``prepare`` its ``datasets`` import), and the two
alternate ``--repeat`` times; the ratio prepare/decode-only of each pair and their median
are printed (target: >= 0.50) and written as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trimodal.config import DataConfig  # noqa: E402
from trimodal.data.schema import stored_side  # noqa: E402
from trimodal.prepare import prepare  # noqa: E402
from trimodal.prepare.corpus import read_corpus  # noqa: E402
from trimodal.prepare.decoding import decode_size  # noqa: E402
from trimodal.prepare.synthetic import SynthOptions, generate_corpus  # noqa: E402


def decode_only(
    media: str,
    audio: str,
    clip_seconds: float,
    num_frames: int,
    rates: list[int],
    side: int | None,
) -> int:
    """Decode what prepare needs from one file; return the number of clips.

    ``side``: scale the short side to it while decoding, as ``prepare`` does (None: the
    native size).
    """
    import decord

    size = {}
    if side is not None:
        import av

        with av.open(media) as container:
            ctx = container.streams.video[0].codec_context
            width, height = decode_size(ctx.width, ctx.height, side)
        size = {"width": width, "height": height}
    vr = decord.VideoReader(media, ctx=decord.cpu(0), num_threads=1, **size)
    n_frames, fps = len(vr), float(vr.get_avg_fps())
    lengths = [n_frames / fps]
    for rate in rates:
        ar = decord.AudioReader(audio, ctx=decord.cpu(0), sample_rate=rate, mono=True)
        lengths.append(ar.shape[1] / rate)
        del ar
    n_clips = int(math.floor(min(lengths) / clip_seconds + 1e-6))
    for k in range(n_clips):
        times = k * clip_seconds + (np.arange(num_frames) + 0.5) * clip_seconds / num_frames
        idx = np.minimum(np.floor(times * fps).astype(np.int64), n_frames - 1)
        vr.get_batch(idx.tolist()).asnumpy()
    return n_clips


def _config(clip_seconds: float) -> DataConfig:
    return DataConfig(clip_seconds=clip_seconds, sparse_train=False)


def _measure(kind: str, corpus: Path, workers: int, clip_seconds: float, out: Path) -> dict:
    """One timed measurement (run in a fresh process by :func:`_run_measure`)."""
    config = _config(clip_seconds)
    records = read_corpus(corpus)
    if kind == "prepare":
        t = time.perf_counter()
        summary = prepare(corpus, out, config, workers=workers, show_progress=False)
        seconds = time.perf_counter() - t
        clips = sum(s["clips"] for s in summary["splits"].values())
        out_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return {"seconds": seconds, "clips": clips, "output_bytes": out_bytes}
    side = None
    if kind == "decode":
        side = max(stored_side(s, config.frame_margin) for s in config.frame_sizes)
    media = [str(r.media_path(corpus)) for r in records]
    audio = [str(r.audio_path(corpus)) for r in records]
    n = len(media)
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        clips = sum(
            pool.map(
                decode_only,
                media,
                audio,
                [config.clip_seconds] * n,
                [config.num_frames] * n,
                [config.audio_rates] * n,
                [side] * n,
            )
        )
    return {"seconds": time.perf_counter() - t, "clips": clips}


def _run_measure(kind: str, corpus: Path, workers: int, clip_seconds: float, tmp: Path) -> dict:
    out = tmp / f"prepared_{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_measure",
        kind,
        "--corpus",
        str(corpus),
        "--workers",
        str(workers),
        "--clip-seconds",
        str(clip_seconds),
        "--_out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{proc.stdout}\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _corpus(args: argparse.Namespace, width: int, height: int, tmp: Path) -> Path:
    name = f"synth_{args.videos}x{args.seconds:g}s_{width}x{height}"
    root = Path(args.cache) / name if args.cache else tmp / name
    if not (root / "videos.jsonl").is_file():
        opts = SynthOptions(
            min_seconds=args.seconds, max_seconds=args.seconds, width=width, height=height
        )
        t = time.perf_counter()
        generate_corpus(root, args.videos, seed=0, opts=opts, workers=args.workers)
        print(f"synthetic corpus {name}: {time.perf_counter() - t:.1f} s")
    return root


def _bench(corpus: Path, label: str, args: argparse.Namespace, tmp: Path) -> dict:
    pairs = []
    for _ in range(args.repeat):
        # Alternate the two (load on a shared machine drifts): compare within a pair.
        d = _run_measure("decode", corpus, args.workers, args.clip_seconds, tmp)
        p = _run_measure("prepare", corpus, args.workers, args.clip_seconds, tmp)
        pairs.append((d, p))
    native = _run_measure("native", corpus, args.workers, args.clip_seconds, tmp)
    ratios = [(p["clips"] / p["seconds"]) / (d["clips"] / d["seconds"]) for d, p in pairs]
    d_rates = [d["clips"] / d["seconds"] for d, _ in pairs]
    p_rates = [p["clips"] / p["seconds"] for _, p in pairs]
    clips = pairs[0][1]["clips"]
    result = {
        "media": label,
        "videos": len(read_corpus(corpus)),
        "clips": clips,
        "decode_only_clips": pairs[0][0]["clips"],
        "decode_only_s": [round(d["seconds"], 2) for d, _ in pairs],
        "decode_only_clips_per_s": [round(r, 2) for r in d_rates],
        "decode_only_native_size_clips_per_s": round(native["clips"] / native["seconds"], 2),
        "prepare_s": [round(p["seconds"], 2) for _, p in pairs],
        "prepare_clips_per_s": [round(r, 2) for r in p_rates],
        "ratios": [round(r, 3) for r in ratios],
        "ratio": round(statistics.median(ratios), 3),
        "output_mb_per_clip": round(pairs[0][1]["output_bytes"] / clips / 1e6, 2),
    }
    print(f"[{label}] {result['videos']} videos, {clips} clips, {args.workers} workers")
    for i, ((d, p), r) in enumerate(zip(pairs, ratios)):
        print(
            f"  run {i + 1}: decode-only {d['seconds']:.1f} s = {d_rates[i]:.2f} clips/s, "
            f"prepare {p['seconds']:.1f} s = {p_rates[i]:.2f} clips/s, ratio {r:.2f}"
        )
    print(
        f"  decode-only at the native size: {result['decode_only_native_size_clips_per_s']:.2f}"
        " clips/s (reference)\n"
        f"  ratio prepare/decode-only (median of {len(ratios)}): {result['ratio']:.2f}"
        " (target >= 0.50)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", help="an existing corpus (default: synthetic ones)")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0, help="synthetic video length")
    parser.add_argument(
        "--sizes",
        default="160x120,640x360",
        help="synthetic media sizes WxH, comma-separated (160x120: the synthetic default)",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--clip-seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=1, help="decode-only/prepare pairs")
    parser.add_argument("--cache", help="keep the synthetic corpora here and reuse them")
    parser.add_argument("--json", default="bench_prepare.json", help="where to write results")
    parser.add_argument(
        "--_measure", choices=["decode", "native", "prepare"], help=argparse.SUPPRESS
    )
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._measure:
        result = _measure(
            args._measure, Path(args.corpus), args.workers, args.clip_seconds, Path(args._out)
        )
        print(json.dumps(result))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        runs = []
        if args.corpus:
            runs.append(_bench(Path(args.corpus), Path(args.corpus).name, args, tmp))
        else:
            for size in args.sizes.split(","):
                width, height = (int(v) for v in size.lower().split("x"))
                corpus = _corpus(args, width, height, tmp)
                runs.append(_bench(corpus, f"{width}x{height}", args, tmp))
        config = _config(args.clip_seconds)
        result = {
            "runs": runs,
            "workers": args.workers,
            "repeat": args.repeat,
            "config": {
                k: v
                for k, v in dataclasses.asdict(config).items()
                if k in ("clip_seconds", "num_frames", "frame_sizes", "audio_rates", "frame_dtype")
            },
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
