"""How fast the ``trimodal`` command answers: ``--help`` of every subcommand, and user errors.

::

    python benchmarks/bench_cli.py [--repeat 5] [--json bench_cli.json]

Each case runs ``python -m trimodal ...`` in a fresh process from an empty temporary
directory (outside the checkout, with the checkout on ``PYTHONPATH``), ``--repeat`` times;
the median wall-clock time is reported, and the median CPU time (user + system) of the
process, which on a shared machine shows how much of the wall time was waiting. Targets:
``--help`` under 1 s, a user error (exit status 2) under 3 s. The error cases are those of ``tests/test_cli.py``: each is reported
before any model is built, and none imports torch (objectives, backbones and the
objective's constructor options are read from their source).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trimodal.commands import COMMANDS  # noqa: E402

ERRORS = [
    ["train", "--data", "/nonexistent"],
    ["train", "--data", "prep", "--objective", "nosuch"],
    ["train", "--data", "prep", "--model.channels.audio.backbone", "nosuch"],
    ["train", "--data", "prep", "--eval.ks", "[1,5"],
    ["train", "--data", "prep", "--train.select_metric", "video/R@10"],
    ["train", "--config", "weighted_contrastive", "--data", "prep"],
    ["train", "--data", "prep", "--objective_options", "{nosuch: 1}"],
    ["train", "--train.epochs", "1"],
    ["prepare", "--corpus", "corpus", "--out", "out", "--config", "nope.yaml"],
    ["synthetic", "--out", "c", "--videos", "-1"],
    ["evaluate", "--model", "/nonexistent", "--data", "prep", "--output", "o"],
]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(args: list[str], cwd: Path, expect: int) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of ``python -m trimodal ARGS``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    start, cpu = time.perf_counter(), _cpu()
    result = subprocess.run(
        [sys.executable, "-m", "trimodal", *args], cwd=cwd, env=env, capture_output=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != expect:
        raise SystemExit(f"{args}: exit {result.returncode}, expected {expect}")
    return elapsed, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    cases = [(["--help"], 0, 1.0)]
    cases += [([c.name, "--help"], 0, 1.0) for c in COMMANDS]
    cases += [(["train", "--config", "weighted_contrastive", "--help"], 0, 1.0)]
    cases += [(e, 2, 3.0) for e in ERRORS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for split in ("train", "dev"):
            (cwd / "prep" / split).mkdir(parents=True)
        (cwd / "corpus").mkdir()
        for case, expect, target in cases:
            times = [_time(case, cwd, expect) for _ in range(args.repeat)]
            median = statistics.median(t for t, _ in times)
            cpu = statistics.median(c for _, c in times)
            rows.append({"command": " ".join(case), "median_s": median, "cpu_s": cpu, "target_s": target})  # fmt: skip
            mark = "ok" if median < target else "SLOW"
            print(f"{median:6.2f} s (cpu {cpu:5.2f} s; < {target:.0f} s {mark})  trimodal {' '.join(case)}", flush=True)  # fmt: skip
    worst = {t: max(r["median_s"] for r in rows if r["target_s"] == t) for t in (1.0, 3.0)}
    print(f"slowest --help {worst[1.0]:.2f} s; slowest error exit {worst[3.0]:.2f} s")
    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "repeat": args.repeat}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
