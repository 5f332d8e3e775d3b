"""CLAP HTSAT audio backbone: the LAION-CLAP conversion against laion-clap's own network
(live where the ``laion-clap`` extra is installed, else against its stored outputs) and
against transformers' CLAP with its feature extractor."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from laion_clap_reference import (
    BASE_HTSAT,
    CHECKPOINT,
    REFERENCE,
    TINY_HTSAT,
    TINY_JOINT_DIM,
    build_laion_clap,
    fitted,
    laion_embeddings,
    original_checkpoint,
)

from trimodal.backbones import MissingCheckpointError
from trimodal.backbones.clap import (
    ClapHTSATBackbone,
    convert_laion_checkpoint,
    fit_to_window,
    laion_architecture,
    read_laion_checkpoint,
)

SR = 48000


def _require_laion_clap() -> None:
    """Skip where the ``laion-clap`` extra is not installed, or fail where CI's parity step
    (``.ci/laion-clap``, ``TRIMODAL_REQUIRE_LAION_CLAP=1``) expects it. Looked up, not
    imported: ``import laion_clap`` downloads three tokenizers."""
    if importlib.util.find_spec("laion_clap") is None:
        message = "laion-clap is not installed: pip install -e '.[laion-clap]'"
        if os.environ.get("TRIMODAL_REQUIRE_LAION_CLAP") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _from_source(source) -> ClapHTSATBackbone:
    """The channel as ``build_model`` makes it for ``source``: options read from it, loaded."""
    backbone = ClapHTSATBackbone(ClapHTSATBackbone.resolve_options({}, "full", str(source)))
    backbone.load_pretrained(source)
    return backbone.eval()


def _stored_reference() -> tuple[list[torch.Tensor], torch.Tensor]:
    with np.load(REFERENCE) as data:
        clips = [torch.from_numpy(data["clip0"]), torch.from_numpy(data["clip1"])]
        return clips, torch.from_numpy(data["embeddings"])


def test_laion_checkpoint_matches_laion_claps_stored_outputs():
    """The stored tiny original-format checkpoint, converted on load, embeds the stored clips
    as laion-clap's own network did (no laion-clap needed: the mapping is checked here)."""
    clips, expected = _stored_reference()
    ours = _from_source(CHECKPOINT)
    assert ours.options.format == "laion"
    assert ours.options.depths == TINY_HTSAT["depths"]  # read from the checkpoint
    with torch.no_grad():
        got = ours(clips)
    assert got.shape == expected.shape == (2, TINY_JOINT_DIM)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_converted_directory_is_the_same_network(tmp_path):
    """convert_laion_checkpoint writes a directory that loads here as format ``hf`` to the
    network the ``laion`` format gives, and that transformers' own model and feature
    extractor load and run to the same embeddings."""
    from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

    clips, expected = _stored_reference()
    directory = convert_laion_checkpoint(CHECKPOINT, tmp_path / "converted")
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in directory.iterdir()
    }
    ours = _from_source(directory)
    assert ours.options.format == "hf"
    assert (ours.options.fmin, ours.options.fmax, ours.options.hop_size) == (50, 14000, 480)
    with torch.no_grad():
        got = ours(clips)
        hf = ClapAudioModelWithProjection.from_pretrained(directory).eval()
        extractor = ClapFeatureExtractor.from_pretrained(directory)
        features = extractor([c.numpy() for c in clips], sampling_rate=SR, return_tensors="pt")
        direct = F.normalize(hf(input_features=features["input_features"]).audio_embeds, dim=-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(direct, expected, rtol=0, atol=1e-5)
    with pytest.raises(FileExistsError, match="not an empty directory"):
        convert_laion_checkpoint(CHECKPOINT, directory)


def test_stored_reference_is_laion_claps_output():
    """Where laion-clap is installed: its own network, given the stored checkpoint, gives the
    stored embeddings (so they are laion-clap's outputs, not ours)."""
    _require_laion_clap()
    clap = build_laion_clap(TINY_HTSAT, TINY_JOINT_DIM, seed=123)  # other weights, replaced
    state = {k.removeprefix("module."): v for k, v in torch.load(CHECKPOINT)["state_dict"].items()}
    missing, unexpected = clap.load_state_dict(state, strict=False)
    derived = ("spectrogram_extractor.stft.", "relative_position_index", "attn_mask")
    assert not unexpected and all(any(d in k for d in derived) for k in missing)
    clips, expected = _stored_reference()
    torch.testing.assert_close(laion_embeddings(clap, fitted(clips)), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "htsat", [TINY_HTSAT, pytest.param(BASE_HTSAT, marks=pytest.mark.slow)], ids=["tiny", "base"]
)
def test_laion_checkpoint_parity_with_laion_clap(htsat, tmp_path):
    """A full original checkpoint (text branch, DFT basis, derived buffers and all) of
    laion-clap's own CLAP, converted on load: the same audio embeddings, to 1e-5."""
    _require_laion_clap()
    joint = 512 if htsat is BASE_HTSAT else TINY_JOINT_DIM
    clap = build_laion_clap(htsat, joint)
    path = tmp_path / "music_audioset_epoch_15_esc_90.14.pt"
    torch.save(original_checkpoint(clap), path)
    ours = _from_source(path)
    generator = torch.Generator().manual_seed(2)
    waveforms = torch.rand(2, 10 * SR, generator=generator) * 2 - 1
    short = torch.rand(SR, generator=generator) * 2 - 1  # repeat-padded
    with torch.no_grad():
        got = ours([waveforms[0], waveforms[1], short])
    expected = laion_embeddings(clap, torch.cat([waveforms, fitted([short])]))
    assert got.shape == (3, joint)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("n_fft", "hop", "samples"), [(1024, 480, 48000), (512, 160, 7919)])
