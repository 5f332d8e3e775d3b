"""Training and evaluation of VM-NET on feature files.

Training (:func:`train_vmnet`) is a plain, seeded torch loop: Adam on the ``vmnet_triplet``
objective over shuffled batches of (music, video) pairs, the structure terms fed with the
(standardised) input features. The dev set is evaluated before training and every
``eval_every`` epochs; the checkpoint with the best dev music→video R@10 is kept (ties: lower
mean rank), and training stops after ``patience`` evaluations without improvement.

Evaluation (:func:`evaluate_vmnet`) embeds the **whole** split and ranks each query's partner
against every item of the other modality (:func:`trimodal.metrics.retrieval.retrieval_metrics`:
1-based, pessimistic ties), in both directions, with the chance row ``R@k = k/N`` (seed 003,
§V-B). At clip level every row is one query; at video level (only when some video has several
clips) each video's clip embeddings are averaged first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimodal.metrics.retrieval import cross_modal_retrieval
from trimodal.objectives import get_objective
from trimodal.utils import atomic_write_json, atomic_write_text, seed_everything
from trimodal.vmnet.config import VMNetConfig
from trimodal.vmnet.features import FeatureSet
from trimodal.vmnet.model import VMNet

logger = logging.getLogger(__name__)

DIRECTIONS = {"audio→video": "music→video", "video→audio": "video→music"}
SELECT_DIRECTION = "music→video"
SELECT_K = 10
LOG_FILE = "train_log.jsonl"


# ============================================================================ evaluation


@torch.no_grad()
def embed_features(
    model: VMNet, features: FeatureSet, batch_size: int = 4096, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of every row in eval mode: ``(music [N, D], video [N, D])`` on the CPU."""
    was_training = model.training
    model.eval()
    music, video = [], []
    for start in range(0, len(features), batch_size):
        stop = start + batch_size
        m = torch.from_numpy(features.audio[start:stop]).to(device)
        v = torch.from_numpy(features.video[start:stop]).to(device)
        music.append(model.encode_music(m).float().cpu())
        video.append(model.encode_video(v).float().cpu())
    model.train(was_training)
    return torch.cat(music), torch.cat(video)


def retrieval_results(
    music: torch.Tensor | np.ndarray,
    video: torch.Tensor | np.ndarray,
    video_ids: Sequence[str],
    ks: Sequence[int] = (1, 10, 25),
) -> dict[str, dict[str, dict[str, float]]]:
    """Music→video and video→music retrieval over the whole set, plus chance.

    Args:
        music, video: ``[N, D]`` embeddings; row i of each is clip i (its true partner).
        video_ids: ``[N]``; the video level is added when some video has several clips.
    Returns:
        ``{"clip": {"music→video": m, "video→music": m, "chance": m}, ["video": {...}]}`` with
        ``m`` as :func:`trimodal.metrics.retrieval.retrieval_metrics` returns (R@k fractions,
        mean/median rank, MRR, ``num_queries``, ``gallery_size``).
    """
    levels = ["clip"]
    if len(set(video_ids)) < len(video_ids):
        levels.append("video")
    raw = cross_modal_retrieval(
        {"audio": music, "video": video}, list(video_ids), levels=levels, ks=tuple(ks)
    )
    return {
        level: {DIRECTIONS.get(name, name): metrics for name, metrics in table.items()}
        for level, table in raw.items()
    }


def _selection_key(results: dict[str, Any]) -> tuple[float, float]:
    m = results["clip"][SELECT_DIRECTION]
    return (m[f"R@{SELECT_K}"], -m["mean_rank"])


