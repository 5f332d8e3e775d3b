"""Throughput of ``prepare`` next to the decode-only rate of the same files.

::

    python benchmarks/bench_prepare.py [--videos 12] [--workers 2] [--json bench_prepare.json]

Builds a synthetic corpus (or uses ``--corpus``), then measures, with the same number of
processes:

- **decode-only**: decord reads exactly what ``prepare`` needs — the 16 frames of every
  clip and the whole audio track at 48 kHz and 16 kHz — and nothing else;
- **prepare**: the full command (probe, decode, resize, write shards, assemble the split
  datasets with ``save_to_disk``), every clip kept (no sparse sampling) so both do the
  same clips.

Prints clips/s of both and their ratio (target: prepare >= 50% of decode-only) and writes
the figures as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.corpus import read_corpus  # noqa: E402
from data_prep.prepare import prepare  # noqa: E402
from data_prep.synthetic import SynthOptions, generate_corpus  # noqa: E402
from trimodal.config import DataConfig  # noqa: E402


def decode_only(media: str, clip_seconds: float, num_frames: int, rates: list[int]) -> int:
    """Decode what prepare needs from one file; return the number of clips."""
    import decord

    vr = decord.VideoReader(media, ctx=decord.cpu(0), num_threads=1)
    n_frames, fps = len(vr), float(vr.get_avg_fps())
    lengths = [n_frames / fps]
    for rate in rates:
        ar = decord.AudioReader(media, ctx=decord.cpu(0), sample_rate=rate, mono=True)
        lengths.append(ar.shape[1] / rate)
    n_clips = int(math.floor(min(lengths) / clip_seconds + 1e-6))
    for k in range(n_clips):
        times = k * clip_seconds + (np.arange(num_frames) + 0.5) * clip_seconds / num_frames
        idx = np.minimum(np.floor(times * fps).astype(np.int64), n_frames - 1)
        vr.get_batch(idx.tolist()).asnumpy()
    return n_clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", help="an existing corpus (default: a synthetic one)")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=30.0, help="synthetic video length")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--clip-seconds", type=float, default=8.0)
    parser.add_argument("--json", default="bench_prepare.json", help="where to write results")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        corpus = Path(args.corpus) if args.corpus else tmp / "corpus"
        if not args.corpus:
            opts = SynthOptions(min_seconds=args.seconds, max_seconds=args.seconds)
            t = time.perf_counter()
            generate_corpus(corpus, args.videos, seed=0, opts=opts, workers=args.workers)
            print(f"synthetic corpus: {args.videos} videos in {time.perf_counter() - t:.1f} s")
        records = read_corpus(corpus)
        config = DataConfig(clip_seconds=args.clip_seconds, sparse_train=False)
        media = [str(r.media_path(corpus)) for r in records]

        t = time.perf_counter()
        with ProcessPoolExecutor(args.workers) as pool:
            clips = list(
                pool.map(
                    decode_only,
                    media,
                    [config.clip_seconds] * len(media),
                    [config.num_frames] * len(media),
                    [config.audio_rates] * len(media),
                )
            )
        decode_s = time.perf_counter() - t
        decode_clips = sum(clips)

        t = time.perf_counter()
        summary = prepare(
            corpus, tmp / "prepared", config, workers=args.workers, show_progress=False
        )
        prepare_s = time.perf_counter() - t
        prepare_clips = sum(s["clips"] for s in summary["splits"].values())
        out_bytes = sum(p.stat().st_size for p in (tmp / "prepared").rglob("*") if p.is_file())

        decode_rate, prepare_rate = decode_clips / decode_s, prepare_clips / prepare_s
        result = {
            "videos": len(records),
            "clips": prepare_clips,
            "workers": args.workers,
            "decode_only_s": round(decode_s, 2),
            "decode_only_clips_per_s": round(decode_rate, 2),
            "prepare_s": round(prepare_s, 2),
            "prepare_clips_per_s": round(prepare_rate, 2),
            "ratio": round(prepare_rate / decode_rate, 3),
            "output_mb_per_clip": round(out_bytes / prepare_clips / 1e6, 2),
            "config": {
                k: v
                for k, v in dataclasses.asdict(config).items()
                if k in ("clip_seconds", "num_frames", "frame_sizes", "audio_rates", "frame_dtype")
            },
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        print(
            f"decode-only: {decode_clips} clips in {decode_s:.1f} s = {decode_rate:.2f} clips/s\n"
            f"prepare:     {prepare_clips} clips in {prepare_s:.1f} s = {prepare_rate:.2f} clips/s\n"
            f"ratio prepare/decode-only: {result['ratio']:.2f} (target >= 0.50)"
        )
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
