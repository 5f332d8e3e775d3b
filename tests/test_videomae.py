"""VideoMAE video backbone: preprocessing parity, loading from a local directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trimodal.backbones import MissingCheckpointError
from trimodal.backbones.videomae import VideoMAEBackbone, preprocess_frames


@pytest.mark.parametrize("shape", [(224, 224), (240, 320), (360, 640), (300, 200)])
def test_preprocessing_matches_videomae_image_processor(shape):
    from transformers import VideoMAEImageProcessor

    processor = VideoMAEImageProcessor()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, *shape, 3), dtype=np.uint8)
    expected = processor(list(frames), return_tensors="pt")["pixel_values"]
    got = preprocess_frames(
        torch.from_numpy(frames)[None], 224, processor.image_mean, processor.image_std
    )
    assert got.shape == expected.shape == (1, 4, 3, 224, 224)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # Channel-first float frames in [0, 1] at the crop size are the prepared-data path.
    if shape == (224, 224):
        as_float = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255
        torch.testing.assert_close(
            preprocess_frames(as_float, 224, processor.image_mean, processor.image_std),
            expected, rtol=0, atol=1e-5,
        )  # fmt: skip


def test_loads_a_saved_videomae_directory_and_mean_pools(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    tiny = VideoMAEBackbone.presets["tiny"]["hf_config"]
    reference = VideoMAEModel(VideoMAEConfig(**tiny)).eval()
    reference.save_pretrained(tmp_path)

    options = VideoMAEBackbone.resolve_options({}, "full", str(tmp_path))
    assert (options.image_size, options.num_frames) == (32, 4)  # read from config.json
    ours = VideoMAEBackbone(options)
    ours.load_pretrained(tmp_path)
    ours.eval()
    frames = torch.rand(2, 4, 3, 32, 32)
    pixel_values = preprocess_frames(frames, 32, options.image_mean, options.image_std)
    with torch.no_grad():
        expected = reference(pixel_values=pixel_values).last_hidden_state.mean(1)
        got = ours(frames)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)

    ours.set_trainable(1)
    trainable = {n.split(".")[3] for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {"1"}  # model.encoder.layer.1.*


def test_missing_directory_and_wrong_frame_count(tmp_path):
    with pytest.raises(MissingCheckpointError, match="MCG-NJU/videomae-base"):
        VideoMAEBackbone.resolve_options({}, "full", str(tmp_path / "absent"))
    backbone = VideoMAEBackbone(VideoMAEBackbone.resolve_options({}, "tiny"))
    with pytest.raises(ValueError, match="expected 4 frames"):
        backbone(torch.rand(1, 6, 3, 32, 32))
