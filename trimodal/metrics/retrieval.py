"""Cross-modal retrieval metrics: ranks of true partners, R@k, mean/median rank, label queries.

Definitions (docs/evaluation.md#retrieval, followed exactly):

* Query ``i``'s true partner is gallery item ``i``. Similarity is cosine: both sides are
  L2-normalised here, then compared by dot product.
* The rank of the partner is 1-based and taken against the **whole** gallery, with ties counted
  pessimistically: ``rank_i = 1 + #{j != i : sim(q_i, g_j) >= sim(q_i, g_i)}``. A perfect model
  gives rank 1 for every query; a constant model gives rank N.
* ``R@k`` is cumulative: the share (a fraction in [0, 1], not a percentage) of queries whose
  rank is ``<= k``. So ``R@1 <= R@5 <= R@10`` always.
* Mean rank, median rank (``numpy.median``: the mean of the two middle ranks for an even number
  of queries) and mean reciprocal rank.

These fix two defects of the research code (docs/defects.md#rank-of-the-true-partner:
``diag(argsort(sim))`` used as a rank, ranks copied from a→v into v→a, ranking within a batch;
docs/defects.md#cumulative-recall: non-cumulative R@k).

The N×N similarity matrix is never materialised: queries are processed in chunks of
``chunk_size`` rows, so the peak extra memory is ``chunk_size × N`` floats (400 MB for the
default 1024 × 100k in float32). Within a chunk, the partner's similarity is read from the same
matmul result as the rest of its row, so a gallery item that ties with the partner ties exactly
(no second, differently rounded dot product).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from trimodal.metrics.pooling import aggregate_by_video
from trimodal.modalities import MODALITIES

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 25)
#: Queries per chunk. 1024 × 100k float32 is 400 MB of similarities; see
#: ``benchmarks/bench_retrieval.py`` for the time/memory trade-off that picked it.
DEFAULT_CHUNK_SIZE = 1024

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t


def l2_normalize(x: ArrayLike, eps: float = 1e-12) -> torch.Tensor:
    """Return the rows of ``x`` ([N, D]) scaled to unit L2 norm (zero rows stay zero)."""
    t = _as_tensor(x, "x")
    return torch.nn.functional.normalize(t, p=2.0, dim=1, eps=eps)


def retrieval_ranks(
    queries: ArrayLike,
    gallery: ArrayLike,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    normalize: bool = True,
) -> torch.Tensor:
    """1-based pessimistic rank of each query's true partner among the whole gallery.

    Args:
        queries: [N, D] query embeddings (tensor or array; float32/float64 kept, other dtypes
            become float32). Query ``i``'s true partner is ``gallery[i]``.
        gallery: [N, D] gallery embeddings, same dtype/device handling.
        chunk_size: queries per chunk; peak extra memory is ``chunk_size × N`` similarities.
        normalize: L2-normalise both sides first (cosine similarity). Leave True unless the
            inputs are already unit-norm.

    Returns:
        [N] int64 tensor (on CPU) of ranks in ``[1, N]``:
        ``1 + #{j != i : s_ij >= s_ii}`` with ``s = queries @ gallery.T``.

    Raises:
        ValueError: on shape mismatch, empty input or non-finite values.
    """
    q = _as_tensor(queries, "queries")
    g = _as_tensor(gallery, "gallery")
    if q.shape != g.shape:
        raise ValueError(
            f"queries and gallery must both be [N, D] with the same N and D "
            f"(query i's partner is gallery i); got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    if q.shape[0] == 0:
        raise ValueError("empty input")
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    if not (torch.isfinite(q).all() and torch.isfinite(g).all()):
        raise ValueError("embeddings contain NaN or inf")
    if normalize:
        g = l2_normalize(g)
    g_t = g.T  # [D, N], a view
    n = q.shape[0]
    ones = torch.ones(n, dtype=dtype, device=g.device)
    ranks = torch.empty(n, dtype=torch.int64)
    buf = torch.empty((min(chunk_size, n), n), dtype=dtype, device=g.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        qc = q[start:stop].to(g.device)
        if normalize:
            qc = l2_normalize(qc)
        sims = buf[: stop - start]
        torch.mm(qc, g_t, out=sims)  # [c, N]
        rows = torch.arange(stop - start, device=g.device)
        positive = sims[rows, rows + start].unsqueeze(1)  # advanced indexing: a copy
        # In place: sims becomes 1.0 where s_ij >= s_ii (the partner itself included), 0.0
        # elsewhere; a matrix-vector product with ones then counts per row. This is ~3x faster
        # on CPU than a bool tensor's .sum(1), and exact (counts < 2**24 even in float32).
        sims.ge_(positive)
        counts = torch.mv(sims, ones)
        ranks[start:stop] = counts.round().to(torch.int64).cpu()
    return ranks


def metrics_from_ranks(
    ranks: ArrayLike, ks: Sequence[int] = DEFAULT_KS, gallery_size: int | None = None
) -> dict[str, float]:
    """Summarise 1-based ranks ([N]) into R@k (cumulative fractions), mean/median rank and MRR.

    Returns a dict with ``R@{k}`` for each k, ``mean_rank``, ``median_rank``, ``mrr``,
    ``num_queries`` and ``gallery_size`` (defaults to the number of queries).
    """
    r = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    if r.size == 0:
        raise ValueError("no ranks")
    if (r < 1).any():
        raise ValueError("ranks are 1-based")
    out: dict[str, float] = {f"R@{k}": float(np.mean(r <= k)) for k in ks}
    out["mean_rank"] = float(r.mean())
    out["median_rank"] = float(np.median(r))
    out["mrr"] = float(np.mean(1.0 / r))
    out["num_queries"] = int(r.size)
    out["gallery_size"] = int(gallery_size if gallery_size is not None else r.size)
    return out


def retrieval_metrics(
    queries: ArrayLike,
    gallery: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    normalize: bool = True,
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], torch.Tensor]:
    """Paired retrieval metrics: query ``i`` ([N, D]) should find ``gallery[i]`` ([N, D]).

    Both sides are L2-normalised (cosine similarity) unless ``normalize=False``. See the module
    docstring for the exact definitions.

    Returns:
        ``{"R@1": ..., "R@5": ..., "mean_rank": ..., "median_rank": ..., "mrr": ...,
        "num_queries": N, "gallery_size": N}``; with ``return_ranks=True`` also the [N] int64
        ranks as a second element.
    """
    ranks = retrieval_ranks(queries, gallery, chunk_size=chunk_size, normalize=normalize)
    out = metrics_from_ranks(ranks, ks, gallery_size=int(ranks.numel()))
    return (out, ranks) if return_ranks else out


def chance_metrics(n: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Expected metrics of a random ranking of a gallery of ``n`` items (the "chance" row).

    The partner's rank is uniform on ``1..n``: ``R@k = min(k, n) / n``, mean and median rank
    ``(n + 1) / 2``, MRR ``H_n / n`` (``H_n`` the n-th harmonic number).
    """
    if n <= 0:
        raise ValueError("n must be positive")
    out: dict[str, float] = {f"R@{k}": min(k, n) / n for k in ks}
    out["mean_rank"] = (n + 1) / 2
    out["median_rank"] = (n + 1) / 2
    out["mrr"] = float(np.sum(1.0 / np.arange(1, n + 1))) / n
    out["num_queries"] = n
    out["gallery_size"] = n
    return out


