"""``python -m data_prep synthetic``: the command line of :mod:`trimodal.prepare.synthetic`."""

from __future__ import annotations

import argparse
import os
import time

from trimodal.prepare import synthetic
from trimodal.prepare.synthetic import SynthOptions, generate_corpus


def _cmd_synthetic(args: argparse.Namespace) -> int:
    opts = SynthOptions(
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        fps=args.fps,
        width=args.width,
        height=args.height,
        sample_rate=args.sample_rate,
    )
    t0 = time.perf_counter()
    records = generate_corpus(args.out, args.videos, args.seed, opts, workers=args.workers)
    total = sum(r.duration_s or 0 for r in records)
    print(
        f"wrote {len(records)} videos ({total:.0f} s of media) to {args.out} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synthetic`` command to ``python -m data_prep``."""
    p = subparsers.add_parser(
        "synthetic",
        help="write a synthetic music-video corpus (real H.264+AAC MP4 files)",
        description=synthetic.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = SynthOptions()
    p.add_argument("--out", required=True, help="corpus directory to write")
    p.add_argument("--videos", type=int, required=True, help="number of videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-seconds", type=float, default=d.min_seconds)
    p.add_argument("--max-seconds", type=float, default=d.max_seconds)
    p.add_argument("--fps", type=int, default=d.fps)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--sample-rate", type=int, default=d.sample_rate)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.set_defaults(func=_cmd_synthetic)
