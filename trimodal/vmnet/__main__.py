"""Command line of VM-NET::

    python -m trimodal.vmnet features --data PREPARED --split train \\
        --audio musicnn|clap|librosa|array --video r2plus1d|videomae|array --out FILE \\
        [--audio-source P] [--video-source P] [--audio-array F] [--video-array F] \\
        [--audio-key K] [--video-key K] [--batch-size 8] [--workers 0] [--device cpu] \\
        [--skip-missing] [--preset full|tiny] [--random-weights]
    python -m trimodal.vmnet train --config configs/vmnet.yaml --train FEATS --dev FEATS \\
        --output DIR [--test FEATS] [--device cuda] [--lr 1e-4 --epochs 50 ...]
    python -m trimodal.vmnet evaluate --model DIR --test FEATS --output DIR

Options of ``train`` that are not listed above are config overrides (``--key value``, any
:class:`~trimodal.vmnet.config.VMNetConfig` field).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trimodal.config import ConfigError

if TYPE_CHECKING:
    from trimodal.vmnet.extraction import ExtractionOptions


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trimodal vmnet",
        description=(
            "VM-NET (Hong et al. 2018, as re-examined by Prétet, Richard & Peeters): "
            "feature extraction, training and evaluation"
        ),
    )
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("features", help="extract the music and video features of a split")
    f.add_argument("--data", required=True, help="prepared dataset directory")
    f.add_argument("--split", required=True, help="train, dev or test")
    f.add_argument("--audio", required=True, help="audio extractor: musicnn, clap, librosa or array (precomputed)")  # fmt: skip
    f.add_argument("--video", required=True, help="video extractor: r2plus1d, videomae or array (precomputed)")  # fmt: skip
    f.add_argument("--out", required=True, help="output file (.npz or .safetensors)")
    f.add_argument("--audio-source", default=None, help="audio backbone weights")
    f.add_argument("--video-source", default=None, help="video backbone weights")
    f.add_argument("--audio-array", default=None, help="precomputed audio features (--audio array)")
    f.add_argument("--video-array", default=None, help="precomputed video features (--video array)")
    f.add_argument("--audio-key", default=None, help="array name in --audio-array")
    f.add_argument("--video-key", default=None, help="array name in --video-array")
    f.add_argument(
        "--preset",
        default="full",
        choices=("full", "tiny"),
        help="architecture of backbones run without weights, with --random-weights (default: full)",
    )
    f.add_argument("--random-weights", action="store_true", help="smoke tests: no weights needed")
    f.add_argument("--batch-size", type=int, default=8, help="clips per batch (default: 8)")
    f.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: 0)")
    f.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    f.add_argument("--skip-missing", action="store_true", help="skip clips without precomputed features")  # fmt: skip
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="train VM-NET on feature files")
    t.add_argument("--config", default=None, help="YAML config (default: the paper's settings)")
    t.add_argument("--train", required=True, help="training feature file")
    t.add_argument("--dev", required=True, help="dev feature file (checkpoint selection)")
    t.add_argument("--output", required=True, help="output directory")
    t.add_argument("--test", default=None, help="test feature file, evaluated with the best model")
    t.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="whole-set retrieval of a trained VM-NET")
    e.add_argument("--model", required=True, help="directory written by train")
    e.add_argument("--test", required=True, help="feature file")
    e.add_argument("--output", required=True, help="where results.json and results.md go")
    e.add_argument("--name", default="test", help="split name for the report (default: test)")
    e.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    e.add_argument("--batch-size", type=int, default=4096, help="embedding batch size (default: 4096)")  # fmt: skip
    return p


def extraction_options(args: argparse.Namespace) -> ExtractionOptions:
    """The typed options of the ``features`` command from its parsed arguments."""
    from trimodal.vmnet.extraction import ExtractionOptions
    from trimodal.vmnet.extractors import ExtractorSettings, ExtractorSpec

    specs = {
        modality: ExtractorSpec(
            name=getattr(args, modality),
            source=getattr(args, f"{modality}_source"),
            array=getattr(args, f"{modality}_array"),
            key=getattr(args, f"{modality}_key"),
        )
        for modality in ("audio", "video")
    }
    return ExtractionOptions(
        prepared=Path(args.data),
        split=args.split,
        audio=specs["audio"],
        video=specs["video"],
        settings=ExtractorSettings(
            preset=args.preset, random_weights=args.random_weights, device=args.device
        ),
        batch_size=args.batch_size,
        num_workers=args.workers,
        skip_missing=args.skip_missing,
        progress=not args.no_progress,
    )


def _print_summary(results: dict, ks: Sequence[int]) -> None:
    for level, table in results.items():
        for direction in ("music→video", "video→music", "chance"):
            m = table[direction]
            recalls = "  ".join(f"R@{k} {100 * m[f'R@{k}']:6.2f}" for k in ks)
            print(
                f"{level:>5} {direction:<12} {recalls}  median rank {m['median_rank']:g}  "
                f"(N = {m['num_queries']})"
            )


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
    from trimodal.vmnet.config import load_vmnet_config
    from trimodal.vmnet.features import load_features
    from trimodal.vmnet.training import train_vmnet

    config = load_vmnet_config(args.config, overrides)
    test = load_features(args.test) if args.test else None
    summary = train_vmnet(
        config,
        load_features(args.train),
        load_features(args.dev),
        args.output,
        test=test,
        device=args.device,
        progress=not args.no_progress,
    )
    dev = summary["best_dev"]["clip"]["music→video"]
    print(
        f"best dev music→video R@10 {100 * dev['R@10']:.2f} at epoch "
        f"{summary['best_epoch']} ({summary['epochs_run']} epochs"
        + (", stopped early)" if summary["stopped_early"] else ")")
    )
    print(f"model: {args.output}/model.safetensors, {args.output}/config.json")
    if summary["test"] is not None:
        _print_summary(summary["test"], config.eval_ks)
        print(f"results: {args.output}/results.json, {args.output}/results.md")


def _evaluate(args: argparse.Namespace) -> None:
    from trimodal.vmnet.evaluation import evaluate_vmnet
    from trimodal.vmnet.features import load_features
    from trimodal.vmnet.model import VMNet

    model = VMNet.from_pretrained(args.model).to(args.device)
    results = evaluate_vmnet(
        model,
        load_features(args.test),
        args.output,
        batch_size=args.batch_size,
        device=args.device,
        name=args.name,
    )
    _print_summary(results, model.config.eval_ks)
    print(f"results: {args.output}/results.json, {args.output}/results.md")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "features":
        from trimodal.vmnet.extractors import extractor_names

        for modality in ("audio", "video"):
            if getattr(args, modality) not in extractor_names(modality):
                names = ", ".join(extractor_names(modality))
                parser.error(f"--{modality} {getattr(args, modality)}: unknown extractor; choose one of {names}")  # fmt: skip
    try:
        if args.command == "features":
            from trimodal.vmnet.extraction import write_features

            write_features(extraction_options(args), args.out)
        elif args.command == "train":
            _train(args, rest)
        else:
            _evaluate(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
