"""The trimodal model: channels keyed by modality, save/load round trip, freezing."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from trimodal import TrimodalModel, build_model
from trimodal.config import ModelConfig, load_config


def _inputs(seed=0, batch=2):
    generator = torch.Generator().manual_seed(seed)
    return {
        "text": ["Music video", "Drummer", "Rhythm and blues", "piano"][:batch],
        "audio": torch.rand(batch, 8 * 48000, generator=generator) * 2 - 1,
        "video": torch.rand(batch, 4, 3, 36, 48, generator=generator),
    }


def test_forward_returns_unit_embeddings_for_given_modalities(tiny_model):
    inputs = _inputs()
    with torch.no_grad():
        out = tiny_model(**inputs)
        audio_only = tiny_model(audio=inputs["audio"])
    assert set(out.embeddings) == {"text", "audio", "video"}
    for embeds in out.embeddings.values():
        assert embeds.shape == (2, 24)
        torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(2))
    assert audio_only.text_embeds is None and audio_only.video_embeds is None
    torch.testing.assert_close(audio_only.audio_embeds, out.audio_embeds)
    torch.testing.assert_close(tiny_model.encode_text(inputs["text"]), out.text_embeds)
    assert math.isclose(out.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        tiny_model()


def test_save_pretrained_from_pretrained_round_trip(tiny_model, tmp_path):
    with torch.no_grad():
        tiny_model.logit_scale.fill_(3.0)  # a trained value must survive, not be re-initialised
        expected = tiny_model(**_inputs())
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "text" / "bpemb.model").is_file()
    loaded = TrimodalModel.from_pretrained(tmp_path)
    assert not loaded.training
    with torch.no_grad():
        got = loaded(**_inputs())
    for modality, embeds in expected.embeddings.items():
        torch.testing.assert_close(got.embeddings[modality], embeds, rtol=0, atol=0)
    assert loaded.logit_scale.item() == 3.0
    # Frozen text table stays frozen after loading.
    assert not any(p.requires_grad for p in loaded.backbones["text"].parameters())

    from transformers import AutoModel

    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, TrimodalModel)


def test_logit_scale_is_clamped_at_ln_100(tiny_model):
    with torch.no_grad():
        tiny_model.logit_scale.fill_(10.0)
    assert tiny_model.get_logit_scale().item() == pytest.approx(math.log(100))
    with torch.no_grad():
        tiny_model.logit_scale.fill_(math.log(1 / 0.07))


def test_two_modality_model_and_per_channel_freezing():
    config = load_config(
        None,
        [
            "--model.preset", "tiny",
            "--model.modalities", "[audio, video]",
            "--model.channels.audio.trainable_blocks", "none",
            "--model.channels.video.trainable_blocks", "1",
            "--model.channels.video.gradient_checkpointing", "true",
            "--model.channels.video.head.hidden_sizes", "[16]",
        ],
    ).model  # fmt: skip
    model = build_model(config)
    assert set(model.backbones) == {"audio", "video"}
    assert not any(p.requires_grad for p in model.backbones["audio"].parameters())
    video_trainable = {n for n, p in model.backbones["video"].named_parameters() if p.requires_grad}
    assert video_trainable and all(n.startswith("model.encoder.layer.1.") for n in video_trainable)
    assert all(p.requires_grad for p in model.heads.parameters())
    assert len(model.heads["video"]) == 4  # Linear, ReLU, Dropout, Linear
    assert model.backbones["video"].model.is_activation_checkpointing

    model.train()
    inputs = _inputs()
    out = model(audio=inputs["audio"], video=inputs["video"])
    (out.audio_embeds * out.video_embeds).sum().backward()
    assert model.backbones["video"].model.encoder.layer[1].output.dense.weight.grad is not None
    assert model.backbones["video"].model.encoder.layer[0].output.dense.weight.grad is None
    with pytest.raises(ValueError, match="no text channel"):
        model.encode_text(["rock"])


def test_invalid_model_configs_are_refused():
    with pytest.raises(ValueError, match="at least two"):
        build_model(ModelConfig(preset="tiny", modalities=["audio"]))
    bad = load_config(None, ["--model.channels.audio.backbone", "videomae"]).model
    with pytest.raises(ValueError, match="is a video backbone"):
        build_model(bad)
    with pytest.raises(KeyError, match="available: bpemb, clap_htsat, musicnn, r2plus1d, videomae"):
        build_model(load_config(None, ["--model.channels.audio.backbone", "wav2vec"]).model)
    with pytest.raises(ValueError, match="text channel needs BPEmb files"):
        build_model(load_config(None, ["--model.modalities", "[text, video]"]).model)


def test_head_input_norm_standardises_backbone_features():
    from trimodal.config import HeadConfig
    from trimodal.modeling import ProjectionHead

    head = ProjectionHead(8, 4, HeadConfig(input_norm="batch"))
    assert isinstance(head[0], torch.nn.BatchNorm1d) and isinstance(head[1], torch.nn.Linear)
    # A shared offset (one dominant direction) is removed before the linear layer.
    features = torch.randn(64, 8) + 100.0
    head.train()
    normalised = head[0](features)
    torch.testing.assert_close(normalised.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
    assert len(ProjectionHead(8, 4, HeadConfig())) == 1  # default: one Linear, no norm


# A config.json as written before the channel settings were typed (the untyped code stored
# each channel as a plain mapping): a text + video model with tiny BPEmb and R(2+1)D options.
UNTYPED_CONFIG_JSON = {
    "architectures": ["TrimodalModel"],
    "channels": {
        "text": {
            "backbone": "bpemb",
            "options": {"dim": 32, "lang": "en", "max_tokens": 64, "vocab_size": 200},
            "trainable_blocks": "none",
            "gradient_checkpointing": False,
            "head": {
                "kind": "mlp", "input_norm": "none", "hidden_sizes": [], "activation": "relu",
                "dropout": 0.1, "output_activation": "none",
            },
            "source": "/nonexistent/bpemb",
        },
        "video": {
            "backbone": "r2plus1d",
            "options": {
                "crop_size": 32, "layers": [1, 1, 1, 1], "mean": [0.43216, 0.394666, 0.37645],
                "num_frames": 4, "resize_size": [36, 48], "std": [0.22803, 0.22145, 0.216989],
                "stem_channels": 6, "widths": [8, 16, 16, 32],
            },
            "trainable_blocks": 1,
            "gradient_checkpointing": False,
            "head": {
                "kind": "mlp", "input_norm": "none", "hidden_sizes": [16], "activation": "gelu",
                "dropout": 0.3, "output_activation": "sigmoid",
            },
            "source": None,
        },
    },
    "embed_dim": 8,
    "learnable_logit_scale": True,
    "logit_scale_init": 2.659260036932778,
    "logit_scale_max": 4.605170185988092,
    "modalities": ["text", "video"],
    "model_type": "trimodal",
    "transformers_version": "4.46.0",
}  # fmt: skip


def test_channel_settings_are_typed_attributes(tiny_model):
    from trimodal.config import ChannelConfig, HeadConfig

    for modality in ("text", "audio", "video"):
        channel = tiny_model.config.channels[modality]
        assert isinstance(channel, ChannelConfig) and isinstance(channel.head, HeadConfig)
        # options are resolved in full: the adapter's Options rebuilt from them is the backbone's
        assert channel.options == dataclasses.asdict(tiny_model.backbones[modality].options)
    assert tiny_model.config.channels["text"].trainable_blocks == "none"


def test_the_model_config_is_a_copy_of_the_experiment_channels():
    config = ModelConfig(preset="tiny", embed_dim=8, modalities=["audio", "video"])
    model = build_model(config)
    config.channels["video"].head.hidden_sizes.append(4)
    config.channels["video"].trainable_blocks = "none"
    assert model.config.channels["video"].head.hidden_sizes == []
    assert model.config.channels["video"].trainable_blocks == "all"


def test_untyped_config_json_loads_and_is_written_back_unchanged(tmp_path):
    from trimodal.config import ChannelConfig
    from trimodal.modeling import TrimodalConfig

    (tmp_path / "config.json").write_text(json.dumps(UNTYPED_CONFIG_JSON))
    config = TrimodalConfig.from_pretrained(tmp_path)
    video = config.channels["video"]
    assert isinstance(video, ChannelConfig)
    assert (video.backbone, video.trainable_blocks, video.source) == ("r2plus1d", 1, None)
    assert (video.head.hidden_sizes, video.head.activation) == ([16], "gelu")
    assert video.head.output_activation == "sigmoid" and video.head.dropout == 0.3
    assert config.channels["text"].options["vocab_size"] == 200

    model = TrimodalModel(config)
    assert [type(layer).__name__ for layer in model.heads["video"]] == [
        "Linear", "GELU", "Dropout", "Linear", "Sigmoid",
    ]  # fmt: skip
    assert model.backbones["video"].options.widths == [8, 16, 16, 32]
    blocks = model.backbones["video"].blocks()
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for p in blocks[0].parameters())

    written = json.loads(config.to_json_string())
    assert written["channels"] == UNTYPED_CONFIG_JSON["channels"]
    assert written["modalities"] == ["text", "video"] and written["embed_dim"] == 8


def test_a_wrong_channel_key_in_config_json_is_refused_by_name():
    from trimodal.config import ConfigError
    from trimodal.modeling import TrimodalConfig

    channels = json.loads(json.dumps(UNTYPED_CONFIG_JSON["channels"]))
    channels["video"]["head"]["widths"] = [3]
    with pytest.raises(ConfigError, match="channels.video.head.widths"):
        TrimodalConfig(modalities=["text", "video"], channels=channels)
    channels = json.loads(json.dumps(UNTYPED_CONFIG_JSON["channels"]))
    channels["video"]["trainable_blocks"] = "some"
    with pytest.raises(ConfigError, match="channels.video.trainable_blocks"):
        TrimodalConfig(modalities=["text", "video"], channels=channels)


def test_the_loaders_stored_types_embed_as_their_float_values(tiny_model):
    """int16 waveforms (the loader's batches) embed exactly as the float waveforms they
    store (``/ 32767``), and uint8 frames as ``/ 255``: the model's input adapter makes
    them float, the model's inputs are unchanged. (Frames at the size the loader gives:
    other sizes are resized in uint8 first, the Pillow-compatible path.)"""
    from trimodal.embedding import data_options

    size = data_options(tiny_model)["video_size"]
    generator = torch.Generator().manual_seed(3)
    audio = torch.randint(-32767, 32768, (2, 8 * 48000), generator=generator, dtype=torch.int16)
    video = torch.randint(0, 256, (2, 4, 3, size, size), generator=generator, dtype=torch.uint8)
    tiny_model.eval()
    with torch.no_grad():
        stored = tiny_model(audio=audio, video=video)
        floats = tiny_model(audio=audio.float() / 32767, video=video.float() / 255)
    assert torch.equal(stored.audio_embeds, floats.audio_embeds)
    assert torch.equal(stored.video_embeds, floats.video_embeds)