def multi_relevant_metrics(
    queries: ArrayLike,
    gallery: ArrayLike,
    query_keys: Sequence,
    gallery_keys: Sequence,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    normalize: bool = True,
) -> dict[str, float]:
    """Retrieval where every gallery item with the query's key is relevant (repeated texts).

    Args:
        queries: ``[N, D]``; gallery: ``[M, D]``.
        query_keys: length-N key of each query (e.g. its text); gallery_keys: length-M. Gallery
            item ``j`` is relevant to query ``i`` when ``gallery_keys[j] == query_keys[i]``.
        chunk_size: queries per chunk (peak extra memory about ``4 × chunk_size × M``).
        normalize: L2-normalise both sides first (cosine similarity).

    Returns:
        ``mAP``: mean over queries of the average precision of the ranked gallery;
        ``any@k``: share of queries with at least one relevant item in the top k. The gallery
        is ranked by similarity with ties broken pessimistically (irrelevant items first among
        equal scores), as for the paired ranks. Queries without a relevant item are left out
        (``num_queries`` counts those kept); ``gallery_size`` is M; ``mean_relevant`` the
        mean number of relevant items per kept query.
    """
    q, g = _as_tensor(queries, "queries"), _as_tensor(gallery, "gallery")
    if len(query_keys) != q.shape[0] or len(gallery_keys) != g.shape[0]:
        raise ValueError(
            f"need one key per query and per gallery item: {len(query_keys)} keys for "
            f"{q.shape[0]} queries, {len(gallery_keys)} for {g.shape[0]} gallery items"
        )
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    if normalize:
        q, g = l2_normalize(q), l2_normalize(g)
    codes = {key: code for code, key in enumerate(dict.fromkeys([*query_keys, *gallery_keys]))}
    q_codes = torch.tensor([codes[k] for k in query_keys])
    g_codes = torch.tensor([codes[k] for k in gallery_keys])
    positions = torch.arange(1, g.shape[0] + 1, dtype=torch.float64)
    aps, firsts, counts = [], [], []
    for start in range(0, q.shape[0], chunk_size):
        relevant = q_codes[start : start + chunk_size, None] == g_codes[None, :]  # [c, M]
        sims = (q[start : start + chunk_size] @ g.T).cpu()
        # Pessimistic ties: order by relevance (irrelevant first), then a stable sort by
        # descending similarity keeps that order among equal scores.
        by_relevance = relevant.to(torch.int8).argsort(dim=1, stable=True)
        order = sims.gather(1, by_relevance).argsort(dim=1, descending=True, stable=True)
        ranked = relevant.gather(1, by_relevance.gather(1, order)).to(torch.float64)
        n_relevant = ranked.sum(dim=1)
        precision = ranked.cumsum(dim=1) / positions
        keep = n_relevant > 0
        aps.append(((precision * ranked).sum(dim=1) / n_relevant.clamp(min=1))[keep])
        firsts.append((ranked.argmax(dim=1) + 1)[keep])
        counts.append(n_relevant[keep])
    ap, first, count = torch.cat(aps), torch.cat(firsts), torch.cat(counts)
    if ap.numel() == 0:
        raise ValueError("no query has a relevant gallery item")
    out: dict[str, float] = {"mAP": float(ap.mean())}
    for k in ks:
        out[f"any@{k}"] = float((first <= k).double().mean())
    out["num_queries"] = int(ap.numel())
    out["gallery_size"] = int(g.shape[0])
    out["mean_relevant"] = float(count.mean())
    return out


