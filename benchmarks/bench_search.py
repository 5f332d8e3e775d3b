"""Benchmark search: index build time, memory, query latency and recall; embedding throughput.

``index``: for each N (default 10k, 100k, 1M) 300-d unit vectors, in a fresh subprocess each,
an exact index (``IndexFlatIP``) and the approximate one (the default: ``IVF{4·√N},SQ8``,
nprobe 192, the best 5·k candidates re-scored exactly) are built with
:func:`trimodal.search.index.build_index` and loaded back memory-mapped. Reported: build
time (2 threads), the FAISS file's size and the FAISS file plus the ``.npy`` vectors against
the raw float32 vectors, the process's peak RSS increase while building, single-query
latency p50/p99 (200 queries, one at a time on one thread, as the command line and the page
send them; wall clock, and the querying thread's CPU time, what an idle core would take), recall@10 of the approximate index against the exact one, the same for the
approximate index at other ``--nprobes`` (same index, interleaved in blocks), and the load
average at the end. The vectors are clustered (N/50 random centres, each vector a centre
plus as much isotropic noise: cosine ~0.7 to its centre), as a real catalogue's are; on
isotropic noise, which has no near neighbours, any approximate index needs a near-exhaustive
scan (``--isotropic`` measures that worst case).

``sweep-worker N``: the choice of the IVF default. One k-means (the default lists), then
``IVF,Flat`` and ``IVF,SQ8`` on the same lists (FAISS's ``add_preassigned``), swept over
``--nprobes`` and, for SQ8, over ``--rescores`` (exact re-scoring of ``rescore·10``
candidates from the raw vectors); one JSON line per setting on stderr (wall and CPU p50).

``embed``: clips per second of :func:`trimodal.search.embedder.embed_prepared` (the batched
model pass, eval mode, previews off) on a prepared synthetic split, for the tiny preset
(demo settings: 4-s clips, 32² frames) and the full preset (audio CLAP HTSAT-base + video
VideoMAE-base, random weights, 8-s clips of 16 frames at 224²), on the CPU; decoding
(``prepare``) is timed separately.

    nice python benchmarks/bench_search.py index --sizes 10000 100000 1000000 --json out.json
    nice python benchmarks/bench_search.py sweep-worker 1000000 > sweep.json
    nice python benchmarks/bench_search.py embed --json embed.json
"""

from __future__ import annotations

import argparse
import json
import os
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


def latencies(cat, queries: np.ndarray, nprobes: list[int | None]) -> tuple[list, np.ndarray]:
    """Top-10 rows ``[Q, 10]`` per setting and times ``[2, len(nprobes), Q]`` (ms: wall clock,
    and the querying thread's CPU time, which waiting for a core on a loaded machine does
    not inflate), one query at a time. The queries run in 4 blocks; each block runs under
    every ``nprobe`` (None: the index's own) in turn, in a rotating order, so a changing
    load weighs on every setting alike and no setting reads lists that another just read
    for the same query."""
    rows = np.zeros((len(nprobes), len(queries), 10), np.int64)
    times = np.zeros((2, len(nprobes), len(queries)))
    default = cat.meta.get("nprobe")
    for b, block in enumerate(np.array_split(np.arange(len(queries)), 4)):
        for i in np.roll(np.arange(len(nprobes)), -b):
            cat.set_nprobe(nprobes[i] or default or 1)
            for j in block:
                t0, c0 = time.perf_counter(), time.thread_time()
                _, r = cat.search("video", queries[j][None], 10)
                times[:, i, j] = time.perf_counter() - t0, time.thread_time() - c0
                rows[i, j] = r[0]
    cat.set_nprobe(default or 1)
    return list(rows), times * 1000


def recall_at_10(rows: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)]))


