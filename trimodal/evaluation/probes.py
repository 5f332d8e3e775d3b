"""Multilabel probes on frozen features: train on train, threshold on dev, report on test.

Two probe families, both fed standardised inputs (mean/std of the training rows):

* ``sklearn_mlp``: the trimodal study's probe, scikit-learn's
  ``MLPClassifier(hidden_layer_sizes=(300, 100))`` (ReLU, Adam, logistic outputs for a
  multi-hot target);
* ``torch_linear`` / ``torch_mlp``: a logistic-regression layer (or a 300-100 MLP) trained
  with binary cross-entropy and AdamW in torch; the epoch with the lowest dev loss is kept.

:func:`run_probe` fits a probe, chooses one global decision threshold on the dev split
(:func:`trimodal.metrics.choose_threshold`, micro-F1) and reports on the test split every
metric of :func:`trimodal.metrics.multilabel_metrics` plus the YouTube-8M metrics
(:func:`trimodal.metrics.youtube8m_metrics`: Hit@1, PERR, GAP, mAP) and per-label AP.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trimodal.metrics import choose_threshold, multilabel_metrics, youtube8m_metrics


class Probe(Protocol):
    """A multilabel classifier on fixed features."""

    def fit(self, x: np.ndarray, y: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray) -> Probe: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


class SklearnMLPProbe:
    """``StandardScaler → MLPClassifier(hidden_layer_sizes)`` (the study's 300-100 MLP).

    Args:
        hidden_layer_sizes: the MLP's hidden widths.
        max_iter: Adam epochs (scikit-learn's ``max_iter``).
        seed: ``random_state`` (weights init and batch order).
    """

    def __init__(
        self, hidden_layer_sizes: tuple[int, ...] = (300, 100), max_iter: int = 200, seed: int = 0
    ):
        self.hidden_layer_sizes = tuple(hidden_layer_sizes)
        self.max_iter = max_iter
        self.seed = seed
        self.converged = True

    def fit(self, x: np.ndarray, y: np.ndarray, x_dev: Any = None, y_dev: Any = None):
        """Fit on ``x`` [N, F] and multi-hot ``y`` [N, L] (the dev split is not used)."""
        self.pipeline = make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=self.hidden_layer_sizes,
                max_iter=self.max_iter,
                random_state=self.seed,
            ),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            with single_threaded(np.asarray(x).shape[0] < SMALL_PROBLEM_ROWS):
                self.pipeline.fit(x, y)
        self.converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``[N, L]`` probabilities."""
        proba = self.pipeline.predict_proba(x)
        return np.asarray(proba, dtype=np.float64).reshape(x.shape[0], -1)


#: Below this many rows, probes and t-SNE run single-threaded (see :func:`single_threaded`).
SMALL_PROBLEM_ROWS = 1024


@contextlib.contextmanager
def single_threaded(enabled: bool = True) -> Iterator[None]:
    """Run torch, BLAS and OpenMP (scikit-learn) on one thread inside the block.

    Small problems are dominated by per-operation overhead, which thread hand-offs multiply:
    on a loaded 2-core machine a 12-row linear probe ran 40x and a 6-point t-SNE 25x faster
    single-threaded. ``enabled=False`` leaves the settings alone.
    """
    if not enabled:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def build_mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int) -> torch.nn.Module:
    """``Linear → ReLU → … → Linear``: ``[B, in_features]`` → ``[B, out_features]`` logits."""
    layers: list[torch.nn.Module] = []
    width = in_features
    for hidden in hidden_sizes:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, out_features))
    return torch.nn.Sequential(*layers)


