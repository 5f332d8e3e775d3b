"""Markdown reports of ``results.json``: one run's tables, the neighbour report, and the
comparison of several runs.

Number formats (the study's): R@k, F1, precision, recall, accuracy, AUC, AP and GAP in
percent with two decimals; ranks with one decimal; Hamming loss as a fraction with four
decimals; ``–`` for a value that is undefined (NaN / None, e.g. AUC without negatives).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trimodal.utils import atomic_write_text

#: Order of retrieval directions in tables.
DIRECTION_ORDER = [
    "text→audio",
    "audio→text",
    "text→video",
    "video→text",
    "audio→video",
    "video→audio",
]
#: Row order of the thesis probe tables (its Tables 2 and 3 list the same six models).
THESIS_ROW_ORDER = ("M1", "M2", "M3", "M3c", "B1", "B2", "B3")
#: The probe row the comparison table reports (level, feature set, probe), if present.
HEADLINE_PROBE = ("video", "embedding:audio+video", "sklearn_mlp")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def pct(value: Any) -> str:
    """A fraction as a percentage with two decimals (``0.1323`` → ``13.23``)."""
    return "–" if _missing(value) else f"{100 * float(value):.2f}"


def rank(value: Any) -> str:
    """A rank with one decimal."""
    return "–" if _missing(value) else f"{float(value):.1f}"


def frac4(value: Any) -> str:
    """A fraction with four decimals (the study's Hamming loss)."""
    return "–" if _missing(value) else f"{float(value):.4f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _directions(level_results: dict[str, Any]) -> list[str]:
    known = [d for d in DIRECTION_ORDER if d in level_results]
    return known + sorted(d for d in level_results if d not in known and d != "chance")


# ----------------------------------------------------------------------------- one run


#: Column headers of :func:`retrieval_table` (pass ``labels`` to rename).
RETRIEVAL_LABELS = {
    "level": "Level",
    "direction": "Direction",
    "model": "Model",
    "median_rank": "Median rank",
    "mean_rank": "Mean rank",
    "mrr": "MRR",
}


def retrieval_table(
    results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    levels: Sequence[str],
    ks: Sequence[int],
    *,
    columns: Sequence[str] = ("direction",),
    chance: str = "row",
    directions: Sequence[str] | None = None,
    ranks: Sequence[str] = ("median_rank", "mean_rank"),
    score: Callable[[Any], str] = pct,
    rank_format: Callable[[Any], str] = rank,
    labels: Mapping[str, str] | None = None,
    recall: str = "R",
) -> str:
    """The one renderer of retrieval results as a markdown table (evaluation's ``results.md``,
    the demo's trained / untrained / chance table; usable for any model and direction names).

    Args:
        results: ``{model name: {level: {direction: metrics, "chance": metrics}}}`` as
            :func:`trimodal.metrics.cross_modal_retrieval` returns per model (metrics with
            ``R@k`` fractions and ranks).
        levels: the levels shown, in order (e.g. ``["video", "clip"]``).
        ks: the ``R@k`` columns.
        columns: the key columns, any of ``"level"``, ``"direction"``, ``"model"``, in order.
        chance: ``"row"``: one ``chance`` row after each level's directions (its direction
            cell reads ``chance``); ``"per_direction"``: after each direction's models, a row
            whose model cell reads ``chance``; ``"none"``.
        directions: the directions in order (default: :data:`DIRECTION_ORDER`, then the
            others sorted, as present in the first model's results).
        ranks: rank columns after the ``R@k`` ones (keys of the metrics).
        score, rank_format: cell formats of ``R@k`` and of the rank columns (missing → ``–``).
        labels: header overrides for the keys of :data:`RETRIEVAL_LABELS`.
        recall: the score columns are ``<recall>@k``: ``"R"`` (the partner's recall) or
            ``"any"`` (a relevant item in the top k, :func:`multi_relevant_table`). A
            direction whose metrics lack them (multi-relevant text rows in an ``R@k``
            table, or the reverse) is not shown.
    """
    if chance not in ("row", "per_direction", "none"):
        raise ValueError(f"chance must be 'row', 'per_direction' or 'none', got {chance!r}")
    names = {**RETRIEVAL_LABELS, **(labels or {})}
    first = next(iter(results.values()))
    header = [names[c] for c in columns] + [f"{recall}@{k}" for k in ks]
    header += [names.get(r, r) for r in ranks]

    def shown(m: Mapping[str, Any]) -> bool:
        return all(f"{recall}@{k}" in m for k in ks)

    def row(level: str, direction: str, model: str, m: Mapping[str, Any]) -> list[str]:
        keys = {"level": level, "direction": direction, "model": model}
        return [
            *[keys[c] for c in columns],
            *[score(m.get(f"{recall}@{k}")) for k in ks],
            *[rank_format(m.get(r)) for r in ranks],
        ]

    rows = []
    for level in levels:
        order = list(directions) if directions is not None else _directions(first[level])
        for d in order:
            models = [(n, r[level][d]) for n, r in results.items() if shown(r[level].get(d, {}))]
            rows += [row(level, d, model, metrics) for model, metrics in models]
            if chance == "per_direction" and "chance" in first[level] and models:
                rows.append(row(level, d, "chance", first[level]["chance"]))
        if chance == "row" and "chance" in first[level]:
            rows.append(row(level, "chance", "chance", first[level]["chance"]))
    return table(header, rows)


def multi_relevant_table(
    results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    levels: Sequence[str],
    ks: Sequence[int],
    *,
    columns: Sequence[str] = ("direction",),
    score: Callable[[Any], str] = pct,
    labels: Mapping[str, str] | None = None,
) -> str | None:
    """The multi-relevant text rows of the same results (``any@k`` and ``mAP``, where texts
    repeat: :func:`trimodal.metrics.cross_modal_retrieval`), rendered by
    :func:`retrieval_table`; ``None`` when every text is unique at these levels."""
    found = any(
        "mAP" in metrics
        for by_level in results.values()
        for level in levels
        for metrics in by_level.get(level, {}).values()
    )
    if not found:
        return None
    return retrieval_table(
        results, levels, ks, columns=columns, chance="none", ranks=("mAP",), score=score,
        rank_format=score, labels=labels, recall="any",
    )  # fmt: skip


def retrieval_section(retrieval: dict[str, Any], ks: Sequence[int]) -> list[str]:
    """One table per level: rows = directions and chance, columns R@k, median and mean rank."""
    parts = []
    for level in ("video", "clip"):
        if level not in retrieval:
            continue
        res = retrieval[level]
        n = res["chance"]["gallery_size"] if "chance" in res else "?"
        parts += [
            f"### Retrieval, {level} level (gallery of {n} {level}s)",
            "",
            retrieval_table({"model": retrieval}, [level], ks),
            "",
        ]
        multi = multi_relevant_table({"model": retrieval}, [level], ks)
        if multi is not None:
            parts += [
                f"### Text retrieval with repeated texts, {level} level",
                "",
                f"Texts repeat among the {level}s, so retrieval from and to text is "
                "multi-relevant: any@k is the share of queries with an item of the same text "
                "in the top k, mAP the mean average precision over those items "
                "(docs/evaluation.md#retrieval).",
                "",
                multi,
                "",
            ]
    return parts


PROBE_COLUMNS = [
    ("F1", "f1", pct),
    ("Precision", "precision", pct),
    ("Recall", "recall", pct),
    ("F1 micro", "f1_micro", pct),
    ("F1 macro", "f1_macro", pct),
    ("Subset acc.", "subset_accuracy", pct),
    ("Hamming loss", "hamming_loss", frac4),
    ("ROC-AUC", "roc_auc_macro", pct),
    ("mAP", "map_macro", pct),
    ("GAP", "gap", pct),
    ("Hit@1", "hit_at_1", pct),
    ("Threshold", "threshold", lambda v: "–" if _missing(v) else f"{float(v):.2f}"),
]


def probe_section(probes: dict[str, Any]) -> list[str]:
    """One table per level: rows = (features, probe), columns = the probe metrics."""
    parts = []
    for level in ("video", "clip"):
        by_features = probes.get("results", {}).get(level)
        if not by_features:
            continue
        first = next(iter(next(iter(by_features.values())).values()))
        rows = []
        for feature_set, by_probe in by_features.items():
            for probe, m in by_probe.items():
                rows.append(
                    [feature_set, probe, *[fmt(m.get(key)) for _, key, fmt in PROBE_COLUMNS]]
                )
        parts += [
            f"### Multilabel probes, {level} level "
            f"(train {first['num_train']}, dev {first['num_dev']}, "
            f"test {first['num_examples']} {level}s)",
            "",
            table(["Features", "Probe", *[c for c, _, _ in PROBE_COLUMNS]], rows),
            "",
        ]
    if parts:
        parts += [
            "F1, precision and recall are weighted averages over labels (the study's), at the "
            "threshold chosen on dev for the best micro F1; mAP is sklearn's macro AP; GAP and "
            "Hit@1 are the YouTube-8M metrics. `embedding:` rows probe the shared-space "
            "embeddings, `backbone:` rows the backbones' own features (no projection head), "
            "`youtube8m:` rows YouTube-8M's released features.",
            "",
        ]
    return parts


def zero_shot_section(zero_shot: dict[str, Any], ks: Sequence[int]) -> list[str]:
    """Tagging table (rows = level × scored modality) and label-as-query retrieval table."""
    rows = []
    for level, by_gallery in zero_shot.get("tagging", {}).items():
        for gallery, m in by_gallery.items():
            rows.append([level, gallery, pct(m["map"]), pct(m["hit_at_1"]), pct(m["gap"]),
                         pct(m["perr"]), pct(m["roc_auc_macro"]), pct(m["map_macro"])])  # fmt: skip
    parts = [
        "### Zero-shot tagging (label names embedded by the text channel)",
        "",
        table(
            ["Level", "Scored by", "mAP", "Hit@1", "GAP", "PERR", "ROC-AUC", "mAP (sklearn)"], rows
        ),
        "",
        "mAP, Hit@1, GAP and PERR follow the YouTube-8M starter code (top 20 per item); "
        "ROC-AUC and the sklearn mAP are macro averages over labels with positives.",
        "",
    ]
    rows = []
    for level, by_gallery in zero_shot.get("label_retrieval", {}).items():
        for gallery, m in by_gallery.items():
            rows.append([level, gallery, pct(m["mAP"]), pct(m["R-precision"]),
                         *[pct(m.get(f"any@{k}")) for k in ks], str(m["num_labels"])])  # fmt: skip
    if rows:
        parts += [
            "### Label-as-query retrieval",
            "",
            table(
                ["Level", "Gallery", "mAP", "R-precision", *[f"any@{k}" for k in ks], "Labels"],
                rows,
            ),
            "",
        ]
    return parts


def _cell(text: Any) -> str:
    """A table cell: ``|`` escaped."""
    return str(text).replace("|", "\\|")


def _auc_coverage(num_auc: int | None, num_tags: int) -> list[str]:
    if num_auc is None or num_auc >= num_tags:
        return []
    return [
        f"AUC and mAP average {num_auc} of the {num_tags} tags (the others have no test "
        "positives or no negatives); F1 averages all of them.",
        "",
    ]


def _thesis_rows(thesis: dict[str, Any], results: dict[str, Any]) -> tuple[dict, Callable]:
    """The rows of one table in :data:`THESIS_ROW_ORDER`, and ``row → [name, description,
    features]`` cells."""
    inputs = thesis.get("inputs", {})

    def label(row: str) -> list[str]:
        info = inputs.get(row, {})
        return [row, info.get("description", ""), f"`{info.get('features', '')}`"]

    rank_of = {r: i for i, r in enumerate(THESIS_ROW_ORDER)}
    order = sorted(results, key=lambda r: (rank_of.get(r, 99), r))
    return {r: results[r] for r in order}, label


def _thesis_tagging_tables(thesis: dict[str, Any], level: str, sec: dict[str, Any]) -> list[str]:
    res, label = _thesis_rows(thesis, sec["results"])
    if not res:
        return []
    tags = [_cell(t) for t in sec["tags"]]
    rows = [
        [*label(r), pct(m["roc_auc_macro"]), pct(m["f1_macro"]), pct(m["map_macro"]),
         f"{m['threshold']:.2f}"]
        for r, m in res.items()
    ]  # fmt: skip
    return [
        f"### Music tagging, {level} level (top {len(tags)} training tags; train "
        f"{sec['num_train']}, dev {sec['num_dev']}, test {sec['num_test']} {level}s)",
        "",
        table(["Model", "Embeddings", "Features", "AUC", "F1", "mAP", "Threshold"], rows),
        "",
        *_auc_coverage(next(iter(res.values())).get("num_auc_classes"), len(tags)),
        "AUC per tag:",
        "",
        table(
            ["Model", *tags],
            [[r, *[pct(m["per_tag"][t]["auc"]) for t in sec["tags"]]] for r, m in res.items()],
        ),
        "",
        "F1 per tag:",
        "",
        table(
            ["Model", *tags],
            [[r, *[pct(m["per_tag"][t]["f1"]) for t in sec["tags"]]] for r, m in res.items()],
        ),
        "",
    ]


def _thesis_genre_table(thesis: dict[str, Any], level: str, sec: dict[str, Any]) -> list[str]:
    res, label = _thesis_rows(thesis, sec["results"])
    if not res:
        return []
    rows = [
        [*label(r), pct(m["accuracy"]), pct(m["roc_auc_macro"]), pct(m["f1_macro"])]
        for r, m in res.items()
    ]
    majority = next(iter(res.values()))["majority_accuracy"]
    dropped = sec.get("dropped", {}).get("classes", [])
    source = thesis.get("settings", {}).get("genre_source", "?")
    return [
        f"### Genre classification, {level} level ({len(sec['classes'])} genres; train "
        f"{sec['num_train']}, dev {sec['num_dev']}, test {sec['num_test']} {level}s)",
        "",
        table(["Model", "Embeddings", "Features", "Accuracy", "AUC", "F1"], rows),
        "",
        f"Genres ({source}): "
        + ", ".join(f"{_cell(g)} ({n})" for g, n in zip(sec["classes"], sec["train_counts"]))
        + " training videos"
        + (f"; dropped (too few training videos): {', '.join(dropped)}" if dropped else "")
        + f". Majority-class accuracy {pct(majority)}.",
        "",
    ]


def thesis_probes_section(thesis: dict[str, Any]) -> list[str]:
    """The thesis's Tables 2 and 3 (and 4): rows M1–M3, B1–B3 (plus the M3 concatenation
    variant), columns macro AUC and F1 (tagging) or accuracy, macro AUC and F1 (genre), one
    table per task and level, plus the AUC and F1 of every tag."""
    settings = thesis.get("settings", {})
    parts: list[str] = []
    for level, sec in thesis.get("tagging", {}).items():
        parts += _thesis_tagging_tables(thesis, level, sec)
    for level, sec in thesis.get("genre", {}).items():
        parts += _thesis_genre_table(thesis, level, sec)
    if parts:
        threshold = settings.get("tag_threshold", "dev")
        parts += [
            f"Probe: the thesis's MLP (hidden {settings.get('hidden_sizes', [512, 256])}, ReLU), "
            "trained on train, epoch chosen by the dev loss. Tagging: sigmoid outputs, BCE; "
            "AUC, F1 and mAP are macro averages over tags (AUC and mAP over tags with test "
            "positives and negatives); F1 at "
            + (
                "the global threshold that maximises macro F1 on dev"
                if threshold == "dev"
                else f"the fixed threshold {threshold}"
            )
            + ". Genre: softmax over the classes, cross-entropy; AUC is the macro one-vs-rest "
            "ROC-AUC, F1 the macro F1. M3 averages the normalised audio and video embeddings, "
            "M3c concatenates them; B1–B3 use the backbones' features (before the heads).",
            "",
        ]
    return parts


def neighbours_markdown(neighbours: dict[str, Any], split: str) -> str:
    """The nearest-neighbour report: per seed video, its top-k videos in each space."""
    k = neighbours["k"]
    lines = [
        f"# Nearest videos ({split} split)",
        "",
        f"Top {k} most similar videos of each seed (cosine of the per-video mean embeddings; "
        "`audio+video` averages the two similarities). Label precision@k over all videos "
        "(share of neighbours sharing a label with the query):",
        "",
        table(
            ["Space", f"Label precision@{k}"],
            [[s, pct(v)] for s, v in neighbours["label_precision@k"].items()],
        ),  # fmt: skip
        "",
    ]
    for seed in neighbours["seeds"]:
        lines += [
            f"## {seed['video_id']}: {seed['title']}",
            "",
            f"Labels: {', '.join(seed['labels']) or '(none)'}",
            "",
        ]
        rows = []
        for space, items in seed["neighbours"].items():
            for i, item in enumerate(items, 1):
                rows.append([space, str(i), item["video_id"], item["title"],
                             ", ".join(item["labels"]) or "(none)", f"{item['similarity']:.3f}"])  # fmt: skip
        lines += [table(["By", "#", "Video", "Title", "Labels", "Cosine"], rows), ""]
    return "\n".join(lines)


def retrieval_report(results: dict[str, Any], ks: Sequence[int]) -> list[str]:
    """The ``retrieval`` task's part of ``results.md`` (with the audio–video similarities)."""
    lines = ["## Cross-modal retrieval", "", *retrieval_section(results["retrieval"], ks)]
    sim = results.get("av_similarity")
    if sim:
        lines += [
            "Audio–video cosine similarity at clip level: positive pairs "
            f"{sim['positive_mean']:.3f}, negative pairs "
            f"{'–' if sim['negative_mean'] is None else format(sim['negative_mean'], '.3f')}, "
            f"ROC-AUC of telling them apart {pct(sim['auc'])}.",
            "",
        ]
    return lines


def probe_report(probe: dict[str, Any]) -> list[str]:
    """The ``probe`` task's part of ``results.md``."""
    lines = ["## Multilabel probes", "", *probe_section(probe)]
    for note in probe.get("notes", []):
        lines += [f"Note: {note}.", ""]
    return lines


def thesis_probes_report(thesis: dict[str, Any]) -> list[str]:
    """The ``thesis_probes`` task's part of ``results.md``."""
    lines = ["## Thesis downstream probes (genre, tagging)", "", *thesis_probes_section(thesis)]
    for note in thesis.get("notes", []):
        lines += [f"Note: {note}.", ""]
    return lines


def zero_shot_report(zero_shot: dict[str, Any], ks: Sequence[int]) -> list[str]:
    """The ``zero_shot`` task's part of ``results.md``."""
    return ["## Zero-shot", "", *zero_shot_section(zero_shot, ks)]


def neighbours_report(neighbours: dict[str, Any]) -> list[str]:
    """The ``neighbours`` task's part of ``results.md`` (the lists are in ``neighbours.md``)."""
    return [
        "## Nearest neighbours",
        "",
        f"Label precision@{neighbours['k']}: "
        + ", ".join(f"{s} {pct(v)}" for s, v in neighbours["label_precision@k"].items())
        + ". Per-seed lists: [neighbours.md](neighbours.md).",
        "",
    ]


def results_markdown(results: dict[str, Any], sections: Sequence[str]) -> str:
    """``results.md``: the run's header, the tasks' ``sections`` (markdown lines, in task
    order), the plots and what was skipped."""
    meta = results["meta"]
    lines = [
        f"# Evaluation: {meta['run_name']}",
        "",
        f"- model: `{meta['model_dir']}` (fingerprint `{meta['model_fingerprint'][:12]}`)",
        f"- objective: {meta.get('objective') or 'unknown'}",
        f"- data: `{meta['data_dir']}`, split **{meta['split']}**: "
        f"{meta['num_clips']} clips of {meta['num_videos']} videos, {len(meta['label_names'])} labels",
        f"- produced {meta['created']} by trimodal {meta['trimodal_version']}",
        "",
        "Scores in %, ranks 1-based against the whole gallery (ties pessimistic).",
        "",
        *sections,
    ]
    if results.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"- {name}: [{rel}]({rel})" for name, rel in results["plots"].items()]
        lines.append("")
    if results.get("skipped"):
        lines += ["## Skipped", ""]
        lines += [f"- {name}: {reason}" for name, reason in results["skipped"].items()]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- comparison


