"""The training loop: Accelerate's canonical shape, with exact resume and large batches.

Read top to bottom: :class:`Trainer` builds the model, data, objective, optimiser and
scheduler from an :class:`~trimodal.config.ExperimentConfig`, hands all but the scheduler to
``accelerator.prepare`` (the loop steps the scheduler, once per optimiser step), then
:meth:`Trainer.fit` runs epochs of accumulated optimiser steps, validates on the dev split a
few times per epoch, saves the best and last models with ``save_pretrained`` and the full
training state with ``accelerator.save_state``.

What the research code got wrong and this loop does instead (docs/defects.md):

- the loss is divided by the accumulation count (``accelerator.backward`` does it) and the
  gradient is clipped once per optimiser step, not per micro-batch
  (docs/defects.md#gradient-accumulation-and-clipping);
- the scheduler steps with the optimiser, and nothing steps on stale gradients
  (docs/defects.md#scheduler-and-stale-steps);
- the best checkpoint is chosen on a retrieval metric, not the mean positive distance
  (docs/defects.md#checkpoint-selection).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.tracking import GeneralTracker
from accelerate.utils import ProjectConfiguration
from tqdm.auto import tqdm

from trimodal.config import ExperimentConfig, save_config, to_dict
from trimodal.data import PreparedClips, VideoBatchSampler, collate_clips
from trimodal.embedding import SplitEmbeddings, embed_batches
from trimodal.embedding import data_options as model_data_options
from trimodal.metrics.retrieval import cross_modal_retrieval
from trimodal.modalities import pairs_among
from trimodal.modeling import TrimodalModel, build_model
from trimodal.objectives import get_objective, objective_class
from trimodal.training.feature_cache import FeatureCache
from trimodal.training.grad_cache import grad_cache_step
from trimodal.training.optim import build_optimizer, build_scheduler
from trimodal.training.records import (
    data_summary,
    environment_record,
    flat_config,
    tracker_values,
)
from trimodal.training.speed import (
    StepTimer,
    apply_speed_settings,
    data_wait_advice,
    loader_options,
    local_process_count,
    release_workers,
)
from trimodal.utils import atomic_write_json, seed_everything

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimiser steps had a non-finite loss or gradient."""


