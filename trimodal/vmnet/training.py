"""Training of VM-NET on feature files, from the project's shared training pieces.

:func:`train_vmnet` runs seeded epochs of Adam on the ``vmnet_triplet`` objective over
shuffled batches of (music, video) pairs, the structure terms fed with the (standardised)
input features. The dev set is evaluated before training and every ``eval_every`` epochs; the
checkpoint with the best dev music→video R@10 is kept (ties: lower mean rank), and training
stops after ``patience`` evaluations without improvement.

Why a short loop rather than a :class:`~trimodal.training.Trainer` subclass: the Trainer is
built around prepared *clip* datasets — it opens ``PreparedClips`` from ``data.prepared_dir``,
batches with one clip per video, caches frozen backbones' outputs, accumulates gradients in
Accelerate windows and validates a few times per epoch — while VM-NET trains on two in-memory
feature matrices with a fresh permutation per epoch, needs the inputs in its loss (the
structure terms; ``Trainer._loss`` passes embeddings and logit scale only) and evaluates once
before training and then per epoch. Taking feature batches would mean rewriting the Trainer's
constructor and loop. What the two share is shared code: the parameter groups and the
learning-rate schedule (:mod:`trimodal.training.optim`), the objective registry, the
best-checkpoint rule (:class:`~trimodal.training.selection.BestSelection`), the
``metrics.jsonl`` log (the Trainer's :class:`~trimodal.training.trainer.JSONLTracker`),
``save_pretrained``, the resolved config as ``config.yaml`` (:func:`trimodal.config.save_config`),
atomic writes and the embedding and retrieval path (:mod:`trimodal.vmnet.evaluation`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from trimodal.config import save_config
from trimodal.objectives import get_objective
from trimodal.training.optim import build_scheduler, parameter_groups
from trimodal.training.selection import BestSelection
from trimodal.training.trainer import JSONLTracker
from trimodal.utils import atomic_write_json, seed_everything
from trimodal.vmnet.config import VMNetConfig
from trimodal.vmnet.evaluation import (
    check_feature_sizes,
    embed_features,
    evaluate_vmnet,
    retrieval_results,
)
from trimodal.vmnet.features import FeatureSet
from trimodal.vmnet.model import VMNet, build_vmnet

logger = logging.getLogger(__name__)

SELECT_DIRECTION = "music→video"
SELECT_K = 10
DEV_RESULTS_FILE = "dev_results.json"


def selection_key(results: dict[str, Any]) -> tuple[float, float]:
    """What the best checkpoint maximises: ``(clip music→video R@10, −mean rank)``."""
    m = results["clip"][SELECT_DIRECTION]
    return (m[f"R@{SELECT_K}"], -m["mean_rank"])


def dev_log_values(results: dict[str, Any], ks: tuple[int, ...]) -> dict[str, float]:
    """Clip-level R@k and median ranks of both directions, as ``dev/clip/<direction>/<name>``
    (the Trainer's naming of validation metrics)."""
    out = {}
    for direction in ("music→video", "video→music"):
        m = results["clip"][direction]
        for name in [f"R@{k}" for k in ks] + ["median_rank"]:
            out[f"dev/clip/{direction}/{name}"] = m[name]
    return out


def batches_per_epoch(n: int, batch_size: int) -> int:
    """How many batches :func:`shuffled_batches` gives for ``n`` rows."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or full == 0 else 0)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of one epoch; a trailing batch of one row is dropped (batch norm and the
    ranking terms need two), a different row each epoch."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and batches[-1].numel() < 2:
        batches.pop()
    return batches


def save_model_atomically(model: VMNet, directory: Path) -> None:
    """``save_pretrained`` into a temporary folder, then each file renamed into ``directory``:
    a crash while saving leaves the previous checkpoint's files, never a partial one."""
    with tempfile.TemporaryDirectory(prefix=".save.", dir=directory) as tmp:
        model.save_pretrained(tmp)
        for path in Path(tmp).iterdir():
            os.replace(path, directory / path.name)


class _TrainingRun:
    """The state of one :func:`train_vmnet` call: model, optimiser, log and selection."""

    def __init__(
        self, model: VMNet, config: VMNetConfig, train: FeatureSet, dev: FeatureSet, output: Path
    ) -> None:
        self.model, self.config, self.dev, self.output = model, config, dev, output
        device = next(model.parameters()).device
        self.objective = get_objective("vmnet_triplet", **config.objective_options())
        self.optimizer = torch.optim.Adam(
            parameter_groups(model, config.weight_decay), lr=config.lr
        )
        self.music = torch.from_numpy(train.audio).to(device)
        self.video = torch.from_numpy(train.video).to(device)
        self.generator = torch.Generator().manual_seed(config.seed)
        # A constant rate (VM-NET's fixed-rate Adam), from the shared schedule builder: a
        # warm-up or decay would be an argument here, not new code.
        steps = batches_per_epoch(len(train), config.batch_size) * config.epochs
        self.scheduler = build_scheduler(self.optimizer, steps, 0.0, schedule="constant")
        (output / "metrics.jsonl").unlink(missing_ok=True)  # one run's log, not appended
        self.tracker = JSONLTracker("vmnet", output)
        self.selection = BestSelection(mode="max", patience=config.patience)
        self.features = {"train": train.metadata, "dev": dev.metadata}
        self.untrained: dict[str, Any] = {}
        self.best_dev: dict[str, Any] = {}

    def train_epoch(self) -> dict[str, float]:
        """One pass over shuffled batches; the mean of each loss term over the batches."""
        self.model.train()
        sums: dict[str, float] = {}
        batches = shuffled_batches(len(self.music), self.config.batch_size, self.generator)
        for index in batches:
            index = index.to(self.music.device)
            music, video = self.music[index], self.video[index]
            out = self.objective(
                self.model(music, video).embeddings,
                features={
                    "audio": self.model.standardized("music", music),
                    "video": self.model.standardized("video", video),
                },
            )
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            self.optimizer.step()
            self.scheduler.step()
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
        return {key: value / len(batches) for key, value in sums.items()}

    def validate(self, epoch: int) -> dict[str, Any]:
        """Dev retrieval at ``epoch``; the model and ``dev_results.json`` are saved when it is
        the best so far."""
        device = next(self.model.parameters()).device
        music, video = embed_features(self.model, self.dev, device=device)
        results = retrieval_results(music, video, self.dev.video_ids, tuple(self.config.eval_ks))
        if epoch == 0:
            self.untrained = results
        if self.selection.update(selection_key(results), epoch):
            self.best_dev = results
            save_model_atomically(self.model, self.output)
            atomic_write_json(
                self.output / DEV_RESULTS_FILE,
                {
                    "best_epoch": epoch,
                    "results": results,
                    "untrained": self.untrained,
                    "features": self.features,
                },
            )
        return results

    def log(self, epoch: int, train_terms: dict[str, float], dev: dict[str, Any] | None) -> None:
        values: dict[str, Any] = {"epoch": epoch}
        values.update({f"train/{key}": value for key, value in train_terms.items()})
        if dev is not None:
            values.update(dev_log_values(dev, tuple(self.config.eval_ks)))
        self.tracker.log(values, step=epoch)

    def fit(self, progress: bool) -> dict[str, Any]:
        """Evaluate the untrained model, then train until ``epochs`` or patience runs out."""
        from tqdm.auto import tqdm

        cfg = self.config
        self.log(0, {}, self.validate(0))
        epoch, started = 0, time.monotonic()
        bar = tqdm(range(1, cfg.epochs + 1), desc="vmnet", unit="epoch", disable=not progress)
        for epoch in bar:
            terms = self.train_epoch()
            if not math.isfinite(terms["loss"]):
                raise FloatingPointError(f"VM-NET loss is {terms['loss']} at epoch {epoch}")
            postfix = {"loss": f"{terms['loss']:.4f}"}
            dev = None
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                dev = self.validate(epoch)
                postfix["dev M→V R@10"] = f"{dev['clip'][SELECT_DIRECTION]['R@10']:.4f}"
                best_r10 = self.selection.best_value[0]
                postfix["best"] = f"{best_r10:.4f}@{self.selection.best_step}"
            self.log(epoch, terms, dev)
            bar.set_postfix(postfix)
            if self.selection.exhausted:
                break
        bar.close()
        logger.info(
            "VM-NET: %d epochs in %.1f s, best dev music→video R@10 %.4f at epoch %d",
            epoch,
            time.monotonic() - started,
            self.selection.best_value[0],
            self.selection.best_step,
        )
        return {
            "best_epoch": self.selection.best_step,
            "best_dev": self.best_dev,
            "epochs_run": epoch,
            "stopped_early": self.selection.exhausted,
            "untrained_dev": self.untrained,
        }


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

    Writes to ``output_dir``: ``model.safetensors`` + ``config.json`` (the best checkpoint,
    ``save_pretrained``), ``config.yaml`` (the resolved run config), ``metrics.jsonl`` (one
    line per epoch: ``train/<loss term>`` means, ``dev/clip/<direction>/<metric>``),
    ``dev_results.json`` (best epoch, its dev results, the untrained model's, the features'
    metadata) and, with ``test``, ``results.json`` + ``results.md``.

    Returns:
        ``{"best_epoch", "best_dev", "epochs_run", "stopped_early", "untrained_dev", "test"
        (or None)}``.
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
            check_feature_sizes(config, split, name)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")

    seed_everything(config.seed)
    model = build_vmnet(config)
    if config.standardize:
        model.set_standardization(torch.from_numpy(train.audio), torch.from_numpy(train.video))
    model.to(device)
    summary = _TrainingRun(model, config, train, dev, output_dir).fit(progress)
    summary["test"] = None
    if test is not None:
        best = VMNet.from_pretrained(output_dir).to(device)
        summary["test"] = evaluate_vmnet(best, test, output_dir, device=device)
    return summary


__all__ = ["batches_per_epoch", "selection_key", "shuffled_batches", "train_vmnet"]