def _headline_probe(results: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    by_level = results.get("probe", {}).get("results", {})
    level, features, probe = HEADLINE_PROBE
    if probe in by_level.get(level, {}).get(features, {}):
        return "/".join(HEADLINE_PROBE), by_level[level][features][probe]
    for level, by_features in by_level.items():
        for features, by_probe in by_features.items():
            if features.startswith("embedding:"):
                for probe, m in by_probe.items():
                    return f"{level}/{features}/{probe}", m
    return None


def comparison_markdown(runs: Sequence[dict[str, Any]], level: str = "video") -> str:
    """One table, one row per run: R@1, R@10 and median rank of every retrieval direction at
    ``level``, the headline probe's F1 and mAP, and zero-shot mAP/GAP (audio+video, video
    level)."""
    directions: list[str] = []
    for r in runs:
        for d in _directions(r.get("retrieval", {}).get(level, {})):
            if d not in directions:
                directions.append(d)
    header = ["Run", "Objective", "Split"]
    for d in directions:
        header += [f"{d} R@1", f"{d} R@10", f"{d} MdR"]
    header += ["Probe F1", "Probe mAP", "Zero-shot mAP", "Zero-shot GAP"]
    rows, probes_used = [], set()
    for r in runs:
        meta = r["meta"]
        row = [meta["run_name"], meta.get("objective") or "–", meta["split"]]
        ret = r.get("retrieval", {}).get(level, {})
        for d in directions:
            m = ret.get(d)
            # Multi-relevant text rows (repeated texts) have no partner R@k: shown as "–".
            m = m or {}
            row += [pct(m.get("R@1")), pct(m.get("R@10")), rank(m.get("median_rank"))]
        headline = _headline_probe(r)
        if headline:
            probes_used.add(headline[0])
            row += [pct(headline[1]["f1"]), pct(headline[1]["map_macro"])]
        else:
            row += ["–", "–"]
        tagging = r.get("zero_shot", {}).get("tagging", {}).get("video", {})
        zs = tagging.get("audio+video") or next(iter(tagging.values()), None)
        row += [pct(zs["map"]), pct(zs["gap"])] if zs else ["–", "–"]
        rows.append(row)
    lines = [
        f"# Comparison ({level}-level retrieval)",
        "",
        table(header, rows),
        "",
        "Scores in %; MdR = median rank. Probe: "
        + (", ".join(sorted(probes_used)) or "none")
        + " (F1 weighted, mAP macro). Zero-shot: audio+video scores against the label names, "
        "video level (YouTube-8M mAP and GAP).",
        "",
    ]
    return "\n".join(lines)


def merge_results(
    paths: Sequence[str | Path], output: str | Path | None = None, level: str = "video"
) -> str:
    """Read several ``results.json`` files and write (if ``output``) and return the comparison
    table of :func:`comparison_markdown`."""
    if not paths:
        raise ValueError("give at least one results.json")
    runs = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no results file at {path}")
        runs.append(json.loads(path.read_text()))
    text = comparison_markdown(runs, level)
    if output is not None:
        atomic_write_text(output, text)
    return text


# ----------------------------------------------------------------------------- the demo


#: Rows of :func:`demo_summary_table`: (direction, metric label, source, level, key, metric).
#: ``label_retrieval`` rows are label-as-query retrieval (each label name's text embedding
#: ranks the gallery; relevant: the items with that label), ``retrieval`` rows the
#: instance-level (true-partner) retrieval.
DEMO_SUMMARY_ROWS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("text→audio", "label mAP", "label_retrieval", "video", "audio", "mAP"),
    ("text→audio", "label any@10", "label_retrieval", "video", "audio", "any@10"),
    ("text→video", "label mAP", "label_retrieval", "video", "video", "mAP"),
    ("text→video", "label any@10", "label_retrieval", "video", "video", "any@10"),
    ("audio→video", "R@1", "retrieval", "video", "audio→video", "R@1"),
    ("audio→video", "R@10", "retrieval", "video", "audio→video", "R@10"),
    ("audio→video", "median rank", "retrieval", "video", "audio→video", "median_rank"),
    ("video→audio", "R@1", "retrieval", "video", "video→audio", "R@1"),
    ("video→audio", "R@10", "retrieval", "video", "video→audio", "R@10"),
    ("video→audio", "median rank", "retrieval", "video", "video→audio", "median_rank"),
    ("audio→video", "R@10, clips", "retrieval", "clip", "audio→video", "R@10"),
    ("video→audio", "R@10, clips", "retrieval", "clip", "video→audio", "R@10"),
)


