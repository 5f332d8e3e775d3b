"""The dual-encoder thesis's downstream probes (§4.3): genre classification and music tagging.

Both tasks fit the thesis's probe, a three-layer perceptron with hidden widths 512 and 256
(ReLU), on frozen features of the ``train`` split, keep the epoch with the lowest ``dev``
loss and report on the evaluated split. The inputs are the thesis's six models:

======  =============================  ==============================================
row     thesis                         features here
======  =============================  ==============================================
M1      contrastive audio              ``embedding:audio``
M2      contrastive video              ``embedding:video``
M3      contrastive aggregated         ``embedding:mean(audio,video)``: the mean of the
                                       L2-normalised audio and video embeddings
M3c     (variant) concatenated         ``embedding:audio+video``
B1      musicnn                        ``backbone:audio`` (the audio channel's backbone
                                       features, before the projection head)
B2      R(2+1)D                        ``backbone:video``
B3      concatenated backbones         ``backbone:audio+video``
======  =============================  ==============================================

At video level (the default) every clip row is first computed as above and the clips of a
video are then averaged (:func:`~trimodal.metrics.pool_by_video`; averaging
and the M3 mean commute); at clip level each clip is one example with its video's target.

**Genre (single label).** Softmax over the class dimension, cross-entropy loss
(:class:`SoftmaxMLPProbe`; the research code applied the softmax over the *batch*
dimension: docs/defects.md#genre-softmax). One genre per video, from a user mapping
(:func:`load_genre_labels`, ``--genre-labels``) or, by default, the video's first label in the prepared data (the
YouTube-8M music labels carry no instrument/genre family, so the first label, the one the
dataset lists first for the video, stands in for the genre). Classes with fewer than
``min_class_videos`` (2) training videos are dropped with their videos in every split; the
task is skipped, with the reason recorded, when fewer than two classes remain. Metrics:
accuracy, macro one-vs-rest ROC-AUC and macro F1 (scikit-learn), plus per-class AUC/F1.

**Tagging (multi-label).** Sigmoid outputs and binary cross-entropy on the ``top_n`` (10)
labels with the most training videos (:class:`~trimodal.evaluation.probes.TorchProbe`
with hidden sizes 512 and 256); videos with none of these tags stay in as all-negative
rows. The decision threshold is, by default, the single global threshold that maximises the
*macro* F1 on dev (:func:`trimodal.metrics.choose_threshold`), or a fixed number (e.g. 0.5). Metrics: macro ROC-AUC and macro F1 (the unweighted mean over
tags, as the thesis's Table 2), plus AUC, F1 and AP per tag (its Table 4).

Everything is seeded (initialisation and batch order; the global RNG is left alone) and
deterministic for a given seed.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from trimodal.embedding import SplitEmbeddings
from trimodal.evaluation.probes import TorchProbe
from trimodal.metrics import choose_threshold, multilabel_metrics, pool_by_video

#: The thesis's probe: three linear layers with hidden widths 512 and 256.
THESIS_HIDDEN_SIZES: tuple[int, int] = (512, 256)

#: Input rows: name → (description, feature source, modalities, how modalities combine).
THESIS_INPUTS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "M1": ("Contrastive audio", "embedding", ("audio",), "single"),
    "M2": ("Contrastive video", "embedding", ("video",), "single"),
    "M3": ("Contrastive aggregated (mean)", "embedding", ("audio", "video"), "mean"),
    "M3c": ("Contrastive aggregated (concatenated)", "embedding", ("audio", "video"), "concat"),
    "B1": ("Audio backbone", "backbone", ("audio",), "single"),
    "B2": ("Video backbone", "backbone", ("video",), "single"),
    "B3": ("Concatenated backbones", "backbone", ("audio", "video"), "concat"),
}

#: The two downstream tasks.
THESIS_TASKS: tuple[str, ...] = ("tagging", "genre")


def feature_name(input_name: str) -> str:
    """The feature-set string of an input row (``"M3"`` → ``"embedding:mean(audio,video)"``)."""
    _, source, modalities, how = THESIS_INPUTS[input_name]
    joined = f"mean({','.join(modalities)})" if how == "mean" else "+".join(modalities)
    return f"{source}:{joined}"


# ----------------------------------------------------------------------------- the probe


class SoftmaxMLPProbe(TorchProbe):
    """Single-label MLP: logits ``[B, C]``, softmax over the class dimension, cross-entropy.

    Same training scheme as :class:`~trimodal.evaluation.probes.TorchProbe` (standardised
    inputs, AdamW, keep the epoch with the lowest dev loss, early stop after ``patience``
    epochs without improvement), with the thesis's hidden sizes by default.

    Args:
        hidden_sizes: hidden widths (ReLU between layers).
        num_classes: C; default ``max(y) + 1`` of the training targets.
        **kwargs: ``epochs``, ``lr``, ``weight_decay``, ``batch_size``, ``patience``,
            ``seed`` as :class:`TorchProbe`.
    """

    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = THESIS_HIDDEN_SIZES,
        num_classes: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(tuple(hidden_sizes), **kwargs)
        self.num_classes = num_classes

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        """``[N]`` class indices."""
        return torch.as_tensor(np.asarray(y, dtype=np.int64))

    def _output_size(self, y: np.ndarray) -> int:
        return self.num_classes or int(np.asarray(y).max()) + 1

    def _loss(self) -> torch.nn.Module:
        # CrossEntropyLoss takes logits [B, C] and applies log-softmax over dim 1 (classes).
        return torch.nn.CrossEntropyLoss()

    def _fit(self, x: np.ndarray, y: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray):
        """``x`` [N, F], ``y`` [N] class indices; ``x_dev`` [M, F], ``y_dev`` [M]."""
        x = np.asarray(x, dtype=np.float64)
        y, y_dev = np.asarray(y, dtype=np.int64), np.asarray(y_dev, dtype=np.int64)
        if y.ndim != 1 or y.shape[0] != x.shape[0] or y_dev.shape[0] != len(x_dev):
            raise ValueError(f"need x [N, F] and class indices y [N]; got {x.shape}, {y.shape}")
        num_classes = self._output_size(y)
        if y.min() < 0 or max(y.max(), y_dev.max(initial=0)) >= num_classes:
            raise ValueError(f"class indices must lie in [0, {num_classes})")
        return super()._fit(x, y, x_dev, y_dev)

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """``[N, C]`` logits of ``x`` [N, F]."""
        return self.net(self._standardise(x)).double().numpy()

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``[N, C]`` class probabilities (softmax over dim 1: every row sums to 1)."""
        return torch.softmax(self.net(self._standardise(x)).double(), dim=1).numpy()


