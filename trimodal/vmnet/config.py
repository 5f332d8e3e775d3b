"""Typed configuration of a VM-NET run (network, objective, optimisation), loadable from YAML.

Defaults are the VM-NET study's settings (Prétet et al., "Cross-modal music-video
recommendation: a study of design choices"; docs/research.md#the-vm-net-study), which kept the
original VM-NET code's hyper-parameters:

* branches on precomputed features: music 2048-1024-512, video 2048-512, dropout 0.5, a linear
  last layer followed by batch normalisation, L2-normalised outputs (see
  :mod:`trimodal.vmnet.model` for the exact layout);
* the ``vmnet_triplet`` objective: margin 0.1, λ = (1, 3, 0.2, 0.2), top-K = 100 hardest
  negatives (see :mod:`trimodal.objectives.vmnet` for where those come from);
* Adam, learning rate 1e-6, batch 1000, early stopping on the validation set.

Prétet et al. give no epoch count or patience for the triplet-loss systems ("we use early
stopping"; docs/research.md#vm-net-study-model-objective-and-training-settings); ``epochs``
and ``patience`` below are ours. ``standardize`` is also ours (see its comment).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trimodal.config import ConfigError, load_config


@dataclasses.dataclass
class VMNetConfig:
    """Everything a VM-NET training run needs besides its feature files.

    Network:
        music_layers / video_layers: widths of the fully-connected layers of each branch; the
            last one is the embedding size and must be the same for both.
        music_input_dim / video_input_dim: feature sizes; ``None`` takes them from the training
            feature file (the saved config then records the actual sizes).
        dropout: dropout after every hidden ReLU (Prétet et al.: "a dropout scheme with probability
            0.5").
        hidden_batch_norm: add batch normalisation after every hidden FC layer too (before its
            ReLU). Off by default: the VM-NET study and the VM-NET code put batch
            normalisation only at the end of each branch.
        batch_norm_eps / batch_norm_momentum: of the final batch normalisation. The VM-NET code
            used TF's ``batch_norm(decay=0.99, epsilon=1e-3)``; torch's momentum is 1 − decay.
        standardize: z-score every input dimension with the training split's mean and standard
            deviation (stored with the weights, so evaluation applies the same). Not in the
            paper; without it the first layer sees features whose scales differ by orders of
            magnitude (dB energies, variances of Hz-valued spectral statistics, CLAP's unit
            vectors), and Adam at 1e-6 barely moves their small-scale dimensions.

    Objective (``vmnet_triplet``): ``lambdas`` (λ1..λ4 = video-anchored ranking, music-anchored
    ranking, video structure, music structure), ``margin``, ``top_k``, ``structure_margin``.

    Optimisation: Adam with ``lr`` and ``weight_decay`` (an L2 penalty on the weight matrices
    only: biases and batch-norm parameters are not decayed, the rule of
    :func:`trimodal.training.optim.parameter_groups`); ``batch_size`` pairs per step;
    at most ``epochs`` epochs; evaluation on the dev set every ``eval_every`` epochs; the best
    checkpoint is the one with the highest dev music→video R@10 (ties: lower mean rank);
    training stops after ``patience`` evaluations without improvement (``None``: never).
    ``eval_ks``: the k of R@k that are reported. ``seed`` seeds initialisation and shuffling.
    """

    # -- network
    music_layers: list[int] = dataclasses.field(default_factory=lambda: [2048, 1024, 512])
    video_layers: list[int] = dataclasses.field(default_factory=lambda: [2048, 512])
    music_input_dim: int | None = None
    video_input_dim: int | None = None
    dropout: float = 0.5
    hidden_batch_norm: bool = False
    batch_norm_eps: float = 1e-3
    batch_norm_momentum: float = 0.01
    standardize: bool = True
    # -- objective
    lambdas: list[float] = dataclasses.field(default_factory=lambda: [1.0, 3.0, 0.2, 0.2])
    margin: float = 0.1
    top_k: int = 100
    structure_margin: float = 0.0
    # -- optimisation
    lr: float = 1e-6
    weight_decay: float = 0.0
    batch_size: int = 1000
    epochs: int = 2000
    eval_every: int = 1
    patience: int | None = 50
    eval_ks: list[int] = dataclasses.field(default_factory=lambda: [1, 10, 25])
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot train."""
        for name in ("music_layers", "video_layers"):
            layers = getattr(self, name)
            if not layers or any(int(w) < 1 for w in layers):
                raise ConfigError(f"{name} must be a non-empty list of positive widths: {layers}")
        if self.music_layers[-1] != self.video_layers[-1]:
            raise ConfigError(
                "the two branches must end in the same embedding size: music_layers ends in "
                f"{self.music_layers[-1]}, video_layers in {self.video_layers[-1]}"
            )
        for name in ("music_input_dim", "video_input_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive or null, got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.lambdas) != 4:
            raise ConfigError(f"lambdas must be 4 weights (λ1..λ4), got {self.lambdas}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        # BatchNorm in training mode needs at least two rows, and the ranking terms need a
        # negative: a batch of one cannot train.
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.epochs < 1 or self.eval_every < 1:
            raise ConfigError("epochs and eval_every must be >= 1")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or null, got {self.patience}")
        if not self.eval_ks or any(k < 1 for k in self.eval_ks):
            raise ConfigError(f"eval_ks must be positive integers, got {self.eval_ks}")
        if 10 not in self.eval_ks:
            # The checkpoint is selected on R@10 (the middle column of the VM-NET study's
            # tables: docs/research.md#vm-net-study-reported-results).
            raise ConfigError(f"eval_ks must contain 10 (checkpoint selection), got {self.eval_ks}")

    @property
    def embed_dim(self) -> int:
        return int(self.music_layers[-1])

    def objective_options(self) -> dict[str, Any]:
        """Keyword arguments of ``get_objective("vmnet_triplet", ...)``."""
        return {
            "margin": self.margin,
            "top_k": self.top_k,
            "lambdas": tuple(self.lambdas),
            "structure_margin": self.structure_margin,
        }


def load_vmnet_config(
    path: str | Path | None = None, overrides: Sequence[str] | dict[str, Any] = ()
) -> VMNetConfig:
    """Read a :class:`VMNetConfig` from YAML (top-level keys = field names) plus overrides,
    with the project's typed loader (:func:`trimodal.config.load_config`).

    Args:
        path: a YAML file; ``None`` starts from the defaults.
        overrides: ``["--lr", "1e-4", "--music_layers", "[512,256]"]`` or a mapping.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: unknown key, wrong type or invalid value (the message names the key).
    """
    return load_config(path, overrides, config_class=VMNetConfig)
