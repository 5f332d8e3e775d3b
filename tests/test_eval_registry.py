"""Evaluation as a registry of tasks: explicit skips with reasons, bugs raised, and the
``EvalConfig`` ↔ command line ↔ task path of a setting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trimodal.config import EvalConfig
from trimodal.embedding import SplitEmbeddings
from trimodal.evaluation import TASKS, EvalContext, EvalTask, TaskOutput, evaluate, main
from trimodal.evaluation.cli import _evaluate_parser


def _split(
    name: str, videos: int, modalities=("text", "audio", "video"), dim=24
) -> SplitEmbeddings:
    rng = np.random.default_rng(len(name) + videos)
    ids = [f"{name}-{v}" for v in range(videos) for _ in range(2)]
    emb = {
        m: torch.nn.functional.normalize(torch.tensor(rng.normal(size=(len(ids), dim))).float())
        for m in modalities
    }
    labels = np.array([[v % 2, 1 - v % 2] for v in range(videos) for _ in range(2)])
    return SplitEmbeddings(
        name, emb, {}, ids, [0, 1] * videos, labels, [int(r.argmax()) for r in labels],
        ["Rock", "Jazz"], {v: v.upper() for v in ids}, f"fp-{name}",
    )  # fmt: skip


@pytest.fixture
def saved(tiny_model, tmp_path, monkeypatch) -> tuple[Path, Path, dict[str, SplitEmbeddings]]:
    """A saved tiny model, a prepared directory with empty split folders, and extraction
    replaced by synthetic splits (the tasks see only these)."""
    import trimodal.evaluation.extraction as extraction

    model_dir, prepared = tmp_path / "model", tmp_path / "prepared"
    tiny_model.save_pretrained(model_dir)
    splits = {"train": _split("train", 6), "dev": _split("dev", 3), "test": _split("test", 5)}
    for split in splits:
        (prepared / split).mkdir(parents=True)

    def fake_load_or_extract(model, model_fp, prepared_dir, split, cache_dir, **kwargs):
        return splits[split], False

    monkeypatch.setattr(extraction, "load_or_extract", fake_load_or_extract)
    return model_dir, prepared, splits


def _context(model, splits: dict[str, SplitEmbeddings], prepared: Path, **settings) -> EvalContext:
    ctx = EvalContext(model, "fp", prepared, prepared, EvalConfig(**settings))
    ctx.loaded.update(splits)
    return ctx


def test_tasks_that_cannot_run_say_why(tiny_model, tmp_path):
    (tmp_path / "test").mkdir()
    one_modality = _context(tiny_model, {"test": _split("test", 3, ("audio",))}, tmp_path)
    assert "two modalities" in TASKS["retrieval"].unavailable(one_modality)
    assert TASKS["neighbours"].unavailable(one_modality) is None
    no_content = _context(tiny_model, {"test": _split("test", 3, ("text",))}, tmp_path)
    assert TASKS["neighbours"].unavailable(no_content) == "no audio or video embeddings"
    assert TASKS["zero_shot"].unavailable(no_content) == "no audio or video embeddings to tag"
    one_video = _context(tiny_model, {"test": _split("test", 1)}, tmp_path)
    assert "has 1 video(s); need at least 2" in TASKS["neighbours"].unavailable(one_video)
    # No train/dev folders: the probes name the missing split and the splits there are.
    reason = TASKS["probe"].unavailable(one_video)
    assert reason.startswith("the probes need the train and dev splits: split 'train' not found")
    assert "(available: test)" in reason
    assert "split 'train'" in TASKS["thesis_probes"].unavailable(one_video)
    assert TASKS["retrieval"].unavailable(one_video) is None


def test_evaluate_records_skips_and_raises_bugs(saved, tmp_path, monkeypatch):
    model_dir, prepared, _ = saved

    class Unavailable(EvalTask):
        name = "needs_lyrics"

        def unavailable(self, ctx: EvalContext) -> str | None:
            return "the data has no lyrics"

        def run(self, ctx: EvalContext) -> TaskOutput:
            raise AssertionError("an unavailable task must not run")

    class Broken(EvalTask):
        name = "broken"

        def run(self, ctx: EvalContext) -> TaskOutput:
            raise ValueError("a bug in the task")

    monkeypatch.setitem(TASKS, "needs_lyrics", Unavailable())
    monkeypatch.setitem(TASKS, "broken", Broken())
    results = evaluate(
        model_dir, prepared, tmp_path / "out", tasks=["retrieval", "needs_lyrics"],
        make_plots=False,
    )  # fmt: skip
    assert results["skipped"] == {"needs_lyrics": "the data has no lyrics"}
    assert "retrieval" in results and "needs_lyrics" not in results
    assert "- needs_lyrics: the data has no lyrics" in (tmp_path / "out" / "results.md").read_text()
    # A failing task is a failure of the evaluation, not a "skipped" entry.
    with pytest.raises(ValueError, match="a bug in the task"):
        evaluate(model_dir, prepared, tmp_path / "out", tasks=["broken"], make_plots=False)


def test_every_config_field_is_a_command_line_option():
    parser = _evaluate_parser()
    dests = {action.dest for action in parser._actions}
    assert {f.name for f in dataclasses.fields(EvalConfig)} <= dests
    flags = {opt for action in parser._actions for opt in action.option_strings}
    # The historical option names.
    assert {"--no-plots", "--no-backbone-baselines", "--probe-levels", "--top-tags"} <= flags


def test_a_command_line_option_reaches_the_task(saved, tmp_path):
    model_dir, prepared, splits = saved
    out = tmp_path / "eval"
    common = ["--model", str(model_dir), "--data", str(prepared), "--output", str(out)]
    code = main([*common, "--tasks", "neighbours,retrieval", "--num-seeds", "2", "--ks", "1,2",
                 "--no-plots"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["neighbours"]["seeds"]) == 2
    assert set(results["retrieval"]["clip"]["audio→video"]) >= {"R@1", "R@2"}
    assert "R@10" not in results["retrieval"]["clip"]["audio→video"]
    assert results["meta"]["config"] == {
        **dataclasses.asdict(EvalConfig()),
        "tasks": ["neighbours", "retrieval"],
        "num_seeds": 2,
        "ks": [1, 2],
        "make_plots": False,
    }
    assert results["plots"] == {}
    # A YAML's eval: section gives the settings; an option given overrides it.
    config = tmp_path / "experiment.yaml"
    config.write_text("eval:\n  num_seeds: 1\n  tasks: [neighbours]\n  make_plots: false\n")
    assert main([*common, "--config", str(config)]) == 0
    assert len(json.loads((out / "results.json").read_text())["neighbours"]["seeds"]) == 1
    assert main([*common, "--config", str(config), "--num-seeds", "3"]) == 0
    assert len(json.loads((out / "results.json").read_text())["neighbours"]["seeds"]) == 3
    # A wrongly typed value is refused with the key's name.
    assert main([*common, "--num-seeds", "many"]) == 2
