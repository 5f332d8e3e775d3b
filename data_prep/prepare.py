"""``prepare``: a raw corpus → model-ready clips, one Hugging Face dataset per split.

::

    python -m data_prep prepare --corpus CORPUS --out PREPARED [--config YAML] [--workers N]
        [--clip-seconds 8] [--scheme clips|segments] [--seed 0] [--decoder auto|pyav|decord]
        [--executor local|ray] [--ray-address ADDR] [--keep-work] [--force]

For every usable video of ``CORPUS/videos.jsonl`` (:mod:`trimodal.prepare.corpus`):

1. **split**: the record's ``split``, else by hash of the id or by age (``DataConfig``;
   :func:`trimodal.prepare.splits.age_split`, the rule ``yt8m-filter`` uses: a dated video
   outside every age range is skipped as ``too_recent``, ``too_old`` or
   ``age_between_splits``);
2. **clips**: consecutive ``clip_seconds`` clips (train videos keep a sampled share of them,
   the study's sparse scheme; the clips saved are exactly the sampled ones and ``start_s ==
   clip_index * clip_seconds``), or the dual-encoder scheme's random segments;
3. **arrays per clip**: mono int16 waveforms (``audio_48k``, ``audio_16k``, full scale 32767) and
   ``num_frames`` uniformly spaced frames per size (``frames_224``, ``frames_112``:
   ``[T, 3, S, S]`` with a crop margin, ``S = round(size * frame_margin)``), the text
   candidates (labels then tags, multi-word names kept), label ids, title;
4. the clips are written to a per-video Arrow shard in ``PREPARED/.work/`` (atomic rename),
   then the split directories are assembled in video-id order (``PREPARED/train``, ``dev``,
   ``test``: the Arrow files and a ``split.json`` listing them, opened memory-mapped with
   ``datasets.Dataset.from_file``), with ``summary.json`` and ``skipped.jsonl`` beside
   them. A split's files are the videos' shards themselves (hard links: nothing is written
   twice), up to 10,000 videos, else copies of their record batches in files of about
   500 MB.

Decoding (:mod:`trimodal.media`): PyAV probes every file (durations from timestamps, the
display rotation) and reads the audio; the frames are read by ``--decoder``: ``auto`` (the
default: decord where it is installed, PyAV for each file decord cannot read), ``pyav`` or
``decord``. It runs in worker processes forked from a ``forkserver`` that has imported the
decoding libraries once (the workers import neither torch nor ``datasets``): a file that
crashes the decoder kills a worker, not the run (the crashed video is retried alone and
then skipped). With ``--executor ray`` the videos are decoded by Ray tasks on a cluster
instead (the output directory on storage every node sees; docs/cluster.md), with the same
retries and the same output. Every video that cannot be
used — malformed record, unsafe id, unknown label, missing/empty/truncated/unreadable media,
no audio or video stream, shorter than one clip, outside every age range — is listed in
``skipped.jsonl`` with its reason and counted in the summary.

The work is done by :func:`trimodal.prepare.prepare` (this module is its command line).
A re-run reuses the finished shards of the same videos under the same settings (the shard
name carries a key of everything that determines its content, the media files' size and
modification time included), so a killed run resumes without redoing finished videos and
produces the same datasets as an uninterrupted run, while a media file replaced under the
same name is decoded again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from data_prep.__main__ import positive_int

DESCRIPTION = """\
Turn a raw corpus (CORPUS/videos.jsonl and the media files) into model-ready clips: one
dataset per split (OUT/train, OUT/dev, OUT/test), with OUT/summary.json (counts) and
OUT/skipped.jsonl (every video that could not be used, with its reason).

  trimodal prepare --corpus data/corpus --out data/prepared [--config configs/demo_data.yaml]

Settings come from a YAML file's data: section (--config; keys of DataConfig, listed by
`trimodal train --help`), then the options below. A video that cannot be decoded is skipped
and recorded, never stops the run; a killed run, started again, resumes where it stopped.
"""


def _cmd_prepare(args: argparse.Namespace) -> int:
    from trimodal.config import ConfigError
    from trimodal.prepare import CorpusError, PrepareError, load_data_config, prepare

    try:
        config = load_data_config(args.config)
    except (PrepareError, ConfigError) as err:
        print(f"error: --config: {err}", file=sys.stderr)
        return 2
    if not Path(args.corpus, "videos.jsonl").is_file():
        print(f"error: --corpus: {args.corpus} has no videos.jsonl (write one with `trimodal synthetic` or the yt8m-* steps)", file=sys.stderr)  # fmt: skip
        return 2
    overrides = {
        "clip_seconds": args.clip_seconds,
        "scheme": args.scheme,
        "seed": args.seed,
        "split_by": args.split_by,
        "frame_dtype": args.frame_dtype,
        "decoder": args.decoder,
        "prepare_executor": args.executor,
        "ray_address": args.ray_address,
    }
    if args.dense_train:
        overrides["sparse_train"] = False
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    try:
        summary = prepare(
            args.corpus,
            args.out,
            config,
            workers=args.workers,
            keep_work=args.keep_work,
            force=args.force,
            show_progress=not args.no_progress,
        )
    except (PrepareError, CorpusError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("splits", "videos_prepared", "videos_skipped", "skipped_by_reason")
            }
        )
    )
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="raw corpus directory (videos.jsonl + media)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="YAML with a data: section, or DataConfig keys at the top (default: DataConfig's defaults)")  # fmt: skip
    p.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: data.prepare_workers, 2)")  # fmt: skip
    p.add_argument("--clip-seconds", type=float, default=None, help="clip length in seconds (default: data.clip_seconds, 8)")  # fmt: skip
    p.add_argument("--scheme", choices=["clips", "segments"], default=None, help="consecutive clips, or the dual-encoder study's random segments (default: clips)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="seed of the clip sampling (default: data.seed, 0)")  # fmt: skip
    p.add_argument("--split-by", choices=["hash", "age"], default=None, help="videos without a split: by a hash of the id or by age (default: hash)")  # fmt: skip
    p.add_argument("--frame-dtype", choices=["uint8", "float16"], default=None, help="stored frames (default: uint8, exact)")  # fmt: skip
    p.add_argument("--decoder", choices=["auto", "pyav", "decord"], default=None, help="backend that reads the frames: decord where installed with PyAV for what it cannot read, or one alone (default: data.decoder, auto)")  # fmt: skip
    p.add_argument("--executor", choices=["local", "ray"], default=None, help="where the videos are decoded: a local process pool, or Ray tasks on a cluster (pip install 'trimodal[ray]'; docs/cluster.md) (default: data.prepare_executor, local)")  # fmt: skip
    p.add_argument("--ray-address", default=None, help="with --executor ray: the cluster to join (auto, or ray://HOST:10001); default: start a local Ray with --workers CPUs")  # fmt: skip
    p.add_argument("--dense-train", action="store_true", help="keep every train clip (default: the study's sampled share)")  # fmt: skip
    p.add_argument("--keep-work", action="store_true", help="keep the per-video intermediate files")  # fmt: skip
    p.add_argument("--force", action="store_true", help="prepare again even if already prepared")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` command to ``python -m data_prep``."""
    p = subparsers.add_parser(
        "prepare",
        help="turn a raw corpus into model-ready clip datasets (one per split)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    """``python -m data_prep.prepare ...``: the same as ``python -m data_prep prepare ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.prepare",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