# ----------------------------------------------------------------------------- metrics


def single_label_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, macro one-vs-rest ROC-AUC and macro F1 of single-label predictions.

    Args:
        y_true: ``[N]`` class indices in ``[0, C)``.
        proba: ``[N, C]`` class probabilities; the prediction is the row's argmax.
        class_names: C names for ``per_class`` (default ``"0"``, ``"1"``, ...).

    Returns:
        ``accuracy``; ``f1_macro`` (sklearn's ``f1_score(average="macro")``, over the classes
        that occur in ``y_true`` or in the predictions); ``roc_auc_macro``, the unweighted
        mean of the one-vs-rest AUCs of the classes with both positives and negatives in
        ``y_true`` (equal to sklearn's ``roc_auc_score(multi_class="ovr", average="macro")``
        when every class occurs; NaN when none qualifies) and ``num_auc_classes``;
        ``per_class`` ``{name: {"auc", "f1", "support"}}`` (``auc`` None where undefined);
        ``num_examples``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"need y_true [N] and proba [N, C]; got {y.shape} and {p.shape}")
    num_classes = p.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    pred = p.argmax(axis=1)
    aucs: list[float | None] = []
    for c in range(num_classes):
        positives = int((y == c).sum())
        aucs.append(float(roc_auc_score(y == c, p[:, c])) if 0 < positives < y.shape[0] else None)
    defined = [a for a in aucs if a is not None]
    per_class_f1 = f1_score(y, pred, labels=list(range(num_classes)), average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
        "roc_auc_macro": float(np.mean(defined)) if defined else float("nan"),
        "num_auc_classes": len(defined),
        "per_class": {
            names[c]: {"auc": aucs[c], "f1": float(per_class_f1[c]), "support": int((y == c).sum())}
            for c in range(num_classes)
        },
        "num_examples": int(y.shape[0]),
    }


