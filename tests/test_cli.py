"""The ``trimodal`` command: its subcommands, help generated from the code, and user errors
reported in a line or two (exit status 2, no traceback) before any heavy work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trimodal.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]


def _trimodal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "trimodal", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory outside the checkout with an (empty) prepared layout ``prep/``, and
    ``old/`` in the previous layout (``save_to_disk``'s ``state.json``)."""
    root = tmp_path_factory.mktemp("cli")
    for split in ("train", "dev"):
        (root / "prep" / split).mkdir(parents=True)
        (root / "old" / split).mkdir(parents=True)
        (root / "old" / split / "state.json").write_text("{}")
    (root / "corpus").mkdir()
    return root


# (arguments, what the message must name)
USER_ERRORS = [
    (["train", "--data", "/nonexistent"], "/nonexistent"),
    (["train", "--data", "prep", "--objective", "nosuch"], "'nosuch'"),
    (
        ["train", "--data", "prep", "--model.channels.audio.backbone", "nosuch"],
        "model.channels.audio.backbone",
    ),  # fmt: skip
    (["train", "--data", "prep", "--eval.ks", "[1,5"], "--eval.ks"),
    (["train", "--data", "prep", "--train.select_metric", "video/R@10"], "video/R@10"),
    (["train", "--data", "prep", "--train.lrr", "1"], "train.lrr"),
    (["train", "--data", "prep", "--train.epochs", "zero"], "train.epochs"),
    (["train", "--data", "prep", "--model.modalities", "[audio]"], "model.modalities"),
    (["train", "--data", "prep", "--objective_options", "{nosuch: 1}"], "nosuch"),
    (["train", "--train.epochs", "1"], "--data"),  # no data and no --demo: not the demo
    (["train", "--data", "old"], "older layout; prepare it again: python -m data_prep prepare"),
    (["train", "--config", "nosuch"], "nosuch"),
    (["prepare", "--corpus", "corpus", "--out", "out", "--config", "nope.yaml"], "nope.yaml"),
    (["prepare", "--corpus", "nowhere", "--out", "out"], "nowhere"),
    (["synthetic", "--out", "corpus2", "--videos", "-1"], "--videos"),
    (["evaluate", "--model", "/nonexistent", "--data", "prep", "--output", "o"], "/nonexistent"),
    (["nosuch"], "nosuch"),
]


@pytest.mark.parametrize(("args", "named"), USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS])
def test_a_user_error_is_a_short_message_and_exit_status_2(args, named, workdir):
    result = _trimodal(*args, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 8, result.stderr


def test_absent_weights_are_reported_all_at_once(workdir):
    result = _trimodal("train", "--config", "weighted_contrastive", "--data", "prep", cwd=workdir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for modality, path in (("text", "weights/bpemb"), ("audio", "weights/music_audioset"), ("video", "weights/videomae-base")):  # fmt: skip
        assert f"model.channels.{modality}.source: {path}" in result.stderr


def test_debug_shows_the_traceback(workdir):
    result = _trimodal("train", "--data", "/nonexistent", "--debug", cwd=workdir)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_top_level_help_lists_every_command(workdir):
    result = _trimodal("--help", cwd=workdir)
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"  {command.name} " in result.stdout


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_has_help(command, workdir):
    result = _trimodal(command, "--help", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: trimodal") and "``" not in result.stdout


def test_train_help_is_generated_from_the_config_and_registries(workdir):
    from trimodal.backbones import available_backbones
    from trimodal.objectives import available_objectives

    result = _trimodal("train", "--config", "weighted_contrastive", "--help", cwd=workdir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in (
        "  --train.lr float (default: 6e-05)",
        "  --model.preset 'tiny' | 'full' (default: full)",
        "  --model.channels.MODALITY.trainable_blocks 'all' | 'none' | int (default: all)",
        "  --data.clip_seconds float (default: 8)",
        "  --eval.ks list[int] (default: [1, 5, 10])",
    ):
        assert line in out
    assert all(f"  {name} " in out for name in available_objectives() + available_backbones())


def test_objectives_listed_without_torch_are_the_registered_ones():
    from trimodal.objectives import available_objectives
    from trimodal.training.checks import objective_summaries

    assert list(objective_summaries()) == available_objectives()


def test_the_select_metric_names_cover_every_validation_metric():
    """Every key ``validation_metrics`` gives (texts repeating or not) is one the pre-check
    accepts, so a valid ``--train.select_metric`` is never refused."""
    import torch

    from trimodal.embedding import SplitEmbeddings
    from trimodal.training import validation_metrics
    from trimodal.training.checks import validation_metric_names

    names = set(validation_metric_names(["text", "audio", "video"], [1, 5, 10]))
    torch.manual_seed(0)
    for texts in (["drums"] * 8 + ["piano"] * 4, [f"text {i}" for i in range(12)]):
        embeddings = SplitEmbeddings(
            split="dev",
            embeddings={m: torch.randn(12, 8) for m in ("text", "audio", "video")},
            backbone={},
            video_id=[f"v{i // 2}" for i in range(12)],
            clip_index=[i % 2 for i in range(12)],
            texts=texts,
        )
        metrics = validation_metrics(embeddings, ["text", "audio", "video"], [1, 5, 10])
        assert set(metrics) <= names, sorted(set(metrics) - names)
    assert "video/R@10" not in names


def test_shipped_configs_resolve_by_name():
    from trimodal.config import load_config
    from trimodal.help import resolve_config, shipped_configs

    assert {"weighted_contrastive", "contrastive", "thesis/baseline", "demo"} <= set(
        shipped_configs()
    )
    config = load_config(resolve_config("weighted_contrastive"))
    assert config.objective == "weighted_contrastive" and config.model.preset == "full"
    assert resolve_config("thesis/baseline.yaml").endswith("thesis/baseline.yaml")


def test_objective_options_read_without_torch_match_the_constructors():
    import inspect

    from trimodal.objectives import available_objectives, objective_class
    from trimodal.training.checks import objective_options

    options = objective_options()
    assert list(options) == available_objectives()
    for name, accepted in options.items():
        assert accepted == list(inspect.signature(objective_class(name)).parameters), name


def test_the_musicnn_command_offers_the_convertible_models():
    from trimodal.backbones.musicnn import MUSICNN_MODELS
    from trimodal.backbones.musicnn_cli import MODELS

    assert MODELS == MUSICNN_MODELS
