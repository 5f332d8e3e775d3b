"""Benchmark search: index build time, memory, query latency and recall; embedding throughput.

``index``: for each N (default 10k, 100k, 1M) 300-d unit vectors, in a fresh subprocess each,
an exact index (``IndexFlatIP``) and the approximate one (``IVF{4·√N},Flat``, nprobe 32) are
built with :func:`trimodal.search.index.build_index` and loaded back memory-mapped. Reported:
build time (2 threads), the FAISS file's size against the raw float32 vectors, the process's
peak RSS increase while building, single-query latency p50/p99 (200 queries, one at a time
on one thread, as the command line and the page send them) and recall@10 of the approximate index against the
exact one. The vectors are clustered (N/50 random centres, each vector a centre plus as much
isotropic noise: cosine ~0.7 to its centre), as embeddings of a real catalogue are; on
isotropic noise, which has no near neighbours, any approximate index needs a near-exhaustive
scan (``--isotropic`` measures that worst case).

``embed``: clips per second of :func:`trimodal.search.embedder.embed_prepared` (the batched
model pass, eval mode, previews off) on a prepared synthetic split, for the tiny preset
(demo settings: 4-s clips, 32² frames) and the full preset (audio CLAP HTSAT-base + video
VideoMAE-base, random weights, 8-s clips of 16 frames at 224²), on the CPU; decoding
(``prepare``) is timed separately.

    nice python benchmarks/bench_search.py index --sizes 10000 100000 1000000 --json out.json
    nice python benchmarks/bench_search.py embed --json embed.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DIM = 300
QUERIES = 200


def vectors(n: int, seed: int, isotropic: bool) -> np.ndarray:
    """``n`` unit 300-d vectors, clustered around ``n // 50`` centres (or isotropic)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    if not isotropic:
        centres = rng.standard_normal((max(1, n // 50), DIM), dtype=np.float32)
        x += centres[rng.integers(0, len(centres), n)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latencies(cat, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, r = cat.search("video", q[None], 10)
        times.append(time.perf_counter() - t0)
        rows.append(r[0])
    return np.asarray(rows), np.asarray(times) * 1000


def index_worker(n: int, isotropic: bool) -> dict:
    import faiss

    from trimodal.search.index import Catalogue, IndexSpec, build_index

    faiss.omp_set_num_threads(2)
    data = vectors(n + QUERIES, seed=0, isotropic=isotropic)
    gallery, queries = data[:n], data[n:]
    items = [{"id": f"v{i}"} for i in range(n)]
    out = {"n": n, "dim": DIM, "raw_mib": gallery.nbytes / 2**20, "isotropic": isotropic}
    exact_rows = None
    for kind in ("exact", "ivf"):
        with tempfile.TemporaryDirectory() as tmp:
            before = rss_mib()
            t0 = time.perf_counter()
            build_index(tmp, items, {"video": gallery}, IndexSpec(kind=kind))
            build_s = time.perf_counter() - t0
            cat = Catalogue.load(tmp)
            # One query uses one thread: OpenMP threads spin-waiting on a shared machine
            # cost more than they give (p50 60 ms instead of 1.4 ms at 10k exact here).
            faiss.omp_set_num_threads(1)
            rows, ms = latencies(cat, queries)
            faiss.omp_set_num_threads(2)
            if kind == "exact":
                exact_rows = rows
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows)])
            out[kind] = {
                "build_s": build_s,
                "index_mib": (Path(tmp) / "video.faiss").stat().st_size / 2**20,
                "peak_rss_increase_mib": rss_mib() - before,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "recall_at_10": float(recall),
                "nlist": cat.meta.get("nlist"),
                "nprobe": cat.meta.get("nprobe"),
            }
    return out


def run_index(args: argparse.Namespace) -> list[dict]:
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "index-worker", str(n)]
        cmd += ["--isotropic"] if args.isotropic else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        for kind in ("exact", "ivf"):
            k = r[kind]
            print(
                f"N={n:>9,} {kind:5} build {k['build_s']:7.1f} s  index {k['index_mib']:7.1f} MiB "
                f"({k['index_mib'] / r['raw_mib']:.3f}x raw)  p50 {k['p50_ms']:7.2f} ms  "
                f"p99 {k['p99_ms']:7.2f} ms  recall@10 {k['recall_at_10']:.3f}",
                flush=True,
            )
    return results


def embed_worker(preset: str) -> dict:
    import torch

    from trimodal.config import DataConfig, ModelConfig
    from trimodal.modeling import build_model
    from trimodal.prepare import prepare
    from trimodal.prepare.synthetic import SynthOptions, generate_corpus
    from trimodal.search.embedder import EmbedOptions, embed_prepared

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if preset == "tiny":
            videos, seconds, batch = 16, (8, 10), 16
            config = DataConfig(clip_seconds=4, sparse_train=False, frame_sizes=[32],
                                frame_margin=1.25, num_frames=4, audio_rates=[48000])  # fmt: skip
            model = build_model(ModelConfig(preset="tiny"))
        else:
            videos, seconds, batch = 2, (16, 17), 4
            config = DataConfig(clip_seconds=8, sparse_train=False, frame_sizes=[224],
                                num_frames=16, audio_rates=[48000])  # fmt: skip
            model = build_model(ModelConfig(preset="full", modalities=["audio", "video"]))
        opts = SynthOptions(min_seconds=seconds[0], max_seconds=seconds[1])
        generate_corpus(root / "corpus", videos, seed=0, opts=opts, workers=2)
        from trimodal.prepare.corpus import read_corpus, write_corpus

        records = read_corpus(root / "corpus")
        write_corpus(
            root / "corpus", [r.__class__(**{**r.to_dict(), "split": "test"}) for r in records]
        )
        t0 = time.perf_counter()
        prepare(root / "corpus", root / "prepared", config, workers=2, show_progress=False)
        prepare_s = time.perf_counter() - t0
        options = EmbedOptions(batch_size=batch, show_progress=False, previews=False)
        t0 = time.perf_counter()
        meta = embed_prepared(
            model.eval(), root / "prepared", "test", root / "out", options=options
        )
        embed_s = time.perf_counter() - t0
    return {
        "preset": preset, "clips": meta["clips"], "videos": meta["videos"],
        "embed_s": embed_s, "clips_per_s": meta["clips"] / embed_s, "prepare_s": prepare_s,
        "modalities": meta["modalities"],
    }  # fmt: skip


def run_embed(args: argparse.Namespace) -> list[dict]:
    results = []
    for preset in args.presets:
        cmd = [sys.executable, __file__, "embed-worker", preset]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{preset:5} {r['clips']} clips: embed {r['embed_s']:.1f} s = "
            f"{r['clips_per_s']:.2f} clips/s; prepare (decoding) {r['prepare_s']:.1f} s",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("index")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--isotropic", action="store_true", help="isotropic vectors (worst case)")
    p.add_argument("--json")
    p = sub.add_parser("embed")
    p.add_argument("--presets", nargs="+", default=["tiny", "full"])
    p.add_argument("--json")
    p = sub.add_parser("index-worker")
    p.add_argument("n", type=int)
    p.add_argument("--isotropic", action="store_true")
    p = sub.add_parser("embed-worker")
    p.add_argument("preset")
    args = parser.parse_args()
    if args.command == "index-worker":
        print(json.dumps(index_worker(args.n, args.isotropic)))
        return
    if args.command == "embed-worker":
        print(json.dumps(embed_worker(args.preset)))
        return
    results = run_index(args) if args.command == "index" else run_embed(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