def per_tag_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, tag_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``{tag: {"auc", "f1", "ap", "support"}}`` of ``[N, T]`` multi-hot truth and scores
    (``auc``/``ap`` None for a tag without both positives and negatives; F1 at ``threshold``,
    0 when the tag is neither present nor predicted)."""
    y = (np.asarray(y_true) > 0).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    f1 = f1_score(y, (s >= threshold).astype(np.int64), average=None, zero_division=0)
    out: dict[str, dict[str, Any]] = {}
    for t, name in enumerate(tag_names):
        positives = int(y[:, t].sum())
        defined = 0 < positives < y.shape[0]
        out[name] = {
            "auc": float(roc_auc_score(y[:, t], s[:, t])) if defined else None,
            "f1": float(f1[t]),
            "ap": float(average_precision_score(y[:, t], s[:, t])) if defined else None,
            "support": positives,
        }
    return out


# ----------------------------------------------------------------------------- genre labels


def load_genre_labels(path: str | Path) -> dict[str, str]:
    """Read a ``video_id → genre`` mapping.

    Formats: JSON, either an object ``{"video_id": "genre", ...}`` or a list of
    ``{"video_id": ..., "genre": ...}`` records; or CSV (any other suffix), either with a
    header naming ``video_id`` and ``genre`` columns or as two columns without a header.
    Empty genres are ignored.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable content, or a video listed twice with different genres.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no genre label file at {path}")
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            pairs = [(str(k), str(v)) for k, v in data.items()]
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            try:
                pairs = [(str(r["video_id"]), str(r["genre"])) for r in data]
            except KeyError as err:
                raise ValueError(f"{path}: every record needs video_id and genre") from err
        else:
            raise ValueError(f"{path}: expected an object or a list of records")
    else:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        if rows:
            header = [c.strip().lower() for c in rows[0]]
            if "video_id" in header and "genre" in header:
                vi, gi = header.index("video_id"), header.index("genre")
                rows = rows[1:]
            elif all(len(r) == 2 for r in rows):
                vi, gi = 0, 1
            else:
                raise ValueError(f"{path}: need a video_id,genre header or two columns")
            pairs = [(r[vi].strip(), r[gi].strip()) for r in rows]
    mapping: dict[str, str] = {}
    for vid, genre in pairs:
        if not genre:
            continue
        if mapping.get(vid, genre) != genre:
            raise ValueError(f"{path}: video {vid} has two genres ({mapping[vid]!r}, {genre!r})")
        mapping[vid] = genre
    if not mapping:
        raise ValueError(f"{path} lists no genres")
    return mapping


def first_label_genres(data: SplitEmbeddings) -> dict[str, str]:
    """``{video_id: name of the video's first label}`` (videos without labels left out)."""
    out: dict[str, str] = {}
    for vid, first in zip(data.video_id, data.first_label):
        if first >= 0:
            out.setdefault(vid, data.label_names[first])
    return out


# ----------------------------------------------------------------------------- features


def _progress(features: dict[str, Any], level: str) -> Any:
    """``features.items()`` with a progress bar: each row fits probes for up to
    ``thesis_epochs`` epochs, minutes in all."""
    from tqdm.auto import tqdm

    return tqdm(features.items(), desc=f"thesis probes ({level})", unit="probe", leave=False)


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def thesis_features(
    data: SplitEmbeddings, input_name: str, level: str
) -> tuple[np.ndarray, list[str]]:
    """The features of one input row (see :data:`THESIS_INPUTS`).

    Returns:
        ``(x, row_video_ids)``: ``x`` float64 ``[N, F]`` per clip (``level="clip"``) or
        ``[V, F]`` per video (``"video"``, rows in sorted video-id order), F the embedding
        size (M1, M2, M3), twice it (M3c) or the backbone width(s) (B1–B3).

    Raises:
        ValueError: a modality the split does not have, or an unknown level/input.
    """
    if input_name not in THESIS_INPUTS:
        raise ValueError(f"unknown input {input_name!r}; known: {', '.join(THESIS_INPUTS)}")
    if level not in ("video", "clip"):
        raise ValueError(f"level must be 'video' or 'clip', got {level!r}")
    reason = missing_input(data, input_name)
    if reason is not None:
        raise ValueError(reason)
    _, source, modalities, how = THESIS_INPUTS[input_name]
    table = data.embeddings if source == "embedding" else data.backbone
    parts = [table[m].double().numpy() for m in modalities]
    if how == "mean":
        x = np.mean([_l2(p) for p in parts], axis=0)
    else:
        x = np.concatenate(parts, axis=1)
    if level == "clip":
        return x, list(data.video_id)
    # The plain mean of the clips' features, as for the other probes (see
    # :mod:`trimodal.metrics.pooling`).
    pooled, ids = pool_by_video(x, data.video_id, "mean")
    return pooled.numpy(), ids


