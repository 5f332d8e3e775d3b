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


# ----------------------------------------------------------------------------- the demo's settings


def _expected_demo_config():
    """The embedded demo's experiment, value by value (configs/demo.yaml must resolve to it)."""
    from trimodal.config import DataConfig, EvalConfig, HeadConfig, ModelConfig, TrainConfig

    model = ModelConfig(preset="tiny", embed_dim=64)
    model.channels["text"].head = HeadConfig(hidden_sizes=[128])
    for modality in ("audio", "video"):
        model.channels[modality].trainable_blocks = "none"
        model.channels[modality].head = HeadConfig(input_norm="batch", hidden_sizes=[256])
    # The clip's 4 s whole (no repeat padding), mels up to 8 kHz, a wider network: the timbres.
    audio_net = {"window_seconds": 4.0, "mel_bins": 64, "fmax": 8000}
    model.channels["audio"].options = audio_net | {"htsat_embed_dim": 32, "joint_dim": 256}
    video_net = {"image_size": 32, "patch_size": 16, "num_frames": 4, "tubelet_size": 2}
    video_net |= {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    model.channels["video"].options = {"hf_config": {**video_net, "intermediate_size": 256}}
    train = TrainConfig(
        output_dir="runs/demo",
        select_metric="video/mean_mAP",
        epochs=36,
        batch_size=32,
        feature_cache_views=4,
        gradient_accumulation_steps=1,
        lr=3e-3,
        warmup_ratio=0.05,
        validations_per_epoch=1,
        checkpoint_every=1000,
        log_every=5,
    )
    return ExperimentConfig(
        model=model,
        data=DataConfig(train_text="labels"),
        train=train,
        eval=EvalConfig(batch_size=32),
        objective="contrastive",
    )


def test_demo_yaml_resolves_to_the_demo_experiment():
    from trimodal.cli import DEMO_CONFIG, _demo_config

    assert DEMO_CONFIG.is_file()
    assert _demo_config({}, None) == _expected_demo_config()
    # The file is an ordinary experiment config too (train.py --config configs/demo.yaml).
    assert load_config(DEMO_CONFIG) == _expected_demo_config()


def test_a_config_file_and_the_command_line_apply_over_the_demo_settings(tmp_path):
    from trimodal.cli import _demo_config

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"objective": "cosine", "train": {"epochs": 2, "lr": 0.5}}))
    argv = parse_overrides(["--train.epochs", "1", "--model.channels.audio.trainable_blocks", "1"])
    config = _demo_config(argv, str(path))
    assert config.train.epochs == 1  # the command line beats the file and the demo
    assert config.model.channels["audio"].trainable_blocks == 1
    assert config.train.lr == 0.5 and config.objective == "cosine"  # the user's file > demo
    assert config.train.batch_size == 32  # the demo's, where the file says nothing


def test_demo_data_yaml_is_the_demo_preparation():
    from trimodal.cli import DEMO_DATA_CONFIG, demo_data_config
    from trimodal.config import DataConfig

    expected = DataConfig(
        clip_seconds=4.0,
        sparse_train=False,
        split_ratios=[0.7, 0.1, 0.2],
        frame_sizes=[32],
        frame_margin=1.25,
        num_frames=4,
        audio_rates=[48000],
    )
    assert demo_data_config() == expected
    from trimodal.prepare import load_data_config  # what `trimodal prepare` reads

    assert load_data_config(DEMO_DATA_CONFIG) == expected


def test_a_missing_demo_file_is_one_clear_error(monkeypatch, tmp_path):
    import trimodal.cli as cli

    monkeypatch.setattr(cli, "DEMO_CONFIG", tmp_path / "demo.yaml")
    with pytest.raises(FileNotFoundError, match="pip install -e"):
        cli._demo_config({}, None)
    assert cli.train_main(["--demo", "--train.epochs", "1"]) == 2
