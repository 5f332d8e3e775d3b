"""Benchmark paired retrieval (``trimodal.metrics.retrieval_ranks``) over N × N galleries.

For each N (default 10k, 30k, 100k; 300-d float32 embeddings) a fresh subprocess:

1. imports torch, builds random queries and gallery (the inputs, 2·N·D·4 bytes), and reads its
   peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) as the baseline;
2. times ``retrieval_ranks`` (best of ``--repeats`` runs for N < 100k, one run otherwise) and
   reads the peak RSS again: the increase is the memory the metric itself needs;
3. only then measures the machine's float32 matmul rate on the chunk's own shape,
   ``torch.mm([chunk, D], [D, N])`` (best of 5), so that buffer does not count in step 2.

Achieved GFLOP/s = 2·N²·D / time (the matmul work of the whole N × N similarity matrix; the
comparisons and counts are not counted as work), printed next to the measured matmul rate.
Targets: 100k × 100k in <= 2 GiB peak-memory increase, at >= 50 % of the matmul rate.

    .venv/bin/python benchmarks/bench_retrieval.py --out /tmp/bench_retrieval.json
    .venv/bin/python benchmarks/bench_retrieval.py --sizes 10000 --chunk-size 512 1024 2048
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _maxrss_bytes() -> int:
    # Linux reports kilobytes, macOS bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def worker(n: int, dim: int, chunk: int, repeats: int, seed: int) -> dict:
    import torch

    from trimodal.metrics import metrics_from_ranks, retrieval_ranks

    torch.manual_seed(seed)
    gallery = torch.randn(n, dim, dtype=torch.float32)
    queries = torch.randn(n, dim, dtype=torch.float32).mul_(2.0).add_(gallery)
    base = _maxrss_bytes()

    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        ranks = retrieval_ranks(queries, gallery, chunk_size=chunk)
        times.append(time.perf_counter() - t0)
    peak = _maxrss_bytes()
    summary = metrics_from_ranks(ranks, (1, 5, 10))

    # Reference matmul rate on the chunk's shape (after the peak reading).
    c = min(chunk, n)
    a = torch.randn(c, dim, dtype=torch.float32)
    out = torch.empty(c, n, dtype=torch.float32)
    g_t = gallery.T
    torch.mm(a, g_t, out=out)
    mm_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, g_t, out=out)
        mm_times.append(time.perf_counter() - t0)
    mm_rate = 2.0 * c * n * dim / min(mm_times) / 1e9

    best = min(times)
    achieved = 2.0 * n * n * dim / best / 1e9
    return {
        "n": n,
        "dim": dim,
        "chunk_size": chunk,
        "seconds": best,
        "all_seconds": times,
        "gflops_achieved": achieved,
        "gflops_matmul": mm_rate,
        "efficiency": achieved / mm_rate,
        "baseline_rss_bytes": base,
        "peak_rss_bytes": peak,
        "peak_increase_bytes": peak - base,
        "input_bytes": 2 * n * dim * 4,
        "median_rank": summary["median_rank"],
        "R@10": summary["R@10"],
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, nargs="+", default=[1024])
    parser.add_argument("--repeats", type=int, default=3, help="runs per N below 100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        res = worker(args.worker, args.dim, args.chunk_size[0], args.repeats, args.seed)
        print(json.dumps(res))
        return

    rows = []
    for n in args.sizes:
        for chunk in args.chunk_size:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                str(n),
                "--dim",
                str(args.dim),
                "--chunk-size",
                str(chunk),
                "--repeats",
                str(args.repeats if n < 100_000 else 1),
                "--seed",
                str(args.seed),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"N={r['n']:>7} chunk={r['chunk_size']:>5}  {r['seconds']:8.2f} s  "
                f"{r['gflops_achieved']:7.1f} GFLOP/s of {r['gflops_matmul']:7.1f} "
                f"({100 * r['efficiency']:5.1f} %)  peak +{r['peak_increase_bytes'] / 2**20:7.0f} MiB"
                f" (total {r['peak_rss_bytes'] / 2**20:6.0f} MiB)",
                flush=True,
            )

    header = (
        "|       N | chunk | time (s) | GFLOP/s | matmul GFLOP/s | efficiency | "
        "peak increase (MiB) | peak RSS (MiB) |"
    )
    print()
    print(header)
    print("|" + "|".join("-" * (len(h)) for h in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {r['n']:>7} | {r['chunk_size']:>5} | {r['seconds']:8.2f} | "
            f"{r['gflops_achieved']:7.1f} | {r['gflops_matmul']:14.1f} | "
            f"{100 * r['efficiency']:9.1f}% | {r['peak_increase_bytes'] / 2**20:19.0f} | "
            f"{r['peak_rss_bytes'] / 2**20:14.0f} |"
        )
    if args.out:
        meta = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        }
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "results": rows}, fh, indent=2)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
