"""The evaluation tasks on stored embeddings: retrieval, probes, zero-shot tagging, neighbours
and the thesis's genre and tagging probes (:mod:`~trimodal.evaluation.thesis_probes`).

Each function (``retrieval_task``, ``probe_task``, ...) takes
:class:`~trimodal.embedding.SplitEmbeddings` (and, for zero-shot, the label embeddings) and
returns plain JSON-ready dicts. Video-level rows are always in sorted video-id order
(:meth:`SplitEmbeddings.video_ids`); videos compared by cosine are the unit-length means of
their clips (:func:`trimodal.metrics.aggregate_by_video`).

The registered units (:class:`RetrievalTask`, :class:`ProbeTask`, :class:`ThesisProbesTask`,
:class:`ZeroShotTask`, :class:`NeighboursTask`; see :mod:`~trimodal.evaluation.registry`)
wrap them for :func:`~trimodal.evaluation.evaluate`: settings, explicit availability checks
and the ``results.md`` sections.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from trimodal.config import EvalConfig, NeighboursOptions, ProbeOptions, ThesisProbesOptions
from trimodal.embedding import SplitEmbeddings
from trimodal.evaluation.probes import (
    PROBES,
    ProbeData,
    per_label_average_precision,
    run_probe,
)
from trimodal.evaluation.registry import (
    EvalContext,
    EvalTask,
    TaskOutput,
    jsonable,
    register_task,
    task_options,
)
from trimodal.evaluation.reports import (
    neighbours_markdown,
    neighbours_report,
    probe_report,
    retrieval_report,
    thesis_probes_report,
    zero_shot_report,
)
from trimodal.evaluation.thesis_probes import load_genre_labels, thesis_probes_task
from trimodal.metrics import (
    aggregate_by_video,
    cross_modal_retrieval,
    l2_normalize,
    label_retrieval_metrics,
    multilabel_metrics,
    pool_by_video,
    youtube8m_metrics,
)

#: Modalities whose embeddings are probed and searched by default: text is left out because a
#: clip's text is one of its video's labels or tags, which would leak the probe's target.
CONTENT_MODALITIES: tuple[str, ...] = ("audio", "video")


# ----------------------------------------------------------------------------- retrieval


def retrieval_task(
    data: SplitEmbeddings, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, dict[str, dict[str, float]]]:
    """Cross-modal retrieval among all present modalities at clip and video level.

    Returns ``{"clip"|"video": {"audio→video": metrics, ..., "chance": metrics}}`` as
    :func:`trimodal.metrics.cross_modal_retrieval` (full gallery, 1-based pessimistic ranks;
    from and to text multi-relevant where texts repeat, read from ``data.texts``).
    """
    if len(data.modalities) < 2:
        raise ValueError(f"retrieval needs two modalities, the model has {data.modalities}")
    return cross_modal_retrieval(
        data.embeddings, data.video_id, texts=data.texts or None, ks=tuple(ks)
    )


def pair_similarities(
    data: SplitEmbeddings, a: str = "audio", b: str = "video", max_negatives: int = 200_000
) -> dict[str, Any]:
    """Cosine similarities of positive pairs (same clip) and negative pairs (clips of different
    videos) between modalities ``a`` and ``b``, at clip level.

    With up to ``max_negatives`` cross-video pairs all of them are used; beyond that a fixed
    random sample of pairs (seed 0), so memory stays O(N) rather than O(N²).

    Returns ``{"positive": [N] array, "negative": [M] array, "positive_mean",
    "negative_mean", "auc"}``; ``auc`` is the ROC-AUC of telling positives from negatives by
    similarity (0.5 = no separation; ``None`` without negatives).
    """
    x = l2_normalize(data.embeddings[a]).double()
    y = l2_normalize(data.embeddings[b]).double()
    n = x.shape[0]
    codes = torch.as_tensor(
        np.unique(np.asarray(data.video_id), return_inverse=True)[1].reshape(-1)
    )
    positive = (x * y).sum(dim=1).numpy()
    if n * n <= max_negatives:
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        i, j = i.reshape(-1), j.reshape(-1)
    else:
        generator = torch.Generator().manual_seed(0)
        i = torch.randint(n, (max_negatives,), generator=generator)
        j = torch.randint(n, (max_negatives,), generator=generator)
    keep = codes[i] != codes[j]
    i, j = i[keep], j[keep]
    negative = (x[i] * y[j]).sum(dim=1).numpy()
    out: dict[str, Any] = {
        "positive": positive,
        "negative": negative,
        "positive_mean": float(positive.mean()),
        "negative_mean": float(negative.mean()) if negative.size else None,
        "num_negative_pairs": int(negative.size),
        "auc": None,
    }
    if negative.size:
        scores = np.concatenate([positive, negative])
        truth = np.concatenate([np.ones_like(positive), np.zeros_like(negative)])
        out["auc"] = float(roc_auc_score(truth, scores))
    return out


# ----------------------------------------------------------------------------- probes


def probe_features(
    data: SplitEmbeddings, source: str, modalities: Sequence[str], level: str
) -> tuple[np.ndarray, list[str]]:
    """Probe inputs: the concatenation of ``modalities`` from ``source`` (``"embedding"`` or
    ``"backbone"``), per clip (``level="clip"``, ``[N, F]``) or averaged per video
    (``"video"``, ``[V, F]``). Returns ``(features, row_video_ids)``."""
    table = data.embeddings if source == "embedding" else data.backbone
    parts = [table[m].double().numpy() for m in modalities]
    x = np.concatenate(parts, axis=1)
    if level == "clip":
        return x, list(data.video_id)
    # The plain mean of the clips' features (the study's probe input), not the unit-length
    # video embedding: the probes learn from values, not directions.
    pooled, ids = pool_by_video(x, data.video_id, "mean")
    return pooled.numpy(), ids


def probe_labels(data: SplitEmbeddings, level: str) -> np.ndarray:
    """Multi-hot targets ``[N, L]`` (clip level) or ``[V, L]`` (video level)."""
    return data.labels if level == "clip" else data.video_labels()


def load_youtube8m_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read YouTube-8M video-level features from an ``.npz`` with ``video_id`` [V] (str),
    ``mean_rgb`` [V, 1024] and ``mean_audio`` [V, 128]; returns ``{video_id: [1152]}``
    (``mean_rgb`` then ``mean_audio``)."""
    with np.load(path, allow_pickle=False) as npz:
        missing = {"video_id", "mean_rgb", "mean_audio"} - set(npz.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)} (has {npz.files})")
        ids = [str(v) for v in npz["video_id"]]
        feats = np.concatenate(
            [npz["mean_rgb"].astype(np.float64), npz["mean_audio"].astype(np.float64)], axis=1
        )
    if feats.shape[0] != len(ids):
        raise ValueError(f"{path}: {len(ids)} ids but {feats.shape[0]} feature rows")
    return dict(zip(ids, feats))


