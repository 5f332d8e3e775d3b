"""Shared fixtures. Everything a test needs (checkpoints, corpora) it builds itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# TRIMODAL_DISABLE_DECORD=1: the library treats decord as absent, and so do the tests: an
# `import decord` anywhere in this process fails as if it were not installed.
if os.environ.get("TRIMODAL_DISABLE_DECORD", "") not in ("", "0"):
    sys.modules["decord"] = None  # type: ignore[assignment]

# Small reference files the tests compare against (sources, licences, checksums: data/README.md).
TEST_DATA = Path(__file__).resolve().parent / "data"
# The user's trimodal cache, read before `_isolated_cache` points TRIMODAL_CACHE elsewhere:
# `python -m trimodal.backbones.musicnn convert`, run before the tests, wrote there.
USER_CACHE = Path(os.environ.get("TRIMODAL_CACHE", Path.home() / ".cache" / "trimodal"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated assets go to a per-session directory, never to the user's ~/.cache."""
    os.environ["TRIMODAL_CACHE"] = str(tmp_path_factory.mktemp("trimodal_cache"))


@pytest.fixture(scope="session")
def tiny_bpemb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BPEmb cache directory with a tiny pair built offline (vocabulary 200, dim 32)."""
    from trimodal.backbones.tiny import make_tiny_bpemb

    return make_tiny_bpemb(tmp_path_factory.mktemp("bpemb"), vocab_size=200, dim=32)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny trimodal model (random weights, all three channels), in eval mode."""
    from trimodal import build_model
    from trimodal.config import ModelConfig

    return build_model(ModelConfig(preset="tiny", embed_dim=24)).eval()


@pytest.fixture(scope="session")
def musicnn_dir() -> Path:
    """The directory with both converted musicnn models, or a failure naming the command.

    ``TRIMODAL_MUSICNN_DIR`` overrides the location; ``TRIMODAL_ALLOW_MISSING_MUSICNN=1``
    turns the failure into a skip (CI converts the weights, so there it always runs).
    """
    from trimodal.backbones.musicnn import CONVERT_COMMAND, MUSICNN_MODELS

    directory = Path(os.environ.get("TRIMODAL_MUSICNN_DIR", USER_CACHE / "musicnn"))
    missing = [m for m in MUSICNN_MODELS if not (directory / f"{m}.safetensors").is_file()]
    if missing:
        message = (
            f"converted musicnn weights {missing} not found in {directory}: run "
            f"`{CONVERT_COMMAND}` (add --cache-dir DIR and set TRIMODAL_MUSICNN_DIR=DIR for "
            "another place)"
        )
        if os.environ.get("TRIMODAL_ALLOW_MISSING_MUSICNN") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return directory
