"""Best-checkpoint selection and early stopping: which validation is the best so far.

The rule :class:`~trimodal.training.Trainer` applies to ``train.select_metric`` and VM-NET's
training to its dev retrieval: a validation is better only if its value is strictly better
than the best so far (``mode`` ``max`` or ``min``; the first one always is), and training
stops after ``patience`` validations in a row that were not better (``None``: never). Values
only need ``<`` and ``>``: VM-NET compares ``(R@10, −mean rank)`` tuples, so ties on R@10 go
to the lower mean rank.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal


@dataclasses.dataclass
class BestSelection:
    """The best validation so far and the validations since it.

    Attributes:
        mode: ``"max"`` (higher is better) or ``"min"``.
        patience: validations without improvement after which :attr:`exhausted` is true.
        best_value / best_step: the best value and the step (or epoch) it was reached at.
        validations_since_best: validations since then that were not better.
    """

    mode: Literal["max", "min"] = "max"
    patience: int | None = None
    best_value: Any = None
    best_step: int | None = None
    validations_since_best: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    def update(self, value: Any, step: int) -> bool:
        """Record the validation at ``step``; ``True`` if it is the new best."""
        better = self.best_value is None or (
            value > self.best_value if self.mode == "max" else value < self.best_value
        )
        if better:
            self.best_value, self.best_step = value, step
            self.validations_since_best = 0
        else:
            self.validations_since_best += 1
        return better

    @property
    def exhausted(self) -> bool:
        """Whether ``patience`` validations in a row were not better."""
        return self.patience is not None and self.validations_since_best >= self.patience