def video_texts(texts: Sequence[str], video_ids: Sequence) -> list[str]:
    """The text of each video, in sorted video-id order (the rows of :func:`aggregate_by_video`):
    the distinct texts its clips carry, sorted and joined by newlines (usually just one)."""
    if len(texts) != len(video_ids):
        raise ValueError(f"{len(texts)} texts for {len(video_ids)} clips")
    by_video: dict[Any, set[str]] = {}
    for vid, text in zip(video_ids, texts):
        by_video.setdefault(vid, set()).add(str(text))
    return ["\n".join(sorted(by_video[vid])) for vid in np.unique(np.asarray(video_ids)).tolist()]


def _level_inputs(
    level: str,
    present: Mapping[str, ArrayLike],
    video_ids: Sequence | None,
    texts: Sequence[str] | None,
    aggregation: str,
) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """Unit embeddings of one level, and the text of each row (``None`` without texts)."""
    if level == "clip":
        embs = {m: l2_normalize(e) for m, e in present.items()}
        return embs, None if texts is None else [str(t) for t in texts]
    if level != "video":
        raise ValueError(f"unknown level {level!r}; expected 'clip' or 'video'")
    if video_ids is None:
        raise ValueError("video_ids are required for the video level")
    embs = {m: aggregate_by_video(e, video_ids, aggregation)[0] for m, e in present.items()}
    return embs, None if texts is None else video_texts(texts, video_ids)


