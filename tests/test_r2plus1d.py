"""R(2+1)D-18 video backbone: torchvision's preprocessing and weights, and the dual-encoder
model (musicnn + R(2+1)D) save/load round trip."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.video import R2Plus1D_18_Weights, r2plus1d_18

from trimodal import TrimodalModel, build_model
from trimodal.backbones import MissingCheckpointError, get_backbone_class
from trimodal.backbones.r2plus1d import (
    WEIGHTS_FILE,
    WEIGHTS_URL,
    R2Plus1DBackbone,
    R2Plus1DOptions,
)
from trimodal.config import load_config


def _frames(shape, dtype=torch.uint8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    return torch.rand(shape, generator=generator)


def test_preprocessing_is_torchvisions_kinetics_transform():
    transform = R2Plus1D_18_Weights.KINETICS400_V1.transforms()
    backbone = R2Plus1DBackbone(R2Plus1DOptions(widths=[4, 4, 4, 4], layers=[1, 1, 1, 1]))
    frames = _frames((2, 5, 3, 90, 120))
    expected = transform(frames)  # [B, 3, T, 112, 112]
    assert expected.shape == (2, 3, 5, 112, 112)
    torch.testing.assert_close(backbone.preprocess(frames), expected, rtol=0, atol=0)
    # channels-last input and float input in [0, 1]
    torch.testing.assert_close(
        backbone.preprocess(frames.permute(0, 1, 3, 4, 2)), expected, rtol=0, atol=0
    )
    as_float = frames.float() / 255
    torch.testing.assert_close(backbone.preprocess(as_float), transform(as_float))
    # Frames prepared at the crop size (the loader's frames_112) are only normalised.
    cropped = _frames((1, 3, 3, 112, 112), seed=1)
    mean = torch.tensor(R2Plus1DOptions().mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(R2Plus1DOptions().std).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(
        backbone.preprocess(cropped),
        (cropped.permute(0, 2, 1, 3, 4).float() / 255 - mean) / std,
    )
    with pytest.raises(ValueError, match="B, T, 3, H, W"):
        backbone.preprocess(torch.zeros(3, 3, 112, 112))


@pytest.fixture(scope="module")
def torchvision_r2plus1d(tmp_path_factory):
    """A random r2plus1d_18 saved as torchvision's own file format (its keys, with fc)."""
    torch.manual_seed(0)
    model = r2plus1d_18().eval()
    # Random, non-trivial batch-norm statistics, as trained weights have.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("r2plus1d") / "r2plus1d_18_random.pth"
    torch.save(model.state_dict(), path)
    model.fc = torch.nn.Identity()
    return model, path


def test_torchvision_weights_give_torchvisions_features(torchvision_r2plus1d, tmp_path):
    reference, path = torchvision_r2plus1d
    backbone = R2Plus1DBackbone(R2Plus1DBackbone.resolve_options({}, "full")).eval()
    assert backbone.output_dim == 512
    assert backbone.data_options() == {"video_size": 112, "num_frames": 16}
    backbone.load_pretrained(path)
    frames = _frames((1, 8, 3, 72, 96), seed=2)
    with torch.no_grad():
        expected = reference(R2Plus1D_18_Weights.KINETICS400_V1.transforms()(frames))
        got = backbone(frames)
    assert got.shape == (1, 512)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # the same weights as safetensors, found in a directory
    from safetensors.torch import save_file

    state = torch.load(path, weights_only=True)
    save_file(state, str(tmp_path / "r2plus1d_18.safetensors"))
    other = R2Plus1DBackbone(R2Plus1DBackbone.resolve_options({}, "full")).eval()
    other.load_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(other(frames), got, rtol=0, atol=0)


def test_missing_wrong_or_damaged_weights(tmp_path, torchvision_r2plus1d):
    backbone = R2Plus1DBackbone(R2Plus1DBackbone.resolve_options({}, "tiny"))
    with pytest.raises(MissingCheckpointError, match=WEIGHTS_FILE) as info:
        backbone.load_pretrained(tmp_path)
    assert WEIGHTS_URL in str(info.value)
    with pytest.raises(MissingCheckpointError, match="never downloads"):
        backbone.load_pretrained(tmp_path / "absent.pth")
    # full-size weights into the tiny architecture
    with pytest.raises(ValueError, match="does not match the configured R\\(2\\+1\\)D"):
        backbone.load_pretrained(torchvision_r2plus1d[1])
    # a torchvision-named file whose content does not fit its hash prefix (partial download)
    bad = tmp_path / "r2plus1d_18-91a641e6.pth"
    bad.write_bytes(torchvision_r2plus1d[1].read_bytes()[:1000])
    with pytest.raises(ValueError, match="incomplete or corrupt download"):
        backbone.load_pretrained(tmp_path)


def test_tiny_preset_blocks_and_gradient_checkpointing():
    cls = get_backbone_class("r2plus1d")
    assert cls is R2Plus1DBackbone and cls.modality == "video"
    torch.manual_seed(0)
    backbone = R2Plus1DBackbone(R2Plus1DBackbone.resolve_options({}, "tiny"))
    assert backbone.output_dim == 32 and len(backbone.blocks()) == 5
    assert sum(p.numel() for p in backbone.parameters()) < 100_000
    backbone.set_trainable(2)
    trainable = {n.split(".")[1] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    backbone.set_trainable("all")

    frames = _frames((2, 4, 3, 36, 48), dtype=torch.float32, seed=3)
    backbone.train()
    plain = backbone(frames)
    plain.sum().backward()
    grads = [p.grad.clone() for p in backbone.parameters()]
    backbone.zero_grad()
    backbone.set_gradient_checkpointing(True)
    checkpointed = backbone(frames)
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain)
    for p, g in zip(backbone.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_dual_encoder_model_round_trip(tmp_path):
    """musicnn (audio) + R(2+1)D (video), tiny presets, thesis-style heads."""
    config = load_config(
        None,
        [
            "--model.preset", "tiny",
            "--model.modalities", "[audio, video]",
            "--model.embed_dim", "16",
            "--model.channels.audio.backbone", "musicnn",
            "--model.channels.audio.trainable_blocks", "none",
            "--model.channels.audio.head.hidden_sizes", "[24]",
            "--model.channels.audio.head.output_activation", "sigmoid",
            "--model.channels.video.backbone", "r2plus1d",
            "--model.channels.video.trainable_blocks", "none",
        ],
    ).model  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert model.backbones["audio"].output_dim == 2 * (2 * 8 + 3 * 4 + 3 * 8)
    generator = torch.Generator().manual_seed(4)
    audio = torch.rand(2, 16000 * 4, generator=generator) * 2 - 1
    video = torch.rand(2, 4, 3, 36, 48, generator=generator)
    with torch.no_grad():
        expected = model(audio=audio, video=video)
    model.save_pretrained(tmp_path)
    loaded = TrimodalModel.from_pretrained(tmp_path)
    with torch.no_grad():
        got = loaded(audio=audio, video=video)
    for modality in ("audio", "video"):
        torch.testing.assert_close(
            got.embeddings[modality], expected.embeddings[modality], rtol=0, atol=0
        )
    # batch-norm statistics and the log-mel constants are part of the saved state
    for name in ("backbones.audio.mel_basis", "backbones.audio.input_bn.running_var"):
        torch.testing.assert_close(loaded.state_dict()[name], model.state_dict()[name])
    assert loaded.frozen_modalities() == ["audio", "video"]
