"""Objectives against independent references (explicit Python loops over NumPy float64 rows)."""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import numpy as np
import pytest
import torch
from torch import nn

from trimodal.objectives import (
    available_objectives,
    get_objective,
    register_objective,
    structure_loss,
)
from trimodal.objectives import registry as registry_module
from trimodal.objectives.cosine import CosineObjective

ALL = ("text", "audio", "video")
MODALITY_SETS = [*combinations(ALL, 2), ALL]
PAIR_ORDER = [("text", "audio"), ("text", "video"), ("audio", "video")]
STUDY_WEIGHTS = {"text-audio": 0.15, "text-video": 0.15, "audio-video": 0.70}
FEATURE_DIM = 9
EMBED_DIM = 6


# ----------------------------------------------------------------------------- references


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def ref_cosine(x, y, margin=0.0, negatives=None):
    """``negatives[i]``: the j's used for anchor i (default: all j != i)."""
    n = len(x)
    positive = sum(1.0 - cos(x[i], y[i]) for i in range(n)) / n
    hinges = []
    for i in range(n):
        js = negatives[i] if negatives is not None else [j for j in range(n) if j != i]
        hinges += [max(0.0, cos(x[i], y[j]) - margin) for j in js]
    negative = sum(hinges) / len(hinges) if hinges else 0.0
    return positive + negative


def ref_contrastive(x, y, scale):
    n = len(x)
    s = [[scale * cos(x[i], y[j]) for j in range(n)] for i in range(n)]
    rows = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n))
    cols = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n))
    return 0.5 * (rows / n + cols / n)


def ref_nt_xent(x, y, tau):
    # Veldkamp et al., eq. (1)-(3)
    # (docs/research.md#dual-encoder-study-objective-and-training-settings):
    # positive excluded from the denominator,
    # both directions summed, mean over the batch.
    n = len(x)
    total = 0.0
    for i in range(n):
        pos = math.exp(cos(x[i], y[i]) / tau)
        den_xy = sum(math.exp(cos(x[i], y[k]) / tau) for k in range(n) if k != i)
        den_yx = sum(math.exp(cos(x[k], y[i]) / tau) for k in range(n) if k != i)
        total += -math.log(pos / den_xy) - math.log(pos / den_yx)
    return total / n


def ref_ranking(anchor, other, margin, k):
    n = len(anchor)
    hinges = []
    for i in range(n):
        d_pos = 1.0 - cos(anchor[i], other[i])
        d_neg = sorted(1.0 - cos(anchor[i], other[j]) for j in range(n) if j != i)[:k]
        hinges += [max(0.0, margin + d_pos - d) for d in d_neg]
    return sum(hinges) / len(hinges) if hinges else 0.0


def ref_structure(feat, emb, margin=0.0):
    n = len(emb)
    hinges = []
    for a in range(n):
        # Ties broken by index, like the implementation's stable sort.
        others = sorted((float(np.linalg.norm(feat[a] - feat[j])), j) for j in range(n) if j != a)
        for (d_near, p), (d_far, q) in zip(others, others[1:]):
            if d_near < d_far:
                d_ap = 1.0 - cos(emb[a], emb[p])
                d_aq = 1.0 - cos(emb[a], emb[q])
                hinges.append(max(0.0, margin + d_ap - d_aq))
    return sum(hinges) / len(hinges) if hinges else 0.0


def ref_vmnet(x, y, fx, fy, margin=0.1, k=100, lambdas=(1.0, 3.0, 0.2, 0.2)):
    # For the pair (x, y) = (M, V): λ1·L_VM (video anchor) + λ2·L_MV + λ3·L_VV + λ4·L_MM.
    k = min(k, len(x) - 1)
    return (
        lambdas[0] * ref_ranking(y, x, margin, k)
        + lambdas[1] * ref_ranking(x, y, margin, k)
        + lambdas[2] * ref_structure(fy, y)
        + lambdas[3] * ref_structure(fx, x)
    )


def ref_total(pair_fn, embs, weights=None):
    """Weighted sum of ``pair_fn(x_name, y_name)`` over the present pairs; also the pair values."""
    pairs = {}
    for x, y in PAIR_ORDER:
        if x in embs and y in embs:
            pairs[f"{x}-{y}"] = pair_fn(x, y)
    weights = weights or {}
    return sum(weights.get(name, 1.0) * v for name, v in pairs.items()), pairs


# ----------------------------------------------------------------------------- fixtures


def make_batch(modalities, n, seed=0, dim=EMBED_DIM):
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, dim, generator=generator, dtype=torch.float64) for m in modalities}


def as_np(batch):
    return {m: t.detach().numpy() for m, t in batch.items()}