class TorchProbe:
    """A linear layer (``hidden_sizes=()``) or an MLP trained with BCE on standardised inputs.

    Args:
        hidden_sizes: hidden widths (ReLU between layers); ``()`` is logistic regression.
        epochs: maximum passes over the training rows.
        lr, weight_decay: AdamW's.
        batch_size: rows per step.
        patience: stop after this many epochs without a lower dev loss.
        seed: initialisation and shuffling (the global RNG state is left alone).
    """

    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = (),
        epochs: int = 300,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        patience: int = 30,
        seed: int = 0,
    ):
        self.hidden_sizes = tuple(hidden_sizes)
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.converged = True

    def _standardise(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(x, dtype=np.float64) - self.mean) / self.std).float()

    def fit(self, x: np.ndarray, y: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray):
        """Fit on ``x`` [N, F], ``y`` [N, L]; keep the epoch with the lowest dev BCE."""
        with single_threaded(np.asarray(x).shape[0] < SMALL_PROBLEM_ROWS):
            return self._fit(x, y, x_dev, y_dev)

    # What distinguishes a probe family: its targets, output size and loss. The single-label
    # (softmax) probe of the thesis overrides these three and reuses the training loop.
    def _targets(self, y: np.ndarray) -> torch.Tensor:
        """Multi-hot ``[N, L]`` float targets."""
        return torch.as_tensor(y, dtype=torch.float32)

    def _output_size(self, y: np.ndarray) -> int:
        return int(np.asarray(y).shape[1])

    def _loss(self) -> torch.nn.Module:
        return torch.nn.BCEWithLogitsLoss()

    def _fit(self, x: np.ndarray, y: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0)
        self.std[self.std < 1e-12] = 1.0
        xt, yt = self._standardise(x), self._targets(y)
        xd, yd = self._standardise(x_dev), self._targets(y_dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = build_mlp(xt.shape[1], self.hidden_sizes, self._output_size(y))
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        loss_fn = self._loss()
        best_loss, best_state, since_best = float("inf"), None, 0
        self.converged = False  # True when the dev loss stopped improving before `epochs`
        for _ in range(self.epochs):
            self.net.train()
            order = torch.randperm(xt.shape[0], generator=generator)
            for start in range(0, xt.shape[0], self.batch_size):
                rows = order[start : start + self.batch_size]
                optimizer.zero_grad()
                loss_fn(self.net(xt[rows]), yt[rows]).backward()
                optimizer.step()
            self.net.eval()
            with torch.no_grad():
                dev_loss = float(loss_fn(self.net(xd), yd))
            if dev_loss < best_loss - 1e-6:
                best_loss, best_state, since_best = (
                    dev_loss,
                    copy.deepcopy(self.net.state_dict()),
                    0,
                )
            else:
                since_best += 1
                if since_best >= self.patience:
                    self.converged = True
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()
        self.best_dev_loss = best_loss
        return self

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``[N, L]`` sigmoid probabilities."""
        return torch.sigmoid(self.net(self._standardise(x))).double().numpy()


#: Probe names accepted by :func:`make_probe` / ``--probes``.
PROBES: tuple[str, ...] = ("sklearn_mlp", "torch_linear", "torch_mlp")


def make_probe(name: str, seed: int = 0) -> Probe:
    """A fresh probe by name (see :data:`PROBES`)."""
    if name == "sklearn_mlp":
        return SklearnMLPProbe((300, 100), seed=seed)
    if name == "torch_linear":
        return TorchProbe((), seed=seed)
    if name == "torch_mlp":
        return TorchProbe((300, 100), seed=seed)
    raise ValueError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")


@dataclasses.dataclass
class ProbeData:
    """Features ``x`` [N, F] and multi-hot labels ``y`` [N, L] of one split."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64)
        self.y = (np.asarray(self.y) > 0).astype(np.int64)
        if self.x.ndim != 2 or self.y.ndim != 2 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x must be [N, F] and y [N, L]; got {self.x.shape}, {self.y.shape}")


def per_label_average_precision(y_true: np.ndarray, y_score: np.ndarray) -> list[float | None]:
    """sklearn's AP of each label column ([N, L] each); ``None`` for labels without positives."""
    y_true = (np.asarray(y_true) > 0).astype(np.int64)
    out: list[float | None] = []
    for c in range(y_true.shape[1]):
        if y_true[:, c].any():
            out.append(float(average_precision_score(y_true[:, c], y_score[:, c])))
        else:
            out.append(None)
    return out


def score_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict[str, Any]:
    """:func:`multilabel_metrics` at ``threshold`` plus the YouTube-8M metrics (``hit_at_1``,
    ``perr``, ``gap``, ``yt8m_map``) of ``[N, L]`` scores in [0, 1]."""
    metrics: dict[str, Any] = multilabel_metrics(y_true, y_score, threshold)
    yt8m = youtube8m_metrics(y_score, y_true)
    metrics.update(
        hit_at_1=yt8m["hit_at_1"], perr=yt8m["perr"], gap=yt8m["gap"], yt8m_map=yt8m["map"]
    )
    metrics["num_examples"] = int(y_true.shape[0])
    return metrics


def run_probe(
    name: str, train: ProbeData, dev: ProbeData, test: ProbeData, seed: int = 0
) -> dict[str, Any]:
    """Fit probe ``name`` on ``train``, choose the threshold on ``dev``, evaluate on ``test``.

    Returns:
        :func:`score_metrics` on test, plus ``dev_f1_micro`` (at the chosen threshold),
        ``num_train``/``num_dev``, ``converged`` and ``per_label_ap`` (length L, ``None`` for
        labels without test positives).

    Raises:
        ValueError: when the training rows carry no positive label at all, or shapes differ.
    """
    for part, data in (("dev", dev), ("test", test)):
        if data.x.shape[1] != train.x.shape[1] or data.y.shape[1] != train.y.shape[1]:
            raise ValueError(f"{part} features/labels do not match the training ones")
    if not train.y.any():
        raise ValueError("the training split has no positive labels")
    probe = make_probe(name, seed).fit(train.x, train.y, dev.x, dev.y)
    threshold, dev_f1 = choose_threshold(dev.y, probe.predict_proba(dev.x))
    test_scores = probe.predict_proba(test.x)
    metrics = score_metrics(test.y, test_scores, threshold)
    metrics.update(
        dev_f1_micro=dev_f1,
        num_train=int(train.x.shape[0]),
        num_dev=int(dev.x.shape[0]),
        num_features=int(train.x.shape[1]),
        converged=bool(getattr(probe, "converged", True)),
        per_label_ap=per_label_average_precision(test.y, test_scores),
    )
    return metrics