def _demo_value(by_model: Mapping[str, Any], source: str, level: str, key: str, metric: str):
    if source == "label_retrieval":
        section = by_model.get("zero_shot", {}).get("label_retrieval", {})
    else:
        section = by_model.get("retrieval", {})
    return section.get(level, {}).get(key, {}).get(metric)


def demo_summary_table(results: Mapping[str, Any]) -> str:
    """The demo's compact table: per modality pair its headline metrics, one row each, with
    a column per model and one for chance (computed for this test set).

    Args:
        results: :func:`trimodal.evaluation.demo.demo_results` (``models``, ``chance``,
            ``test``).
    """
    models = results["models"]
    chance = results["chance"]
    rows = []
    for direction, label, source, level, key, metric in DEMO_SUMMARY_ROWS:
        fmt = rank if metric.endswith("rank") else _fraction
        values = [_demo_value(m, source, level, key, metric) for m in models.values()]
        expected = chance[source].get(level, {}).get(metric)
        rows.append([direction, label, *[fmt(v) for v in values], fmt(expected)])
    test = results["test"]
    title = (
        f"Test set: {test['videos']} videos, {test['clips']} clips, {test['labels']} labels. "
        "text→audio/video: each label's name queries the videos, relevant are those with "
        "that label; audio↔video: each video finds its own partner (video level unless "
        "'clips'). Fractions; chance: the expectation of a random ranking of this test set."
    )
    return "\n".join([title, "", table(["direction", "metric", *models, "chance"], rows)])