def results_markdown(results: dict[str, Any], ks: Sequence[int], title: str) -> str:
    """Seed 003's table layout (percentages), one table per level, with median ranks."""
    lines = [f"# {title}", ""]
    for level, table in results.items():
        n = table["chance"]["num_queries"]
        lines += [f"## {level} level (N = {n}, whole set as gallery)", ""]
        head = ["", *(f"M→V R@{k}" for k in ks), "M→V median rank"]
        head += [*(f"V→M R@{k}" for k in ks), "V→M median rank"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        chance = table["chance"]
        for name, mv, vm in (
            ("Chance", chance, chance),
            ("VM-NET", table["music→video"], table["video→music"]),
        ):
            cells = [name]
            for metrics in (mv, vm):
                cells += [f"{100 * metrics[f'R@{k}']:.2f}" for k in ks]
                cells.append(f"{metrics['median_rank']:g}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("R@k in %; ranks are 1-based, ties counted against the model.")
    return "\n".join(lines) + "\n"


def evaluate_vmnet(
    model: VMNet,
    features: FeatureSet,
    output_dir: str | Path | None = None,
    *,
    ks: Sequence[int] | None = None,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    name: str = "test",
) -> dict[str, Any]:
    """Retrieval results of ``model`` on the whole of ``features``; with ``output_dir`` also
    writes ``results.json`` and ``results.md`` there.

    Raises:
        ValueError: the feature sizes do not match the model's inputs.
    """
    _check_dims(model.config, features, name)
    ks = tuple(ks or model.config.eval_ks)
    music, video = embed_features(model, features, batch_size, device)
    results = retrieval_results(music, video, features.video_ids, ks)
    if output_dir is not None:
        output_dir = Path(output_dir)
        payload = {
            "split": name,
            "num_clips": len(features),
            "num_videos": len(set(features.video_ids)),
            "ks": list(ks),
            "features": features.metadata,
            "results": results,
        }
        atomic_write_json(output_dir / "results.json", payload)
        atomic_write_text(
            output_dir / "results.md", results_markdown(results, ks, f"VM-NET retrieval ({name})")
        )
    return results


# ============================================================================ training


def _check_dims(config: VMNetConfig, features: FeatureSet, name: str) -> None:
    for modality, want, got in (
        ("music (audio)", config.music_input_dim, features.audio_dim),
        ("video", config.video_input_dim, features.video_dim),
    ):
        if want is not None and want != got:
            raise ValueError(
                f"{name} features have {modality} size {got} but the model takes {want} "
                "(extract every split with the same extractors)"
            )


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing batch of one row is dropped (batch norm and the
    ranking terms need two), a different row each epoch."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and batches[-1].numel() < 2:
        batches.pop()
    return batches


def train_vmnet(
    config: VMNetConfig,
    train: FeatureSet,
    dev: FeatureSet,
    output_dir: str | Path,
    *,
    test: FeatureSet | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train VM-NET, keep the best dev checkpoint in ``output_dir``, optionally test it.

    Writes to ``output_dir``: ``model.safetensors`` + ``config.json`` (the best checkpoint;
    ``config.json`` also records the epoch, dev results and feature metadata),
    ``train_log.jsonl`` (one line per epoch: losses, dev metrics), ``dev_results.json`` and,
    with ``test``, ``results.json`` + ``results.md``.

    Returns:
        ``{"best_epoch", "best_dev", "epochs_run", "stopped_early", "test" (or None),
        "untrained_dev"}``.
    """
    if len(train) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(train)}")
    # A copy with the input sizes filled in from the training features.
    config = dataclasses.replace(
        config,
        music_input_dim=config.music_input_dim or train.audio_dim,
        video_input_dim=config.video_input_dim or train.video_dim,
    )
    for name, split in (("train", train), ("dev", dev), ("test", test)):
        if split is not None:
            _check_dims(config, split, name)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    seed_everything(config.seed)
    model = VMNet(config)
    if config.standardize:
        model.set_standardization(torch.from_numpy(train.audio), torch.from_numpy(train.video))
    model.to(device)
    objective = get_objective("vmnet_triplet", **config.objective_options())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    music_all = torch.from_numpy(train.audio).to(device)
    video_all = torch.from_numpy(train.video).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    ks = tuple(config.eval_ks)
    extra = {"features": {"train": train.metadata, "dev": dev.metadata}}

    def dev_eval() -> dict[str, Any]:
        music, video = embed_features(model, dev, device=device)
        return retrieval_results(music, video, dev.video_ids, ks)

    log_path = output_dir / LOG_FILE
    log_path.write_text("")
    untrained = dev_eval()
    best_key, best_epoch, best_dev = _selection_key(untrained), 0, untrained
    model.save(output_dir, {**extra, "epoch": 0, "dev": untrained})
    _append_log(log_path, {"epoch": 0, "dev": _short(untrained, ks)})
    stale, stopped_early, epoch = 0, False, 0

    from tqdm.auto import tqdm

    bar = tqdm(range(1, config.epochs + 1), desc="vmnet", unit="epoch", disable=not progress)
    started = time.monotonic()
    for epoch in bar:
        model.train()
        sums: dict[str, float] = {}
        batches = _batches(len(train), config.batch_size, generator)
        for index in batches:
            index = index.to(device)
            music, video = music_all[index], video_all[index]
            out = objective(
                model(music, video),
                features={
                    "audio": model.standardized("music", music),
                    "video": model.standardized("video", video),
                },
            )
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
        record: dict[str, Any] = {
            "epoch": epoch,
            **{k: v / len(batches) for k, v in sums.items()},
        }
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"VM-NET loss is {record['loss']} at epoch {epoch}")
        postfix = {"loss": f"{record['loss']:.4f}"}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            dev_results = dev_eval()
            record["dev"] = _short(dev_results, ks)
            key = _selection_key(dev_results)
            if key > best_key:
                best_key, best_epoch, best_dev, stale = key, epoch, dev_results, 0
                model.save(output_dir, {**extra, "epoch": epoch, "dev": dev_results})
            else:
                stale += 1
            postfix["dev M→V R@10"] = f"{dev_results['clip'][SELECT_DIRECTION]['R@10']:.4f}"
            postfix["best"] = f"{best_key[0]:.4f}@{best_epoch}"
        _append_log(log_path, record)
        bar.set_postfix(postfix)
        if config.patience is not None and stale >= config.patience:
            stopped_early = True
            break
    bar.close()
    logger.info(
        "VM-NET: %d epochs in %.1f s, best dev music→video R@10 %.4f at epoch %d",
        epoch,
        time.monotonic() - started,
        best_key[0],
        best_epoch,
    )
    atomic_write_json(
        output_dir / "dev_results.json",
        {"best_epoch": best_epoch, "results": best_dev, "untrained": untrained},
    )
    test_results = None
    if test is not None:
        best = VMNet.load(output_dir, map_location=device)
        test_results = evaluate_vmnet(best, test, output_dir, device=device)
    return {
        "best_epoch": best_epoch,
        "best_dev": best_dev,
        "epochs_run": epoch,
        "stopped_early": stopped_early,
        "untrained_dev": untrained,
        "test": test_results,
    }


def _short(results: dict[str, Any], ks: Sequence[int]) -> dict[str, float]:
    """Clip-level R@k and median ranks, both directions, for the log."""
    out = {}
    for direction in ("music→video", "video→music"):
        m = results["clip"][direction]
        out.update({f"{direction}/R@{k}": m[f"R@{k}"] for k in ks})
        out[f"{direction}/median_rank"] = m["median_rank"]
    return out


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


__all__ = [
    "embed_features",
    "evaluate_vmnet",
    "results_markdown",
    "retrieval_results",
    "train_vmnet",
]