def test_fft_spectrogram_equals_torchlibrosa(n_fft, hop, samples):
    """Our FFT front end reproduces torchlibrosa's convolutional STFT (laion-clap's front end;
    installed with the ``laion-clap`` extra)."""
    _require_laion_clap()
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


def test_laion_architecture_is_read_from_the_checkpoint():
    assert laion_architecture(read_laion_checkpoint(CHECKPOINT)) == {
        "htsat_embed_dim": TINY_HTSAT["embed_dim"],
        "depths": TINY_HTSAT["depths"],
        "num_heads": TINY_HTSAT["num_heads"],
        "swin_window_size": 8,
        "mel_bins": 64,
        "joint_dim": TINY_JOINT_DIM,
    }


def test_wrong_architecture_for_checkpoint_is_a_clear_error(tmp_path):
    tiny = ClapHTSATBackbone(ClapHTSATBackbone.resolve_options({}, "tiny"))  # width 16, not 8
    with pytest.raises(ValueError, match="does not match the configured HTSAT"):
        tiny.load_pretrained(CHECKPOINT)
    other_mel = ClapHTSATBackbone(
        ClapHTSATBackbone.resolve_options({"fmin": 0}, "full", str(CHECKPOINT))
    )
    with pytest.raises(ValueError, match="mel filter bank is not the one the options describe"):
        other_mel.load_pretrained(CHECKPOINT)
    with pytest.raises(MissingCheckpointError, match="music_audioset_epoch_15_esc_90.14.pt"):
        tiny.load_pretrained(tmp_path / "absent.pt")


def test_unknown_laion_weights_are_refused_by_name():
    from trimodal.backbones.clap import laion_to_hf_state_dict

    state = read_laion_checkpoint(CHECKPOINT)
    fused = {**state, "audio_branch.fusion_model.local_att.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="fusion_model.local_att.0.weight.*fused checkpoint"):
        laion_to_hf_state_dict(fused)
    renamed = {**state, "audio_branch.layers.0.blocks.0.mlp.fc3.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="unexpected LAION-CLAP audio weight.*fc3"):
        laion_to_hf_state_dict(renamed)


def test_hf_directory_parity_with_clap_audio_model_with_projection(tmp_path, monkeypatch):
    """Our torch front end feeding transformers' network gives what transformers' own numpy
    ClapFeatureExtractor feeding it gives; the extractor itself is never called."""
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

    def not_used(*args, **kwargs):
        raise AssertionError("ClapFeatureExtractor was called")

    monkeypatch.setattr(ClapFeatureExtractor, "__call__", not_used)
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
        n.startswith(
            (
                "hf_model.audio_model.audio_encoder.layers.3.",
                "hf_model.audio_model.audio_encoder.norm.",
                "hf_model.audio_projection.",
            )
        )
        for n in trainable
    )
    tiny_clap.set_trainable("none")
    assert not any(p.requires_grad for p in tiny_clap.parameters())
    tiny_clap.set_trainable("all")
