"""YouTube-8M starter-code metrics on hand-computed examples."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from trimodal.metrics import EVALUATE_MODULES, labels_to_multi_hot, youtube8m_metrics
from trimodal.metrics.youtube8m import (
    average_precision_at_n,
    global_average_precision,
    mean_average_precision,
    precision_at_equal_recall_rate,
)

# 3 videos, 4 classes. Video 2 has no label; classes 1 and 3 have no positives.
PRED = np.array(
    [
        [0.9, 0.8, 0.1, 0.05],  # labels {0, 2}
        [0.2, 0.7, 0.6, 0.3],  # labels {2}
        [0.4, 0.3, 0.2, 0.1],  # no labels
    ]
)
LABELS = labels_to_multi_hot([[0, 2], [2], []], 4)


def test_hand_computed_example_top2():
    m = youtube8m_metrics(PRED, LABELS, top_k=2)
    # Hit@1: tops are classes 0 (true), 1 (false), 0 (video without labels: false) -> 1/3.
    assert m["hit_at_1"] == pytest.approx(1 / 3)
    # PERR: video 0, k=2: top-2 {0, 1} holds one true label -> 1/2; video 1, k=1: top {1} -> 0;
    # video 2, k=0: counts as 0 and stays in the denominator -> (1/2 + 0 + 0) / 3 = 1/6.
    assert m["perr"] == pytest.approx(1 / 6)
    # GAP, top 2 per video, pooled and sorted: .9 (v0 c0, +), .8 (v0 c1), .7 (v1 c1),
    # .6 (v1 c2, +), .4 (v2 c0), .3 (v2 c1). 3 true labels in all (v0's class 2 at .1 missed):
    # AP = (1/1 + 2/4) / 3 = 0.5.
    assert m["gap"] == pytest.approx(0.5)
    # mAP over classes with positives (0 and 2). Class 0 entries: .9 (+), .4 -> (1/1) / 1 = 1.
    # Class 2 entries: only .6 (+) (v0's .1 is not in its top 2) but 2 positives -> 1/2.
    # mAP = (1 + 1/2) / 2 = 0.75. (sklearn on all scores would give class 2 (1 + 2/3)/2.)
    assert m["map"] == pytest.approx(0.75)
    assert m["num_classes_with_positives"] == 2
    assert m["num_videos_without_labels"] == 1
    _, aps = mean_average_precision(PRED, LABELS, top_k=2)
    assert aps[0] == pytest.approx(1.0) and aps[2] == pytest.approx(0.5)
    assert np.isnan(aps[1]) and np.isnan(aps[3])


def test_hand_computed_example_top1():
    m = youtube8m_metrics(PRED, LABELS, top_k=1)
    # GAP, top 1 per video: .9 (+), .7, .4; 3 true labels -> (1/1) / 3.
    assert m["gap"] == pytest.approx(1 / 3)
    # Class 0 entries .9 (+), .4: AP 1. Class 2: no entry at all, 2 positives: AP 0.
    assert m["map"] == pytest.approx(0.5)
    # Hit@1 and PERR do not depend on top_k.
    assert m["hit_at_1"] == pytest.approx(1 / 3) and m["perr"] == pytest.approx(1 / 6)


def test_perr_counts_only_positive_scores_like_the_starter_code():
    # Class 0 is the top prediction and a true label, but its score 0 is not > 0.
    pred = np.array([[0.0, -1.0, -2.0], [0.5, 0.2, 0.1]])
    labels = np.array([[1, 0, 0], [0, 1, 1]])
    # video 0: 0 (score not > 0). video 1, k=2: top-2 {0, 1}: one hit -> 1/2. PERR = 1/4.
    assert precision_at_equal_recall_rate(pred, labels) == pytest.approx(0.25)
    # Hit@1 has no such rule: video 0 hits, video 1 misses.
    assert youtube8m_metrics(pred, labels)["hit_at_1"] == pytest.approx(0.5)


def test_perfect_predictions():
    labels = labels_to_multi_hot([[0], [1, 2], [3], [0, 3]], 5)
    pred = labels * 0.9 + 0.05 * np.arange(5) / 5  # every true label above every false one
    m = youtube8m_metrics(pred, labels)
    assert m["hit_at_1"] == 1.0 and m["perr"] == 1.0
    assert m["gap"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0)


def test_matches_sklearn_when_nothing_is_filtered():
    # With top_k >= num_classes every entry is kept, so (no ties) GAP is sklearn's AP of the
    # flattened matrix and mAP its macro AP over classes with positives.
    rng = np.random.default_rng(0)
    pred = rng.random((60, 7))
    labels = (rng.random((60, 7)) < 0.25).astype(int)
    labels[:, 6] = 0  # a class without positives is left out of the mAP
    labels[0] = 0
    m = youtube8m_metrics(pred, labels, top_k=20)
    assert m["gap"] == pytest.approx(average_precision_score(labels.ravel(), pred.ravel()))
    per_class = [average_precision_score(labels[:, c], pred[:, c]) for c in range(6)]
    assert m["map"] == pytest.approx(np.mean(per_class))


def test_gap_penalises_missed_positives():
    # Each video has 3 true labels but only the top 2 predictions count.
    labels = np.ones((4, 3), dtype=int)
    pred = np.tile([0.9, 0.8, 0.7], (4, 1)) + np.arange(4)[:, None] * 1e-3
    # 8 kept entries, all positive, 12 positives in all: AP = 8 · 1 / 12.
    assert global_average_precision(pred, labels, top_k=2) == pytest.approx(8 / 12)


def test_ties_are_deterministic_bounded_and_leave_global_random_state_alone():
    scores = np.array([0.5, 0.5, 0.5, 0.5, 0.2])
    labels = np.array([0, 1, 0, 1, 1])
    state = random.getstate()
    ap = average_precision_at_n(scores, labels, 3)
    assert random.getstate() == state
    assert average_precision_at_n(scores, labels, 3) == ap
    # best order of the 4 tied: + + - - then +: (1 + 1 + 3/5)/3; worst: - - + + then +:
    # (1/3 + 2/4 + 3/5)/3
    assert (1 / 3 + 2 / 4 + 3 / 5) / 3 <= ap <= (1 + 1 + 3 / 5) / 3
    # without ties, a permutation of the input changes nothing
    s2 = np.array([0.9, 0.1, 0.5, 0.7])
    y2 = np.array([1, 0, 1, 0])
    assert average_precision_at_n(s2, y2, 2) == average_precision_at_n(s2[::-1], y2[::-1], 2)
    assert average_precision_at_n(s2, y2, 2) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_n(s2, y2, 0) == 0.0


def test_no_positives_at_all():
    pred = np.array([[0.3, 0.7], [0.6, 0.4]])
    labels = np.zeros((2, 2), dtype=int)
    m = youtube8m_metrics(pred, labels)
    assert m["hit_at_1"] == 0.0 and m["perr"] == 0.0 and m["gap"] == 0.0
    assert np.isnan(m["map"]) and m["num_classes_with_positives"] == 0


def test_shape_errors():
    with pytest.raises(ValueError):
        youtube8m_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        youtube8m_metrics(np.zeros((2, 3)), np.zeros((2, 3)), top_k=0)


def test_evaluate_module_loads_offline_and_agrees(tmp_path):
    code = f"""
import json, numpy as np, evaluate
from trimodal.metrics import youtube8m_metrics
rng = np.random.default_rng(1)
p = rng.random((40, 30)); y = (rng.random((40, 30)) < 0.1).astype(int)
m = evaluate.load({EVALUATE_MODULES["youtube8m"]!r})
print(json.dumps([m.compute(predictions=p, references=y, top_k=5),
                  youtube8m_metrics(p, y, top_k=5)]))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    via_evaluate, direct = json.loads(out.stdout.strip().splitlines()[-1])
    assert via_evaluate == direct
    assert 0.0 < direct["gap"] < 1.0