def probe_task(
    splits: dict[str, SplitEmbeddings],
    eval_split: str,
    *,
    probes: Sequence[str] = ("sklearn_mlp", "torch_linear"),
    levels: Sequence[str] = ("video", "clip"),
    modalities: Sequence[str] | None = None,
    baselines: bool = True,
    youtube8m: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Multilabel probes: fit on ``splits["train"]``, threshold on ``splits["dev"]``, report on
    ``splits[eval_split]``.

    Inputs (``feature set`` names): ``embedding:<m>`` for each modality in ``modalities``
    (default: audio and video) and ``embedding:audio+video`` (their concatenation, the
    study's text-free input); with ``baselines`` the same from the backbones
    (``backbone:...``, before the projection heads); with ``youtube8m`` (``{video_id:
    features}``) ``youtube8m:mean_rgb+mean_audio`` at video level for the videos it covers.

    Returns:
        ``{"results": {level: {feature_set: {probe: metrics}}}, "skipped": {key: reason},
        "notes": [...]}`` with metrics from :func:`~trimodal.evaluation.probes.run_probe`.
    """
    train, dev, test = splits["train"], splits["dev"], splits[eval_split]
    present = [m for m in (modalities or CONTENT_MODALITIES) if m in test.embeddings]
    if not present:
        raise ValueError(f"no probe modality among {list(modalities or CONTENT_MODALITIES)}")
    out: dict[str, Any] = {"results": {}, "skipped": {}, "notes": []}
    if eval_split in ("train", "dev"):
        out["notes"].append(
            f"evaluated on {eval_split}, which the probes also train or pick thresholds on"
        )
    jobs = _probe_jobs(present, probes, levels, baselines, youtube8m is not None)
    inputs: dict[tuple[str, str], tuple[ProbeData, ProbeData, ProbeData] | str] = {}
    for level, feature_set, probe, spec in tqdm(jobs, desc="probes", leave=False):
        key = (level, feature_set)
        if key not in inputs:
            if spec is None:
                inputs[key] = _youtube8m_probe_data(youtube8m or {}, train, dev, test)
            else:
                inputs[key] = tuple(  # type: ignore[assignment]
                    ProbeData(probe_features(d, *spec, level)[0], probe_labels(d, level))
                    for d in (train, dev, test)
                )
        datasets = inputs[key]
        name = f"{level}/{feature_set}/{probe}"
        if isinstance(datasets, str):
            out["skipped"][name] = datasets
        elif not datasets[0].y.any():
            out["skipped"][name] = "the training split has no positive labels"
        else:
            result = run_probe(probe, *datasets, seed=seed)
            out["results"].setdefault(level, {}).setdefault(feature_set, {})[probe] = result
    return out


def _probe_jobs(
    present: Sequence[str],
    probes: Sequence[str],
    levels: Sequence[str],
    baselines: bool,
    youtube8m: bool,
) -> list[tuple[str, str, str, tuple[str, tuple[str, ...]] | None]]:
    """``(level, feature set, probe, (source, modalities) or None for YouTube-8M)`` of every
    probe fit: each present modality, audio+video when both are, from the embeddings and
    (``baselines``) the backbones, plus the YouTube-8M features at video level."""
    combos: list[tuple[str, ...]] = [(m,) for m in present]
    if all(m in present for m in CONTENT_MODALITIES):
        combos.append(CONTENT_MODALITIES)
    sources = ["embedding", "backbone"] if baselines else ["embedding"]
    jobs: list[tuple[str, str, str, tuple[str, tuple[str, ...]] | None]] = []
    for level in levels:
        for source in sources:
            for combo in combos:
                for probe in probes:
                    jobs.append((level, f"{source}:{'+'.join(combo)}", probe, (source, combo)))
        if youtube8m and level == "video":
            for probe in probes:
                jobs.append((level, "youtube8m:mean_rgb+mean_audio", probe, None))
    return jobs


def _youtube8m_probe_data(
    features: dict[str, np.ndarray],
    train: SplitEmbeddings,
    dev: SplitEmbeddings,
    test: SplitEmbeddings,
) -> tuple[ProbeData, ProbeData, ProbeData] | str:
    """The probe data of the videos the features cover, or why there is none."""
    parts = []
    for data in (train, dev, test):
        ids = data.video_ids()
        labels = data.video_labels()
        keep = [i for i, vid in enumerate(ids) if vid in features]
        if not keep:
            return f"the YouTube-8M features cover none of the {len(ids)} {data.split} videos"
        x = np.stack([features[ids[i]] for i in keep])
        parts.append(ProbeData(x, labels[keep]))
    return parts[0], parts[1], parts[2]


# ----------------------------------------------------------------------------- zero-shot


def zero_shot_task(
    data: SplitEmbeddings,
    label_embeddings: torch.Tensor,
    *,
    modalities: Sequence[str] | None = None,
    levels: Sequence[str] = ("video", "clip"),
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Zero-shot tagging and label-as-query retrieval with the text channel's label embeddings.

    Every clip (or video: the re-normalised mean of its clip embeddings) is scored against
    every label by cosine similarity; ``audio+video`` averages the two modalities'
    similarities. Scores are mapped to [0, 1] by ``(cos + 1) / 2`` (monotone: rankings, AP and
    AUC are unchanged; PERR, which only counts positive scores, becomes meaningful).

    Args:
        data: the evaluated split.
        label_embeddings: ``[L, D]`` text embeddings of ``data.label_names``.

    Returns:
        ``{"tagging": {level: {gallery: {"map", "hit_at_1", "perr", "gap", "yt8m_map",
        "roc_auc_macro", "map_macro", "per_label_ap", ...}}}, "label_retrieval": {level:
        {gallery: label_retrieval_metrics}}}``; ``map`` is the YouTube-8M top-20 mAP,
        ``map_macro`` sklearn's macro AP over all scores.
    """
    present = [m for m in (modalities or CONTENT_MODALITIES) if m in data.embeddings]
    if not present:
        raise ValueError("no audio or video embeddings to tag")
    labels_e = l2_normalize(label_embeddings).double()
    if labels_e.shape[0] != len(data.label_names):
        raise ValueError(f"{labels_e.shape[0]} label embeddings for {len(data.label_names)} labels")
    tagging: dict[str, Any] = {}
    retrieval: dict[str, Any] = {}
    for level in levels:
        if level == "clip":
            embs = {m: l2_normalize(data.embeddings[m]).double() for m in present}
            truth = data.labels
        else:
            embs = {
                m: aggregate_by_video(data.embeddings[m], data.video_id)[0].double()
                for m in present
            }
            truth = data.video_labels()
        sims = {m: (e @ labels_e.T).numpy() for m, e in embs.items()}
        if len(present) > 1:
            sims["+".join(present)] = np.mean([sims[m] for m in present], axis=0)
        tagging[level] = {}
        for gallery, s in sims.items():
            scores = (s + 1.0) / 2.0
            ml = multilabel_metrics(truth, scores)
            yt8m = youtube8m_metrics(scores, truth)
            tagging[level][gallery] = {
                "map": yt8m["map"],
                "hit_at_1": yt8m["hit_at_1"],
                "perr": yt8m["perr"],
                "gap": yt8m["gap"],
                "roc_auc_macro": ml["roc_auc_macro"],
                "map_macro": ml["map_macro"],
                "num_auc_classes": ml["num_auc_classes"],
                "num_examples": int(truth.shape[0]),
                "per_label_ap": per_label_average_precision(truth, scores),
            }
        retrieval[level] = {}
        for m, e in embs.items():
            if truth.any():
                retrieval[level][m] = label_retrieval_metrics(labels_e, e, truth, ks=tuple(ks))
    return {"tagging": tagging, "label_retrieval": retrieval}


# ----------------------------------------------------------------------------- neighbours


def neighbours_task(
    data: SplitEmbeddings,
    *,
    num_seeds: int = 10,
    k: int = 3,
    modalities: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Nearest videos by audio, by video and by both, for evenly spaced seed videos.

    Videos are the re-normalised means of their clip embeddings; ``audio+video`` ranks by the
    average of the two cosine similarities (the cosine of the concatenated unit vectors).
    Besides the seeds' lists, ``label_precision@k`` measures over **all** videos the share of
    the top-k neighbours that share at least one label with the query video.

    Returns:
        ``{"k", "label_precision@k": {space: float}, "seeds": [{"video_id", "title",
        "labels", "neighbours": {space: [{"video_id", "title", "labels", "similarity"}]}}]}``.
    """
    present = [m for m in (modalities or CONTENT_MODALITIES) if m in data.embeddings]
    ids = data.video_ids()
    if len(ids) < 2:
        raise ValueError(f"the {data.split} split has {len(ids)} video(s); need at least 2")
    if not present:
        raise ValueError("no audio or video embeddings")
    k = min(k, len(ids) - 1)
    embs = {m: aggregate_by_video(data.embeddings[m], data.video_id)[0].double() for m in present}
    sims = {m: (e @ e.T).numpy() for m, e in embs.items()}
    if len(present) > 1:
        sims["+".join(present)] = np.mean([sims[m] for m in present], axis=0)
    labels = data.video_labels()
    names = np.asarray(data.label_names)
    shares = (labels @ labels.T) > 0
    seed_rows = np.unique(
        np.linspace(0, len(ids) - 1, min(num_seeds, len(ids))).round().astype(int)
    )
    out: dict[str, Any] = {"k": k, "label_precision@k": {}, "seeds": []}
    tops: dict[str, np.ndarray] = {}
    for space, s in sims.items():
        s = s.copy()
        np.fill_diagonal(s, -np.inf)
        # Stable order on ties: by similarity, then by video id.
        tops[space] = np.argsort(-s, axis=1, kind="stable")[:, :k]
        hits = np.take_along_axis(shares, tops[space], axis=1)
        out["label_precision@k"][space] = float(hits.mean())
    for row in seed_rows:
        entry = {
            "video_id": ids[row],
            "title": data.titles.get(ids[row], ""),
            "labels": names[labels[row] > 0].tolist(),
            "neighbours": {},
        }
        for space, top in tops.items():
            entry["neighbours"][space] = [
                {
                    "video_id": ids[j],
                    "title": data.titles.get(ids[j], ""),
                    "labels": names[labels[j] > 0].tolist(),
                    "similarity": float(sims[space][row, j]),
                }
                for j in top[row]
            ]
        out["seeds"].append(entry)
    return out


# ----------------------------------------------------------------------------- the registered tasks


@torch.no_grad()
def embed_labels(model: Any, label_names: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """``[L, D]`` text-channel embeddings of the label names (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.encode_text(list(label_names[i : i + batch_size])).float().cpu()
            for i in range(0, len(label_names), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def _content_modalities(data: SplitEmbeddings, modalities: Sequence[str] | None = None) -> list:
    return [m for m in (modalities or CONTENT_MODALITIES) if m in data.embeddings]


def _check_levels(levels: Sequence[str], what: str) -> None:
    if not levels or any(level not in ("video", "clip") for level in levels):
        raise ValueError(f"{what} levels must be video and/or clip, got {list(levels)}")


@register_task
class RetrievalTask(EvalTask):
    """Cross-modal retrieval at clip and video level, and audio–video pair similarities."""

    name = "retrieval"

    def unavailable(self, ctx: EvalContext) -> str | None:
        if len(ctx.data.modalities) < 2:
            return f"retrieval needs two modalities, the model has {ctx.data.modalities}"
        return None

    def run(self, ctx: EvalContext) -> TaskOutput:
        data, ks = ctx.data, ctx.config.ks
        results: dict[str, Any] = {"retrieval": retrieval_task(data, ks)}
        if "audio" in data.embeddings and "video" in data.embeddings:
            sims = pair_similarities(data, "audio", "video")
            results["av_similarity"] = {
                k: v for k, v in sims.items() if not isinstance(v, np.ndarray)
            }
        return TaskOutput(results, retrieval_report(jsonable(results), ks))


@register_task
class ProbeTask(EvalTask):
    """Multilabel probes (:func:`probe_task`) with :class:`~trimodal.config.ProbeOptions`."""

    name = "probe"

    def validate(self, config: EvalConfig) -> None:
        options = task_options(config, ProbeOptions)
        bad = [p for p in options.probes if p not in PROBES]
        if bad:
            raise ValueError(f"unknown probes {bad}; known: {', '.join(PROBES)}")
        _check_levels(options.probe_levels, "probe")

    def unavailable(self, ctx: EvalContext) -> str | None:
        missing = ctx.missing_split("train", "dev")
        if missing is not None:
            return f"the probes need the train and dev splits: {missing}"
        wanted = task_options(ctx.config, ProbeOptions).probe_modalities
        if not _content_modalities(ctx.data, wanted):
            return f"no probe modality among {list(wanted or CONTENT_MODALITIES)}"
        return None

    def run(self, ctx: EvalContext) -> TaskOutput:
        options = task_options(ctx.config, ProbeOptions)
        youtube8m = None
        if options.baseline_features is not None:
            youtube8m = load_youtube8m_features(options.baseline_features)
        out = probe_task(
            ctx.training_splits(), ctx.config.split, probes=options.probes,
            levels=options.probe_levels, modalities=options.probe_modalities,
            baselines=options.backbone_baselines, youtube8m=youtube8m, seed=ctx.config.seed,
        )  # fmt: skip
        skipped = {f"probe/{key}": reason for key, reason in out.pop("skipped").items()}
        return TaskOutput({"probe": out}, probe_report(jsonable(out)), skipped)


@register_task
class ThesisProbesTask(EvalTask):
    """The thesis's genre and tagging probes with :class:`~trimodal.config.ThesisProbesOptions`."""

    name = "thesis_probes"

    def validate(self, config: EvalConfig) -> None:
        options = task_options(config, ThesisProbesOptions)
        threshold = options.tag_threshold
        if threshold != "dev" and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"tag_threshold must be 'dev' or in (0, 1), got {threshold}")
        _check_levels(options.thesis_levels, "thesis")
        if isinstance(options.genre_labels, (str, Path)):
            load_genre_labels(options.genre_labels)  # a missing or malformed file fails now

    def unavailable(self, ctx: EvalContext) -> str | None:
        missing = ctx.missing_split("train", "dev")
        if missing is not None:
            return f"the thesis probes need the train and dev splits: {missing}"
        return None

    def run(self, ctx: EvalContext) -> TaskOutput:
        options = task_options(ctx.config, ThesisProbesOptions)
        genres = options.genre_labels
        if isinstance(genres, (str, Path)):
            genres = load_genre_labels(genres)
        out = thesis_probes_task(
            ctx.training_splits(), ctx.config.split, levels=options.thesis_levels,
            genre_labels=genres, min_class_videos=options.min_genre_videos,
            top_n=options.top_tags, tag_threshold=options.tag_threshold, seed=ctx.config.seed,
            epochs=options.thesis_epochs,
        )  # fmt: skip
        if isinstance(options.genre_labels, (str, Path)):
            out["settings"]["genre_source"] = f"file {options.genre_labels}"
        skipped = {f"thesis_probes/{key}": reason for key, reason in out.pop("skipped").items()}
        return TaskOutput({"thesis_probes": out}, thesis_probes_report(jsonable(out)), skipped)


@register_task
class ZeroShotTask(EvalTask):
    """Zero-shot tagging and label queries with the text channel's label-name embeddings."""

    name = "zero_shot"

    def unavailable(self, ctx: EvalContext) -> str | None:
        if "text" not in ctx.model.modalities:
            return f"the model has no text channel (it has {ctx.model.modalities})"
        if not _content_modalities(ctx.data):
            return "no audio or video embeddings to tag"
        if not ctx.data.label_names:
            return f"the {ctx.config.split} split has no label names"
        return None

    def run(self, ctx: EvalContext) -> TaskOutput:
        data, ks = ctx.data, ctx.config.ks
        out = zero_shot_task(data, embed_labels(ctx.model, data.label_names), ks=ks)
        return TaskOutput({"zero_shot": out}, zero_shot_report(jsonable(out), ks))


@register_task
class NeighboursTask(EvalTask):
    """Nearest videos of seed videos (``neighbours.md``) and label precision@k."""

    name = "neighbours"

    def unavailable(self, ctx: EvalContext) -> str | None:
        videos = len(ctx.data.video_ids())
        if videos < 2:
            return f"the {ctx.config.split} split has {videos} video(s); need at least 2"
        if not _content_modalities(ctx.data):
            return "no audio or video embeddings"
        return None

    def run(self, ctx: EvalContext) -> TaskOutput:
        options = task_options(ctx.config, NeighboursOptions)
        out = neighbours_task(ctx.data, num_seeds=options.num_seeds)
        files = {"neighbours.md": neighbours_markdown(out, ctx.config.split)}
        return TaskOutput({"neighbours": out}, neighbours_report(jsonable(out)), files=files)
