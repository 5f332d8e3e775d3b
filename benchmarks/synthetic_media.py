"""The synthetic corpus the media benchmarks measure (bench_decode.py, bench_ray.py): their
shared command-line options and the corpus they describe, generated once per ``--cache``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trimodal.prepare.synthetic import SynthOptions, generate_corpus


def add_media_options(parser: argparse.ArgumentParser, videos: int, size: str) -> None:
    """``--videos``, ``--seconds``, ``--size``, ``--workers`` and ``--cache``."""
    parser.add_argument("--videos", type=int, default=videos)
    parser.add_argument("--seconds", type=float, default=24.0, help="synthetic video length")
    parser.add_argument("--size", default=size, help="synthetic media size WxH")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--cache", help="keep the synthetic corpus here and reuse it")


def synthetic_corpus(args: argparse.Namespace, tmp: Path) -> Path:
    """The corpus ``args`` describe, in ``args.cache`` (reused when there) or ``tmp``."""
    width, height = (int(v) for v in args.size.lower().split("x"))
    name = f"synth_{args.videos}x{args.seconds:g}s_{width}x{height}"
    corpus = (Path(args.cache) if args.cache else tmp) / name
    if not (corpus / "videos.jsonl").is_file():
        opts = SynthOptions(
            min_seconds=args.seconds, max_seconds=args.seconds, width=width, height=height
        )
        generate_corpus(corpus, args.videos, seed=0, opts=opts, workers=args.workers)
    return corpus
