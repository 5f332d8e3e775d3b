"""Multilabel probe metrics: agreement with scikit-learn, hand-made values, threshold choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from trimodal.metrics import EVALUATE_MODULES, choose_threshold, multilabel_metrics


def _random_case(seed: int = 0, n: int = 200, c: int = 9):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.2).astype(int)
    score = np.clip(0.35 * y + 0.65 * rng.random((n, c)), 0, 1)
    y[:, 7] = 0  # no positives: left out of the AUC
    y[:, 8] = 1  # no negatives: left out of the AUC
    return y, score


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_matches_sklearn(threshold):
    y, s = _random_case()
    pred = (s >= threshold).astype(int)
    m = multilabel_metrics(y, s, threshold)
    for avg, suffix in (("weighted", ""), ("micro", "_micro"), ("macro", "_macro")):
        assert m[f"f1{suffix}"] == pytest.approx(f1_score(y, pred, average=avg, zero_division=0))
        assert m[f"precision{suffix}"] == pytest.approx(
            precision_score(y, pred, average=avg, zero_division=0)
        )
        assert m[f"recall{suffix}"] == pytest.approx(
            recall_score(y, pred, average=avg, zero_division=0)
        )
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    # macro AUC by an independent route: one binary AUC per usable class, averaged
    per_class = [roc_auc_score(y[:, c], s[:, c]) for c in range(7)]
    assert m["roc_auc_macro"] == pytest.approx(np.mean(per_class))
    assert m["num_auc_classes"] == 7
    assert m["threshold"] == threshold


def test_hand_made_values():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    s = np.array([[0.9, 0.2, 0.6], [0.1, 0.8, 0.7], [0.7, 0.4, 0.3], [0.2, 0.1, 0.9]])
    m = multilabel_metrics(y, s, 0.5)
    # predictions: [1,0,1], [0,1,1], [1,0,0], [0,0,1]: rows 0 and 3 exact -> subset acc 1/2;
    # wrong cells: (1,2) false positive, (2,1) false negative -> Hamming 2/12.
    assert m["subset_accuracy"] == 0.5
    assert m["hamming_loss"] == pytest.approx(2 / 12)
    # micro: TP 5 (0,0),(0,2),(1,1),(2,0),(3,2); FP 1; FN 1 -> P = R = F1 = 5/6.
    assert m["precision_micro"] == pytest.approx(5 / 6)
    assert m["recall_micro"] == pytest.approx(5 / 6)
    assert m["f1_micro"] == pytest.approx(5 / 6)
    # per class F1: c0 1 (2 TP); c1 P 1, R 1/2 -> 2/3; c2 P 2/3, R 1 -> 4/5. Supports 2, 2, 2:
    # weighted = macro = (1 + 2/3 + 4/5) / 3.
    assert m["f1"] == pytest.approx((1 + 2 / 3 + 4 / 5) / 3)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 4 / 5) / 3)
    # AUC: c0 perfect 1; c1 positives .8, .4 vs negatives .2, .1 -> 1; c2 positives .6, .9 vs
    # negatives .7, .3: pairs won 3 of 4 -> .75. Macro (1 + 1 + .75) / 3.
    assert m["roc_auc_macro"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_choose_threshold_finds_the_separating_one():
    rng = np.random.default_rng(1)
    y = (rng.random((300, 5)) < 0.3).astype(int)
    s = np.where(y == 1, rng.uniform(0.7, 1.0, y.shape), rng.uniform(0.0, 0.3, y.shape))
    t, f1 = choose_threshold(y, s)
    assert f1 == 1.0
    # the smallest of the candidates 0.01 ... 0.99 above every negative score
    grid = np.round(np.linspace(0.01, 0.99, 99), 2)
    assert t == grid[grid > s[y == 0].max()].min()
    # a real trade-off: the chosen threshold beats every other candidate on dev micro F1
    y2, s2 = _random_case(2)
    t2, f2 = choose_threshold(y2, s2, average="micro")
    for cand in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert f2 >= f1_score(y2, (s2 >= cand).astype(int), average="micro", zero_division=0)
    assert multilabel_metrics(y2, s2, t2)["f1_micro"] == pytest.approx(f2)
    tw, fw = choose_threshold(y2, s2, average="weighted", thresholds=[0.9, 0.2, 0.5])
    assert tw in (0.2, 0.5, 0.9)
    with pytest.raises(ValueError):
        choose_threshold(y2, s2, average="samples")


def test_shape_errors():
    with pytest.raises(ValueError):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def test_evaluate_module_loads_offline_and_agrees(tmp_path):
    code = f"""
import json, numpy as np, evaluate
from trimodal.metrics import multilabel_metrics
rng = np.random.default_rng(3)
s = rng.random((50, 6)); y = (rng.random((50, 6)) < 0.3).astype(int)
m = evaluate.load({EVALUATE_MODULES["multilabel"]!r})
print(json.dumps([m.compute(predictions=s, references=y, threshold=0.4),
                  multilabel_metrics(y, s, 0.4)]))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    via_evaluate, direct = json.loads(out.stdout.strip().splitlines()[-1])
    assert via_evaluate == direct
    assert direct["num_auc_classes"] == 6
