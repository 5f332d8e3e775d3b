"""laion-clap's own CLAP network, for checking the LAION-CLAP checkpoint conversion.

Used by ``tests/test_clap.py`` where the ``laion-clap`` extra is installed, and run as a
script to regenerate the stored reference the default suite checks without it::

    python tests/laion_clap_reference.py     # needs pip install -e '.[laion-clap]'

It writes ``tests/data/clap/laion_htsat_tiny.pt`` (a small random-weight HTSAT in the
original checkpoint format) and ``tests/data/clap/laion_htsat_tiny_reference.npz`` (two
clips and laion-clap's audio embeddings of them); ``tests/data/README.md`` describes both.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parent / "data" / "clap"
CHECKPOINT = DATA / "laion_htsat_tiny.pt"
REFERENCE = DATA / "laion_htsat_tiny_reference.npz"
SR = 48000
WINDOW = 10 * SR

# A tiny HTSAT (laion-clap's HTSAT_Swin_Transformer arguments): every kind of layer of
# HTSAT-base — shifted and unshifted windows, patch merging, the projection — at width 8.
TINY_HTSAT = {"embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8], "class_num": 8}
BASE_HTSAT = {"embed_dim": 128, "depths": [2, 2, 12, 2], "num_heads": [4, 8, 16, 32]}
TINY_JOINT_DIM = 32
# Large derived entries of a real checkpoint left out of the stored file (the conversion
# drops them; the parity test's full checkpoints keep them): torchlibrosa's DFT basis (4 MB)
# and the Swin blocks' relative position indices and shifted-window masks.
STORED_WITHOUT = ("spectrogram_extractor.stft.", "relative_position_index", "attn_mask")
_PRIVATE_PACKAGE = "_trimodal_tests_laion_clap_module"


def laion_clap_module(name: str) -> types.ModuleType:
    """Import ``laion_clap/clap_module/<name>.py`` without importing ``laion_clap`` itself.

    ``laion_clap/__init__.py`` imports ``training/data.py``, which downloads the BERT,
    RoBERTa and BART tokenizers at import time (minutes of retries offline). The network
    code (``htsat``, ``model``) only uses relative imports inside ``clap_module``, so that
    directory is registered as a private package and imported from.
    """
    if _PRIVATE_PACKAGE not in sys.modules:
        spec = importlib.util.find_spec("laion_clap")
        if spec is None or spec.origin is None:
            raise ImportError("laion-clap is not installed: pip install -e '.[laion-clap]'")
        package = types.ModuleType(_PRIVATE_PACKAGE)
        package.__path__ = [str(Path(spec.origin).parent / "clap_module")]
        package.__package__ = _PRIVATE_PACKAGE
        sys.modules[_PRIVATE_PACKAGE] = package
    return importlib.import_module(f"{_PRIVATE_PACKAGE}.{name}")


@contextlib.contextmanager
def _htsat_architecture(htsat: dict) -> Iterator[None]:
    """laion-clap's CLAP builds only its named HTSAT sizes; build ``htsat`` instead."""
    model_module, htsat_module = laion_clap_module("model"), laion_clap_module("htsat")
    named = model_module.create_htsat_model

    def create(audio_cfg, enable_fusion=False, fusion_type="None"):
        return htsat_module.HTSAT_Swin_Transformer(
            spec_size=256, patch_size=4, patch_stride=(4, 4), num_classes=audio_cfg.class_num,
            embed_dim=htsat["embed_dim"], depths=htsat["depths"], num_heads=htsat["num_heads"],
            window_size=8, config=audio_cfg, enable_fusion=enable_fusion, fusion_type=fusion_type,
        )  # fmt: skip

    model_module.create_htsat_model = create
    try:
        yield
    finally:
        model_module.create_htsat_model = named


def build_laion_clap(htsat: dict, joint_dim: int = 512, seed: int = 0) -> torch.nn.Module:
    """laion-clap's ``CLAP`` (eval mode) with the given HTSAT and random weights.

    Every parameter is perturbed and the batch-norm statistics drawn, so that no weight keeps
    a value (LayerNorm's 1 and 0, zero biases) that a wrong mapping could leave unnoticed.
    """
    model_module = laion_clap_module("model")
    audio_cfg = {
        "audio_length": 1024, "clip_samples": WINDOW, "mel_bins": 64, "sample_rate": SR,
        "window_size": 1024, "hop_size": 480, "fmin": 50, "fmax": 14000,
        "class_num": htsat.get("class_num", 527), "model_type": "HTSAT", "model_name": "base",
    }  # fmt: skip
    # A small native text tower: the real roberta branch would need the network.
    text_cfg = {
        "context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1,
        "model_type": "transformer",
    }  # fmt: skip
    audio_dim = htsat["embed_dim"] * 2 ** (len(htsat["depths"]) - 1)
    torch.manual_seed(seed)
    with _htsat_architecture(htsat):
        clap = model_module.CLAP(
            embed_dim=audio_dim, audio_cfg=audio_cfg, text_cfg=text_cfg, joint_embed_shape=joint_dim
        )
    with torch.no_grad():
        for name, param in clap.audio_branch.named_parameters():
            if "logmel_extractor" not in name and "spectrogram_extractor" not in name:
                param.add_(torch.randn_like(param) * 0.05)
        clap.audio_branch.bn0.running_mean.normal_(-30.0, 10.0)
        clap.audio_branch.bn0.running_var.uniform_(50.0, 200.0)
    return clap.eval()


def original_checkpoint(clap: torch.nn.Module, leave_out: tuple[str, ...] = ()) -> dict:
    """``clap``'s weights as an original LAION-CLAP file holds them: ``{"epoch",
    "state_dict"}``, keys with DataParallel's ``module.``; keys containing any of
    ``leave_out`` are left out."""
    state = {
        f"module.{k}": v.clone()
        for k, v in clap.state_dict().items()
        if not any(part in k for part in leave_out)
    }
    return {"epoch": 15, "state_dict": state}


def fitted(clips: list[torch.Tensor]) -> torch.Tensor:
    """Clips repeat-padded (or centre-cropped) to the 10-s window, ``[B, WINDOW]``."""
    from trimodal.backbones.clap import fit_to_window

    return torch.stack([fit_to_window(c, WINDOW, random_crop=False) for c in clips])


def laion_embeddings(clap: torch.nn.Module, waveforms: torch.Tensor) -> torch.Tensor:
    """laion-clap's own audio embeddings ``[B, joint]`` of window-length waveforms."""
    with torch.no_grad():
        return clap.get_audio_embedding([{"waveform": w} for w in waveforms])


def main() -> None:
    """Regenerate the stored tiny checkpoint and laion-clap's embeddings of two clips."""
    clap = build_laion_clap(TINY_HTSAT, TINY_JOINT_DIM)
    generator = torch.Generator().manual_seed(1)
    # 0.75 s and 1.25 s: repeated 13 and 8 times then zero-padded to the 10-s window.
    clips = [torch.rand(n, generator=generator) * 2 - 1 for n in (36000, 60000)]
    embeddings = laion_embeddings(clap, fitted(clips))
    DATA.mkdir(parents=True, exist_ok=True)
    torch.save(original_checkpoint(clap, STORED_WITHOUT), CHECKPOINT)
    np.savez_compressed(
        REFERENCE,
        clip0=clips[0].numpy(),
        clip1=clips[1].numpy(),
        embeddings=embeddings.numpy(),
    )
    print(f"wrote {CHECKPOINT} and {REFERENCE}: embeddings {tuple(embeddings.shape)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
