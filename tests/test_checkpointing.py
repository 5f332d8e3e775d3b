"""``TrimodalModel.gradient_checkpointing_enable()``: every channel that supports it.

The memory it saves on a full-size channel is measured by ``benchmarks/bench_checkpointing.py``
(figures in ``BENCHMARKS.md``); here: the same gradients, toggling both ways, the channels
without support left alone.
"""

from __future__ import annotations

import pytest
import torch

from trimodal import TrimodalModel, build_model
from trimodal.config import load_config

# Two tiny models cover the five backbones: BPEmb + CLAP-HTSAT + VideoMAE, musicnn + R(2+1)D.
_MODELS = {
    "bpemb+clap+videomae": [],
    "musicnn+r2plus1d": [
        "--model.modalities", "[audio, video]",
        "--model.channels.audio.backbone", "musicnn",
        "--model.channels.video.backbone", "r2plus1d",
    ],
}  # fmt: skip
_SUPPORTED = {"clap_htsat", "videomae", "r2plus1d"}


def _model(name: str) -> TrimodalModel:
    config = load_config(
        None, ["--model.preset", "tiny", "--model.embed_dim", "16", *_MODELS[name]]
    )
    torch.manual_seed(0)
    return build_model(config.model).train()


def _inputs(model: TrimodalModel) -> dict:
    generator = torch.Generator().manual_seed(3)
    inputs = {
        "text": ["music video", "drummer", "choir"],
        "audio": torch.rand(3, 2 * 48000, generator=generator) * 2 - 1,
        "video": torch.randint(0, 256, (3, 4, 3, 36, 48), generator=generator, dtype=torch.uint8),
    }
    return {m: inputs[m] for m in model.modalities}


def _backward(model: TrimodalModel) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Gradients of one forward+backward (same RNG draws every call: stochastic depth and
    the random audio crop) and, per channel, how many sub-module calls it ran: a
    checkpointed channel runs its blocks again in the backward pass."""
    calls = {m: 0 for m in model.modalities}
    handles = []
    for modality, backbone in model.backbones.items():

        def count(module, args, output, modality=modality):
            calls[modality] += 1

        handles += [module.register_forward_hook(count) for module in backbone.modules()]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    out = model(**_inputs(model))
    embeds = list(out.embeddings.values())
    loss = sum((a @ b.T).logsumexp(-1).sum() for a in embeds for b in embeds if a is not b)
    loss.backward()
    for handle in handles:
        handle.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, calls


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_checkpointing_toggles_the_channels_that_support_it_with_the_same_gradients(name):
    model = _model(name)
    backbones = {m: model.config.channels[m].backbone for m in model.modalities}
    supported = sorted(m for m, b in backbones.items() if b in _SUPPORTED)
    assert model.checkpointable_modalities() == supported
    assert not model.is_gradient_checkpointing
    plain, plain_calls = _backward(model)
    assert any(n.startswith("backbones.") for n in plain)

    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing and model.is_activation_checkpointing
    for modality, backbone in model.backbones.items():
        assert backbone.gradient_checkpointing == (modality in supported), modality
    checkpointed, calls = _backward(model)
    for modality in model.modalities:
        # Recomputation in the backward pass is what saves the memory; the others run once.
        assert (calls[modality] > plain_calls[modality]) == (modality in supported), modality
    assert checkpointed.keys() == plain.keys()
    for param, grad in plain.items():
        torch.testing.assert_close(checkpointed[param], grad, rtol=1e-5, atol=1e-7, msg=param)
    # The config's per-channel setting (what a loaded model starts with) is unchanged.
    assert not any(model.config.channels[m].gradient_checkpointing for m in model.modalities)

    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    assert not any(b.gradient_checkpointing for b in model.backbones.values())
    again, again_calls = _backward(model)
    assert again_calls == plain_calls
    for param, grad in plain.items():
        torch.testing.assert_close(again[param], grad, rtol=1e-5, atol=1e-7, msg=param)


def test_transformers_names_and_refused_settings():
    model = _model("bpemb+clap+videomae")
    model.activation_checkpointing_enable({"use_reentrant": False})
    assert model.backbones["audio"].gradient_checkpointing
    model.activation_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    for kwargs in ({"gradient_checkpointing_kwargs": {"use_reentrant": True}}, {"offload": True}):
        with pytest.raises(ValueError, match="non-reentrant"):
            model.gradient_checkpointing_enable(**kwargs)
    assert not model.is_gradient_checkpointing


def test_checkpointed_blocks_above_frozen_ones_still_get_gradients():
    """Non-reentrant checkpointing: with only the last blocks trainable, the first
    checkpointed trainable block's input does not require grad, and it still trains."""
    config = load_config(
        None,
        [
            "--model.preset", "tiny",
            "--model.modalities", "[text, audio]",
            "--model.channels.audio.trainable_blocks", "2",
        ],
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config.model).train()
    plain, _ = _backward(model)
    model.gradient_checkpointing_enable()
    checkpointed, _ = _backward(model)
    trained = [n for n in plain if n.startswith("backbones.audio.")]
    assert trained and checkpointed.keys() == plain.keys()
    for param in trained:
        torch.testing.assert_close(checkpointed[param], plain[param], rtol=1e-5, atol=1e-7)
