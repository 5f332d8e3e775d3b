"""trimodal: one embedding space for the text, audio and video of music videos.

Importing this package is fast and never touches the network: the model classes (and with
them transformers) load on first use of ``trimodal.TrimodalModel`` and friends, and backbone
code (laion-clap, transformers model files) only when a model that uses it is built.

The model is registered with transformers' auto classes (``AutoConfig``, ``AutoModel``) as
soon as those are imported, before or after this package: importing transformers' auto
modules costs seconds, so this package does not do it itself, but hooks their import
(:class:`_AfterImport`). ``import trimodal`` then ``AutoModel.from_pretrained(directory)``
works in either order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from trimodal.config import ExperimentConfig, ModelConfig, load_config

__version__ = "0.1.0"

_LAZY = {
    "TrimodalConfig": "trimodal.configuration",
    "TrimodalModel": "trimodal.modeling",
    "TrimodalOutput": "trimodal.modeling",
    "build_model": "trimodal.modeling",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trimodal' has no attribute {name!r}")


# The package sits below the model in the layers (docs/architecture.md#layers): the hooks
# import the model's modules by name, as `__getattr__` does, when transformers is there.
def _register_config(module: Any) -> None:
    config = importlib.import_module("trimodal.configuration").TrimodalConfig
    module.AutoConfig.register("trimodal", config, exist_ok=True)


def _register_model(module: Any) -> None:
    importlib.import_module("trimodal.modeling")  # registers TrimodalModel with AutoModel


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Run ``hook(module)`` once module ``name`` has been imported (at once if it already
    is). A post-import hook (what ``wrapt.register_post_import_hook`` does; wrapt itself
    takes longer to import than this whole package)."""

    def __init__(self, name: str, hook: Callable[[Any], None]):
        self.name, self.hook, self.loader = name, hook, None

    @classmethod
    def install(cls, name: str, hook: Callable[[Any], None]) -> None:
        if name in sys.modules:
            hook(sys.modules[name])
        else:
            sys.meta_path.insert(0, cls(name, hook))

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name or self.loader is not None:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        self.hook(module)


_AfterImport.install("transformers.models.auto.configuration_auto", _register_config)
_AfterImport.install("transformers.models.auto.modeling_auto", _register_model)

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
