"""The modalities, their pairs and the study's pair weights: defined once, used everywhere."""

from __future__ import annotations

import pytest

from trimodal.modalities import MODALITIES, PAIRS, STUDY_PAIR_WEIGHTS, pair_name, pairs_among


def test_the_facts():
    assert MODALITIES == ("text", "audio", "video")
    assert PAIRS == (("text", "audio"), ("text", "video"), ("audio", "video"))
    assert STUDY_PAIR_WEIGHTS == {"text-audio": 0.15, "text-video": 0.15, "audio-video": 0.70}
    assert pair_name("audio", "video") == "audio-video"
    assert sum(STUDY_PAIR_WEIGHTS.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["video", "audio"], [("audio", "video")]),
        (["text", "audio", "video"], list(PAIRS)),
        ({"video", "text"}, [("text", "video")]),
        (["audio"], []),
    ],
)
def test_pairs_among_keeps_the_fixed_order(present, expected):
    assert pairs_among(present) == expected


def test_every_module_uses_the_one_definition():
    import trimodal.config
    import trimodal.data.clips
    import trimodal.metrics.retrieval
    import trimodal.objectives.base
    from trimodal.objectives.contrastive import WeightedContrastiveObjective
    from trimodal.objectives.cosine import WeightedCosineObjective

    for module in (trimodal.config, trimodal.data.clips, trimodal.metrics.retrieval):
        assert module.MODALITIES is MODALITIES, module.__name__
    assert trimodal.objectives.base.PAIRS is PAIRS
    assert WeightedContrastiveObjective.default_pair_weights is STUDY_PAIR_WEIGHTS
    assert WeightedCosineObjective.default_pair_weights is STUDY_PAIR_WEIGHTS