class JSONLTracker(GeneralTracker):
    """An Accelerate tracker that appends ``{"step": ..., metrics...}`` lines to a file."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        pass  # the resolved config is saved as config.yaml, the run's record as run.json

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")


class _Indexed(torch.utils.data.Dataset):
    """Adds each item's dataset index (the feature cache's row) to the item."""

    def __init__(self, dataset: PreparedClips):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        item = self.dataset[key]
        item["index"] = int(key[1] if isinstance(key, tuple) else key)
        return item


class TrainerState:
    """Loop position and bookkeeping, saved and restored with ``accelerator.save_state``."""

    def __init__(self) -> None:
        self.epoch = 0
        self.batches_done = 0  # batches of `epoch` already consumed
        self.global_step = 0  # optimiser steps (windows), skipped ones included
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.nonfinite_in_a_row = 0
        self.validations_since_best = 0

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Trainer:
    """Trains a :class:`TrimodalModel` on a prepared dataset (see the module docstring).

    Args:
        config: the experiment.
        model: a model to train instead of building one from ``config.model``.
        accelerator: an Accelerator to use instead of creating one; on several processes it
            must split batches (``DataLoaderConfiguration(split_batches=True)``).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        model: TrimodalModel | None = None,
        accelerator: Accelerator | None = None,
    ):
        self.config = config
        train_cfg = config.train
        self.output_dir = Path(train_cfg.output_dir)
        if not config.data.prepared_dir:
            raise ValueError("data.prepared_dir is not set (give --data PREPARED_DIR)")
        self.accelerator = accelerator or self._build_accelerator()
        if self.accelerator.num_processes > 1 and not self.accelerator.split_batches:
            raise ValueError(
                "the Trainer shards global batches (one clip per video across all processes): "
                "give it an Accelerator with DataLoaderConfiguration(split_batches=True)"
            )
        seed_everything(train_cfg.seed)
        self.model = model if model is not None else build_model(config.model)
        # Before `prepare`: compiling in place keeps the module (and its DDP wrapper) as is.
        self.speed = apply_speed_settings(self.model, train_cfg, self.accelerator.device)
        self.timer = StepTimer()
        self.objective = get_objective(config.objective, **self._objective_options())
        self.state = TrainerState()

        train_loader, dev_loader = self._build_loaders()
        self._build_optimisation(len(train_loader))

        # The scheduler is not prepared: Accelerate's wrapper would step it once per process
        # per call. The loop steps it, once per optimiser step (`_optimizer_step`), and it is
        # checkpointed beside the loop state so a resumed run continues the same schedule.
        (self.model, self.optimizer, self.train_loader, self.dev_loader) = self.accelerator.prepare(
            self.model, self.optimizer, train_loader, dev_loader
        )
        self.accelerator.register_for_checkpointing(self.state)
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.feature_cache = self._feature_cache(
            "train", self.train_set, views=train_cfg.feature_cache_views
        )
        # Validation is deterministic, so frozen channels' dev features are computed once.
        self.dev_feature_cache = self._feature_cache("dev", self.dev_set, views=1)

    # ------------------------------------------------------------------ setup helpers

    def _build_accelerator(self) -> Accelerator:
        """The run's Accelerator. ``train.mixed_precision`` unset leaves the precision to the
        launcher (``accelerate launch --mixed_precision``, ``accelerate config``: both set
        ``ACCELERATE_MIXED_PRECISION``); a value in the config wins, and says so."""
        train_cfg = self.config.train
        precision = train_cfg.mixed_precision
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
        if precision is not None and launcher is not None and launcher != precision:
            logger.warning(
                "train.mixed_precision=%r overrides the launcher's mixed precision %r "
                "(ACCELERATE_MIXED_PRECISION)",
                precision,
                launcher,
            )
        elif precision is not None:
            logger.info("mixed precision %r from train.mixed_precision", precision)
        return Accelerator(
            gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
            mixed_precision=precision,
            log_with=self._trackers(),
            project_config=ProjectConfiguration(project_dir=str(self.output_dir)),
            # Objectives that ignore the logit scale leave it unused in the graph.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            # The loaders yield global batches, split over the processes: P processes see
            # the batches one process would, so the step count and schedule do not depend
            # on P (see `_build_loaders`).
            # Pinned batches (`loader_options`) can then be copied to the device without
            # blocking, overlapping the copy with the previous step's work.
            dataloader_config=DataLoaderConfiguration(
                split_batches=True, even_batches=True, non_blocking=train_cfg.pin_memory
            ),
        )

    def _build_loaders(
        self,
    ) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
        """The train and dev loaders; the model's channels decide sample rate, frame size and
        frame count.

        Both yield *global* batches (``batch_size × processes``) that the prepared loaders
        split, ``batch_size`` to each process: the batches, their count and so the schedule
        are those of one process with the whole batch, and no two clips of one video meet
        in a batch across processes either (their negatives are gathered).
        """
        config, train_cfg = self.config, self.config.train
        processes = self.accelerator.num_processes
        global_batch = train_cfg.batch_size * processes
        data_options = self.data_options = model_data_options(self.model)
        self.train_set = PreparedClips.from_config(config.data, "train", True, **data_options)
        self.dev_set = PreparedClips.from_config(config.data, "dev", False, **data_options)
        self.batch_sampler = VideoBatchSampler(
            self.train_set.video_ids,
            global_batch,
            shuffle=True,
            seed=train_cfg.seed,
            drop_last=len(self.train_set) > global_batch,
            yield_epoch=True,
        )
        speed = loader_options(
            config.data, train_cfg, self.accelerator.device, local_process_count(processes)
        )
        self.loader_workers = speed["num_workers"]
        # Own generators: creating a loader iterator must not draw from the global RNG, or a
        # resumed run (which creates its iterator at another moment) would diverge.
        train_loader = torch.utils.data.DataLoader(
            _Indexed(self.train_set),
            batch_sampler=self.batch_sampler,
            collate_fn=collate_clips,
            generator=torch.Generator().manual_seed(train_cfg.seed),
            **speed,
        )
        if speed["num_workers"]:
            # A few validations per epoch: workers idle in between are not worth keeping.
            speed = {**speed, "persistent_workers": False}
        dev_loader = torch.utils.data.DataLoader(
            _Indexed(self.dev_set),
            batch_size=config.eval.batch_size * processes,
            collate_fn=collate_clips,
            generator=torch.Generator().manual_seed(train_cfg.seed),
            **speed,
        )
        if len(train_loader) == 0:
            raise ValueError(
                f"no training batch: the train split has {len(self.train_set)} clips of "
                f"{len(set(self.train_set.video_ids))} videos, and a batch holds at most one "
                f"clip per video; lower train.batch_size (now {train_cfg.batch_size} per "
                f"process, {processes} processes)"
            )
        return train_loader, dev_loader

    def _build_optimisation(self, train_batches: int) -> None:
        """The optimiser and the scheduler, sized in optimiser steps.

        ``train_batches`` counts global batches, which every process sees (its share of
        each), so an epoch is ``ceil(batches / accumulation)`` optimiser steps whatever the
        number of processes: the same count, and the same rate at every step, as one process
        with the whole batch.
        """
        train_cfg = self.config.train
        self.optimizer = build_optimizer(self.model, train_cfg, self.accelerator.device)
        self.steps_per_epoch = max(
            1, math.ceil(train_batches / train_cfg.gradient_accumulation_steps)
        )
        self.total_steps = self.steps_per_epoch * train_cfg.epochs
        if train_cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, train_cfg.max_steps)
        self.scheduler = build_scheduler(
            self.optimizer,
            self.total_steps,
            train_cfg.warmup_ratio,
            schedule=train_cfg.lr_schedule,
            steps_per_epoch=self.steps_per_epoch,
            gamma=train_cfg.lr_gamma,
        )

    def _objective_options(self) -> dict[str, Any]:
        """``objective_options``, plus ``block_size`` = the chunk under gradient caching.

        With gradient caching the full-batch loss is what bounds memory; objectives that can
        stream it over row blocks (``contrastive``, ``weighted_contrastive``) then do so —
        the same loss and gradients — unless the config sets ``block_size`` itself.
        """
        options = dict(self.config.objective_options)
        chunk = self.config.train.grad_cache_chunk
        accepted = inspect.signature(objective_class(self.config.objective)).parameters
        if chunk and "block_size" in accepted and "block_size" not in options:
            options["block_size"] = chunk
        return options

    def _trackers(self) -> list[Any]:
        trackers: list[Any] = []
        for name in self.config.train.log_with:
            if name == "jsonl":
                trackers.append(JSONLTracker("trimodal", self.output_dir))
            else:
                trackers.append(name)
        return trackers

    @property
    def unwrapped(self) -> TrimodalModel:
        return self.accelerator.unwrap_model(self.model)

    def _feature_cache(self, split: str, dataset: PreparedClips, views: int) -> FeatureCache | None:
        if not self.config.train.feature_cache:
            return None
        model = self.unwrapped
        cached = [m for m in model.frozen_modalities() if m != "text"]
        if not cached:
            return None
        fingerprint = {
            "channels": {m: to_dict(model.config.channels[m]) for m in cached},
            "data": to_dict(self.config.data),
            "dataset": dataset.fingerprint,
            "seed": self.config.train.seed,
            "train": dataset.augment,
        }
        return FeatureCache(
            self.output_dir / "feature_cache" / split,
            len(dataset),
            {m: model.backbones[m].output_dim for m in cached},
            fingerprint,
            views=views,
        )

    # ------------------------------------------------------------------ one step

    def _model_inputs(
        self, batch: dict[str, Any], epoch: int, cache: FeatureCache | None = None
    ) -> dict[str, Any]:
        """Raw inputs per modality, with cached backbone features where the cache has them.

        Features missing from the cache are computed here, without a graph (the backbone is
        frozen), stored, and passed on as features — the same numbers either way.
        """
        cache = self.feature_cache if cache is None else cache
        model = self.unwrapped
        inputs: dict[str, Any] = {m: batch[m] for m in model.modalities}
        if cache is None:
            return inputs
        features = {}
        indices = batch["index"]
        for modality in cache.modalities:
            raw = inputs.pop(modality)
            if cache.has(modality, epoch, indices):
                feats = cache.get(modality, epoch, indices)
            else:
                with torch.no_grad():
                    feats = model.backbone_features(modality, raw)
                cache.put(modality, epoch, indices, feats)
            features[modality] = feats.to(self.accelerator.device)
        inputs["features"] = features
        return inputs

    def _loss(
        self,
        embeddings: dict[str, torch.Tensor],
        logit_scale: torch.Tensor,
        features: dict[str, torch.Tensor] | None = None,
        text_keys: torch.Tensor | None = None,
    ):
        """The objective on ``{modality: [B, D]}`` embeddings; ``features`` (``{modality:
        [B, F_m]}`` backbone features of the same clips) feed ``vmnet_triplet``'s structure
        terms; ``text_keys`` (``[B]``) mark the clips with the same text."""
        return self.objective(
            embeddings, logit_scale=logit_scale, features=features, text_keys=text_keys
        )

    def _text_keys(self, inputs: dict[str, Any]) -> torch.Tensor | None:
        """``[B]`` identities of this micro-batch's texts (``train.text_positives``), on the
        device: the objective gathers them with the embeddings, so every process knows which
        clips of the global batch repeat a text."""
        if not self.config.train.text_positives or inputs.get("text") is None:
            return None
        return self.unwrapped.text_keys(inputs["text"]).to(self.accelerator.device)

    @contextlib.contextmanager
    def _loss_with_features(self, inputs: dict[str, Any]) -> Iterator[Callable[..., Any]]:
        """Yields the loss function of this micro-batch: ``(embeddings, logit_scale) ->
        terms`` (with the texts' identities, :meth:`_text_keys`); for objectives that compare embedding distances with input-feature distances
        (``uses_features``: ``vmnet_triplet``'s structure terms) it passes the batch's backbone
        features ``{modality: [B, F_m]}`` too.

        Those are the features the model computes in the same forward pass: recorded with a
        forward hook while the context is open (as :func:`trimodal.embedding.embed_batches`
        does), or the cached features themselves for frozen channels (they skip the
        backbone). Under gradient caching the backbone runs chunk by chunk, so the chunks are
        concatenated; ``grad_cache_step`` calls the loss after embedding each chunk once and
        before replaying any, so at that moment the record holds the batch exactly once.
        """
        keys = self._text_keys(inputs)
        if not getattr(self.objective, "uses_features", False):
            yield lambda embeddings, logit_scale: self._loss(
                embeddings, logit_scale, text_keys=keys
            )
            return
        cached = dict(inputs.get("features") or {})
        chunks: dict[str, list[torch.Tensor]] = {m: [] for m in self.unwrapped.modalities}

        def record(modality: str) -> Callable:
            def hook(module: Any, args: Any, output: torch.Tensor) -> None:
                chunks[modality].append(output.detach())

            return hook

        def loss(embeddings: dict[str, torch.Tensor], logit_scale: torch.Tensor) -> Any:
            features = {m: torch.cat(parts) for m, parts in chunks.items() if parts}
            return self._loss(embeddings, logit_scale, {**features, **cached}, keys)

        backbones = self.unwrapped.backbones
        handles = [backbones[m].register_forward_hook(record(m)) for m in chunks]
        try:
            yield loss
        finally:
            for handle in handles:
                handle.remove()

    def _forward_backward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """Loss terms of one micro-batch after back-propagation, or ``None`` if non-finite."""
        chunk = self.config.train.grad_cache_chunk
        with self._loss_with_features(inputs) as loss_fn:
            if chunk:
                terms = grad_cache_step(
                    self.model,
                    inputs,
                    loss_fn,
                    chunk,
                    # The one backward from the loss: accumulation count and fp16 loss scale.
                    backward=self.accelerator.backward,
                    no_sync=lambda: self.accelerator.no_sync(self.model),
                )
            else:
                out = self.model(**inputs)
                terms = loss_fn(out.embeddings, out.logit_scale)
        if not self._all_finite(terms["loss"]):
            return None
        if not chunk:
            self.accelerator.backward(terms["loss"])  # divides by the accumulation count
        return terms

    def _all_finite(self, value: torch.Tensor) -> bool:
        bad = torch.tensor(float(not torch.isfinite(value).all()), device=self.accelerator.device)
        return float(self.accelerator.reduce(bad, "sum")) == 0

    def _reduce_cached_gradients(self) -> None:
        # Gradient caching back-propagates under no_sync, so DDP never all-reduced: average
        # the gradients over processes once, here.
        if self.accelerator.num_processes == 1:
            return
        for param in self.unwrapped.parameters():
            if param.grad is not None:
                param.grad = self.accelerator.reduce(param.grad, "mean")

    def _optimizer_step(self, window_ok: bool) -> bool:
        """Clip, step and zero the gradients at the end of an accumulation window."""
        if self.config.train.grad_cache_chunk:
            self._reduce_cached_gradients()
        grad_norm = None
        if window_ok:
            grad_norm = self.accelerator.clip_grad_norm_(
                self.model.parameters(), self.config.train.max_grad_norm
            )
            window_ok = self._all_finite(torch.as_tensor(grad_norm))
        if window_ok:
            self.optimizer.step()
            self.scheduler.step()
            self.state.nonfinite_in_a_row = 0
        else:
            if grad_norm is not None and self.accelerator.scaler is not None:
                # fp16: clipping unscaled and found the overflow. End the scaler's window as
                # its own skipped step would (lower the scale), or the next unscale raises.
                self.accelerator.scaler.update()
            self.state.nonfinite_in_a_row += 1
            logger.warning(
                "non-finite loss or gradient at step %d: step skipped (%d in a row)",
                self.state.global_step,
                self.state.nonfinite_in_a_row,
            )
        self.optimizer.zero_grad(set_to_none=True)
        return window_ok

    def _stop_if_diverged(self) -> None:
        if self.state.nonfinite_in_a_row >= self.config.train.max_nonfinite_steps:
            self.save_checkpoint()
            raise NonFiniteLossError(
                f"{self.state.nonfinite_in_a_row} optimiser steps in a row had a non-finite "
                f"loss or gradient; stopped with the last good state saved in "
                f"{self.output_dir / 'checkpoints'}. Lower train.lr, check the data, or "
                "use train.mixed_precision: 'no'."
            )

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict[str, Any]:
        """Train for ``train.epochs`` epochs (or ``train.max_steps``); returns the last
        validation metrics."""
        cfg = self.config.train
        acc = self.accelerator
        self.environment = environment_record(acc)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.output_dir / "config.yaml")
            atomic_write_json(self.output_dir / "run.json", self.environment)
        acc.init_trackers("trimodal", config=flat_config(self.config))
        if cfg.resume:
            self.resume(cfg.resume)
        if acc.is_main_process:
            logger.info(
                "training on %d process(es), mixed precision %s: %d optimiser steps, %d per epoch",
                acc.num_processes,
                acc.mixed_precision,
                self.total_steps,
                self.steps_per_epoch,
            )
            logger.info("speed settings: %s, %d loader workers", self.speed, self.loader_workers)
        if cfg.head_autoencoder_epochs and self.state.global_step == 0:
            self._pretrain_heads()
        metrics: dict[str, Any] = {}
        validate_at = self._validation_points(len(self.train_loader))
        progress = tqdm(
            total=self.total_steps,
            initial=self.state.global_step,
            desc="training",
            disable=not acc.is_main_process,
        )
        window_ok = True
        self.timer.restart()
        while self.state.epoch < cfg.epochs and self.state.global_step < self.total_steps:
            epoch = self.state.epoch
            self.train_set.set_epoch(epoch)
            self.batch_sampler.set_epoch(epoch)
            self.model.train()
            for batch_index, batch in self._batches(epoch):
                self.timer.data_ready()
                with acc.accumulate(self.model):
                    terms = self._forward_backward(self._model_inputs(batch, epoch))
                    window_ok = window_ok and terms is not None
                    if acc.sync_gradients:
                        stepped = self._optimizer_step(window_ok)
                        window_ok = True
                self.state.batches_done = batch_index + 1
                self.timer.batch_done()
                if not acc.sync_gradients:
                    continue
                self.state.global_step += 1
                self._stop_if_diverged()
                progress.update(1)
                if stepped and self.state.global_step % cfg.log_every == 0:
                    self._log_train(terms)
                if self.state.global_step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    self.timer.restart()  # saving is not waiting for data
                if batch_index + 1 in validate_at:
                    metrics = self.validate()
                    self.timer.restart()
                    if self._patience_exhausted():
                        break
                if self.state.global_step >= self.total_steps:
                    break
            else:
                self.state.epoch += 1
                self.state.batches_done = 0
                continue
            break
        progress.close()
        release_workers(self.train_loader)
        if not metrics or self.state.best_step is None:
            metrics = self.validate()
        self._save_model("last", metrics)
        if self.feature_cache is not None:
            self.feature_cache.flush()
        acc.end_training()
        return metrics

    def _patience_exhausted(self) -> bool:
        patience = self.config.train.early_stopping_patience
        if patience is not None and self.state.validations_since_best >= patience:
            logger.info(
                "early stopping: %s did not improve in %d validations",
                self.config.train.select_metric,
                patience,
            )
            return True
        return False

    def _pretrain_heads(self) -> None:
        """Autoencoder initialisation of the heads (``train.head_autoencoder_epochs``).

        Every process computes the same thing on the whole training split (not its shard),
        then rank 0's heads are broadcast, so all processes start identical.
        """
        from accelerate.utils import broadcast

        from trimodal.training.autoencoder import collect_features, pretrain_heads

        cfg = self.config
        dataset = PreparedClips.from_config(cfg.data, "train", False, **self.data_options)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.eval.batch_size, collate_fn=collate_clips
        )
        model = self.unwrapped
        features = collect_features(model, loader, model.modalities)
        features = {m: f.to(self.accelerator.device) for m, f in features.items()}
        losses = pretrain_heads(
            model,
            features,
            cfg.train.head_autoencoder_epochs,
            lr=cfg.train.head_autoencoder_lr,
            seed=cfg.train.seed,
        )
        for param in model.heads.parameters():
            param.data = broadcast(param.data, from_process=0)
        self._log({f"autoencoder/{m}/mse": v for m, v in losses.items()})

    def _batches(self, epoch: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """This epoch's batches, skipping those a resumed run already consumed."""
        skip = self.state.batches_done if epoch == self.state.epoch else 0
        loader = self.train_loader
        if skip:
            loader = self.accelerator.skip_first_batches(self.train_loader, skip)
        # Accelerate's loaders count their own iterations and pass that count to the batch
        # sampler as the epoch; a resumed run's count starts at 0, so set the real epoch.
        loader.set_epoch(epoch)
        # Creating a loader iterator may draw a base seed from the global RNG (the skipping
        # loader has no generator of its own); restore it so a resumed run's dropout and
        # augmentation draws match the uninterrupted run's.
        state = torch.get_rng_state()
        iterator = iter(loader)
        torch.set_rng_state(state)
        for offset, batch in enumerate(iterator):
            yield skip + offset, batch

    def _validation_points(self, batches: int) -> set[int]:
        """Batch counts after which to validate (``validations_per_epoch`` evenly spaced,
        rounded to the end of an accumulation window)."""
        n = self.config.train.validations_per_epoch
        accum = self.config.train.gradient_accumulation_steps
        points = set()
        for k in range(1, n + 1):
            b = max(1, round(k * batches / n))
            points.add(min(batches, math.ceil(b / accum) * accum) if b < batches else batches)
        return points

    def _log_train(self, terms: dict[str, torch.Tensor] | None) -> None:
        values = {f"train/{k}": float(v.detach()) for k, v in (terms or {}).items()}
        values["train/lr"] = self.scheduler.get_last_lr()[0]
        values["train/logit_scale"] = float(self.unwrapped.get_logit_scale().detach().exp())
        values["train/epoch"] = self.state.epoch
        # Per device: each process's share of the global batch.
        values.update(self.timer.window(self.config.train.batch_size))
        self._log(values)

    def _log(self, values: dict[str, Any]) -> None:
        """What ``accelerator.log`` does, with names every tracker accepts
        (:func:`~trimodal.training.records.tracker_key`) for all but the run's own
        ``metrics.jsonl``, which keeps the names of the printed tables."""
        if not self.accelerator.is_main_process:
            return
        safe = tracker_values(values)
        for tracker in self.accelerator.trackers:
            tracker.log(
                values if isinstance(tracker, JSONLTracker) else safe, step=self.state.global_step
            )

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict[str, Any]:
        """Retrieval on the dev split; saves the best model by ``train.select_metric``."""
        cache = self.dev_feature_cache
        embeddings = embed_batches(
            self.model,
            self.dev_loader,
            accelerator=self.accelerator,
            desc="validating",
            inputs_fn=(lambda batch: self._model_inputs(batch, 0, cache)) if cache else None,
        )
        metrics = validation_metrics(embeddings, self.unwrapped.modalities, self.config.eval.ks)
        self._log({f"dev/{k}": v for k, v in metrics.items()})
        key = self.config.train.select_metric
        if key not in metrics:
            raise KeyError(
                f"train.select_metric {key!r} is not a validation metric: {sorted(metrics)}"
            )
        value = metrics[key]
        better = self.state.best_value is None or (
            value > self.state.best_value
            if self.config.train.select_mode == "max"
            else value < self.state.best_value
        )
        if better:
            self.state.best_value, self.state.best_step = value, self.state.global_step
            self.state.validations_since_best = 0
            self._save_model("best", metrics)
        else:
            self.state.validations_since_best += 1
        if self.accelerator.is_main_process:
            logger.info("step %d: %s = %.4f", self.state.global_step, key, value)
        return metrics

    # ------------------------------------------------------------------ persistence

    def _save_model(self, name: str, metrics: dict[str, float]) -> None:
        """``save_pretrained`` into ``RUN/<name>``, with the training record that the model
        card (``README.md``) and ``training.json`` are written from."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            model = self.unwrapped
            model.training_record = self.training_record(metrics)
            model.save_pretrained(self.output_dir / name)

    def training_record(self, metrics: dict[str, float]) -> dict[str, Any]:
        """How the model now saved was trained: objective, data, the resolved config, the
        step, the validation ``metrics`` it was saved with, the best so far, the run's
        environment (:mod:`trimodal.training.records`)."""
        cfg = self.config
        best = None
        if self.state.best_step is not None:
            best = {
                "metric": cfg.train.select_metric,
                "mode": cfg.train.select_mode,
                "value": self.state.best_value,
                "step": self.state.best_step,
            }
        return {
            "objective": cfg.objective,
            "objective_options": cfg.objective_options,
            "config": to_dict(cfg),
            "data": data_summary(cfg.data.prepared_dir),
            "step": self.state.global_step,
            "best": best,
            "validation": metrics,
            "run": getattr(self, "environment", None),
        }

    def summary(self) -> str:
        """The end-of-run summary: the best validation and its step, where the models are,
        and the command that evaluates the best one."""
        cfg, state = self.config, self.state
        best = self.output_dir / "best"
        lines = [
            f"best {cfg.train.select_metric} = {state.best_value:.4f} at step "
            f"{state.best_step} of {state.global_step}",
            f"best model: {best}  (last: {self.output_dir / 'last'}; run record: "
            f"{self.output_dir / 'run.json'})",
            f"evaluate it: trimodal evaluate --model {best} --data {cfg.data.prepared_dir} "
            f"--output {self.output_dir / 'eval'}",
        ]
        if self.timer.batches:
            frozen = self.unwrapped.frozen_modalities()
            cached = self.feature_cache is not None
            lines.append(
                data_wait_advice(self.timer.data_fraction, self.loader_workers, frozen, cached)
            )
        return "\n".join(lines)

    def save_checkpoint(self) -> Path:
        """Full training state (model, optimiser, scheduler, RNG, loop position) in
        ``checkpoints/checkpoint_<step>``, written atomically: a run killed while saving
        leaves the previous checkpoints intact and no half-written one.

        The rotation is ours, not Accelerate's ``ProjectConfiguration(
        automatic_checkpoint_naming=True, total_limit=...)``: that (accelerate 1.16)
        deletes the oldest checkpoints *before* writing the new one straight into
        ``checkpoint_<save count>`` (no temporary directory: it overrides the directory
        given to ``save_state``), so a kill while saving leaves a half-written newest
        checkpoint — and with ``total_limit=1`` none whole."""
        if self.feature_cache is not None:
            self.feature_cache.flush()
        directory = self.output_dir / "checkpoints"
        final = directory / f"checkpoint_{self.state.global_step}"
        tmp = directory / f".checkpoint_{self.state.global_step}.tmp"
        if self.accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            kept = sorted(directory.glob("checkpoint_*"), key=_checkpoint_number)
            for old in kept[: max(0, len(kept) - self.config.train.checkpoint_total_limit)]:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()
        return final

    def resume(self, which: str) -> None:
        """Continue from ``"latest"`` (the newest checkpoint in the run) or a directory."""
        path = latest_checkpoint(self.output_dir) if which == "latest" else Path(which)
        if path is None:
            logger.warning("no checkpoint in %s; starting from scratch", self.output_dir)
            return
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        self.accelerator.load_state(str(path))
        logger.info(
            "resumed from %s at epoch %d, batch %d, step %d",
            path,
            self.state.epoch,
            self.state.batches_done,
            self.state.global_step,
        )


def _checkpoint_number(path: Path) -> int:
    match = re.fullmatch(r"checkpoint_(\d+)", path.name)
    return int(match.group(1)) if match else -1


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/checkpoint_N`` directory of a run, or ``None``."""
    directory = Path(output_dir) / "checkpoints"
    found = [p for p in directory.glob("checkpoint_*") if _checkpoint_number(p) >= 0]
    return max(found, key=_checkpoint_number) if found else None