def reference_for(name, embs_np, feats_np, options):
    """Reference (total, pair values) of objective ``name`` with ``options``."""
    weights = STUDY_WEIGHTS if name.startswith("weighted_") else None
    if name in ("cosine", "weighted_cosine"):
        return ref_total(
            lambda a, b: ref_cosine(embs_np[a], embs_np[b], options.get("margin", 0.0)),
            embs_np,
            weights,
        )
    if name in ("contrastive", "weighted_contrastive"):
        scale = 1.0 / options.get("temperature", 0.07)
        return ref_total(
            lambda a, b: ref_contrastive(embs_np[a], embs_np[b], scale), embs_np, weights
        )
    if name == "nt_xent":
        tau = options.get("temperature", 1.0)
        return ref_total(lambda a, b: ref_nt_xent(embs_np[a], embs_np[b], tau), embs_np)
    if name == "vmnet_triplet":
        return ref_total(
            lambda a, b: ref_vmnet(
                embs_np[a], embs_np[b], feats_np[a], feats_np[b], k=options.get("top_k", 100)
            ),
            embs_np,
        )
    raise AssertionError(name)


OBJECTIVE_CASES = [
    ("cosine", {}),
    ("cosine", {"margin": 0.2}),
    ("weighted_cosine", {}),
    ("contrastive", {}),
    ("contrastive", {"temperature": 0.5}),
    ("weighted_contrastive", {}),
    ("nt_xent", {}),
    ("nt_xent", {"temperature": 0.3}),
    ("vmnet_triplet", {}),
    ("vmnet_triplet", {"top_k": 2}),
]


# ----------------------------------------------------------------------------- registry


def test_registry_has_every_objective_of_the_three_studies():
    expected = {
        "cosine",
        "weighted_cosine",
        "contrastive",
        "weighted_contrastive",
        "nt_xent",
        "vmnet_triplet",
    }
    names = available_objectives()
    assert expected <= set(names)
    assert names == sorted(names)
    for name in expected:
        assert isinstance(get_objective(name), nn.Module)
        assert type(get_objective(name)).objective_name == name


def test_unknown_objective_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown objective 'infonce'") as info:
        get_objective("infonce")
    for name in available_objectives():
        assert name in str(info.value)


def test_options_reach_the_constructor_and_unknown_options_are_refused():
    objective = get_objective("cosine", margin=0.3, num_negatives=4, seed=1)
    assert (objective.margin, objective.num_negatives, objective.seed) == (0.3, 4, 1)
    with pytest.raises(TypeError):
        get_objective("cosine", temperature=0.1)


def test_register_objective_and_refuse_a_second_class_under_the_same_name():
    name = "_test_only_objective"
    try:

        @register_objective(name)
        class Dummy(CosineObjective):
            pass

        assert name in available_objectives()
        assert isinstance(get_objective(name, margin=0.5), Dummy)
        register_objective(name)(Dummy)  # the same class again is harmless
        with pytest.raises(ValueError, match="already registered"):

            @register_objective(name)
            class Other(CosineObjective):
                pass

    finally:
        registry_module._REGISTRY.pop(name, None)
    assert name not in available_objectives()


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("modalities", MODALITY_SETS, ids="+".join)
@pytest.mark.parametrize(("name", "options"), OBJECTIVE_CASES)
def test_objective_matches_reference(name, options, modalities, n):
    embs = make_batch(modalities, n, seed=n)
    feats = make_batch(modalities, n, seed=100 + n, dim=FEATURE_DIM)
    objective = get_objective(name, **options)
    out = objective(embs, features=feats)
    total, pairs = reference_for(name, as_np(embs), as_np(feats), options)
    assert out["loss"].item() == pytest.approx(total, rel=1e-9, abs=1e-12)
    for pair, value in pairs.items():
        assert out[f"loss/{pair}"].item() == pytest.approx(value, rel=1e-9, abs=1e-12)
    # Only the present pairs are reported, in the fixed order TA, TV, AV.
    reported = [k.removeprefix("loss/") for k in out if k.count("/") == 1]
    assert reported == list(pairs)