def cross_modal_retrieval(
    embeddings: Mapping[str, ArrayLike | None],
    video_ids: Sequence | None = None,
    *,
    texts: Sequence[str] | None = None,
    levels: Sequence[str] = ("clip", "video"),
    aggregation: str = "mean",
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, dict[str, dict[str, float]]]:
    """All directions among the present modalities, at clip level and at video level.

    Args:
        embeddings: ``{"text": [N, D], "audio": [N, D], "video": [N, D]}``; row ``i`` of every
            modality belongs to the same clip. Missing or ``None`` modalities are skipped (two
            present modalities give 2 directions, three give 6).
        video_ids: length-N video id of each clip; required for the ``"video"`` level, where
            every modality is pooled per video with
            :func:`~trimodal.metrics.pooling.aggregate_by_video` and video ``v``
            of one modality must find video ``v`` of the other.
        texts: length-N text of each clip (the string its text embedding was made from). When
            some text repeats at a level (clips, or videos: :func:`video_texts`), the
            directions from and to text are multi-relevant there: items with the same text
            have the same text embedding, so they tie and cannot be told apart; those
            directions then report :func:`multi_relevant_metrics` (``mAP``, ``any@k``: any
            item with the query's text counts) instead of the partner's ``R@k`` and ranks.
            ``None``: every text is taken as unique (instance-level rows).
        levels: any of ``"clip"``, ``"video"``.
        aggregation: ``"mean"`` or ``"max"`` pooling for the video level.

    Returns:
        ``{level: {"audio→video": metrics, ...}}`` plus ``{level: {"chance": metrics}}`` for the
        gallery size of that level (the chance of the instance-level rows); metrics as returned
        by :func:`retrieval_metrics` or :func:`multi_relevant_metrics`.
    """
    present = {m: e for m, e in embeddings.items() if e is not None}
    unknown = set(present) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; expected {MODALITIES}")
    if len(present) < 2:
        raise ValueError("need at least two modalities")
    order = [m for m in MODALITIES if m in present]
    present = {m: present[m] for m in order}
    sizes = {m: int(torch.as_tensor(present[m]).shape[0]) for m in order}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"modalities have different numbers of clips: {sizes}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for level in levels:
        embs, keys = _level_inputs(level, present, video_ids, texts, aggregation)
        repeated = keys is not None and len(set(keys)) < len(keys)
        level_out: dict[str, dict[str, float]] = {}
        for a in order:
            for b in order:
                if a == b:
                    continue
                if repeated and "text" in (a, b):
                    level_out[f"{a}→{b}"] = multi_relevant_metrics(
                        embs[a], embs[b], keys, keys, ks, chunk_size=chunk_size, normalize=False
                    )
                else:
                    level_out[f"{a}→{b}"] = retrieval_metrics(
                        embs[a], embs[b], ks, chunk_size=chunk_size, normalize=False
                    )
        n = next(iter(embs.values())).shape[0]
        level_out["chance"] = chance_metrics(n, ks)
        results[level] = level_out
    return results


