"""Small shared helpers: atomic file writes and seeding.

Kept free of heavy imports (torch is imported inside :func:`seed_everything`), so that
data-preparation worker processes can use the atomic writers cheaply.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash while writing leaves the previous file (or none) in place, never a partial one:
    ``os.replace`` is atomic on POSIX within one file system. The file's data is flushed to
    disk before the rename and the directory entry after it, so that after a power loss the
    name never points to an empty or partial file: a resumed run (preparation shards,
    checkpoints, caches) trusts a file that exists to be whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a directory's entries) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a directory cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # file systems that cannot sync a directory (some network mounts)
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_summaries(path: str | Path, decorator: str | None = None) -> dict[str, str]:
    """The first docstring line of each class defined in a Python source file, read with
    :mod:`ast` (the file is not imported, so neither are its dependencies).

    With ``decorator``, only classes decorated with ``@decorator("name")``, keyed by that
    name: how registries such as the objectives' (``@register_objective("cosine")``) are
    listed without importing torch.
    """
    import ast

    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        summary = (ast.get_docstring(node) or "").strip().split("\n\n")[0]
        summary = " ".join(summary.split())
        keys = [node.name] if decorator is None else []
        for dec in node.decorator_list if decorator is not None else []:
            if (
                isinstance(dec, ast.Call)
                and getattr(dec.func, "id", getattr(dec.func, "attr", None)) == decorator
                and dec.args
                and isinstance(dec.args[0], ast.Constant)
            ):
                keys.append(str(dec.args[0].value))
        for key in keys:
            found[key] = summary
    return found


def plain_text(text: str) -> str:
    """Docstring text without its reStructuredText markup (``code``, :class:`Name`, a
    trailing ``::``), for command-line help."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    return re.sub(r"::$", ":", text.strip())


def lazy_exports(package: str, exports: dict[str, str]) -> Any:
    """A module ``__getattr__`` (PEP 562) for ``package`` that imports ``exports[name]``
    (a module) on first access of ``name``: a package's names stay importable from it
    while importing the package itself stays cheap (command-line help needs no torch)."""
    import importlib
    import sys

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
