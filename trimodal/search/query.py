"""Queries over a :class:`~trimodal.search.index.Catalogue`: a vector, a text, or "more like this".

- :func:`search_vector`: one query embedding into the audio or video gallery (cross-modal
  when the query comes from another modality: text → video, audio → video, …);
- :func:`more_like_this`: the items most similar to a catalogue item, scored by
  ``w_audio · cos(audio) + w_video · cos(video)`` (the weights normalised to sum 1). With an
  exact index every item is scored; with an approximate one the union of each gallery's top
  candidates is re-scored exactly from the stored vectors;
- :func:`format_table`: hits as a Markdown table (the command line's default output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trimodal.search.errors import SearchError
from trimodal.search.index import Catalogue

GALLERIES = ("audio", "video")
DEFAULT_WEIGHTS = {"audio": 0.5, "video": 0.5}
# Candidates per gallery that an approximate "more like this" re-scores: at least this many,
# and ten times k.
LIKE_CANDIDATES = 200
_SCAN_ROWS = 65_536


@dataclasses.dataclass
class Hit:
    """One result: its rank (1 = best), the item's id and metadata, the similarity score."""

    rank: int
    id: str
    score: float
    title: str
    labels: list[str]
    path: str
    clips: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _hits(cat: Catalogue, rows: Sequence[int], scores: Sequence[float], k: int) -> list[Hit]:
    hits = []
    for row, score in zip(rows, scores):
        if row < 0:  # FAISS pads with -1 when fewer than k items were reachable
            continue
        item = cat.item(int(row))
        hits.append(
            Hit(
                rank=len(hits) + 1,
                id=item["id"],
                score=float(score),
                title=item["title"],
                labels=list(item["labels"]),
                path=item["path"],
                clips=int(item["clips"]),
            )
        )
        if len(hits) == k:
            break
    return hits


def check_gallery(cat: Catalogue, gallery: str) -> None:
    if gallery not in GALLERIES or gallery not in cat.modalities:
        have = [m for m in GALLERIES if m in cat.modalities]
        raise SearchError(f"no {gallery!r} gallery in this index (choose from {have})")


def search_vector(
    cat: Catalogue, gallery: str, query: np.ndarray, k: int = 10, exclude: Sequence[str] = ()
) -> list[Hit]:
    """The top ``k`` items of ``gallery`` for one query embedding ``[D]`` (unit length),
    leaving out the ids in ``exclude``."""
    check_gallery(cat, gallery)
    if k < 1:
        raise SearchError(f"k must be >= 1, got {k}")
    scores, rows = cat.search(gallery, np.asarray(query, np.float32)[None], k + len(exclude))
    skip = {cat.row_of(i) for i in exclude if i in cat}
    keep = [(r, s) for r, s in zip(rows[0], scores[0]) if r not in skip]
    return _hits(cat, [r for r, _ in keep], [s for _, s in keep], k)


def like_weights(audio: float | None = None, video: float | None = None) -> dict[str, float]:
    """``{"audio": w_a, "video": w_v}`` normalised to sum 1 (defaults 0.5 each)."""
    w = {"audio": DEFAULT_WEIGHTS["audio"] if audio is None else float(audio)}
    w["video"] = DEFAULT_WEIGHTS["video"] if video is None else float(video)
    if min(w.values()) < 0 or sum(w.values()) <= 0:
        raise SearchError(f"like weights must be >= 0 and not both 0, got {w}")
    total = sum(w.values())
    return {m: v / total for m, v in w.items()}


def _scan_scores(cat: Catalogue, queries: dict[str, np.ndarray], weights: dict) -> np.ndarray:
    """``float32 [N]``: the weighted similarity of every item (chunked over the rows)."""
    n = len(cat)
    out = np.zeros(n, np.float32)
    for start in range(0, n, _SCAN_ROWS):
        stop = min(n, start + _SCAN_ROWS)
        for m, w in weights.items():
            if w:
                out[start:stop] += w * (np.asarray(cat.vectors[m][start:stop]) @ queries[m])
    return out