def index_worker(n: int, isotropic: bool, nprobes: list[int]) -> dict:
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
            settings = [None] + (
                [p for p in nprobes if p != cat.meta["nprobe"]] if kind == "ivf" else []
            )
            rows, (ms, cpu) = latencies(cat, queries, settings)
            faiss.omp_set_num_threads(2)
            if kind == "exact":
                exact_rows = rows[0]
            files = sum(
                p.stat().st_size for p in Path(tmp).iterdir() if p.name.startswith("video.")
            )
            out[kind] = {
                "build_s": build_s,
                "index_mib": (Path(tmp) / "video.faiss").stat().st_size / 2**20,
                "index_and_vectors_mib": files / 2**20,
                "peak_rss_increase_mib": rss_mib() - before,
                "p50_ms": float(np.percentile(ms[0], 50)),
                "p99_ms": float(np.percentile(ms[0], 99)),
                "cpu_p50_ms": float(np.percentile(cpu[0], 50)),
                "cpu_p99_ms": float(np.percentile(cpu[0], 99)),
                "recall_at_10": recall_at_10(rows[0], exact_rows),
                "nlist": cat.meta.get("nlist"),
                "nprobe": cat.meta.get("nprobe"),
                "codec": cat.meta.get("codec"),
                "rescore": cat.meta.get("rescore"),
            }
            out[kind]["other_nprobes"] = [
                {"nprobe": p, "p50_ms": float(np.percentile(t, 50)),
                 "p99_ms": float(np.percentile(t, 99)), "cpu_p50_ms": float(np.percentile(c, 50)),
                 "cpu_p99_ms": float(np.percentile(c, 99)), "recall_at_10": recall_at_10(r, exact_rows)}
                for p, r, t, c in zip(settings[1:], rows[1:], ms[1:], cpu[1:])
            ]  # fmt: skip
    out["loadavg"] = os.getloadavg()
    return out


def exact_top(gallery: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """``int64 [Q, k]``: the brute-force top-``k`` rows (a chunked scan, 2 threads)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_r = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(gallery), 100_000):
        s = queries @ gallery[start : start + 100_000].T
        s = np.concatenate([best_s, s], axis=1)
        r = np.concatenate([best_r, start + np.arange(s.shape[1] - k)[None].repeat(len(s), 0)], 1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_r = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
    return best_r


def sweep_worker(n: int, nprobes: list[int], rescores: list[int]) -> dict:
    """One k-means (the default lists), then IVF-Flat and IVF-SQ8 on it, swept over nprobe
    and (SQ8) over exact re-scoring of ``rescore·k`` candidates from the raw vectors."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned

    from trimodal.search.index import TRAIN_POINTS_PER_LIST, IndexSpec

    faiss.omp_set_num_threads(2)
    data = vectors(n + QUERIES, seed=0, isotropic=False)
    gallery, queries = data[:n], data[n:]
    exact = exact_top(gallery, queries)
    nlist = IndexSpec().lists_for(n)
    t0 = time.perf_counter()
    ivf = faiss.index_factory(DIM, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    # The sample build_index trains on.
    rows = np.random.default_rng(0).choice(n, min(n, nlist * TRAIN_POINTS_PER_LIST), replace=False)
    ivf.train(np.ascontiguousarray(gallery[np.sort(rows)]))
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, assign = ivf.quantizer.search(gallery, 1)
    assign = np.ascontiguousarray(assign[:, 0])
    assign_s = time.perf_counter() - t0
    out = {"n": n, "nlist": nlist, "train_s": train_s, "assign_s": assign_s, "runs": []}
    for codec in ("Flat", "SQ8"):
        if codec == "SQ8":
            index = faiss.IndexIVFScalarQuantizer(
                ivf.quantizer, DIM, nlist, faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT)  # fmt: skip
            index.train(np.ascontiguousarray(gallery[np.sort(rows)]))
        else:
            index = ivf
        add_preassigned(index, gallery, assign)
        with tempfile.TemporaryDirectory() as tmp:
            faiss.write_index(index, f"{tmp}/x.faiss")
            size = Path(f"{tmp}/x.faiss").stat().st_size
            loaded = faiss.read_index(f"{tmp}/x.faiss", faiss.IO_FLAG_MMAP)
            faiss.omp_set_num_threads(1)
            for nprobe in nprobes:
                loaded.nprobe = nprobe
                for rescore in rescores if codec == "SQ8" else [1]:
                    got, times, cpu = [], [], []
                    for q in queries:
                        t0, c0 = time.perf_counter(), time.thread_time()
                        _, r = loaded.search(q[None], 10 * rescore)
                        if rescore > 1:
                            cand = r[0][r[0] >= 0]
                            r = cand[np.argsort(-(gallery[cand] @ q), kind="stable")[:10]][None]
                        times.append(time.perf_counter() - t0)
                        cpu.append(time.thread_time() - c0)
                        got.append(r[0][:10])
                    ms, cpu_ms = np.asarray(times) * 1000, np.asarray(cpu) * 1000
                    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)])
                    run = {"codec": codec, "nprobe": nprobe, "rescore": rescore,
                           "index_mib": size / 2**20, "p50_ms": float(np.percentile(ms, 50)),
                           "p99_ms": float(np.percentile(ms, 99)),
                           "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
                           "recall_at_10": float(recall)}  # fmt: skip
                    print(json.dumps(run), file=sys.stderr, flush=True)
                    out["runs"].append(run)
            faiss.omp_set_num_threads(2)
            del loaded
        del index
    return out