def missing_input(data: SplitEmbeddings, input_name: str) -> str | None:
    """Why ``data`` lacks the modalities of input row ``input_name``, or ``None``."""
    _, source, modalities, _ = THESIS_INPUTS[input_name]
    table = data.embeddings if source == "embedding" else data.backbone
    missing = [m for m in modalities if m not in table]
    return f"the model has no {' or '.join(missing)} channel" if missing else None


def _row_features(
    splits: Sequence[SplitEmbeddings], input_name: str, level: str
) -> tuple[tuple[np.ndarray, list[str]], ...] | str:
    """:func:`thesis_features` of each split, or why a split lacks the row's modalities."""
    reasons = [missing_input(d, input_name) for d in splits]
    reason = next((r for r in reasons if r is not None), None)
    return reason or tuple(thesis_features(d, input_name, level) for d in splits)


def _targets_tags(data: SplitEmbeddings, level: str) -> np.ndarray:
    return data.labels if level == "clip" else data.video_labels()


# ----------------------------------------------------------------------------- the task


def thesis_probes_task(
    splits: Mapping[str, SplitEmbeddings],
    eval_split: str,
    *,
    tasks: Sequence[str] = THESIS_TASKS,
    levels: Sequence[str] = ("video",),
    inputs: Sequence[str] | None = None,
    genre_labels: Mapping[str, str] | str | Path | None = None,
    min_class_videos: int = 2,
    top_n: int = 10,
    tag_threshold: str | float = "dev",
    seed: int = 0,
    epochs: int = 300,
    patience: int = 30,
) -> dict[str, Any]:
    """Genre classification and music tagging with the thesis's 512-256 MLP.

    Args:
        splits: ``{"train", "dev", eval_split}`` embeddings.
        eval_split: the split reported on.
        tasks: ``"tagging"`` and/or ``"genre"``.
        levels: ``"video"`` (clip rows averaged per video, the default) and/or ``"clip"``.
        inputs: rows of :data:`THESIS_INPUTS` (default all: M1, M2, M3, M3c, B1, B2, B3).
        genre_labels: ``{video_id: genre}`` or a file for :func:`load_genre_labels`; default
            each video's first label.
        min_class_videos: a genre needs this many training videos to be kept.
        top_n: number of tags: the labels with the most training videos (ties: label order).
        tag_threshold: ``"dev"`` (maximise macro F1 on dev) or a fixed threshold in (0, 1).
        seed: the probes' seed (initialisation and batch order).
        epochs, patience: the probes' training length and early stopping (on dev loss).

    Returns:
        ``{"settings", "inputs": {row: {"description", "features"}}, "tagging": {level:
        {"tags", "train_counts", "num_train", "num_dev", "num_test", "results": {row:
        metrics}}}, "genre": {level: {"classes", "train_counts", "dropped", "num_train",
        "num_dev", "num_test", "results": {row: metrics}}}, "skipped": {key: reason},
        "notes"}``. Tagging metrics are :func:`trimodal.metrics.multilabel_metrics` (``f1_macro``,
        ``roc_auc_macro``, ...) plus ``per_tag`` (:func:`per_tag_metrics`), ``dev_f1_macro``;
        genre metrics :func:`single_label_metrics` plus ``majority_accuracy`` (accuracy of
        always predicting the most frequent training class). Both add ``num_train``,
        ``num_dev``, ``num_features``, ``converged``.
    """
    rows = list(inputs) if inputs is not None else list(THESIS_INPUTS)
    tag_threshold = _checked_settings(tasks, rows, levels, tag_threshold)
    if isinstance(genre_labels, (str, Path)):
        genre_source = f"file {genre_labels}"
        genre_labels = load_genre_labels(genre_labels)
    else:
        genre_source = "mapping" if genre_labels is not None else "first label of each video"
    train, dev, test = splits["train"], splits["dev"], splits[eval_split]
    settings = dict(
        split=eval_split, tasks=list(tasks), levels=list(levels),
        hidden_sizes=list(THESIS_HIDDEN_SIZES), top_n=int(top_n),
        tag_threshold=tag_threshold if isinstance(tag_threshold, str) else float(tag_threshold),
        genre_source=genre_source, min_class_videos=int(min_class_videos), seed=int(seed),
        epochs=int(epochs), patience=int(patience),
    )  # fmt: skip
    out: dict[str, Any] = {
        "settings": settings,
        "inputs": {
            r: {"description": THESIS_INPUTS[r][0], "features": feature_name(r)} for r in rows
        },
        "skipped": {},
        "notes": [],
    }
    if eval_split in ("train", "dev"):
        out["notes"].append(f"evaluated on {eval_split}, which the probes also train or stop on")
    probe_kwargs = {"epochs": epochs, "patience": patience, "seed": seed}
    splits3 = (train, dev, test)
    for level in levels:
        features = {r: _row_features(splits3, r, level) for r in rows}
        if "tagging" in tasks:
            _tagging(out, level, features, splits3, top_n, tag_threshold, probe_kwargs)
        if "genre" in tasks:
            genres = dict(genre_labels) if genre_labels is not None else None
            _genre(out, level, features, splits3, genres, min_class_videos, probe_kwargs)
    return out


