"""The modalities, their pairs and the study's pair weights, defined once for the package.

Everything that loops over modalities or pairs (the model's forward pass, the objectives,
retrieval, validation metrics, the data loader) uses these, so that the order of terms, of
metric keys and of dropout's random draws is the same everywhere. This module imports
nothing from the package: it is the bottom of the core layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Literal

#: The modalities in their fixed order (channels, loss terms and metrics follow it).
MODALITIES: tuple[str, ...] = ("text", "audio", "video")

#: A modality name, as the typed config loader checks it.
Modality = Literal["text", "audio", "video"]

#: Modality pairs in the order in which loss terms and per-pair metrics are computed:
#: ``(text, audio), (text, video), (audio, video)``.
PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(MODALITIES, 2))


#: Stored waveforms are int16: ``round(clip(x, -1, 1) * AUDIO_SCALE)`` (a prepared split's
#: ``audio_*`` columns, and the loader's batches until :func:`model_input`).
AUDIO_SCALE = 32767


def model_input(inputs):
    """A batch of one modality as the loader gives it → what the backbones take.

    int16 waveforms ``[B, S]`` (or a list of ``[S_i]``) become float32 in [-1, 1]
    (``/ AUDIO_SCALE``), on whatever device they already are: the loader's workers and the
    host-to-device copy move int16, 2 bytes a sample. Everything else passes unchanged —
    texts, float waveforms, and frames: uint8 ``[B, T, 3, H, W]`` stay uint8 up to the video
    backbone's preprocessing, which divides by 255 after any uint8 resize (the exact
    Pillow-compatible path). This is the one conversion: the model's
    :meth:`~trimodal.modeling.TrimodalModel.backbone_features` and the baseline extractors
    call it.
    """
    if isinstance(inputs, (list, tuple)):
        return [model_input(x) for x in inputs]
    dtype = getattr(inputs, "dtype", None)
    if dtype is not None and str(dtype) in ("torch.int16", "int16"):
        # torch tensors and NumPy arrays alike (this module imports neither)
        floats = inputs.float() if hasattr(inputs, "float") else inputs.astype("float32")
        return floats / AUDIO_SCALE
    return inputs


def pair_name(x: str, y: str) -> str:
    """``"text-audio"`` style name of a pair (the key in ``pair_weights`` and in metrics)."""
    return f"{x}-{y}"


#: The trimodal study's pair weights: text-audio .15, text-video .15, audio-video .70
#: (the audio-video pair carries most of the signal of a music video).
STUDY_PAIR_WEIGHTS: Mapping[str, float] = {
    pair_name("text", "audio"): 0.15,
    pair_name("text", "video"): 0.15,
    pair_name("audio", "video"): 0.70,
}


def pairs_among(modalities: Iterable[str]) -> list[tuple[str, str]]:
    """The pairs of :data:`PAIRS` whose two modalities are both in ``modalities``, in
    :data:`PAIRS` order (``["audio", "video"]`` → ``[("audio", "video")]``)."""
    present = set(modalities)
    return [(x, y) for x, y in PAIRS if x in present and y in present]


__all__ = ["MODALITIES", "PAIRS", "STUDY_PAIR_WEIGHTS", "Modality", "pair_name", "pairs_among"]