def run_index(args: argparse.Namespace) -> list[dict]:
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "index-worker", str(n)]
        cmd += ["--isotropic"] if args.isotropic else []
        cmd += ["--nprobes", *map(str, args.nprobes)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        for kind in ("exact", "ivf"):
            k = r[kind]
            print(
                f"N={n:>9,} {kind:5} build {k['build_s']:7.1f} s  index {k['index_mib']:7.1f} MiB "
                f"({k['index_mib'] / r['raw_mib']:.3f}x raw)  p50 {k['p50_ms']:7.2f} ms  "
                f"p99 {k['p99_ms']:7.2f} ms  (CPU p50 {k['cpu_p50_ms']:6.2f} p99 "
                f"{k['cpu_p99_ms']:6.2f} ms)  recall@10 {k['recall_at_10']:.3f}  "
                f"index+vectors {k['index_and_vectors_mib'] / r['raw_mib']:.3f}x raw",
                flush=True,
            )
            for o in k["other_nprobes"]:
                print(
                    f"{'':13} nprobe {o['nprobe']:4}  p50 {o['p50_ms']:7.2f} ms  "
                    f"p99 {o['p99_ms']:7.2f} ms  (CPU p50 {o['cpu_p50_ms']:6.2f} p99 "
                    f"{o['cpu_p99_ms']:6.2f} ms)  recall@10 {o['recall_at_10']:.3f}",
                    flush=True,
                )
        print(f"{'':13} load average {r['loadavg']}", flush=True)
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
    p.add_argument("--nprobes", type=int, nargs="*", default=[32, 96, 256],
                   help="IVF: also measure these nprobe on the same index")  # fmt: skip
    p.add_argument("--json")
    p = sub.add_parser("embed")
    p.add_argument("--presets", nargs="+", default=["tiny", "full"])
    p.add_argument("--json")
    p = sub.add_parser("index-worker")
    p.add_argument("n", type=int)
    p.add_argument("--isotropic", action="store_true")
    p.add_argument("--nprobes", type=int, nargs="*", default=[])
    p = sub.add_parser("sweep-worker")
    p.add_argument("n", type=int)
    p.add_argument("--nprobes", type=int, nargs="+", default=[16, 32, 64, 96, 128, 192, 256])
    p.add_argument("--rescores", type=int, nargs="+", default=[1, 5, 10])
    p = sub.add_parser("embed-worker")
    p.add_argument("preset")
    args = parser.parse_args()
    if args.command == "index-worker":
        print(json.dumps(index_worker(args.n, args.isotropic, args.nprobes)))
        return
    if args.command == "sweep-worker":
        print(json.dumps(sweep_worker(args.n, args.nprobes, args.rescores)))
        return
    if args.command == "embed-worker":
        print(json.dumps(embed_worker(args.preset)))
        return
    results = run_index(args) if args.command == "index" else run_embed(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
