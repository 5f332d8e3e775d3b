"""Mixed precision and gradient caching: every backward goes through the loss scale.

Gradient caching back-propagates twice per chunk (the full-batch loss into the cached
embeddings, then each chunk's replay into the parameters); under fp16 both must carry the
gradient scaler's factor, or unscaling before clipping divides gradients that were never
multiplied (``trimodal/training/grad_cache.py`` explains the one-backward rule).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from test_training import _config, prepared  # noqa: F401  (the prepared-data fixture)

from trimodal import TrimodalModel, build_model
from trimodal.config import load_config
from trimodal.objectives import get_objective
from trimodal.training import Trainer, grad_cache_step

# Text + VideoMAE: no dropout, stochastic depth or batch statistics in the tiny channels, so
# a chunked forward computes what the full-batch forward computes and any difference between
# the two paths is the precision's, not the RNG's. Batch 4 in chunks of 1.
_TWO_CHANNELS = (
    "--model.modalities", "[text, video]",
    "--train.batch_size", "4",
    "--train.max_grad_norm", "0.05",  # small, so that clipping really rescales
    "--train.warmup_ratio", "0",  # the first step has the full learning rate
)  # fmt: skip


@pytest.fixture
def fresh_accelerator_state() -> Iterator[None]:
    """Accelerate keeps one process-wide state and refuses a second mixed-precision setting;
    a test that needs another setting starts and leaves it empty."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


class _StepRecorder:
    """Records what the optimiser sees: the gradient norm clipping measured and each
    parameter's gradient at ``optimizer.step`` (after unscaling and clipping)."""

    def __init__(self, trainer: Trainer):
        self.norms: list[float] = []
        self.grads: dict[str, torch.Tensor] = {}
        names = {id(p): n for n, p in trainer.unwrapped.named_parameters()}
        clip = trainer.accelerator.clip_grad_norm_

        def clip_and_record(*args, **kwargs):
            norm = clip(*args, **kwargs)
            self.norms.append(float(norm))
            return norm

        def record_gradients(optimizer, args, kwargs) -> None:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self.grads[names[id(p)]] = p.grad.detach().float().clone()

        trainer.accelerator.clip_grad_norm_ = clip_and_record
        # A step pre-hook: it runs inside the real step, however the scaler wraps it.
        trainer.optimizer.optimizer.register_step_pre_hook(record_gradients)


def _one_step(trainer: Trainer) -> tuple[_StepRecorder, dict[str, torch.Tensor], bool]:
    """One optimiser step of ``trainer`` on its first batch: what the optimiser saw, each
    parameter's update, and whether the step was taken."""
    recorder = _StepRecorder(trainer)
    model = trainer.unwrapped
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    trainer.model.train()
    batch = next(iter(trainer.train_loader))
    with trainer.accelerator.accumulate(trainer.model):
        terms = trainer._forward_backward(trainer._model_inputs(batch, 0))
        assert terms is not None
        stepped = trainer._optimizer_step(True)
    update = {n: p.detach().float() - before[n] for n, p in model.named_parameters()}
    return recorder, update, stepped


def _trainer(data: Path, output: Path, *overrides: str, accelerator=None) -> Trainer:
    config = _config(data, output, *_TWO_CHANNELS, *overrides)
    return Trainer(config, accelerator=accelerator)


def _assert_same_step(cached, plain, rtol: float, atol: float, lr: float = 1e-3) -> None:
    """Same clipped gradient norm and same gradients at the optimiser step (to ``rtol`` /
    ``atol``), and the same AdamW update. AdamW's first update is ``lr · g / (|g| + eps)``
    elementwise, which jumps between ±lr where ``g`` is ≈ 0, so the update is compared where
    the gradient is resolved (above 1 % of its tensor's largest), to 5 % of lr."""
    (rec_c, upd_c, stepped_c), (rec_p, upd_p, stepped_p) = cached, plain
    assert stepped_c and stepped_p
    assert rec_c.norms == pytest.approx(rec_p.norms, rel=rtol)
    assert rec_c.grads.keys() == rec_p.grads.keys() and "logit_scale" in rec_c.grads
    for name, grad in rec_p.grads.items():
        torch.testing.assert_close(rec_c.grads[name], grad, rtol=rtol, atol=atol, msg=name)
        resolved = grad.abs() > 0.01 * grad.abs().max()
        assert upd_p[name][resolved].abs().min() > 0.5 * lr, name  # the step was taken
        torch.testing.assert_close(
            upd_c[name][resolved], upd_p[name][resolved], rtol=0, atol=0.05 * lr, msg=name
        )


