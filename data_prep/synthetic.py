"""``python -m data_prep synthetic``: the command line of :mod:`trimodal.prepare.synthetic`."""

from __future__ import annotations

import argparse
import os
import sys
import time

from data_prep.__main__ import positive_float, positive_int
from trimodal.prepare.synthetic import SynthOptions

DESCRIPTION = """\
Write a synthetic music-video corpus: real H.264 + AAC MP4 files whose labels set their
timbre and look, and whose sound and picture share each video's register, brightness,
loudness, melody and tempo (the demo and the tests train on it). The same seed gives the
same bytes. Prepare it next with `trimodal prepare --corpus OUT --out PREPARED`.
"""


def _cmd_synthetic(args: argparse.Namespace) -> int:
    from trimodal.prepare.synthetic import generate_corpus

    if args.min_seconds > args.max_seconds:
        print(f"error: --min-seconds {args.min_seconds} is above --max-seconds {args.max_seconds}", file=sys.stderr)  # fmt: skip
        return 2
    opts = SynthOptions(
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        fps=args.fps,
        width=args.width,
        height=args.height,
        sample_rate=args.sample_rate,
    )
    t0 = time.perf_counter()
    records = generate_corpus(
        args.out, args.videos, args.seed, opts, workers=args.workers, progress=not args.no_progress
    )
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
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = SynthOptions()
    p.add_argument("--out", required=True, help="corpus directory to write")
    p.add_argument("--videos", type=positive_int, required=True, help="number of videos")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--min-seconds", type=positive_float, default=d.min_seconds, help=f"shortest video in seconds (default: {d.min_seconds:g})")  # fmt: skip
    p.add_argument("--max-seconds", type=positive_float, default=d.max_seconds, help=f"longest video in seconds (default: {d.max_seconds:g})")  # fmt: skip
    p.add_argument("--fps", type=positive_int, default=d.fps, help=f"frames per second (default: {d.fps})")  # fmt: skip
    p.add_argument("--width", type=positive_int, default=d.width, help=f"frame width (default: {d.width})")  # fmt: skip
    p.add_argument("--height", type=positive_int, default=d.height, help=f"frame height (default: {d.height})")  # fmt: skip
    p.add_argument("--sample-rate", type=positive_int, default=d.sample_rate, help=f"audio sample rate in Hz (default: {d.sample_rate})")  # fmt: skip
    workers = min(4, os.cpu_count() or 1)
    p.add_argument("--workers", type=positive_int, default=workers, help=f"encoding processes (default: {workers}, from the CPU count)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synthetic)