@pytest.mark.parametrize(("name", "options"), OBJECTIVE_CASES)
def test_every_batch_size_is_finite_with_finite_gradients(name, options):
    # The research code's half-batch swap gave NaN on odd last batches
    # (docs/defects.md#contrastive-and-cosine-losses).
    for n in range(1, 8):
        embs = {m: t.requires_grad_() for m, t in make_batch(ALL, n, seed=n).items()}
        feats = make_batch(ALL, n, seed=50 + n, dim=FEATURE_DIM)
        objective = get_objective(name, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = objective(embs, features=feats)
        assert all(torch.isfinite(v) for v in out.values()), (n, out)
        out["loss"].backward()
        for m, t in embs.items():
            assert t.grad is not None and torch.isfinite(t.grad).all(), (n, m)


def test_pair_weights_weight_the_pairs_and_accept_either_key_order():
    embs = make_batch(ALL, 5)
    plain = get_objective("cosine")(embs)
    weighted = get_objective("weighted_cosine")(embs)
    expected = sum(w * plain[f"loss/{p}"] for p, w in STUDY_WEIGHTS.items())
    assert weighted["loss"].item() == pytest.approx(expected.item(), rel=1e-12)
    custom = get_objective("contrastive", pair_weights={"audio-text": 2.0, "audio-video": 0.0})
    out = custom(embs)
    expected = 2.0 * out["loss/text-audio"] + 1.0 * out["loss/text-video"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-12)
    # Weights are not renormalised when a modality is absent.
    av = {m: embs[m] for m in ("audio", "video")}
    out = get_objective("weighted_contrastive")(av)
    assert out["loss"].item() == pytest.approx(0.7 * out["loss/audio-video"].item(), rel=1e-12)
    with pytest.raises(ValueError, match="unknown modality pair"):
        get_objective("cosine", pair_weights={"text-lyrics": 1.0})


# ----------------------------------------------------------------------------- cosine


def test_cosine_batch_of_one_warns_once_and_keeps_the_positive_term():
    embs = make_batch(("audio", "video"), 1)
    objective = get_objective("cosine")
    with pytest.warns(RuntimeWarning, match="no negatives"):
        out = objective(embs)
    a, v = as_np(embs)["audio"][0], as_np(embs)["video"][0]
    assert out["loss/audio-video/negative"].item() == 0.0
    assert out["loss"].item() == pytest.approx(1.0 - cos(a, v), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        objective(embs)  # the second time: silent


def test_cosine_random_negatives_are_distinct_non_matching_and_uniform():
    objective = CosineObjective(num_negatives=3, seed=0)
    idx = objective.sample_negatives(6, 3)
    assert idx.shape == (6, 3)
    for i, row in enumerate(idx.tolist()):
        assert i not in row and len(set(row)) == 3
    counts = np.zeros((4, 4))
    for _ in range(3000):
        for i, j in enumerate(objective.sample_negatives(4, 1)[:, 0].tolist()):
            counts[i, j] += 1
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(4, dtype=bool)] / 3000
    # Each of the 3 candidates has probability 1/3; 6 standard deviations is ~0.05.
    assert np.allclose(off, 1 / 3, atol=0.05), off


def test_cosine_random_negatives_match_reference_with_the_same_draws():
    embs = make_batch(("audio", "video"), 7)
    out = CosineObjective(num_negatives=2, seed=5, margin=0.1)(embs)
    draws = CosineObjective(num_negatives=2, seed=5).sample_negatives(7, 2).tolist()
    e = as_np(embs)
    expected = ref_cosine(e["audio"], e["video"], margin=0.1, negatives=draws)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-12)
    # Seeded: reproducible; k >= N - 1 means every negative.
    again = CosineObjective(num_negatives=2, seed=5, margin=0.1)(embs)
    assert again["loss"].item() == out["loss"].item()
    every = CosineObjective(num_negatives=6)(embs)["loss"].item()
    assert every == pytest.approx(ref_cosine(e["audio"], e["video"]), rel=1e-12)


def test_cosine_margin_zeroes_easy_negatives():
    # Orthogonal embeddings: every negative cosine is 0 (< margin 0.1): no negative cost.
    eye = torch.eye(4, dtype=torch.float64)
    out = get_objective("cosine", margin=0.1)({"audio": eye, "video": eye.clone()})
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-12)
    out = get_objective("cosine", margin=-0.5)({"audio": eye, "video": eye.clone()})
    assert out["loss/audio-video/negative"].item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- contrastive


def test_contrastive_uses_exp_of_the_log_scale_and_gives_it_a_gradient():
    embs = make_batch(("text", "video"), 5)
    e = as_np(embs)
    log_scale = torch.tensor(math.log(20.0), dtype=torch.float64, requires_grad=True)
    out = get_objective("contrastive")(embs, logit_scale=log_scale)
    assert out["loss"].item() == pytest.approx(
        ref_contrastive(e["text"], e["video"], 20.0), rel=1e-9
    )
    out["loss"].backward()
    h = 1e-6
    numeric = (
        ref_contrastive(e["text"], e["video"], math.exp(math.log(20.0) + h))
        - ref_contrastive(e["text"], e["video"], math.exp(math.log(20.0) - h))
    ) / (2 * h)
    assert log_scale.grad.item() == pytest.approx(numeric, rel=1e-5)
    # Without a logit scale: the fixed temperature.
    out = get_objective("contrastive", temperature=0.25)(embs)
    assert out["loss"].item() == pytest.approx(
        ref_contrastive(e["text"], e["video"], 4.0), rel=1e-9
    )
    with pytest.raises(ValueError, match="scalar"):
        get_objective("contrastive")(embs, logit_scale=torch.zeros(2))