def _checked_settings(
    tasks: Sequence[str], rows: Sequence[str], levels: Sequence[str], tag_threshold: str | float
) -> str | float:
    """The threshold as ``"dev"`` or a float, after refusing unknown tasks, inputs, levels
    or a threshold outside (0, 1) with a ``ValueError``."""
    unknown = [t for t in tasks if t not in THESIS_TASKS]
    if unknown:
        raise ValueError(f"unknown thesis tasks {unknown}; known: {', '.join(THESIS_TASKS)}")
    bad = [r for r in rows if r not in THESIS_INPUTS]
    if bad:
        raise ValueError(f"unknown inputs {bad}; known: {', '.join(THESIS_INPUTS)}")
    if not levels or any(level not in ("video", "clip") for level in levels):
        raise ValueError(f"levels must be 'video' and/or 'clip', got {list(levels)}")
    if isinstance(tag_threshold, str) and tag_threshold != "dev":
        tag_threshold = float(tag_threshold)
    if not isinstance(tag_threshold, str) and not 0.0 < float(tag_threshold) < 1.0:
        raise ValueError(f"tag_threshold must be 'dev' or in (0, 1), got {tag_threshold}")
    return tag_threshold


def _tagging(
    out: dict[str, Any],
    level: str,
    features: Mapping[str, Any],
    data: tuple[SplitEmbeddings, SplitEmbeddings, SplitEmbeddings],
    top_n: int,
    threshold_mode: str | float,
    probe_kwargs: dict[str, Any],
) -> None:
    train_videos = data[0].video_labels()
    counts = train_videos.sum(axis=0)
    order = sorted((i for i in range(len(counts)) if counts[i] > 0), key=lambda i: (-counts[i], i))
    tags = order[:top_n]
    if not tags:
        out["skipped"][f"tagging/{level}"] = "no label has a training video"
        return
    names = [data[0].label_names[i] for i in tags]
    targets = [_targets_tags(d, level)[:, tags] for d in data]
    section: dict[str, Any] = {
        "tags": names,
        "train_counts": [int(counts[i]) for i in tags],
        "num_train": int(targets[0].shape[0]),
        "num_dev": int(targets[1].shape[0]),
        "num_test": int(targets[2].shape[0]),
        "results": {},
    }
    if len(tags) < top_n:
        out["notes"].append(f"tagging ({level}): only {len(tags)} labels have training videos")
    for row, feats in _progress(features, level):
        key = f"tagging/{level}/{row}"
        if isinstance(feats, str):
            out["skipped"][key] = feats
            continue
        (xt, _), (xd, _), (xe, _) = feats
        probe = TorchProbe(THESIS_HIDDEN_SIZES, **probe_kwargs).fit(xt, targets[0], xd, targets[1])
        dev_scores = probe.predict_proba(xd)
        if threshold_mode == "dev":
            threshold, dev_f1 = choose_threshold(targets[1], dev_scores, average="macro")
        else:
            threshold = float(threshold_mode)
            dev_f1 = float(
                f1_score(targets[1], (dev_scores >= threshold).astype(int), average="macro",
                         zero_division=0)
            )  # fmt: skip
        scores = probe.predict_proba(xe)
        metrics: dict[str, Any] = multilabel_metrics(targets[2], scores, threshold)
        metrics.update(
            per_tag=per_tag_metrics(targets[2], scores, threshold, names),
            dev_f1_macro=dev_f1,
            num_examples=int(xe.shape[0]),
            num_train=int(xt.shape[0]),
            num_dev=int(xd.shape[0]),
            num_features=int(xt.shape[1]),
            converged=bool(probe.converged),
        )
        section["results"][row] = metrics
    out.setdefault("tagging", {})[level] = section