# ----------------------------------------------------------------------------- unit


def test_the_cached_replay_carries_the_factor_of_the_loss_backward():
    """A ``backward`` that scales the loss (as a GradScaler does) scales every parameter's
    gradient by exactly that factor: the logit scale's (from the loss backward) and the
    channels' (from the replay of the cached embedding gradients)."""
    config = load_config(
        None, ["--model.preset", "tiny", "--model.modalities", "[text, video]"]
    ).model
    torch.manual_seed(0)
    model = build_model(config).train()
    objective = get_objective("contrastive")
    inputs = {
        "text": ["rock", "jazz piano", "drum", "music video", "choir", "dance"],
        "video": torch.rand(6, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
    }

    def run(backward) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        grad_cache_step(model, inputs, lambda e, s: objective(e, logit_scale=s), 2, backward)
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = run(None)
    scale = 2.0**12

    def scaled_backward(loss: torch.Tensor) -> None:
        (loss * scale).backward()

    scaled = run(scaled_backward)
    assert scaled.keys() == plain.keys() and "logit_scale" in plain and len(plain) > 3
    for name, grad in plain.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(scaled[name] / scale, grad, rtol=1e-5, atol=1e-9, msg=name)


# ----------------------------------------------------------------------------- trainer


def _scaling_accelerator(init_scale: float) -> Accelerator:
    """fp16 on the CPU with Accelerate's own scaler paths: Accelerate accepts
    ``mixed_precision="fp16"`` on the CPU but then enables neither autocast nor a
    ``GradScaler`` (``native_amp`` is off), so give it both — torch's CPU autocast runs fp16
    and ``GradScaler("cpu")`` has the CUDA scaler's arithmetic (scale the loss, unscale before
    clipping, skip and back off on overflow). Set before ``prepare``, which wraps the model's
    forward in autocast and hands the scaler to the optimiser."""
    accelerator = Accelerator(cpu=True, mixed_precision="fp16")
    assert accelerator.scaler is None and not accelerator.native_amp  # what Accelerate gives
    accelerator.native_amp = True
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return accelerator


@pytest.mark.usefixtures("fresh_accelerator_state")
def test_under_a_gradient_scaler_cached_steps_equal_plain_steps(prepared, tmp_path):  # noqa: F811
    """fp16 autocast with the scaler: the gradients clipping and the optimiser see, and the
    update, are the plain step's, to fp16 rounding (2⁻¹¹ relative per operation; 2 %
    relative on the gradients, far below the factor 2¹⁴ a backward without the scale
    gives). The plain fp16 step itself is within fp16 rounding of a float32 step."""
    init_scale = 2.0**14
    steps = {}
    for name, chunk in (("cached", "1"), ("plain", "0")):
        trainer = _trainer(
            prepared,
            tmp_path / name,
            "--train.grad_cache_chunk", chunk,
            accelerator=_scaling_accelerator(init_scale),
        )  # fmt: skip
        steps[name] = _one_step(trainer)
        assert trainer.accelerator.scaler.get_scale() == init_scale  # no overflow: kept
    AcceleratorState._reset_state(reset_partial_state=True)
    unscaled = _one_step(_trainer(prepared, tmp_path / "none", "--train.grad_cache_chunk", "0"))
    _assert_same_step(steps["cached"], steps["plain"], rtol=2e-2, atol=1e-4)
    _assert_same_step(steps["plain"], unscaled, rtol=5e-2, atol=1e-3)
    norm = steps["cached"][0].norms[0]
    assert norm > 0.05, f"the gradient norm {norm} must exceed max_grad_norm to test clipping"


@pytest.mark.usefixtures("fresh_accelerator_state")
def test_an_overflowing_scaled_step_is_skipped_and_the_scale_backs_off(prepared, tmp_path):  # noqa: F811
    """A non-finite gradient under the scaler skips the step, lowers the loss scale and
    leaves the scaler ready for the next window (not stuck in its unscaled state)."""
    trainer = _trainer(
        prepared,
        tmp_path / "run",
        "--train.grad_cache_chunk", "1",
        accelerator=_scaling_accelerator(2.0**10),
    )  # fmt: skip
    model = trainer.unwrapped
    trainer.model.train()
    batches = iter(trainer.train_loader)
    with trainer.accelerator.accumulate(trainer.model):
        assert trainer._forward_backward(trainer._model_inputs(next(batches), 0)) is not None
        model.logit_scale.grad.fill_(float("inf"))
        assert not trainer._optimizer_step(True)
    assert trainer.accelerator.scaler.get_scale() == 2.0**9
    _, update, stepped = _one_step(trainer)
    assert stepped and any(u.abs().max() > 0 for u in update.values())


@pytest.mark.usefixtures("fresh_accelerator_state")
def test_bf16_autocast_cached_steps_equal_plain_steps(prepared, tmp_path):  # noqa: F811
    """bf16 autocast on the CPU: the cached step's gradients and update match the plain
    step's to bf16 rounding. Both paths run the same bf16 kernels on the same examples; they
    differ only in how rows are batched (chunks of 1 vs 4) and in the order gradients are
    summed, so they agree to a few bf16 ulps (2⁻⁸ ≈ 0.4 % relative) — the tolerance is 2 %
    relative, far below the factor 2¹⁴ a missing loss scale would cause."""
    steps = {}
    for name, chunk in (("cached", "1"), ("plain", "0")):
        AcceleratorState._reset_state(reset_partial_state=True)
        trainer = _trainer(
            prepared,
            tmp_path / name,
            "--train.grad_cache_chunk", chunk,
            "--train.mixed_precision", "bf16",
        )  # fmt: skip
        assert trainer.accelerator.mixed_precision == "bf16"
        steps[name] = _one_step(trainer)
    _assert_same_step(steps["cached"], steps["plain"], rtol=2e-2, atol=1e-4)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="fp16 needs CUDA: on the CPU Accelerate 1.x enables neither autocast nor a "
    "GradScaler for mixed_precision='fp16' (tested above on the CPU with both supplied)",
)
@pytest.mark.usefixtures("fresh_accelerator_state")
def test_fp16_cached_steps_equal_plain_steps_on_cuda(prepared, tmp_path):  # noqa: F811
    """fp16 autocast with Accelerate's own GradScaler: cached and plain steps agree to fp16
    rounding (2⁻¹¹ relative per operation; 2 % on the gradients, as bf16 above). The initial
    scale is 2¹⁰ rather than 2¹⁶, so that the one compared step cannot overflow."""
    from accelerate.utils import GradScalerKwargs

    steps = {}
    for name, chunk in (("cached", "1"), ("plain", "0")):
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = Accelerator(
            mixed_precision="fp16", kwargs_handlers=[GradScalerKwargs(init_scale=2.0**10)]
        )
        trainer = _trainer(
            prepared, tmp_path / name, "--train.grad_cache_chunk", chunk, accelerator=accelerator
        )
        assert trainer.accelerator.scaler is not None and trainer.accelerator.native_amp
        steps[name] = _one_step(trainer)
    _assert_same_step(steps["cached"], steps["plain"], rtol=2e-2, atol=1e-4)