def test_contrastive_batch_of_one_is_zero_with_a_warning():
    with pytest.warns(RuntimeWarning, match="no negatives"):
        out = get_objective("contrastive")(make_batch(ALL, 1))
    assert out["loss"].item() == 0.0


@pytest.mark.parametrize("name", available_objectives())
@pytest.mark.parametrize("n", [1, 3])
def test_every_registered_objective_is_finite_at_batch_one_and_odd(name, n):
    # The README promises every objective "a zero negative term with a warning (never NaN)"
    # at batch size 1; loop over the registry so a new objective cannot skip the promise.
    embs = {m: t.requires_grad_() for m, t in make_batch(ALL, n, seed=7 + n).items()}
    feats = make_batch(ALL, n, seed=70 + n, dim=FEATURE_DIM)
    objective = get_objective(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        out = objective(embs, features=feats)
    no_negatives = [w for w in caught if "no negatives" in str(w.message)]
    assert len(no_negatives) == (1 if n == 1 else 0), [str(w.message) for w in caught]
    assert all(torch.isfinite(v) for v in out.values()), out
    out["loss"].backward()
    assert all(torch.isfinite(t.grad).all() for t in embs.values())


def test_nt_xent_batch_of_one_keeps_the_positive_term():
    embs = make_batch(("audio", "video"), 1)
    with pytest.warns(RuntimeWarning, match="no negatives"):
        out = get_objective("nt_xent", temperature=0.5)(embs)
    a, v = as_np(embs)["audio"][0], as_np(embs)["video"][0]
    assert out["loss"].item() == pytest.approx(-2.0 * cos(a, v) / 0.5, rel=1e-12)


def test_nt_xent_is_about_two_log_n_minus_one_at_chance():
    # Orthogonal embeddings: every similarity 0 except the positives (1). With τ = 1 each
    # direction is −1 + ln(N − 1); the thesis' ~13.4 at N = 1000 is this order (2·ln 999 = 13.8).
    n = 10
    eye = torch.eye(n, dtype=torch.float64)
    out = get_objective("nt_xent")({"audio": eye, "video": eye.clone()})
    assert out["loss"].item() == pytest.approx(2 * (math.log(n - 1) - 1.0), rel=1e-12)


@pytest.mark.parametrize("name", ["contrastive", "nt_xent"])
def test_smooth_objectives_pass_gradcheck(name):
    embs = {m: t.requires_grad_() for m, t in make_batch(ALL, 4).items()}
    objective = get_objective(name)

    def f(text, audio, video):
        return objective({"text": text, "audio": audio, "video": video})["loss"]

    assert torch.autograd.gradcheck(f, (embs["text"], embs["audio"], embs["video"]))


# ----------------------------------------------------------------------------- vmnet


def test_vmnet_needs_features_unless_structure_weights_are_zero():
    embs = make_batch(("audio", "video"), 5)
    with pytest.raises(ValueError, match=r"features\['video'\]"):
        get_objective("vmnet_triplet")(embs)
    ranking_only = get_objective("vmnet_triplet", lambdas=(1.0, 3.0, 0.0, 0.0))(embs)
    e = as_np(embs)
    expected = 1.0 * ref_ranking(e["video"], e["audio"], 0.1, 4) + 3.0 * ref_ranking(
        e["audio"], e["video"], 0.1, 4
    )
    assert ranking_only["loss"].item() == pytest.approx(expected, rel=1e-9)


def test_vmnet_top_k_selects_the_hardest_negatives():
    embs = make_batch(("audio", "video"), 6)
    feats = make_batch(("audio", "video"), 6, seed=3, dim=FEATURE_DIM)
    outs = {
        k: get_objective("vmnet_triplet", top_k=k)(embs, features=feats)[
            "loss/audio-video/rank_audio_anchor"
        ].item()
        for k in (1, 3, 5, 100)
    }
    # Fewer, harder negatives: the mean hinge can only grow; K beyond N − 1 is clamped.
    assert outs[1] >= outs[3] >= outs[5]
    assert outs[100] == outs[5]
    assert outs[1] > outs[5]


def test_structure_loss_is_zero_iff_embeddings_keep_the_feature_order():
    generator = torch.Generator().manual_seed(0)
    unit = torch.nn.functional.normalize(
        torch.randn(7, 5, generator=generator, dtype=torch.float64)
    )
    # On unit vectors the Euclidean order equals the cosine-distance order: no violation.
    assert structure_loss(unit, unit).item() == 0.0
    # Any monotone rescaling of the features keeps the order too.
    assert structure_loss(3.0 * unit, unit).item() == 0.0
    shuffled = unit[torch.randperm(7, generator=generator)]
    assert structure_loss(unit, shuffled).item() > 0.0
    assert structure_loss(unit[:2], unit[:2]).item() == 0.0  # N < 3: no triplets


def test_structure_loss_matches_reference_with_ties_in_the_features():
    generator = torch.Generator().manual_seed(1)
    feats = torch.randint(0, 2, (8, 3), generator=generator).to(torch.float64)  # many ties
    embs = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    got = structure_loss(feats, embs, margin=0.05).item()
    assert got == pytest.approx(ref_structure(feats.numpy(), embs.numpy(), 0.05), rel=1e-9)


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("embeddings", "match"),
    [
        ({"audio": torch.zeros(2, 3)}, "at least two"),
        ({"audio": torch.zeros(2, 3), "lyrics": torch.zeros(2, 3)}, "unknown modalities"),
        ({"audio": torch.zeros(2, 3), "video": torch.zeros(3, 3)}, "same"),
        ({"audio": torch.zeros(2, 3), "video": torch.zeros(2, 4)}, "same"),
        ({"audio": torch.zeros(2, 3, 1), "video": torch.zeros(2, 3, 1)}, r"\[B, D\]"),
        ({"audio": torch.zeros(0, 3), "video": torch.zeros(0, 3)}, "empty"),
    ],
)
def test_bad_inputs_are_refused(embeddings, match):
    with pytest.raises(ValueError, match=match):
        get_objective("contrastive")(embeddings)


