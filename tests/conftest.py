"""Shared fixtures. Everything a test needs (checkpoints, corpora) it builds itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"


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