# ----------------------------------------------------------------------------- inference

# Every backbone, in a two-channel tiny model: (its modality, the model's modalities).
_BACKBONES = {
    "bpemb": ("text", "[text, video]"),
    "clap_htsat": ("audio", "[text, audio]"),
    "clap_htsat_hf": ("audio", "[text, audio]"),  # a Hugging Face CLAP directory as source
    "musicnn": ("audio", "[text, audio]"),
    "videomae": ("video", "[text, video]"),
    "r2plus1d": ("video", "[text, video]"),
}


def _raw_inputs(modality: str, batch: int = 3):
    generator = torch.Generator().manual_seed(7)
    if modality == "text":
        return ["music video", "drummer on a stage", "rhythm and blues"][:batch]
    if modality == "audio":  # 4 s at 48 kHz: padded by CLAP, 4 patches of musicnn's 3 s
        return torch.rand(batch, 4 * 48000, generator=generator) * 2 - 1
    return torch.randint(0, 256, (batch, 4, 3, 36, 48), generator=generator, dtype=torch.uint8)


def _tiny_hf_clap(tmp_path_factory) -> Path:
    """A tiny random ``ClapAudioModelWithProjection`` directory with its feature extractor."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    directory = tmp_path_factory.mktemp("hf_clap")
    config = ClapAudioConfig(
        depths=[1, 1, 1, 1], num_attention_heads=[1, 2, 2, 4], patch_embeds_hidden_size=16,
        hidden_size=128, projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(0)
    ClapAudioModelWithProjection(config).save_pretrained(directory)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=sorted(_BACKBONES))
def saved_channel(request, tmp_path_factory) -> tuple[str, str, Path]:
    """(backbone, modality, directory) of a saved tiny model with that backbone."""
    backbone = request.param
    modality, modalities = _BACKBONES[backbone]
    overrides = ["--model.preset", "tiny", "--model.modalities", modalities]
    if backbone == "clap_htsat_hf":
        overrides += ["--model.channels.audio.source", str(_tiny_hf_clap(tmp_path_factory))]
    elif modality != "text":
        overrides += [f"--model.channels.{modality}.backbone", backbone]
    torch.manual_seed(0)
    model = build_model(load_config(None, overrides).model)
    directory = tmp_path_factory.mktemp(f"saved_{backbone}")
    model.save_pretrained(directory)
    return backbone, modality, directory


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_a_model_loaded_in_reduced_precision_encodes_like_float32(saved_channel, dtype):
    """``from_pretrained(dir, dtype=...)`` (transformers' keyword): the backbone runs in that
    dtype with its preprocessing in float32, its features come back in that dtype, and the
    embeddings (float32, unit norm) have cosine ≥ 0.99 to the float32 model's."""
    backbone, modality, directory = saved_channel
    reference = TrimodalModel.from_pretrained(directory)
    reduced = TrimodalModel.from_pretrained(directory, dtype=dtype)
    assert reduced.backbones[modality].parameters().__next__().dtype == dtype
    inputs = _raw_inputs(modality)
    with torch.no_grad():
        features = reduced.backbone_features(modality, inputs)
        got, expected = reduced.encode(modality, inputs), reference.encode(modality, inputs)
    assert features.dtype == dtype and torch.isfinite(features).all()
    assert got.dtype == torch.float32 and expected.dtype == torch.float32
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(got)))
    cosines = _cosines(got, expected)
    assert cosines.min() >= 0.99, f"{backbone} in {dtype}: cosines {cosines.tolist()}"


def test_bf16_autocast_runs_every_backbone_forward_and_backward(saved_channel):
    """A float32 model under CPU bf16 autocast (what ``mixed_precision: bf16`` gives): the
    embeddings are within cosine 0.99 of float32's in eval mode, and a training step's
    gradients are finite and reach the backbone (where it trains)."""
    backbone, modality, directory = saved_channel
    model = TrimodalModel.from_pretrained(directory)
    inputs = _raw_inputs(modality)
    with torch.no_grad():
        expected = model.encode(modality, inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model.encode(modality, inputs)
    assert got.dtype == torch.float32
    assert _cosines(got, expected).min() >= 0.99, backbone
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeds = model.encode(modality, inputs)
    (embeds @ embeds.T).logsumexp(dim=-1).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert any(n.startswith(f"heads.{modality}.") for n in grads)
    trains = any(p.requires_grad for p in model.backbones[modality].parameters())
    assert trains == any(n.startswith(f"backbones.{modality}.") for n in grads), backbone