def test_feature_batch_must_match():
    embs = make_batch(("audio", "video"), 4)
    bad = {"audio": torch.zeros(3, 2), "video": torch.zeros(4, 2)}
    with pytest.raises(ValueError, match=r"features\['audio'\]"):
        get_objective("vmnet_triplet")(embs, features=bad)


def test_gradient_caching_gives_the_same_gradients_as_direct_backprop():
    # GradCache: embed without a graph, take the loss gradient w.r.t. the embeddings, then
    # re-embed chunk by chunk and back-propagate the cached gradient. Valid only because the
    # objective is a pure function of the embeddings.
    torch.manual_seed(0)
    model = nn.ModuleDict({m: nn.Linear(5, 4).double() for m in ALL})
    inputs = make_batch(ALL, 6, seed=9, dim=5)
    objective = get_objective("weighted_contrastive")

    objective({m: model[m](x) for m, x in inputs.items()})["loss"].backward()
    direct = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    with torch.no_grad():
        cached = {m: model[m](x) for m, x in inputs.items()}
    leaves = {m: e.clone().requires_grad_() for m, e in cached.items()}
    objective(leaves)["loss"].backward()
    for m, x in inputs.items():
        for chunk in (slice(0, 2), slice(2, 6)):
            model[m](x[chunk]).backward(leaves[m].grad[chunk])
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, direct[n])


@pytest.mark.parametrize(("n", "block"), [(5, 4), (32, 4), (33, 4), (33, 32), (7, 1)])
def test_blockwise_contrastive_equals_the_full_matrix(n, block):
    """block_size bounds memory without changing the loss, its terms or its gradients."""
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, 12, generator=gen, requires_grad=True)
    y = torch.randn(n, 12, generator=gen, requires_grad=True)
    log_scale = torch.tensor(2.3, requires_grad=True)

    def run(**options):
        for t in (x, y, log_scale):
            t.grad = None
        out = get_objective("contrastive", **options)(
            {"audio": x, "video": y}, logit_scale=log_scale
        )
        # Unequal weights on the two directions check each direction's gradient separately.
        (out["loss"] + out["loss/audio-video/audio_to_video"]).backward()
        terms = {k: v.detach() for k, v in out.items()}
        return terms, x.grad.clone(), y.grad.clone(), log_scale.grad.clone()

    full = run()
    blocked = run(block_size=block)
    torch.testing.assert_close(blocked[0], full[0], rtol=1e-6, atol=1e-6)
    for a, b in zip(full[1:], blocked[1:]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        get_objective("contrastive", block_size=0)


def test_blockwise_contrastive_under_bf16_autocast_is_float32_like_the_full_matrix():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 8, generator=gen, requires_grad=True)
    y = torch.randn(10, 8, generator=gen, requires_grad=True)
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = {"audio": layer(x), "video": layer(y)}
        full = get_objective("contrastive")(emb)["loss"]
        blocked = get_objective("contrastive", block_size=4)(emb)["loss"]
    assert blocked.dtype == full.dtype == torch.float32
    # The full matrix is a bf16 matmul under autocast; the streamed loss is all float32.
    reference = get_objective("contrastive")({m: e.float() for m, e in emb.items()})["loss"]
    torch.testing.assert_close(blocked, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, reference, rtol=1e-2, atol=1e-2)
    blocked.backward()
    assert layer.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("groups", [None, [0, 1, 0, 2, 2, 2, 3, 1, 0]], ids=["plain", "groups"])
