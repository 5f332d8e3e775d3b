"""Training: the Accelerate loop, gradient caching, the frozen-backbone feature cache."""

from trimodal.training.feature_cache import FeatureCache
from trimodal.training.grad_cache import grad_cache_step
from trimodal.training.optim import build_optimizer, build_scheduler, parameter_groups
from trimodal.training.trainer import (
    NonFiniteLossError,
    Trainer,
    latest_checkpoint,
    validation_metrics,
)

__all__ = [
    "FeatureCache",
    "NonFiniteLossError",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "grad_cache_step",
    "latest_checkpoint",
    "parameter_groups",
    "validation_metrics",
]