def more_like_this(
    cat: Catalogue, item_id: str, k: int = 10, weights: dict[str, float] | None = None
) -> list[Hit]:
    """The ``k`` items most like ``item_id`` (itself excluded) by the weighted audio and video
    similarity (``weights`` from :func:`like_weights`; default equal). A modality the query
    item lacks (an audio-only file's video) is left out of the weights; an item lacking
    one scores 0 in it."""
    weights = weights or like_weights()
    for m in weights:
        check_gallery(cat, m)
    if k < 1:
        raise SearchError(f"k must be >= 1, got {k}")
    row = cat.row_of(item_id)
    weights = {m: w for m, w in weights.items() if cat.has(row, m)}
    if not any(weights.values()):
        raise SearchError(f"{item_id!r} has no embedding in the weighted galleries")
    weights = {m: w / sum(weights.values()) for m, w in weights.items()}
    queries = {m: np.asarray(cat.vectors[m][row], np.float32) for m in weights}
    if cat.meta["kind"] == "exact":
        scores = _scan_scores(cat, queries, weights)
        top = np.argsort(-scores, kind="stable")
        top = top[top != row][:k]
        return _hits(cat, top, scores[top], k)
    want = max(LIKE_CANDIDATES, 10 * k) + 1
    candidates = set()
    for m, w in weights.items():
        if w:
            candidates |= set(cat.search(m, queries[m][None], want)[1][0].tolist())
    candidates.discard(row)
    candidates.discard(-1)
    rows = np.asarray(sorted(candidates), dtype=np.int64)
    scores = np.zeros(len(rows), np.float32)
    for m, w in weights.items():
        scores += w * (np.asarray(cat.vectors[m][rows]) @ queries[m])
    order = np.argsort(-scores, kind="stable")[:k]
    return _hits(cat, rows[order], scores[order], k)


def format_table(hits: Sequence[Hit]) -> str:
    """Hits as a Markdown table: rank, score, id, title, labels."""
    lines = ["| rank | score | id | title | labels |", "|---|---|---|---|---|"]
    for h in hits:
        title = h.title.replace("|", "\\|")
        lines.append(f"| {h.rank} | {h.score:.4f} | {h.id} | {title} | {', '.join(h.labels)} |")
    return "\n".join(lines)


DEFAULT_GALLERY = {"text": "video", "audio": "video", "video": "audio"}


class QueryEngine:
    """A catalogue with the model that embeds its queries (loaded on first need).

    The command line and the page both answer through it: :meth:`text`, :meth:`media` (a
    file, embedded the way the catalogue was: same model, same clip settings) and
    :meth:`like`.
    """

    def __init__(self, cat: Catalogue, model_dir: str | Path | None = None, device: str = "cpu"):
        self.cat = cat
        self.model_dir = model_dir or cat.meta.get("model")
        self.device = device
        self._model = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from trimodal.search.embedder import load_model

            if not self.model_dir:
                raise SearchError("this query needs the model: pass --model DIR")
            self._model = load_model(self.model_dir, self.device)[0]
        return self._model

    def text(self, texts: Sequence[str], gallery: str | None, k: int) -> list[list[Hit]]:
        from trimodal.search.embedder import embed_texts

        gallery = gallery or DEFAULT_GALLERY["text"]
        check_gallery(self.cat, gallery)
        if not texts or any(not str(t).strip() for t in texts):
            raise SearchError("empty text query")
        vectors = embed_texts(self.model, texts)
        return [search_vector(self.cat, gallery, v, k) for v in vectors]

    def media(self, path: str | Path, modality: str, gallery: str | None, k: int) -> list[Hit]:
        """Search with the ``modality`` (audio or video) embedding of the media file ``path``."""
        from trimodal.config import DataConfig, from_dict
        from trimodal.search.embedder import EmbedOptions, embed_files, is_audio_only

        if modality not in GALLERIES:
            raise SearchError(f"a media query is audio or video, got {modality!r}")
        gallery = gallery or DEFAULT_GALLERY[modality]
        check_gallery(self.cat, gallery)
        path = Path(path)
        if not path.is_file():
            raise SearchError(f"no such media file: {path}")
        if modality == "video" and is_audio_only(path):
            raise SearchError(f"cannot use {path.name}: it has no video stream")
        settings = self.cat.meta.get("data_config")
        config = from_dict(DataConfig, settings, "data") if settings else None
        options = EmbedOptions(show_progress=False, previews=False, device=self.device)
        try:
            items, vectors = embed_files(self.model, [path], data_config=config, options=options)
        except SearchError as err:
            raise SearchError(f"cannot use {path.name}: {err}") from err
        if modality not in vectors or modality in items[0]["absent"]:
            raise SearchError(f"cannot use {path.name}: it has no {modality} stream")
        return search_vector(self.cat, gallery, vectors[modality][0], k)

    def like(self, item_id: str, k: int, weights: dict[str, float] | None = None) -> list[Hit]:
        return more_like_this(self.cat, item_id, k, weights)