def test_blockwise_contrastive_gradients_pass_gradcheck(groups):
    """The hand-written backward against finite differences (float64), with and without
    repeated texts (``groups``: the multi-positive targets)."""
    from trimodal.objectives.contrastive import _BlockwiseClipLoss

    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(9, 5, generator=gen, dtype=torch.float64), dim=1)
    k = torch.nn.functional.normalize(torch.randn(9, 5, generator=gen, dtype=torch.float64), dim=1)
    scale = torch.tensor(3.0, dtype=torch.float64)
    codes = None if groups is None else torch.tensor(groups)
    inputs = (q.requires_grad_(), k.requires_grad_(), scale.requires_grad_(), 4, codes)
    assert torch.autograd.gradcheck(_BlockwiseClipLoss.apply, inputs)


# ----------------------------------------------------------------------------- repeated texts


def ref_multi_positive_contrastive(x, y, scale, keys):
    """Both directions of the multi-positive cross-entropy: the target of query i is uniform
    over the candidates whose text (key) is i's."""
    n = len(x)
    s = [[scale * cos(x[i], y[j]) for j in range(n)] for i in range(n)]

    def direction(logit):  # logit(i, j): query i, candidate j
        total = 0.0
        for i in range(n):
            positives = [j for j in range(n) if keys[j] == keys[i]]
            denominator = sum(math.exp(logit(i, k)) for k in range(n))
            logs = [math.log(math.exp(logit(i, j)) / denominator) for j in positives]
            total += -sum(logs) / len(positives)
        return total / n

    return 0.5 * (direction(lambda i, j: s[i][j]) + direction(lambda i, j: s[j][i]))