def _fraction(value: Any) -> str:
    return "–" if _missing(value) else f"{float(value):.3f}"


def demo_full_markdown(results: Mapping[str, Any], ks: Sequence[int]) -> str:
    """Every test result of the demo (``test_results.md``): the compact table, instance and
    multi-relevant retrieval of each model against chance, and each model's zero-shot
    tagging and label-as-query tables with their chance."""
    by_model = {name: m["retrieval"] for name, m in results["models"].items()}
    first = next(iter(by_model.values()))
    labels = {"level": "level", "direction": "direction", "model": "model"}
    parts = [
        "# Demo: test results",
        "",
        demo_summary_table(results),
        "",
        "## Cross-modal retrieval (R@k as a fraction)",
        "",
        retrieval_table(
            by_model, ["video", "clip"], ks, columns=("level", "direction", "model"),
            chance="per_direction", directions=[d for d in first["video"] if d != "chance"],
            ranks=("median_rank",), score=_fraction, labels=labels,
        ),
        "",
    ]  # fmt: skip
    multi = multi_relevant_table(
        by_model, ["video", "clip"], ks, columns=("level", "direction", "model"),
        score=_fraction, labels=labels,
    )  # fmt: skip
    if multi is not None:
        parts += ["Texts repeat: any@k = an item with the query's text in the top k.", "", multi]
        parts.append("")
    for name, m in results["models"].items():
        parts += [f"## Zero-shot, {name} model (scores in %)", ""]
        parts += zero_shot_section(m["zero_shot"], ks)
    rows = [
        [level, pct(c["mAP"]), pct(c["R-precision"]), *[pct(c.get(f"any@{k}")) for k in ks]]
        for level, c in results["chance"]["label_retrieval"].items()
    ]
    parts += [
        "## Chance of label-as-query retrieval (a random ranking; %)",
        "",
        table(["Level", "mAP", "R-precision", *[f"any@{k}" for k in ks]], rows),
        "",
        "The sklearn (macro) tagging mAP averages the same per-label APs, so its chance is "
        "this mAP too.",
        "",
    ]
    return "\n".join(parts)
