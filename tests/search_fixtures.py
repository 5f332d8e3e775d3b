"""Shared by the search tests: a synthetic media directory with one corrupt file, a tiny saved
model, and their embedding (made once per session: decoding takes a while on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "configs" / "demo_data.yaml"
VIDEOS = 6
BATCH = 2  # clips per batch: one 2-clip video each, so a killed run stops between videos

_cache: dict[str, Path] = {}


def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``VIDEOS`` synthetic 9–10-s videos (two 4-s clips each with the demo's settings) and
    ``broken.mp4``, which is not a video."""
    if "media" not in _cache:
        from trimodal.prepare.synthetic import SynthOptions, generate_corpus

        root = tmp_path_factory.mktemp("search_corpus")
        generate_corpus(root, VIDEOS, seed=11, opts=SynthOptions(min_seconds=9, max_seconds=10))
        (root / "media" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
        _cache["media"] = root
    return _cache["media"] / "media"


def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained model (random weights, fixed seed), saved."""
    if "model" not in _cache:
        import torch

        from trimodal import build_model
        from trimodal.config import ModelConfig

        torch.manual_seed(0)
        path = tmp_path_factory.mktemp("search_model") / "model"
        build_model(ModelConfig(preset="tiny", embed_dim=24)).save_pretrained(path)
        _cache["model"] = path
    return _cache["model"]


def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``embed`` of :func:`media_dir` with :func:`tiny_model_dir` (the demo's clip settings)."""
    if "embedded" not in _cache:
        from trimodal.search import cli

        out = tmp_path_factory.mktemp("search_embedded") / "out"
        argv = [str(media_dir(tmp_path_factory)), "--model", str(tiny_model_dir(tmp_path_factory))]
        argv += ["--out", str(out), "--data-config", str(DEMO_DATA), "--batch-size", str(BATCH)]
        assert cli.main_embed([*argv, "--no-progress"]) == 0
        _cache["embedded"] = out
    return _cache["embedded"]


def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exact index of :func:`embedded`."""
    if "index" not in _cache:
        from trimodal.search import cli

        out = tmp_path_factory.mktemp("search_index") / "index"
        assert cli.main_index([str(embedded(tmp_path_factory)), "--out", str(out)]) == 0
        _cache["index"] = out
    return _cache["index"]