def _genre(
    out: dict[str, Any],
    level: str,
    features: Mapping[str, Any],
    data: tuple[SplitEmbeddings, SplitEmbeddings, SplitEmbeddings],
    genres: dict[str, str] | None,
    min_class_videos: int,
    probe_kwargs: dict[str, Any],
) -> None:
    key = f"genre/{level}"
    per_split = [genres if genres is not None else first_label_genres(d) for d in data]
    train_counts = Counter(per_split[0][v] for v in data[0].video_ids() if v in per_split[0])
    classes = sorted(g for g, n in train_counts.items() if n >= max(1, min_class_videos))
    dropped_classes = sorted(g for g in train_counts if g not in classes)
    if len(classes) < 2:
        out["skipped"][key] = (
            f"fewer than 2 genres have at least {min_class_videos} training videos "
            f"(training videos per genre: {dict(sorted(train_counts.items())) or 'none'})"
        )
        return
    index = {g: i for i, g in enumerate(classes)}
    section: dict[str, Any] = {
        "classes": classes,
        "train_counts": [int(train_counts[g]) for g in classes],
        "dropped": {"classes": dropped_classes},
        "results": {},
    }
    for name, d, mapping in zip(("train", "dev", "test"), data, per_split):
        vids = d.video_ids()
        section["dropped"][f"{name}_videos"] = sum(mapping.get(v) not in index for v in vids)
    ys = []
    for d, mapping in zip(data, per_split):
        ids = d.video_ids() if level == "video" else d.video_id
        ys.append(np.array([index.get(mapping.get(v, ""), -1) for v in ids], dtype=np.int64))
    keep = [y >= 0 for y in ys]
    ys = [y[k] for y, k in zip(ys, keep)]
    for name, y in zip(("dev", "test"), ys[1:]):
        if y.size == 0:
            out["skipped"][key] = f"no {name} {level} has one of the genres {classes}"
            return
    section.update(num_train=int(ys[0].size), num_dev=int(ys[1].size), num_test=int(ys[2].size))
    majority = int(np.bincount(ys[0], minlength=len(classes)).argmax())
    for row, feats in _progress(features, level):
        rkey = f"{key}/{row}"
        if isinstance(feats, str):
            out["skipped"][rkey] = feats
            continue
        xs = [x[k] for (x, _), k in zip(feats, keep)]
        probe = SoftmaxMLPProbe(THESIS_HIDDEN_SIZES, num_classes=len(classes), **probe_kwargs)
        probe.fit(xs[0], ys[0], xs[1], ys[1])
        metrics = single_label_metrics(ys[2], probe.predict_proba(xs[2]), classes)
        metrics.update(
            majority_accuracy=float((ys[2] == majority).mean()),
            num_train=int(xs[0].shape[0]),
            num_dev=int(xs[1].shape[0]),
            num_features=int(xs[0].shape[1]),
            converged=bool(probe.converged),
        )
        section["results"][row] = metrics
    out.setdefault("genre", {})[level] = section
