"""Decode-only throughput of each backend, and ``prepare``'s throughput next to it.

::

    python benchmarks/bench_decode.py [--videos 4] [--seconds 24] [--size 640x360]
        [--codecs h264,av1] [--decoders pyav,decord] [--workers 2] [--repeat 2]
        [--cache DIR] [--json bench_decode.json]

It builds a synthetic corpus at ``--size`` (H.264 + AAC MP4; ``--cache`` keeps it) and an
AV1 copy of it (the same pictures re-encoded with SVT-AV1, the audio copied), then for each
codec and each backend measures, with the same number of processes:

- **decode-only**: :func:`trimodal.media.open_media` reads exactly what ``prepare`` needs
  and nothing else, with the calls ``prepare`` makes: per clip, the ``num_frames`` frames
  at the largest stored side (256 by default) and the clip's audio at every rate (48 and
  16 kHz);
- **prepare**: the full ``prepare`` call (probe, decode, crop, resize, write shards,
  assemble the split datasets) with the same ``decoder``, every clip kept (no sparse
  sampling) so both do the same clips.

decord cannot read AV1: with ``decord`` on AV1 every file is refused, and the row says so
(``auto`` reads those files with PyAV). Each measurement runs in a fresh Python process,
timed from just before the work (both count their worker start-up, ``prepare`` also its
``datasets`` import); decode-only and prepare alternate ``--repeat`` times and the median
ratio prepare/decode-only is printed (target: >= 0.50) and written as JSON.
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic_media import add_media_options, synthetic_corpus  # noqa: E402

from trimodal.config import DataConfig  # noqa: E402
from trimodal.data.schema import audio_samples, stored_side  # noqa: E402
from trimodal.media import MediaError, open_media  # noqa: E402
from trimodal.prepare import prepare  # noqa: E402
from trimodal.prepare.corpus import read_corpus, write_corpus  # noqa: E402
from trimodal.prepare.splits import clip_plan  # noqa: E402


def decode_only(media: str, audio: str, config: DataConfig) -> int:
    """Read what ``prepare`` needs from one file; return the number of clips (0: refused)."""
    side = max(stored_side(s, config.frame_margin) for s in config.frame_sizes)
    try:
        m = open_media(media, audio, config.audio_rates, config.decoder)
    except MediaError:
        return 0
    with m:
        plan = clip_plan("bench", m.info.duration_s, 1.0, config)
        for start in plan.starts:
            times = start + (np.arange(config.num_frames) + 0.5) * plan.length / config.num_frames
            m.frames_at(times, side)
            for rate in config.audio_rates:
                m.audio_at(rate, audio_samples(start, rate), audio_samples(plan.length, rate))
    return len(plan.starts)


def _config(decoder: str) -> DataConfig:
    return DataConfig(clip_seconds=8.0, sparse_train=False, decoder=decoder)


def _measure(kind: str, corpus: Path, workers: int, decoder: str, out: Path) -> dict:
    """One timed measurement (run in a fresh process by :func:`_run_measure`)."""
    config = _config(decoder)
    if kind == "prepare":
        t = time.perf_counter()
        summary = prepare(corpus, out, config, workers=workers, show_progress=False)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "clips": sum(s["clips"] for s in summary["splits"].values())}
    records = read_corpus(corpus)
    media = [str(r.media_path(corpus)) for r in records]
    audio = [str(r.audio_path(corpus)) for r in records]
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        clips = sum(pool.map(decode_only, media, audio, [config] * len(media)))
    return {"seconds": time.perf_counter() - t, "clips": clips}


def _run_measure(kind: str, corpus: Path, workers: int, decoder: str, tmp: Path) -> dict:
    out = tmp / f"prepared_{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", kind]
    cmd += ["--_corpus", str(corpus), "--workers", str(workers), "--_decoder", decoder]
    cmd += ["--_out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{proc.stdout}\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _to_av1(src: Path, dst: Path) -> None:
    """Re-encode the pictures of ``src`` with SVT-AV1 into ``dst`` and copy its audio."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        vout = out.add_stream("libsvtav1", rate=vin.average_rate, options={"preset": "10"})
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        aout = out.add_stream_from_template(ain)
        for packet in inp.demux(vin, ain):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                out.mux(vout.encode(frame))
        out.mux(vout.encode())


def _corpora(args: argparse.Namespace, tmp: Path) -> dict[str, Path]:
    """{"h264": corpus, "av1": its AV1 copy} (built once with ``--cache``)."""
    h264 = synthetic_corpus(args, tmp)
    av1 = h264.with_name(f"{h264.name}_av1")
    if "av1" in args.codecs and not (av1 / "videos.jsonl").is_file():
        records = read_corpus(h264)
        (av1 / "media").mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        for r in records:
            _to_av1(r.media_path(h264), av1 / r.media)
        write_corpus(av1, records)
        print(f"AV1 copy of {h264.name}: {time.perf_counter() - t:.1f} s")
    return {"h264": h264, "av1": av1}


def _bench(codec: str, decoder: str, corpus: Path, args: argparse.Namespace, tmp: Path) -> dict:
    pairs = []
    for _ in range(args.repeat):
        # Alternate the two (load on a shared machine drifts): compare within a pair.
        d = _run_measure("decode", corpus, args.workers, decoder, tmp)
        if d["clips"] == 0:
            print(f"[{codec} / {decoder}] the backend refuses every file")
            return {"codec": codec, "decoder": decoder, "readable": False}
        p = _run_measure("prepare", corpus, args.workers, decoder, tmp)
        pairs.append((d, p))
    d_rates = [d["clips"] / d["seconds"] for d, _ in pairs]
    p_rates = [p["clips"] / p["seconds"] for _, p in pairs]
    ratios = [p / d for d, p in zip(d_rates, p_rates)]
    result = {
        "codec": codec,
        "decoder": decoder,
        "readable": True,
        "clips": pairs[0][1]["clips"],
        "decode_only_clips_per_s": [round(r, 2) for r in d_rates],
        "prepare_clips_per_s": [round(r, 2) for r in p_rates],
        "ratios": [round(r, 3) for r in ratios],
        "ratio": round(statistics.median(ratios), 3),
    }
    print(
        f"[{codec} / {decoder}] {result['clips']} clips: decode-only "
        f"{result['decode_only_clips_per_s']} clips/s, prepare {result['prepare_clips_per_s']}"
        f" clips/s, ratio {result['ratio']:.2f} (runs {result['ratios']}; target >= 0.50)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_media_options(parser, videos=4, size="640x360")
    parser.add_argument("--codecs", default="h264,av1")
    parser.add_argument("--decoders", default="pyav,decord")
    parser.add_argument("--repeat", type=int, default=2, help="decode-only/prepare pairs")
    parser.add_argument("--json", default="bench_decode.json", help="where to write results")
    parser.add_argument("--_measure", choices=["decode", "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("--_corpus", help=argparse.SUPPRESS)
    parser.add_argument("--_decoder", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._measure:
        result = _measure(
            args._measure, Path(args._corpus), args.workers, args._decoder, Path(args._out)
        )
        print(json.dumps(result))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    try:
        corpora = _corpora(args, tmp)
        runs = [
            _bench(codec, decoder, corpora[codec], args, tmp)
            for codec in args.codecs.split(",")
            for decoder in args.decoders.split(",")
        ]
        result = {
            "runs": runs,
            "media": f"{args.videos} synthetic {args.seconds:g}-s videos at {args.size}",
            "workers": args.workers,
            "repeat": args.repeat,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
