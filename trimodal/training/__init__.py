"""Training: the Accelerate loop, gradient caching, the frozen-backbone feature cache."""

from trimodal.utils import lazy_exports

# Imported on first use, so that importing the package (and its command-line help)
# stays cheap.
__getattr__ = lazy_exports(
    __name__,
    {
        "FeatureCache": "trimodal.training.feature_cache",
        "grad_cache_step": "trimodal.training.grad_cache",
        "build_optimizer": "trimodal.training.optim",
        "build_scheduler": "trimodal.training.optim",
        "parameter_groups": "trimodal.training.optim",
        "NonFiniteLossError": "trimodal.training.trainer",
        "Trainer": "trimodal.training.trainer",
        "latest_checkpoint": "trimodal.training.trainer",
        "validation_metrics": "trimodal.training.trainer",
    },
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
