"""Typed configuration: YAML loading, overrides, refusal of unknown keys and wrong types."""

from __future__ import annotations

import pytest
import yaml

from trimodal.config import ConfigError, ExperimentConfig, load_config, parse_overrides, save_config


def test_defaults_are_the_study_hyper_parameters():
    config = load_config()
    assert config.objective == "weighted_contrastive"
    assert config.model.embed_dim == 300
    assert config.train.lr == 6e-5
    assert config.train.adam_betas == [0.9, 0.98]
    assert config.train.max_grad_norm == 2.0
    assert config.model.channels["text"].trainable_blocks == "none"


def test_yaml_then_command_line_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "objective": "cosine",
                "train": {"lr": 0.001, "epochs": 3},
                "model": {"preset": "tiny"},
            }
        )
    )
    config = load_config(
        path,
        [
            "--objective", "contrastive",
            "--train.lr", "1e-4",
            "--model.channels.audio.trainable_blocks", "2",
            "--eval.ks=[1,5]",
            "--output", "runs/x",
        ],
    )  # fmt: skip
    assert config.objective == "contrastive"
    assert config.train.lr == pytest.approx(1e-4)  # "1e-4" is a string to PyYAML
    assert isinstance(config.train.lr, float)
    assert config.train.epochs == 3  # from the file
    assert config.model.preset == "tiny"
    assert config.model.channels["audio"].trainable_blocks == 2
    assert config.model.channels["audio"].backbone == "clap_htsat"  # default kept
    assert config.eval.ks == [1, 5]
    assert config.train.output_dir == "runs/x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--train.learning_rate", "1e-4"], "train.learning_rate"),
        (["--modell.embed_dim", "3"], "modell"),
        (["--model.channels.audio.head.widths", "[3]"], "model.channels.audio.head.widths"),
        (["--train.epochs", "three"], "train.epochs"),
        (["--train.epochs", "2.5"], "train.epochs"),
        (["--train.mixed_precision", "fp8"], "train.mixed_precision"),
        (
            ["--model.channels.video.trainable_blocks", "some"],
            "model.channels.video.trainable_blocks",
        ),
        (["--model.modalities", "[text, smell]"], "model.modalities[1]"),
        (["--train.adam_betas", "0.9"], "train.adam_betas"),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, overrides)


def test_unknown_key_in_yaml_file_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 0.1\n  warmup: 3\n")
    with pytest.raises(ConfigError, match="train.warmup"):
        load_config(path)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--train.lr"])
    with pytest.raises(ConfigError, match="expected an option"):
        parse_overrides(["train.lr", "1"])


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config(None, ["--objective", "cosine", "--model.embed_dim", "64"])
    path = save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(path) == config
    assert isinstance(load_config(path), ExperimentConfig)


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    # Experiment configs for train.py (configs/vmnet.yaml is VM-NET's own format).
    configs = sorted(
        [*root.glob("*contrastive.yaml"), *root.glob("*cosine.yaml"), *root.glob("thesis/*.yaml")]
    )
    assert len(configs) == 10
    for path in configs:
        config = load_config(path)
        assert config.objective, path
