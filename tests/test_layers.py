"""Imports flow one way: core ← engine ← entry points.

The core (config, modalities, the data schema and loader, metrics, objectives, backbones,
modeling) knows nothing of training, evaluation or preparation; the engine knows nothing of
the command lines. Inside the core, the parts (backbones, objectives, metrics, data) sit on
the shared definitions (config, modalities) and below the model that assembles them: a
backbone never imports the model. Each module's imports are read with ``ast`` (lazy imports
inside functions count too), so a violation fails here before it becomes an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trimodal"

# Layers, bottom up: a module may import its own layer and those below it.
BASE, PARTS, MODEL, ENGINE, ENTRY = range(5)
LAYER_NAMES = {
    BASE: "core definitions",
    PARTS: "core parts",
    MODEL: "the model",
    ENGINE: "engine",
    ENTRY: "entry point",
}

# The layer of each top-level part of the package (trimodal/<name>.py or trimodal/<name>/).
PACKAGE_LAYERS = {
    "__init__": BASE,
    "config": BASE,
    "distributed": BASE,
    "modalities": BASE,
    "schema": BASE,
    "utils": BASE,
    "backbones": PARTS,
    "data": PARTS,
    "metrics": PARTS,
    "objectives": PARTS,
    "configuration": MODEL,
    "model_card": MODEL,
    "modeling": MODEL,
    "embedding": ENGINE,
    "evaluation": ENGINE,
    "media": ENGINE,
    "prepare": ENGINE,
    "search": ENGINE,
    "training": ENGINE,
    "vmnet": ENGINE,
    "cli": ENTRY,
    "commands": ENTRY,  # the trimodal command
    "help": ENTRY,
    "__main__": ENTRY,  # python -m trimodal
    "evaluate": ENTRY,  # python -m trimodal.evaluate
}
# Top-level packages outside trimodal.
OUTSIDE_LAYERS = {"data_prep": ENTRY, "train": ENTRY}


def module_name(path: Path) -> str:
    """``trimodal/backbones/base.py`` → ``trimodal.backbones.base``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """The layer of a dotted name; ``None`` for third-party modules and for names that are
    not modules (``trimodal.TrimodalModel``, an attribute of the package)."""
    parts = module.split(".")
    if parts[0] in OUTSIDE_LAYERS:
        return OUTSIDE_LAYERS[parts[0]]
    if parts[0] != "trimodal":
        return None
    if len(parts) == 1:
        return PACKAGE_LAYERS["__init__"]
    if parts[-1] == "__main__":
        return ENTRY
    return PACKAGE_LAYERS.get(parts[1])


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``source``; relative imports resolved
    against ``module`` (a package when ``is_package``), ``from x import y`` as ``x.y``
    (``y`` may be a submodule) as well as ``x``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def upward_imports(path: Path, source: str | None = None) -> list[str]:
    """The imports of the module at ``path`` that reach a higher layer than its own."""
    module = module_name(path)
    own = layer_of(module)
    source = path.read_text() if source is None else source
    bad = []
    for line, name in imported_modules(source, module, path.name == "__init__.py"):
        target = layer_of(name)
        if target is not None and target > own:
            bad.append(f"{module}:{line} imports {name} ({LAYER_NAMES[target]})")
    return bad


def subjects() -> list[Path]:
    """Every module of the package except the entry points (the command lines)."""
    return sorted(
        p for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) != ENTRY and p.is_file()
    )


def test_every_part_of_the_package_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    unplaced = sorted((modules | packages) - set(PACKAGE_LAYERS))
    assert not unplaced, f"give these a layer in PACKAGE_LAYERS: {unplaced}"


@pytest.mark.parametrize("path", subjects(), ids=lambda p: module_name(p))
def test_no_module_imports_a_higher_layer(path):
    upward = upward_imports(path)
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import():
    modeling = PACKAGE / "modeling.py"
    lazy = modeling.read_text() + "\n\ndef _f():\n    from trimodal.training import Trainer\n"
    line = len(lazy.splitlines())
    assert upward_imports(modeling, lazy) == [
        f"trimodal.modeling:{line} imports trimodal.training (engine)",
        f"trimodal.modeling:{line} imports trimodal.training.Trainer (engine)",
    ]
    relative = "from ..cli import train_main\nimport data_prep.prepare\n"
    assert upward_imports(PACKAGE / "metrics" / "retrieval.py", relative) == [
        "trimodal.metrics.retrieval:1 imports trimodal.cli (entry point)",
        "trimodal.metrics.retrieval:1 imports trimodal.cli.train_main (entry point)",
        "trimodal.metrics.retrieval:2 imports data_prep.prepare (entry point)",
    ]
    backbone = "from trimodal.modeling import default_cache_dir\n"
    assert upward_imports(PACKAGE / "backbones" / "musicnn.py", backbone) == [
        "trimodal.backbones.musicnn:1 imports trimodal.modeling (the model)",
        "trimodal.backbones.musicnn:1 imports trimodal.modeling.default_cache_dir (the model)",
    ]
    engine = "from trimodal.cli import demo_report\n"
    assert upward_imports(PACKAGE / "training" / "trainer.py", engine) == [
        "trimodal.training.trainer:1 imports trimodal.cli (entry point)",
        "trimodal.training.trainer:1 imports trimodal.cli.demo_report (entry point)",
    ]
