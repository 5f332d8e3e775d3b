"""CLAP HTSAT audio backbone: parity with laion-clap and with transformers' CLAP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trimodal.backbones import MissingCheckpointError
from trimodal.backbones.clap import (
    ClapHTSATBackbone,
    ClapHTSATOptions,
    fit_to_window,
    laion_clap_module,
)

SR = 48000


@pytest.fixture(scope="module")
def laion_checkpoint(tmp_path_factory):
    """A random LAION-CLAP HTSAT-base model (laion-clap's own CLAP class) saved the way the
    original checkpoints are: ``{"epoch", "state_dict"}`` with DataParallel's ``module.``."""
    torch.manual_seed(0)
    model_module = laion_clap_module("model")
    audio_cfg = {
        "audio_length": 1024, "clip_samples": 480000, "mel_bins": 64, "sample_rate": SR,
        "window_size": 1024, "hop_size": 480, "fmin": 50, "fmax": 14000, "class_num": 527,
        "model_type": "HTSAT", "model_name": "base",
    }  # fmt: skip
    # A small native text tower: the real roberta branch would need the network.
    text_cfg = {
        "context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1,
        "model_type": "transformer",
    }  # fmt: skip
    clap = model_module.CLAP(embed_dim=1024, audio_cfg=audio_cfg, text_cfg=text_cfg).eval()
    path = tmp_path_factory.mktemp("laion") / "music_audioset_epoch_15_esc_90.14.pt"
    state = {f"module.{k}": v for k, v in clap.state_dict().items()}
    torch.save({"epoch": 15, "state_dict": state}, path)
    return clap, path


def test_laion_checkpoint_parity_with_laion_clap(laion_checkpoint):
    clap, path = laion_checkpoint
    ours = ClapHTSATBackbone(ClapHTSATOptions())  # HTSAT-base defaults
    ours.load_pretrained(path)
    ours.eval()
    torch.manual_seed(1)
    waveforms = torch.rand(2, 10 * SR) * 2 - 1
    with torch.no_grad():
        expected = clap.get_audio_embedding([{"waveform": w} for w in waveforms])
        got = ours(waveforms)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("n_fft", "hop", "samples"), [(1024, 480, 48000), (512, 160, 7919)])
def test_fft_spectrogram_equals_torchlibrosa(n_fft, hop, samples):
    """Our FFT front end reproduces torchlibrosa's convolutional STFT, which it replaces."""
    from torchlibrosa.stft import Spectrogram

    from trimodal.backbones.clap import FFTSpectrogram

    torch.manual_seed(0)
    x = torch.rand(3, samples) * 2 - 1
    reference = Spectrogram(
        n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True,
        pad_mode="reflect", freeze_parameters=True,
    )(x)  # fmt: skip
    got = FFTSpectrogram(n_fft, hop)(x)
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-5 * float(reference.max()))


def test_wrong_architecture_for_checkpoint_is_a_clear_error(laion_checkpoint, tmp_path):
    _, path = laion_checkpoint
    tiny = ClapHTSATBackbone(ClapHTSATBackbone.resolve_options({}, "tiny"))
    with pytest.raises(ValueError, match="does not match the configured HTSAT"):
        tiny.load_pretrained(path)
    with pytest.raises(MissingCheckpointError, match="music_audioset_epoch_15_esc_90.14.pt"):
        tiny.load_pretrained(tmp_path / "absent.pt")


def test_hf_directory_parity_with_clap_audio_model_with_projection(tmp_path):
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    torch.manual_seed(0)
    config = ClapAudioConfig(
        depths=[1, 1, 1, 1], num_attention_heads=[1, 2, 2, 4], patch_embeds_hidden_size=16,
        hidden_size=128, projection_dim=32,
    )  # fmt: skip
    ClapAudioModelWithProjection(config).save_pretrained(tmp_path)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(tmp_path)

    options = ClapHTSATBackbone.resolve_options({}, "full", str(tmp_path))
    assert options.format == "hf"
    ours = ClapHTSATBackbone(options)
    ours.load_pretrained(tmp_path)
    ours.eval()

    reference = ClapAudioModelWithProjection.from_pretrained(tmp_path).eval()
    extractor = ClapFeatureExtractor.from_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    waveforms = rng.uniform(-1, 1, (2, 10 * SR)).astype(np.float32)
    features = extractor(list(waveforms), sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        expected = F.normalize(reference(**features).audio_embeds, dim=-1)
        got = ours(torch.from_numpy(waveforms))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_missing_hf_files_named(tmp_path):
    with pytest.raises(MissingCheckpointError, match="config.json"):
        ClapHTSATBackbone.resolve_options({}, "full", str(tmp_path))


@pytest.fixture(scope="module")
def tiny_clap():
    torch.manual_seed(0)
    return ClapHTSATBackbone(ClapHTSATBackbone.resolve_options({}, "tiny"))


def test_long_audio_is_deterministic_in_eval_and_random_in_training(tiny_clap):
    torch.manual_seed(0)
    long = torch.randn(1, 25 * SR)
    tiny_clap.eval()
    with torch.no_grad():
        first, second = tiny_clap(long), tiny_clap(long)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # Eval uses the centre 10 s.
    centre = long[:, int(7.5 * SR) : int(17.5 * SR)]
    with torch.no_grad():
        torch.testing.assert_close(tiny_clap(centre), first, rtol=0, atol=0)
    tiny_clap.train()
    crops = {tuple(tiny_clap.prepare_waveforms(long)[0, :4].tolist()) for _ in range(5)}
    tiny_clap.eval()
    assert len(crops) > 1


def test_short_audio_is_repeat_padded_like_laion_clap():
    wave = torch.arange(1, 4, dtype=torch.float32)  # 3 samples into a window of 10
    torch.testing.assert_close(
        fit_to_window(wave, 10, random_crop=False),
        torch.tensor([1, 2, 3, 1, 2, 3, 1, 2, 3, 0], dtype=torch.float32),
    )
    with pytest.raises(ValueError, match="mono"):
        fit_to_window(torch.zeros(2, 5), 10, random_crop=False)
    with pytest.raises(ValueError, match="empty"):
        fit_to_window(torch.zeros(0), 10, random_crop=False)


def test_variable_length_batch_and_freezing(tiny_clap):
    out = tiny_clap.eval()([torch.randn(3 * SR), torch.randn(12 * SR)])
    assert out.shape == (2, 64)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    tiny_clap.set_trainable(2)
    trainable = [n for n, p in tiny_clap.named_parameters() if p.requires_grad]
    assert trainable and all(
        n.startswith(("audio_branch.layers.3", "audio_branch.norm", "audio_projection"))
        for n in trainable
    )
    tiny_clap.set_trainable("none")
    assert not any(p.requires_grad for p in tiny_clap.parameters())
    tiny_clap.set_trainable("all")
