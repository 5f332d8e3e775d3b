"""Objectives found by name: ``get_objective("weighted_contrastive", temperature=0.05)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["available_objectives", "get_objective", "objective_class", "register_objective"]

_REGISTRY: dict[str, type[nn.Module]] = {}


def register_objective(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make an objective available to :func:`get_objective` under ``name``.

    Registering a second, different class under a name already taken is refused: configs refer
    to objectives by name, so a silent replacement would change what an old config trains.
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"objective name {name!r} is already registered to "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _REGISTRY[name] = cls
        cls.objective_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def available_objectives() -> list[str]:
    """Names of all registered objectives, sorted."""
    return sorted(_REGISTRY)


def objective_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (``ValueError`` listing the names if there is none)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; available: {', '.join(available_objectives())}"
        ) from None


def get_objective(name: str, **options: Any) -> nn.Module:
    """Build the objective registered as ``name`` with keyword ``options``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the available names.
        TypeError: an option the objective does not take (from its constructor).
    """
    return objective_class(name)(**options)
