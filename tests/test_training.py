"""The training loop: gradient caching, the feature cache, exact resume, non-finite steps."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import prepared_training_corpus
from safetensors.torch import load_file

from trimodal import build_model
from trimodal.config import load_config
from trimodal.objectives import get_objective
from trimodal.training import NonFiniteLossError, Trainer, grad_cache_step

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Six short synthetic videos (4 train, 1 dev, 1 test) prepared for the tiny presets."""
    return prepared_training_corpus(tmp_path_factory.mktemp("train_data"), 4)


def _config(prepared: Path, output: Path, *overrides: str):
    return load_config(
        None,
        [
            "--data", str(prepared),
            "--output", str(output),
            "--model.preset", "tiny",
            "--model.embed_dim", "16",
            "--objective", "contrastive",
            "--train.batch_size", "2",
            "--train.gradient_accumulation_steps", "1",
            "--train.lr", "1e-3",
            "--train.log_with", "[jsonl]",
            "--train.log_every", "1",
            *overrides,
        ],
    )  # fmt: skip


# ----------------------------------------------------------------------------- grad cache


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("text_positives", [False, True], ids=["plain", "repeated_texts"])
def test_grad_cache_gives_the_full_batch_gradients_with_dropout_on(text_positives):
    """GradCache with dropout, and with the repeated texts of this batch (8 texts over 32
    clips) as positives of each other or not."""
    config = load_config(
        None,
        [
            "--model.preset", "tiny",
            "--model.modalities", "[text, video]",
            "--model.embed_dim", "16",
            "--model.channels.text.head.hidden_sizes", "[24]",
            "--model.channels.text.head.dropout", "0.5",
            "--model.channels.video.head.hidden_sizes", "[24]",
            "--model.channels.video.head.dropout", "0.5",
        ],
    ).model  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config).train()
    objective = get_objective("contrastive")
    words = ["rock", "jazz", "piano", "drum", "music video", "guitar", "choir", "dance"]
    texts = [f"{words[i % 8]} {words[(i * 3) % 8]}" for i in range(32)]
    frames = torch.rand(32, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    keys = model.text_keys(texts) if text_positives else None
    assert keys is None or len(set(keys.tolist())) == 8

    def plain(seed: int) -> dict[str, torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(seed)
        out = model(text=texts, video=frames)
        objective(out.embeddings, logit_scale=out.logit_scale, text_keys=keys)["loss"].backward()
        return _grads(model)

    expected = plain(seed=5)
    assert any((g - e).abs().max() > 1e-3 for g, e in zip(plain(6).values(), expected.values())), (
        "dropout must be active, or the comparison below proves nothing"
    )
    model.zero_grad()
    torch.manual_seed(5)
    grad_cache_step(
        model,
        {"text": texts, "video": frames},
        lambda emb, scale: objective(emb, logit_scale=scale, text_keys=keys),
        chunk_size=4,
    )
    got = _grads(model)
    assert got.keys() == expected.keys() and "logit_scale" in got
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=name)


def test_the_objective_gets_the_identity_of_each_text_as_the_text_channel_reads_it(
    prepared, tmp_path
):
    trainer = Trainer(_config(prepared, tmp_path / "on"))
    texts = ["Rock  music", "rock music", "Song 12", "song 34", "Jazz"]
    keys = trainer._text_keys({"text": texts})
    assert keys.dtype == torch.int64 and keys.shape == (5,)
    # BPEmb's normalisation: case, runs of spaces and digits do not tell texts apart...
    assert keys[0] == keys[1] and keys[2] == keys[3]
    assert len(set(keys[[0, 2, 4]].tolist())) == 3
    # ...because the channel cannot: equal keys, equal embeddings.
    model = trainer.unwrapped.eval()
    with torch.no_grad():
        embeddings = model.encode_text(texts)
    assert torch.equal(embeddings[0], embeddings[1]) and torch.equal(embeddings[2], embeddings[3])
    captured = {}

    def spy(embeddings, **kwargs):
        captured.update(kwargs)
        return {"loss": torch.zeros(())}

    trainer.objective = spy
    with trainer._loss_with_features({"text": texts}) as loss_fn:
        loss_fn({}, None)
    assert torch.equal(captured["text_keys"], keys)
    off = Trainer(_config(prepared, tmp_path / "off", "--train.text_positives", "false"))
    assert off._text_keys({"text": texts}) is None


# ----------------------------------------------------------------------------- feature cache


def test_grad_cache_streams_the_contrastive_loss_in_blocks_of_the_chunk(prepared, tmp_path):
    """Under gradient caching the full-batch loss bounds memory, so the trainer streams it
    (``block_size`` = the chunk) unless the config says otherwise; objectives without blocks
    are built as configured."""
    cached = Trainer(_config(prepared, tmp_path / "a", "--train.grad_cache_chunk", "2"))
    assert cached.objective.block_size == 2
    explicit = _config(
        prepared, tmp_path / "b", "--train.grad_cache_chunk", "2", "--objective_options",
        "{block_size: 8}",
    )  # fmt: skip
    assert Trainer(explicit).objective.block_size == 8
    assert Trainer(_config(prepared, tmp_path / "c")).objective.block_size is None
    cosine = _config(
        prepared, tmp_path / "d", "--train.grad_cache_chunk", "2", "--objective", "cosine"
    )
    assert not hasattr(Trainer(cosine).objective, "block_size")


def test_frozen_backbones_run_only_in_the_first_epoch(prepared, tmp_path):
    config = _config(
        prepared,
        tmp_path / "run",
        "--model.channels.audio.trainable_blocks", "none",
        "--model.channels.video.trainable_blocks", "none",
        "--train.epochs", "2",
        "--train.validations_per_epoch", "1",
    )  # fmt: skip
    trainer = Trainer(config)
    model = trainer.unwrapped
    assert sorted(trainer.feature_cache.modalities) == ["audio", "video"]
    calls = {0: 0, 1: 0}
    counting = {"on": True}

    def count(module, args, output):
        if counting["on"]:
            calls[trainer.state.epoch] += 1

    for modality in ("audio", "video"):
        model.backbones[modality].register_forward_hook(count)
    validate = trainer.validate

    def validate_uncounted():
        counting["on"] = False
        try:
            return validate()
        finally:
            counting["on"] = True

    trainer.validate = validate_uncounted
    trainer.fit()
    assert calls[0] > 0
    assert calls[1] == 0
    # The cached features are what the backbone computes.
    batch = next(iter(trainer.train_loader))
    with torch.no_grad():
        fresh = model.backbone_features("audio", batch["audio"])
    cached = trainer.feature_cache.get("audio", 1, batch["index"])
    torch.testing.assert_close(cached, fresh, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- resume


def _train_cmd(prepared: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO / "train.py"),
        "--data", str(prepared),
        "--output", str(output),
        "--model.preset", "tiny",
        "--model.embed_dim", "16",
        "--model.channels.video.head.hidden_sizes", "[16]",
        "--model.channels.video.head.dropout", "0.3",
        "--objective", "weighted_contrastive",
        "--train.batch_size", "2",
        "--train.gradient_accumulation_steps", "2",
        "--train.epochs", "4",
        "--train.checkpoint_every", "2",
        "--train.log_with", "[]",
        *extra,
    ]  # fmt: skip


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(prepared, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = subprocess.run(
        _train_cmd(prepared, tmp_path / "full"), env=env, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr[-3000:]

    run = tmp_path / "killed"
    process = subprocess.Popen(
        _train_cmd(prepared, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (run / "checkpoints" / "checkpoint_2").is_dir():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run / "last").exists(), "the run finished before it was killed"

    resumed = subprocess.run(
        [*_train_cmd(prepared, run), "--resume", "latest"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    expected = load_file(tmp_path / "full" / "last" / "model.safetensors")
    got = load_file(run / "last" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- objectives


def test_train_py_trains_vmnet_triplet_end_to_end(prepared, tmp_path):
    """``--objective vmnet_triplet`` through the real entry point: its structure terms get the
    backbone features of the same forward pass (it raised "needs features['audio']")."""
    from trimodal.utils import seed_everything

    run = tmp_path / "run"
    command = [
        *_train_cmd(prepared, run), "--objective", "vmnet_triplet",
        "--train.batch_size", "4", "--train.gradient_accumulation_steps", "1",
        "--train.epochs", "2", "--train.log_with", "[jsonl]", "--train.log_every", "1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "train/loss" in line]
    # 2 epochs of 2 batches of 4 (8 clips of 4 videos, one clip per video in a batch); the
    # structure terms need 3 clips for a triplet, so they are not trivially 0 here.
    assert len(steps) == 4
    for line in steps:
        assert torch.isfinite(torch.tensor(line["train/loss"]))
        for modality in ("text", "audio", "video"):
            assert any(key.endswith(f"/structure_{modality}") for key in line), modality
    assert any(v > 0 for line in steps for k, v in line.items() if "/structure_" in k)
    # The parameters moved from the initial ones (the trainer seeds, then builds the model).
    seed_everything(load_config(run / "config.yaml").train.seed)
    initial = build_model(load_config(run / "config.yaml").model).state_dict()
    trained = load_file(run / "last" / "model.safetensors")
    assert any(not torch.equal(trained[name], initial[name]) for name in trained)


@pytest.mark.parametrize("chunk", [None, 1])
def test_vmnet_structure_terms_see_the_backbone_features(prepared, tmp_path, chunk):
    """The structure terms get the backbone features of the batch: through a forward hook
    (text), from the feature cache (frozen audio and video), chunk by chunk under gradient
    caching — the same terms as the objective given the features directly."""
    overrides = ["--objective", "vmnet_triplet", "--train.batch_size", "4",
                 "--model.channels.audio.trainable_blocks", "none",
                 "--model.channels.video.trainable_blocks", "none"]  # fmt: skip
    if chunk:
        overrides += ["--train.grad_cache_chunk", str(chunk)]
    trainer = Trainer(_config(prepared, tmp_path / "run", *overrides))
    model = trainer.model.eval()  # no dropout: both computations must see the same net
    batch = next(iter(trainer.train_loader))
    inputs = trainer._model_inputs(batch, 0)
    assert sorted(inputs["features"]) == ["audio", "video"]
    terms = trainer._forward_backward(inputs)
    with torch.no_grad():
        out = model(**inputs)
        features = {"text": model.backbone_features("text", batch["text"])}
        features.update({m: model.backbone_features(m, batch[m]) for m in ("audio", "video")})
        expected = trainer.objective(out.embeddings, features=features)
    assert any(key.endswith("/structure_text") for key in terms)
    assert any(float(v.detach()) > 0 for k, v in terms.items() if "/structure_" in k)
    for key, value in expected.items():
        torch.testing.assert_close(terms[key], value, rtol=1e-5, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------- robustness


def test_non_finite_steps_are_skipped_then_stop_the_run(prepared, tmp_path):
    config = _config(
        prepared,
        tmp_path / "run",
        "--model.modalities", "[text, video]",
        "--train.epochs", "3",
        "--train.max_nonfinite_steps", "3",
    )  # fmt: skip
    trainer = Trainer(config)
    loss_fn = trainer._loss
    calls = {"n": 0}

    def sometimes_nan(embeddings, logit_scale, **kwargs):
        calls["n"] += 1
        terms = loss_fn(embeddings, logit_scale, **kwargs)
        if calls["n"] == 2 or calls["n"] >= 4:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    trainer._loss = sometimes_nan
    before = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters()}
    with pytest.raises(NonFiniteLossError, match="3 optimiser steps in a row"):
        trainer.fit()
    params = dict(trainer.unwrapped.named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    assert any(not torch.equal(params[n], before[n]) for n in before)  # steps 1 and 3 trained
    assert trainer.state.global_step == 6  # 3 good or skipped steps, then 3 bad in a row
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint_6"
    assert checkpoint.is_dir(), "the last good state is saved before stopping"


def test_a_run_saves_config_metrics_best_and_last(prepared, tmp_path):
    config = _config(
        prepared, tmp_path / "run", "--train.epochs", "2", "--train.checkpoint_every", "3"
    )
    metrics = Trainer(config).fit()
    run = tmp_path / "run"
    assert load_config(run / "config.yaml") == config
    for name in ("best", "last"):
        assert (run / name / "model.safetensors").is_file()
    assert {"video/mean_R@10", "clip/audio→video/R@1", "mean_positive_distance"} <= set(metrics)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in line for line in lines)
    assert any("dev/video/mean_R@10" in line for line in lines)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint_3",
        "checkpoint_6",
    ]
    record = json.loads((run / "run.json").read_text())
    assert record["versions"]["torch"] and record["git_commit"]  # the checkout is a repository
    assert record["launcher"]["num_processes"] == 1 and record["command"]
    assert {"transformers", "accelerate", "trimodal"} <= set(record["versions"])
    # The best model carries how it was trained: training.json and the model card.
    training = json.loads((run / "best" / "training.json").read_text())
    assert training["config"]["objective"] == "contrastive" == training["objective"]
    assert training["best"]["metric"] == "video/mean_R@10"
    assert training["data"]["splits"]["train"]["videos"] == 4
    card = (run / "best" / "README.md").read_text()
    assert "Objective: `contrastive`" in card and "Selected on `video/mean_R@10`" in card
    assert "| video | audio→video | R@10 |" in card


def test_trackers_receive_the_config_and_tracker_safe_metric_names(prepared, tmp_path):
    from accelerate import Accelerator
    from accelerate.tracking import GeneralTracker

    from trimodal.training.records import flat_config

    class Recorder(GeneralTracker):
        name = "recorder"
        requires_logging_directory = False

        def __init__(self):
            super().__init__()
            self.config, self.keys = None, set()

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.config = values

        def log(self, values, step=None, **kwargs):
            self.keys |= set(values)

    recorder = Recorder()
    config = _config(prepared, tmp_path / "run", "--train.epochs", "1")
    Trainer(config, accelerator=Accelerator(log_with=[recorder])).fit()
    assert recorder.config == flat_config(config)
    assert recorder.config["train.lr"] == 1e-3 and recorder.config["objective"] == "contrastive"
    assert recorder.config["train.log_with"] == '["jsonl"]'  # lists as JSON text
    assert "dev/video/audio_to_video/R_at_10" in recorder.keys and "train/loss" in recorder.keys
    # MLflow's rule for names: letters, digits, and _ - . / and space.
    assert all(re.fullmatch(r"[A-Za-z0-9_\-./ ]+", key) for key in recorder.keys), recorder.keys


def test_train_py_refuses_bad_options(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--train.lrr", "1"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "train.lrr" in result.stderr


def test_loss_is_scaled_for_accumulation(prepared, tmp_path):
    """Two micro-batches of 2 accumulate to the mean of their gradients
    (docs/defects.md#gradient-accumulation-and-clipping)."""
    config = _config(prepared, tmp_path / "run", "--train.gradient_accumulation_steps", "2")
    trainer = Trainer(config)
    batches = [b for _, b in zip(range(2), trainer.train_loader)]
    model = trainer.model.eval()  # no dropout: the two computations must see the same net
    expected = None
    for batch in batches:  # reference: mean of per-batch gradients, computed by hand
        model.zero_grad()
        out = model(**trainer._model_inputs(batch, 0))
        trainer._loss(out.embeddings, out.logit_scale)["loss"].backward()
        grads = _grads(model)
        expected = grads if expected is None else {k: (expected[k] + grads[k]) for k in grads}
    expected = {k: v / 2 for k, v in expected.items()}
    model.zero_grad()
    for batch in batches:
        with trainer.accelerator.accumulate(model):
            trainer._forward_backward(trainer._model_inputs(batch, 0))
    got = _grads(model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert dataclasses.asdict(config.train)["gradient_accumulation_steps"] == 2


def test_validation_metrics_have_per_pair_means_to_select_on():
    """``video/<a>-<b>/mean_R@k`` averages the pair's two directions, so a run can select its
    checkpoint on the pair it is about (the demo selects on audio-video)."""
    from trimodal.embedding import SplitEmbeddings
    from trimodal.training import validation_metrics

    torch.manual_seed(0)
    n = 30
    audio = torch.nn.functional.normalize(torch.randn(n, 8), dim=-1)
    embeddings = SplitEmbeddings(
        split="dev",
        embeddings={
            "text": torch.randn(n, 8),
            "audio": audio,
            "video": audio + 0.01 * torch.randn(n, 8),
        },
        backbone={},
        video_id=[f"v{i // 2}" for i in range(n)],
        clip_index=[i % 2 for i in range(n)],
    )
    metrics = validation_metrics(embeddings, ["text", "audio", "video"], [1, 10])
    assert metrics["video/audio-video/mean_R@1"] == 1.0
    assert metrics["clip/audio-video/mean_median_rank"] == 1.0
    for level in ("clip", "video"):
        for a, b in (("text", "audio"), ("text", "video"), ("audio", "video")):
            both = metrics[f"{level}/{a}→{b}/R@10"], metrics[f"{level}/{b}→{a}/R@10"]
            assert metrics[f"{level}/{a}-{b}/mean_R@10"] == pytest.approx(sum(both) / 2)
        pairs = [
            metrics[f"{level}/{p}/mean_R@10"] for p in ("text-audio", "text-video", "audio-video")
        ]
        assert metrics[f"{level}/mean_R@10"] == pytest.approx(sum(pairs) / 3)


def _repeated_text_embeddings(seed: int = 0):
    """Dev-like embeddings: 12 clips of 6 videos, the first 4 videos sharing one text."""
    from trimodal.embedding import SplitEmbeddings

    torch.manual_seed(seed)
    texts = ["drums"] * 8 + ["piano"] * 2 + ["choir"] * 2
    by_text = {t: torch.randn(8) for t in dict.fromkeys(texts)}
    text = torch.stack([by_text[t] for t in texts])
    audio = text + 0.05 * torch.randn(12, 8)
    return SplitEmbeddings(
        split="dev",
        embeddings={"text": text, "audio": audio, "video": audio + 0.01 * torch.randn(12, 8)},
        backbone={},
        video_id=[f"v{i // 2}" for i in range(12)],
        clip_index=[i % 2 for i in range(12)],
        texts=texts,
    )


def test_validation_metrics_with_repeated_texts_are_multi_relevant():
    from trimodal.training import validation_metrics

    embeddings = _repeated_text_embeddings()
    metrics = validation_metrics(embeddings, ["text", "audio", "video"], [1, 10])
    without = validation_metrics(
        dataclasses.replace(embeddings, texts=[]), ["text", "audio", "video"], [1, 10]
    )
    for level in ("clip", "video"):
        assert metrics[f"{level}/text→audio/mAP"] == 1.0
        assert metrics[f"{level}/audio→text/any@1"] == 1.0
        assert metrics[f"{level}/text-audio/mean_mAP"] == 1.0
        assert f"{level}/text→audio/R@1" not in metrics
        # The audio-video keys (the default selection metric among them) do not change.
        prefixes = tuple(f"{level}/{d}/" for d in ("audio→video", "video→audio", "audio-video"))
        for key in [k for k in without if k.startswith(prefixes)]:
            assert metrics[key] == without[key], key
        assert metrics[f"{level}/mean_R@10"] == metrics[f"{level}/audio-video/mean_R@10"]
    assert metrics["video/audio-video/mean_R@10"] == 1.0


class _LabelTextModel:
    """Stands in for a model in the demo report: label names embed as the texts did."""

    training = False

    def __init__(self, by_text):
        self.by_text = by_text

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def encode_text(self, names):
        return torch.stack([self.by_text[n] for n in names])


def test_demo_prints_the_compact_table_and_saves_every_result(monkeypatch, tmp_path):
    import math

    import trimodal.embedding
    from trimodal.cli import demo_report
    from trimodal.modeling import TrimodalModel

    embeddings = _repeated_text_embeddings()
    names = ["drums", "piano", "choir"]
    labels = np.array([[float(t == n) for n in names] for t in embeddings.texts])
    embeddings = dataclasses.replace(embeddings, labels=labels, label_names=names)
    by_text = dict(zip(embeddings.texts, embeddings.embeddings["text"]))
    monkeypatch.setattr(trimodal.embedding, "extract_split", lambda *a, **k: embeddings)
    model = _LabelTextModel(by_text)
    monkeypatch.setattr(TrimodalModel, "from_pretrained", classmethod(lambda cls, path: model))
    config = load_config(None, ["--data", str(tmp_path), "--output", str(tmp_path / "run")])
    report = demo_report(config, tmp_path / "best", tmp_path / "untrained")
    lines = [line for line in report.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert header == ["direction", "metric", "trained", "untrained", "chance"]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in lines[2:]}
    assert len(rows) == 12
    cells = [c.strip() for c in rows["text→audio", "label mAP"].split("|")[1:-1]]
    # Each label's videos rank first: AP 1. Chance of a random ranking of the 6 videos:
    # drums has 4 of them, piano and choir 1 each.
    h6 = sum(1 / k for k in range(1, 7))
    expected = np.mean([(h6 + (r - 1) / 5 * (6 - h6)) / 6 for r in (4, 1, 1)])
    assert cells[2:] == ["1.000", "1.000", f"{expected:.3f}"]
    any10 = [c.strip() for c in rows["text→video", "label any@10"].split("|")[1:-1]]
    assert any10[2:] == ["1.000", "1.000", "1.000"]  # 6 videos: any 10 hold them all
    chance_r1 = [c.strip() for c in rows["audio→video", "R@1"].split("|")[1:-1]][-1]
    assert chance_r1 == f"{1 / 6:.3f}"
    saved = json.loads((tmp_path / "run" / "test_results.json").read_text())
    label = saved["models"]["trained"]["zero_shot"]["label_retrieval"]["video"]["audio"]
    assert label["mAP"] == 1.0 and math.isclose(
        saved["chance"]["label_retrieval"]["video"]["mAP"], expected
    )
    full = (tmp_path / "run" / "test_results.md").read_text()
    assert "## Cross-modal retrieval" in full and "## Zero-shot, untrained model" in full
    assert str(tmp_path / "run" / "test_results.md") in report


def test_demo_path_generates_once_trains_and_prints_the_comparison_table(
    tmp_path, monkeypatch, capsys
):
    """``train.py`` with no data: generate + prepare the synthetic corpus into the cache (once),
    train the tiny presets and print trained / untrained / chance for every direction."""
    import trimodal.cli as cli

    original = cli.prepare_demo_data
    monkeypatch.setattr(
        cli, "prepare_demo_data", lambda: original(cache_dir=tmp_path / "cache", videos=16)
    )
    # 16 videos leave 1-2 dev videos, whose texts need not repeat: no text mAP to select on.
    argv = ["--demo", "--output", str(tmp_path / "run"), "--train.max_steps", "2"]
    argv += ["--train.batch_size", "4", "--train.select_metric", "video/audio-video/mean_R@10"]
    assert cli.train_main(argv) == 0
    out = capsys.readouterr().out
    # The end-of-run summary: the best validation, where the model is, how to evaluate it.
    assert f"best model: {tmp_path / 'run' / 'best'}" in out
    assert "best video/audio-video/mean_R@10 = " in out and "trimodal evaluate --model" in out
    assert "generating the synthetic demo corpus (16 videos)" in out
    header = next(line for line in out.splitlines() if line.startswith("| direction |"))
    assert [c.strip() for c in header.split("|")[3:-1]] == ["trained", "untrained", "chance"]
    assert "| text→audio | label mAP |" in out and "| audio→video | R@10 |" in out
    assert (tmp_path / "run" / "test_results.md").is_file()
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert (
        saved.data.train_text == "labels"
        and saved.model.channels["audio"].trainable_blocks == "none"
    )

    assert cli.train_main(argv) == 0  # the cached corpus and prepared data are reused
    assert "generating" not in capsys.readouterr().out

    # A corpus cached by another version of the generator is regenerated, not reused.
    from trimodal.prepare.corpus import read_corpus
    from trimodal.prepare.synthetic import GENERATOR_VERSION

    marker = tmp_path / "cache" / "demo" / "corpus.json"
    key = json.loads(marker.read_text())
    marker.write_text(json.dumps({**key, "generator_version": GENERATOR_VERSION - 1}))
    cli.prepare_demo_data()
    assert "generating the synthetic demo corpus" in capsys.readouterr().out
    assert json.loads(marker.read_text()) == key
    records = read_corpus(tmp_path / "cache" / "demo" / "corpus")
    assert {r.extra["generator_version"] for r in records} == {GENERATOR_VERSION}
