"""PNG figures of an evaluation (matplotlib, Agg; no pyplot global state, no display needed).

Every function writes one PNG atomically and returns its path:

* :func:`plot_tsne` — 2-D t-SNE (scikit-learn) of one modality's clip embeddings, coloured by
  each clip's first label (the 10 most frequent labels get colours, the rest grey);
* :func:`plot_per_label_ap` — horizontal bars of per-label average precision;
* :func:`plot_similarity_histogram` — cosine similarities of positive vs negative pairs;
* :func:`plot_training_curves` — training loss and dev metrics from a run's ``metrics.jsonl``,
  one small panel per modality pair (:func:`training_curves_figure`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from trimodal.evaluation.probes import SMALL_PROBLEM_ROWS, single_threaded
from trimodal.utils import atomic_path

#: At most this many clips enter a t-SNE (a fixed random sample beyond it).
TSNE_MAX_POINTS = 3000


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_tsne(
    embeddings: np.ndarray,
    first_label: Sequence[int],
    label_names: Sequence[str],
    path: str | Path,
    title: str,
    seed: int = 0,
) -> Path:
    """t-SNE of ``embeddings`` [N, D] coloured by ``first_label`` [N] (-1: no label).

    Perplexity is ``min(30, (N - 1) / 3)`` (it must stay below N); inputs wider than 50
    dimensions are first reduced by PCA to 50, as scikit-learn recommends.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(first_label)
    if x.shape[0] < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {x.shape[0]}")
    if x.shape[0] > TSNE_MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], TSNE_MAX_POINTS, False))
        x, labels = x[keep], labels[keep]
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3)))
    with single_threaded(x.shape[0] < SMALL_PROBLEM_ROWS):
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    top = [lab for lab, _ in Counter(labels[labels >= 0].tolist()).most_common(10)]
    other = ~np.isin(labels, top)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=8, c="lightgrey", label="other / none")
    colours = [f"C{i}" for i in range(10)]
    for colour, lab in zip(colours, top):
        rows = labels == lab
        ax.scatter(xy[rows, 0], xy[rows, 1], s=10, c=colour, label=label_names[lab])
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="first label")
    return _save(fig, path)


def plot_per_label_ap(
    ap: Sequence[float | None], label_names: Sequence[str], path: str | Path, title: str
) -> Path:
    """Bars of per-label AP (labels without positives are left out), highest first."""
    pairs = sorted(
        ((name, v) for name, v in zip(label_names, ap) if v is not None and np.isfinite(v)),
        key=lambda p: p[1],
    )
    if not pairs:
        raise ValueError("no label has an AP (no positives)")
    fig = Figure(figsize=(7, max(2.5, 0.25 * len(pairs) + 1)))
    ax = fig.add_subplot()
    ax.barh([p[0] for p in pairs], [p[1] for p in pairs], color="C0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def plot_similarity_histogram(
    positive: np.ndarray, negative: np.ndarray, path: str | Path, title: str
) -> Path:
    """Overlaid density histograms of positive- and negative-pair cosine similarities."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    bins = np.linspace(-1, 1, 41)
    if len(negative):
        ax.hist(negative, bins=bins, density=True, alpha=0.5, color="C1", label="negative pairs")
    ax.hist(positive, bins=bins, density=True, alpha=0.5, color="C0", label="positive pairs")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def read_metrics_jsonl(path: str | Path) -> list[dict]:
    """The records of a training run's ``metrics.jsonl`` (unparsable lines skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step") is not None:
            records.append(record)
    return records


def missing_ap(ap: Sequence[float | None]) -> str | None:
    """Why :func:`plot_per_label_ap` has nothing to draw (no label has an AP), or ``None``."""
    if any(v is not None and np.isfinite(v) for v in ap):
        return None
    return "no label has an AP (no positives)"


def missing_training_metrics(metrics_path: str | Path) -> str | None:
    """Why :func:`plot_training_curves` has nothing to draw, or ``None``."""
    records = read_metrics_jsonl(metrics_path)
    if any("train/loss" in r or any(k.startswith("dev/") for k in r) for r in records):
        return None
    return f"{metrics_path} has no train/loss or dev/ metrics"


#: Dev metrics drawn per modality pair (video level solid, clip level dashed): the pair's
#: mean over its two directions of R@10, or of mAP and any@10 where texts repeat.
CURVE_METRICS = ("R@10", "mAP", "any@10")


def _pairs_in(records: Sequence[dict]) -> list[str]:
    """The modality pairs a run logged (``train/loss/<pair>``, ``dev/<level>/<pair>/…``), in
    the fixed order text-audio, text-video, audio-video."""
    from trimodal.modalities import PAIRS, pair_name

    keys = {k for r in records for k in r}
    found = []
    for x, y in PAIRS:
        name = pair_name(x, y)
        if f"train/loss/{name}" in keys or any(f"/{name}/mean_" in k for k in keys):
            found.append(name)
    return found


def _series(records: Sequence[dict], key: str) -> tuple[list, list]:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return ([p[0] for p in points], [p[1] for p in points]) if points else ([], [])


def training_curves_figure(records: Sequence[dict], title: str) -> Figure:
    """Small multiples of a run's ``metrics.jsonl`` records: one column per modality pair,
    its (unweighted) training loss on top and its dev retrieval below (video level solid,
    clip level dashed; :data:`CURVE_METRICS`), plus a first column with the weighted total
    loss and the learning rate. Each axes has a handful of lines, so each can be read."""
    pairs = _pairs_in(records)
    fig = Figure(figsize=(3.2 * (len(pairs) + 1), 5.6), layout="constrained")
    axes = fig.subplots(2, len(pairs) + 1, sharex=True, squeeze=False)
    steps, loss = _series(records, "train/loss")
    axes[0][0].plot(steps, loss, color="k", lw=1)
    axes[0][0].set_title("total (weighted)", fontsize=9)
    axes[0][0].set_ylabel("train loss")
    steps, lr = _series(records, "train/lr")
    axes[1][0].plot(steps, lr, color="k", lw=1)
    axes[1][0].set_ylabel("learning rate")
    for column, pair in enumerate(pairs, start=1):
        top, bottom = axes[0][column], axes[1][column]
        top.set_title(pair, fontsize=9)
        top.plot(*_series(records, f"train/loss/{pair}"), color="C0", lw=1)
        for i, metric in enumerate(CURVE_METRICS):
            for level, style in (("video", "-"), ("clip", "--")):
                x, y = _series(records, f"dev/{level}/{pair}/mean_{metric}")
                if x:
                    bottom.plot(x, y, style, marker="o", ms=2.5, color=f"C{i}",
                                label=f"{metric} ({level})")  # fmt: skip
        bottom.set_ylim(0, 1)
        if bottom.lines:
            bottom.legend(fontsize=6, loc="upper left")
    axes[1][1 if pairs else 0].set_ylabel("dev (mean of both directions)")
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_training_curves(metrics_path: str | Path, path: str | Path, title: str) -> Path:
    """:func:`training_curves_figure` of the run's ``metrics.jsonl``, as a PNG."""
    records = read_metrics_jsonl(metrics_path)
    if missing_training_metrics(metrics_path) is not None:
        raise ValueError(f"{metrics_path} has no train/loss or dev/ metrics")
    return _save(training_curves_figure(records, title), path)