def validation_metrics(
    embeddings: SplitEmbeddings, modalities: list[str], ks: list[int]
) -> dict[str, float]:
    """Flat validation metrics: retrieval at clip and video level for every direction, their
    means over all directions (``video/mean_R@10``) and over each pair's two directions
    (``video/audio-video/mean_R@10``), and the study's mean positive-pair cosine distance
    per pair.

    Where texts repeat, the directions from and to text are multi-relevant
    (:func:`trimodal.metrics.cross_modal_retrieval`): they give ``mAP`` and ``any@k``
    (``clip/text→audio/any@10``, ``clip/text-audio/mean_mAP``) instead of ``R@k`` and ranks,
    and the means over all directions (``clip/mean_R@10``) are over the directions that
    have the metric. The audio-video keys never change.

    Args:
        embeddings: the dev split's clip embeddings (:func:`trimodal.embedding.embed_batches`,
            with each clip's text); videos are pooled by
            :func:`trimodal.metrics.aggregate_by_video`, as everywhere.
        modalities: the channels compared.
        ks: the R@k cut-offs.
    """
    present = {m: embeddings.embeddings[m] for m in modalities if m in embeddings.embeddings}
    pairs = pairs_among(present)
    texts = embeddings.texts or None
    results = cross_modal_retrieval(present, embeddings.video_id, texts=texts, ks=tuple(ks))
    names = [f"R@{k}" for k in ks] + ["median_rank", "mean_rank", "mAP"]
    names += [f"any@{k}" for k in ks]
    flat: dict[str, float] = {}
    for level, directions in results.items():
        rows = {d: v for d, v in directions.items() if d != "chance"}
        for direction, values in rows.items():
            for name in names:
                if name in values:
                    flat[f"{level}/{direction}/{name}"] = float(values[name])
        for name in [n for n in names if n != "mean_rank"]:
            vals = [v[name] for v in rows.values() if name in v]
            if vals:
                flat[f"{level}/mean_{name}"] = float(np.mean(vals))
            # Per pair, both directions: e.g. video/audio-video/mean_R@10.
            for a, b in pairs:
                both = [rows[f"{a}→{b}"].get(name), rows[f"{b}→{a}"].get(name)]
                if None not in both:
                    flat[f"{level}/{a}-{b}/mean_{name}"] = float(np.mean(both))
        flat[f"{level}/gallery_size"] = float(directions["chance"]["gallery_size"])
    distances = []
    for a, b in pairs:
        x = torch.nn.functional.normalize(present[a], dim=-1)
        y = torch.nn.functional.normalize(present[b], dim=-1)
        d = float((1 - (x * y).sum(-1)).mean())
        flat[f"positive_distance/{a}-{b}"] = d
        distances.append(d)
    flat["mean_positive_distance"] = float(np.mean(distances))
    return flat