def ref_multi_positive_nt_xent(x, y, tau, keys):
    """NT-Xent with every same-text item out of the denominator and the positive term their
    mean; a query without negatives has a negative term of 0."""
    n = len(x)
    s = [[cos(x[i], y[j]) / tau for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        positives = [j for j in range(n) if keys[j] == keys[i]]
        negatives = [k for k in range(n) if keys[k] != keys[i]]
        for logit in (s[i].__getitem__, [row[i] for row in s].__getitem__):
            negative = math.log(sum(math.exp(logit(k)) for k in negatives)) if negatives else 0.0
            total += negative - sum(logit(p) for p in positives) / len(positives)
    return total / n


def ref_multi_positive_ranking(anchor, other, margin, k, keys):
    n = len(anchor)
    hinges = []
    for i in range(n):
        d_pos = 1.0 - cos(anchor[i], other[i])
        others = [j for j in range(n) if keys[j] != keys[i]]
        d_neg = sorted(1.0 - cos(anchor[i], other[j]) for j in others)[:k]
        hinges += [max(0.0, margin + d_pos - d) for d in d_neg]
    return sum(hinges) / len(hinges) if hinges else 0.0


def multi_positive_reference(name, embs_np, feats_np, options, keys):
    """Reference (total, pair values) with repeated texts: the pairs with text use the
    multi-positive references above with ``keys``, audio-video with every item its own key
    (the plain definitions; also defined for a batch of 1)."""
    n = len(keys)
    weights = STUDY_WEIGHTS if name.startswith("weighted_") else None

    def pair(a, b):
        x, y = embs_np[a], embs_np[b]
        keys_ab = keys if "text" in (a, b) else list(range(n))
        return pair_reference(x, y, a, b, keys_ab)

    def pair_reference(x, y, a, b, keys):
        if name in ("cosine", "weighted_cosine"):
            negatives = [[j for j in range(n) if keys[j] != keys[i]] for i in range(n)]
            return ref_cosine(x, y, options.get("margin", 0.0), negatives)
        if name in ("contrastive", "weighted_contrastive"):
            scale = 1.0 / options.get("temperature", 0.07)
            return ref_multi_positive_contrastive(x, y, scale, keys)
        if name == "nt_xent":
            return ref_multi_positive_nt_xent(x, y, options.get("temperature", 1.0), keys)
        k = min(options.get("top_k", 100), n - 1)
        return (
            ref_multi_positive_ranking(y, x, 0.1, k, keys)
            + 3.0 * ref_multi_positive_ranking(x, y, 0.1, k, keys)
            + 0.2 * ref_structure(feats_np[b], y)
            + 0.2 * ref_structure(feats_np[a], x)
        )

    return ref_total(pair, embs_np, weights)


#: Text identities of the test batches: batch 1, one text twice, odd batches with repeats,
#: a text that fills all but one row.
REPEATED_KEYS = [[5], [3, 3], [0, 1, 0, 2, 1], [4, 4, 4, 1, 2, 1, 9], [7, 7, 7, 7, 7, 7, 0]]
MULTI_POSITIVE_CASES = [
    *OBJECTIVE_CASES,
    ("contrastive", {"block_size": 2}),
    ("weighted_contrastive", {"block_size": 3}),
]


@pytest.mark.parametrize("keys", REPEATED_KEYS, ids=lambda k: f"n{len(k)}")
@pytest.mark.parametrize("modalities", [("text", "audio"), ("text", "video"), ALL], ids="+".join)
@pytest.mark.parametrize(("name", "options"), MULTI_POSITIVE_CASES)
def test_repeated_texts_match_the_multi_positive_reference(name, options, modalities, keys):
    n = len(keys)
    embs = make_batch(modalities, n, seed=n)
    feats = make_batch(modalities, n, seed=100 + n, dim=FEATURE_DIM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # batch of 1
        out = get_objective(name, **options)(embs, features=feats, text_keys=torch.tensor(keys))
    total, pairs = multi_positive_reference(name, as_np(embs), as_np(feats), options, keys)
    rel = 1e-6 if "block_size" in options else 1e-9  # the streamed loss runs in float32
    assert out["loss"].item() == pytest.approx(total, rel=rel, abs=1e-12)
    for pair, value in pairs.items():
        assert out[f"loss/{pair}"].item() == pytest.approx(value, rel=rel, abs=1e-12)


@pytest.mark.parametrize("name", available_objectives())
def test_distinct_texts_give_the_plain_loss_and_gradients(name):
    """Every text distinct (any key values): the plain objective (to rounding: the targets
    are then a one-hot distribution instead of an index), the same random negatives."""
    options = {"num_negatives": 2, "seed": 3} if "cosine" in name else {}
    losses, grads = [], []
    for keys in (None, torch.tensor([17, -4, 2**62, 0, 5, 6, 8])):
        embs = {m: t.requires_grad_() for m, t in make_batch(ALL, 7, seed=2).items()}
        feats = make_batch(ALL, 7, seed=3, dim=FEATURE_DIM)
        out = get_objective(name, **options)(embs, features=feats, text_keys=keys)
        out["loss"].backward()
        losses.append({k: v.item() for k, v in out.items()})
        grads.append({m: t.grad for m, t in embs.items()})
    assert losses[1] == pytest.approx(losses[0], rel=1e-12, abs=1e-12)
    for m in ALL:
        torch.testing.assert_close(grads[1][m], grads[0][m], rtol=1e-12, atol=1e-12)


def test_repeated_texts_leave_the_audio_video_pair_alone():
    embs = make_batch(ALL, 6, seed=4)
    keys = torch.tensor([1, 1, 1, 2, 2, 3])
    plain = get_objective("contrastive")(embs)
    multi = get_objective("contrastive")(embs, text_keys=keys)
    assert multi["loss/audio-video"].item() == plain["loss/audio-video"].item()
    assert multi["loss/text-audio"].item() != plain["loss/text-audio"].item()


def _aligned_batch(keys, noise=0.0, seed=0):
    """Texts: one unit direction per distinct key (plus ``noise``); audio: the same directions,
    so every same-text item sits on its text (aligned)."""
    codes = {k: c for c, k in enumerate(dict.fromkeys(keys))}
    centres = torch.eye(EMBED_DIM, dtype=torch.float64)[[codes[k] for k in keys]]
    gen = torch.Generator().manual_seed(seed)
    text = centres + noise * torch.randn(centres.shape, generator=gen, dtype=torch.float64)
    return text, centres.clone()


def test_multi_positive_loss_is_minimal_when_same_text_items_align():
    """The multi-positive cross-entropy of query i is at least log |P(i)| (Jensen: the
    positives share at most all of the softmax), with equality when the softmax is uniform
    on the positives: same-text items aligned, other texts far (scale 100 → e^-100)."""
    keys = [0, 0, 0, 1, 1, 2, 3]
    text, audio = _aligned_batch(keys)
    objective = get_objective("contrastive", temperature=0.01)
    counts = torch.tensor([keys.count(k) for k in keys], dtype=torch.float64)
    bound = counts.log().mean().item()  # the same in both directions
    aligned = objective({"text": text, "audio": audio}, text_keys=torch.tensor(keys))
    assert aligned["loss"].item() == pytest.approx(bound, abs=1e-9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        moved = audio + 0.3 * torch.randn(audio.shape, generator=gen, dtype=torch.float64)
        other = objective({"text": text, "audio": moved}, text_keys=torch.tensor(keys))
        assert other["loss"].item() > bound + 1e-6
    # Separating two same-text items costs: it is not rewarded, as it is by the plain loss.
    split = audio.clone()
    split[1] = torch.nn.functional.normalize(audio[1] + 0.5 * torch.eye(EMBED_DIM)[5], dim=0)
    assert (
        objective({"text": text, "audio": split}, text_keys=torch.tensor(keys))["loss"].item()
        > aligned["loss"].item()
    )


@pytest.mark.parametrize("text_positives", [True, False])
def test_training_on_repeated_texts_keeps_same_text_items_together(text_positives):
    """Gradient descent on the audio side, from same-text audio items together, against
    texts that repeat (the copies of a text a little apart, as head dropout makes them):
    with multi-positive targets the items of one text stay together while the loss falls;
    the plain loss, which makes them each other's negatives, pulls them apart along the
    copies' differences."""
    keys = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    text, start = _aligned_batch(keys, noise=0.3, seed=2)
    gen = torch.Generator().manual_seed(3)
    start = start + 0.5 * torch.randn(EMBED_DIM, generator=gen, dtype=torch.float64)
    audio = start.clone().requires_grad_()
    objective = get_objective("contrastive")
    optimizer = torch.optim.Adam([audio], lr=0.02)
    text_keys = torch.tensor(keys) if text_positives else None
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = objective({"text": text, "audio": audio}, text_keys=text_keys)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    unit = torch.nn.functional.normalize(audio.detach(), dim=1)
    same = torch.tensor(keys)[:, None] == torch.tensor(keys)[None, :]
    within = (unit @ unit.T)[same & ~torch.eye(len(keys), dtype=torch.bool)]
    if text_positives:
        assert within.min().item() > 1 - 1e-9
    else:
        assert within.min().item() < 0.95


def test_gradient_caching_with_repeated_texts_matches_the_reference():
    """GradCache with repeated texts: the cached-embedding loss is the reference's and the
    replayed gradients are those of direct back-propagation, streamed in blocks or not."""
    torch.manual_seed(0)
    model = nn.ModuleDict({m: nn.Linear(5, 4).double() for m in ALL})
    inputs = make_batch(ALL, 7, seed=9, dim=5)
    keys = torch.tensor([3, 1, 3, 3, 2, 1, 0])
    for options in ({}, {"block_size": 2}):
        objective = get_objective("weighted_contrastive", **options)
        model.zero_grad()
        objective({m: model[m](x) for m, x in inputs.items()}, text_keys=keys)["loss"].backward()
        direct = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        with torch.no_grad():
            leaves = {m: model[m](x).requires_grad_() for m, x in inputs.items()}
        out = objective(leaves, text_keys=keys)
        out["loss"].backward()
        for m, x in inputs.items():
            for chunk in (slice(0, 3), slice(3, 7)):
                model[m](x[chunk]).backward(leaves[m].grad[chunk])
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, direct[n], rtol=1e-5, atol=1e-5)
        total, _ = multi_positive_reference(
            "weighted_contrastive", as_np(leaves), {}, {}, keys.tolist()
        )
        assert out["loss"].item() == pytest.approx(total, rel=1e-6)  # blocks: float32


def test_cosine_random_negatives_skip_same_text_items():
    keys = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    embs = make_batch(("text", "audio"), 7)
    out = CosineObjective(num_negatives=3, seed=5, margin=0.1)(embs, text_keys=keys)
    same = keys[:, None] == keys[None, :]
    draws = CosineObjective(num_negatives=3, seed=5).sample_negatives(7, 3, same).tolist()
    for i, row in enumerate(draws):
        # Every anchor has 4 or 5 other-text items, so all 3 draws are other-text ones.
        assert len(set(row)) == 3 and all(keys[j] != keys[i] for j in row), (i, row)
    e = as_np(embs)
    expected = ref_cosine(e["text"], e["audio"], margin=0.1, negatives=draws)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("keys", "match"),
    [(torch.tensor([1.0, 2.0]), "integer"), (torch.tensor([1, 2, 3]), r"\[B=2\]")],
)
def test_bad_text_keys_are_refused(keys, match):
    with pytest.raises(ValueError, match=match):
        get_objective("contrastive")(make_batch(ALL, 2), text_keys=keys)
