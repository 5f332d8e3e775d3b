"""The code stays readable: no function a reader must scroll through without being told why.

A function longer than :data:`MAX_LINES` lines (its ``def`` to its last line, docstring
included) fails this test unless a comment starting ``# Long function:`` inside it, or on the
line just above its ``def``, says why it is better kept whole. See ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
SOURCES = ["trimodal", "data_prep", "benchmarks", "tests", "train.py"]
MARKER = "# Long function:"


def _python_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = ROOT / name
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def long_functions(path: Path, max_lines: int = MAX_LINES) -> list[str]:
    """``"file:line name (N lines)"`` for each unexplained function over ``max_lines``."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = node.end_lineno - node.lineno + 1
        explained = any(MARKER in line for line in lines[max(first - 2, 0) : node.end_lineno])
        if length > max_lines and not explained:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_the_limit_without_a_reason():
    offenders = [entry for path in _python_files() for entry in long_functions(path)]
    assert not offenders, "split these functions or say why they stay whole:\n" + "\n".join(
        offenders
    )


def test_evaluate_is_a_short_loop():
    from trimodal.evaluation.runner import evaluate

    source = Path(evaluate.__code__.co_filename).read_text()
    node = next(
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.FunctionDef) and n.name == "evaluate"
    )
    assert node.end_lineno - node.lineno + 1 < 60


@pytest.mark.parametrize("explained", [False, True])
def test_the_check_sees_a_long_function(tmp_path, monkeypatch, explained):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    marker = f"    {MARKER} a generated table\n" if explained else ""
    path = tmp_path / "module.py"
    path.write_text(f"def generated():\n{marker}{body}\n")
    assert long_functions(path) == ([] if explained else ["module.py:1 generated (81 lines)"])
