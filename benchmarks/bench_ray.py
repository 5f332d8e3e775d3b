"""``prepare``'s throughput on the Ray executor vs the local process pool, at equal cores.

::

    python benchmarks/bench_ray.py [--videos 24] [--seconds 24] [--size 320x240]
        [--workers 2] [--repeat 3] [--cache DIR] [--json bench_ray.json]

It builds a synthetic corpus (H.264 + AAC MP4; ``--cache`` keeps it), then runs the whole
``prepare`` (decode, write shards, assemble the split datasets; every clip kept) with
``--executor local`` (a pool of ``--workers`` processes) and with ``--executor ray`` (Ray
tasks on a local Ray cluster of ``--workers`` CPUs), alternating the two ``--repeat`` times
(load on a shared machine drifts: compare within a pair). Each run is a fresh Python
process, timed from just before ``prepare``: the local pool's start counts; the Ray cluster
is started before the clock (on a cluster it is up before any job; its start-up is printed
apart). The load average is printed with every run. It prints videos/s of each and the
median overhead of Ray (1 - ray/local throughput; target <= 15%) and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic_media import add_media_options, synthetic_corpus  # noqa: E402

from trimodal.config import DataConfig  # noqa: E402
from trimodal.prepare import prepare  # noqa: E402


def _measure(executor: str, corpus: Path, workers: int, out: Path) -> dict:
    """One timed ``prepare`` (run in a fresh process by :func:`_run_measure`)."""
    config = DataConfig(clip_seconds=8.0, sparse_train=False, prepare_executor=executor)
    start_s = 0.0
    if executor == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
        start_s = time.perf_counter() - t
    t = time.perf_counter()
    summary = prepare(corpus, out, config, workers=workers, show_progress=False)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "videos": summary["videos_prepared"], "start_s": start_s}


def _run_measure(executor: str, corpus: Path, workers: int, tmp: Path) -> dict:
    out = tmp / f"prepared_{executor}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", executor]
    cmd += ["--_corpus", str(corpus), "--workers", str(workers), "--_out", str(out)]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{executor} measurement failed:\n{proc.stdout}\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"load_before": load, "load_after": os.getloadavg()[0]}


def _bench(args: argparse.Namespace, corpus: Path, tmp: Path) -> dict:
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for i in range(args.repeat):
        # Alternate, and swap which goes first each pair (the machine warms up).
        order = ("local", "ray") if i % 2 == 0 else ("ray", "local")
        for executor in order:
            r = _run_measure(executor, corpus, args.workers, tmp)
            runs[executor].append(r)
            print(
                f"{executor:5s} {r['videos']} videos in {r['seconds']:.2f} s "
                f"({r['videos'] / r['seconds']:.2f} videos/s; load average "
                f"{r['load_before']:.2f} -> {r['load_after']:.2f})"
                + (f"; Ray start-up {r['start_s']:.1f} s, not counted" if executor == "ray" else "")
            )
    rate = {e: [r["videos"] / r["seconds"] for r in rs] for e, rs in runs.items()}
    overheads = [1 - ray / local for local, ray in zip(rate["local"], rate["ray"])]
    return {
        "workers": args.workers,
        "videos": runs["local"][0]["videos"],
        "local_videos_per_s": [round(x, 3) for x in rate["local"]],
        "ray_videos_per_s": [round(x, 3) for x in rate["ray"]],
        "overheads": [round(x, 3) for x in overheads],
        "overhead": round(statistics.median(overheads), 3),
        "ray_start_s": [round(r["start_s"], 2) for r in runs["ray"]],
        "load_average": [round(r["load_before"], 2) for rs in runs.values() for r in rs],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_media_options(parser, videos=24, size="320x240")
    parser.add_argument("--repeat", type=int, default=3, help="local/ray pairs")
    parser.add_argument("--json", default="bench_ray.json", help="where to write results")
    parser.add_argument("--_measure", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--_corpus", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._measure:
        result = _measure(args._measure, Path(args._corpus), args.workers, Path(args._out))
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        corpus = synthetic_corpus(args, Path(tmp))
        result = _bench(args, corpus, Path(tmp))
    result |= {"machine": platform.platform(), "cpus": os.cpu_count()}
    print(
        f"Ray vs local pool at {args.workers} CPUs, {result['videos']} videos: local "
        f"{result['local_videos_per_s']} videos/s, ray {result['ray_videos_per_s']} videos/s; "
        f"overhead {result['overhead']:.1%} (runs {result['overheads']}; target <= 15%)"
    )
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
