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


def test_blockwise_contrastive_gradients_pass_gradcheck():
    """The hand-written backward against finite differences (float64)."""
    from trimodal.objectives.contrastive import _BlockwiseClipLoss

    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(9, 5, generator=gen, dtype=torch.float64), dim=1)
    k = torch.nn.functional.normalize(torch.randn(9, 5, generator=gen, dtype=torch.float64), dim=1)
    scale = torch.tensor(3.0, dtype=torch.float64)
    inputs = (q.requires_grad_(), k.requires_grad_(), scale.requires_grad_(), 4)
    assert torch.autograd.gradcheck(_BlockwiseClipLoss.apply, inputs)
