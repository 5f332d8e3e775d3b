"""trimodal: one embedding space for the text, audio and video of music videos.

Importing this package is fast and never touches the network: the model classes (and with
them transformers) load on first use of ``trimodal.TrimodalModel`` and friends, and backbone
code (laion-clap, transformers model files) only when a model that uses it is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from trimodal.config import ExperimentConfig, ModelConfig, load_config

__version__ = "0.1.0"

_LAZY = {
    "TrimodalConfig": "trimodal.modeling",
    "TrimodalModel": "trimodal.modeling",
    "TrimodalOutput": "trimodal.modeling",
    "build_model": "trimodal.modeling",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trimodal' has no attribute {name!r}")


__all__ = [
    "ExperimentConfig",
    "ModelConfig",
    "TrimodalConfig",
    "TrimodalModel",
    "TrimodalOutput",
    "__version__",
    "build_model",
    "load_config",
]
