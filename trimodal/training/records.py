"""What a run records about itself: its environment, its config for the trackers, tracker-safe
metric names and the training record of each saved model.

- ``RUN/run.json``: :func:`environment_record` (library versions, the git commit of the
  code when it is in a repository, the launcher's settings, the command line) beside the
  resolved ``RUN/config.yaml``;
- the trackers receive the resolved config flattened to dotted keys (:func:`flat_config`);
- metric names are written for every Accelerate tracker (:func:`tracker_key`): MLflow, for
  one, accepts only letters, digits and ``_ - . / space``, so ``dev/video/audio→video/R@10``
  is logged as ``dev/video/audio_to_video/R_at_10``; printed tables and model cards keep
  the readable names.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from trimodal.config import to_dict

# Libraries whose versions decide what a run computes.
_LIBRARIES = (
    "trimodal", "torch", "transformers", "accelerate", "datasets", "huggingface_hub",
    "safetensors", "numpy", "laion-clap", "sentencepiece", "decord",
)  # fmt: skip
_TRACKER_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def tracker_key(name: str) -> str:
    """A metric name every Accelerate tracker accepts: ``→`` becomes ``_to_``, ``@``
    becomes ``_at_``, any other character outside ``[A-Za-z0-9_-./ ]`` becomes ``_``."""
    return _TRACKER_UNSAFE.sub("_", name.replace("→", "_to_").replace("@", "_at_"))


def tracker_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with tracker-safe keys (:func:`tracker_key`)."""
    return {tracker_key(k): v for k, v in values.items()}


def flat_config(config: Any) -> dict[str, int | float | str | bool]:
    """The config as ``{"train.lr": 6e-05, "model.channels.audio.backbone": "clap_htsat",
    ...}``: scalars as they are, lists, mappings of lists and ``None`` as JSON text, which
    every tracker's hyper-parameter store accepts (TensorBoard's refuses lists and None)."""
    flat: dict[str, int | float | str | bool] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    walk("", to_dict(config))
    return flat


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a run depends on (``None``: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the repository holding ``path`` (default: the trimodal
    package's source), or ``None`` when it is not in a git work tree (an installed wheel)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def environment_record(accelerator: Any, argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, git commit, launcher settings and command line of this run."""
    git = git_commit()
    return {
        "command": shlex.join(sys.argv if argv is None else argv),
        "versions": library_versions(),
        "git_commit": git["commit"] if git else None,
        "git_dirty": git["dirty"] if git else None,
        "launcher": {
            "num_processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
            "distributed_type": str(accelerator.distributed_type),
            "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,
            "device": str(accelerator.device),
        },
        "platform": platform.platform(),
    }


def data_summary(prepared_dir: str | Path) -> dict[str, Any]:
    """Where the data is and its per-split counts (``summary.json`` of ``prepare``)."""
    summary = Path(prepared_dir) / "summary.json"
    splits = json.loads(summary.read_text()).get("splits", {}) if summary.is_file() else {}
    return {"prepared_dir": str(prepared_dir), "splits": splits}
