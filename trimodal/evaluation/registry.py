"""Evaluation tasks by name: the unit :func:`~trimodal.evaluation.evaluate` loops over.

A task is a subclass of :class:`EvalTask` registered with :func:`register_task`. It reads the
embeddings through an :class:`EvalContext` (extracted once per split and stored on disk),
its settings from the :class:`~trimodal.config.EvalConfig` (its own typed options with
:func:`task_options`), and returns a :class:`TaskOutput`: the ``results.json`` entries, the
``results.md`` section, what it skipped inside and any extra files.

A task that cannot run on this model or data says why in :meth:`EvalTask.unavailable` (an
explicit check, not a caught exception), and is recorded as skipped with that reason.

To add a task: subclass :class:`EvalTask` in :mod:`trimodal.evaluation.tasks` (or any module
imported by it), set ``name``, implement ``run`` (and ``unavailable`` / ``validate`` when
needed), decorate it with ``@register_task``, and give its settings a dataclass that
:class:`~trimodal.config.EvalConfig` inherits from (so YAML and the command line see them).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from trimodal.config import EvalConfig
from trimodal.embedding import SplitEmbeddings, missing_split
from trimodal.evaluation import extraction

#: The tasks by name, in the order they run and appear in ``results.md``.
TASKS: dict[str, EvalTask] = {}

Options = TypeVar("Options")


@dataclasses.dataclass
class TaskOutput:
    """What one task produced.

    Attributes:
        results: top-level entries of ``results.json`` (usually ``{task name: ...}``).
        sections: markdown lines of the task's part of ``results.md``.
        skipped: ``{"<task>/<part>": reason}`` for parts of the task that could not run.
        files: extra files to write in the output directory, ``{file name: text}``.
    """

    results: dict[str, Any]
    sections: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    files: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EvalContext:
    """The evaluated model and data, with each split's embeddings loaded on first use.

    Attributes:
        model: the :class:`~trimodal.modeling.TrimodalModel` (eval mode).
        model_fingerprint: hash of the model directory's files (the embedding caches' key).
        prepared_dir: the prepared dataset root.
        output_dir: where results, stored embeddings and plots go.
        config: the evaluation settings.
        reused: ``{split: whether its embeddings came from the stored files}``.
    """

    model: Any
    model_fingerprint: str
    prepared_dir: Path
    output_dir: Path
    config: EvalConfig
    reused: dict[str, bool] = dataclasses.field(default_factory=dict)
    loaded: dict[str, SplitEmbeddings] = dataclasses.field(default_factory=dict)

    def embeddings(self, split: str) -> SplitEmbeddings:
        """The split's embeddings (stored ones when their fingerprint matches)."""
        if split not in self.loaded:
            data, reused = extraction.load_or_extract(
                self.model, self.model_fingerprint, self.prepared_dir, split, self.output_dir,
                batch_size=self.config.batch_size, num_workers=self.config.num_workers,
                recompute=self.config.recompute,
            )  # fmt: skip
            self.loaded[split], self.reused[split] = data, reused
        return self.loaded[split]

    @property
    def data(self) -> SplitEmbeddings:
        """The evaluated split's embeddings."""
        return self.embeddings(self.config.split)

    def training_splits(self) -> dict[str, SplitEmbeddings]:
        """``{"train", "dev", evaluated split}`` (the probes fit on train, tune on dev)."""
        return {s: self.embeddings(s) for s in ("train", "dev", self.config.split)}

    def missing_split(self, *splits: str) -> str | None:
        """Why one of ``splits`` cannot be opened (not in the prepared data), or ``None``."""
        reasons = [missing_split(self.prepared_dir, s) for s in splits]
        return next((r for r in reasons if r is not None), None)


class EvalTask:
    """One evaluation task (see the module docstring)."""

    #: The name used in ``--tasks`` and as the ``results.json`` key.
    name: ClassVar[str] = ""

    def validate(self, config: EvalConfig) -> None:
        """Refuse bad settings (``ValueError`` / ``FileNotFoundError``) before any extraction."""

    def unavailable(self, ctx: EvalContext) -> str | None:
        """Why the task cannot run on this model and data, or ``None`` when it can."""
        return None

    def run(self, ctx: EvalContext) -> TaskOutput:
        raise NotImplementedError


def register_task(cls: type[EvalTask]) -> type[EvalTask]:
    """Class decorator: add a task to :data:`TASKS` under its ``name``."""
    if not cls.name or cls.name in TASKS:
        raise ValueError(f"task name {cls.name!r} is empty or already registered")
    TASKS[cls.name] = cls()
    return cls


def selected_tasks(names: list[str]) -> list[EvalTask]:
    """The named tasks in registry order.

    Raises:
        ValueError: an unknown name.
    """
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    return [task for name, task in TASKS.items() if name in names]


def task_options(config: EvalConfig, options_cls: type[Options]) -> Options:
    """A task's own typed options (a base class of :class:`EvalConfig`) from the config."""
    return options_cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(options_cls)})


def jsonable(value: Any) -> Any:
    """Plain JSON data: numpy scalars/arrays and paths converted, NaN and inf as ``null``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