def label_retrieval_chance(
    relevance: ArrayLike, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Expected :func:`label_retrieval_metrics` of a uniformly random ranking of the gallery.

    For a label with R relevant items among M, a relevant item sits at each rank k with
    probability 1/M, with (k − 1)(R − 1)/(M − 1) other relevant items above it on average,
    so the expected precision at a relevant item (and the expected AP) is
    ``(H_M + (R − 1)/(M − 1) · (M − H_M)) / M`` (``H_M`` the M-th harmonic number; 1 when
    R = M). The expected R-precision is R/M; the chance of a relevant item in the top k is
    ``1 − C(M − R, k) / C(M, k)``. Means over the labels with a relevant item, as there.

    Args:
        relevance: ``[M, L]`` multi-hot, as for :func:`label_retrieval_metrics`.
    """
    rel = np.asarray(relevance).astype(bool)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be [M, L], got shape {rel.shape}")
    m = rel.shape[0]
    counts = rel.sum(axis=0)
    counts = counts[counts > 0].astype(np.float64)
    if counts.size == 0:
        raise ValueError("no label has a relevant gallery item")
    harmonic = float(np.sum(1.0 / np.arange(1, m + 1)))
    spread = (counts - 1) / (m - 1) * (m - harmonic) if m > 1 else np.zeros_like(counts)
    out: dict[str, float] = {
        "mAP": float(np.mean((harmonic + spread) / m)),
        "R-precision": float(np.mean(counts / m)),
    }
    for k in ks:
        # C(M - R, k) / C(M, k) = prod_{i<k} (M - R - i) / (M - i), 0 once M - R - i hits 0.
        i = np.arange(min(k, m))[None, :]
        miss = np.prod(np.clip(m - counts[:, None] - i, 0, None) / (m - i), axis=1)
        out[f"any@{k}"] = float(np.mean(1.0 - miss))
    out["num_labels"] = int(counts.size)
    return out


def label_retrieval_metrics(
    label_queries: ArrayLike,
    gallery: ArrayLike,
    relevance: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    normalize: bool = True,
) -> dict[str, float]:
    """Label-as-query retrieval: each label's text embedding retrieves the items with that label.

    Args:
        label_queries: [L, D] one query embedding per label.
        gallery: [M, D] gallery embeddings (e.g. video-level audio or video embeddings).
        relevance: [M, L] multi-hot; ``relevance[m, l]`` is true when item ``m`` has label ``l``.
        normalize: L2-normalise both sides (cosine similarity).

    Returns:
        ``mAP``: mean over labels of :func:`sklearn.metrics.average_precision_score` of the
        label's similarities (sklearn's semantics: tied scores form one threshold);
        ``R-precision``: mean over labels of the precision in the top R, R = number of relevant
        items; ``any@k``: share of labels with at least one relevant item in the top k. For the
        last two, ties are broken pessimistically (irrelevant items first among equal scores),
        as for the paired ranks. Labels without any relevant item are left out of every mean
        (``num_labels`` counts those kept, ``num_labels_without_items`` those left out).
    """
    q = _as_tensor(label_queries, "label_queries")
    g = _as_tensor(gallery, "gallery")
    rel = np.asarray(relevance).astype(bool)
    if rel.shape != (g.shape[0], q.shape[0]):
        raise ValueError(f"relevance must be [M, L] = {(g.shape[0], q.shape[0])}, got {rel.shape}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    if normalize:
        q, g = l2_normalize(q), l2_normalize(g)
    sims = (q @ g.T).cpu().numpy()  # [L, M]: L is a label set (tens), so this is small
    aps, rprecs = [], []
    hits = {k: [] for k in ks}
    skipped = 0
    for li in range(q.shape[0]):
        y = rel[:, li]
        n_rel = int(y.sum())
        if n_rel == 0:
            skipped += 1
            continue
        s = sims[li]
        aps.append(average_precision_score(y, s))
        # lexsort: last key is primary. Descending score, then irrelevant (False) first.
        order = np.lexsort((y, -s))
        ranked = y[order]
        rprecs.append(float(ranked[:n_rel].mean()))
        first = int(np.argmax(ranked)) + 1  # 1-based rank of the first relevant item
        for k in ks:
            hits[k].append(first <= k)
    if not aps:
        raise ValueError("no label has a relevant gallery item")
    out: dict[str, float] = {"mAP": float(np.mean(aps)), "R-precision": float(np.mean(rprecs))}
    for k in ks:
        out[f"any@{k}"] = float(np.mean(hits[k]))
    out["num_labels"] = len(aps)
    out["num_labels_without_items"] = skipped
    return out
