"""A catalogue index: one FAISS inner-product index per modality, the items' metadata beside it.

The directory an index lives in::

    INDEX/index.json        kind (exact / ivf), dimension, count, the IVF settings, sources
    INDEX/items.parquet     one row per item: id, path, title, labels, clips, source
    INDEX/<modality>.faiss  the FAISS index of the items' video-level embeddings
    INDEX/<modality>.npy    the same vectors as float32 [N, D] (memory-mapped when loaded):
                            exact re-scoring of "more like this" and the query item's own vectors

Row ``i`` of every file is item ``i``; FAISS ids are the row numbers. Embeddings are unit
length (:func:`trimodal.metrics.aggregate_by_video`), so inner product is cosine similarity.

Which index (docs/search.md#index-choice): below ``approximate_above`` items an exact
``IndexFlatIP`` (a scan of every vector: the brute-force top-k, bit for bit); above, an
inverted file ``IVF{nlist},Flat`` (vectors clustered into ``nlist ≈ 4·√N`` lists by
k-means, a query scans the ``nprobe`` nearest lists, 192 by default): the raw vectors plus
an 8-byte id each, so the index is about the raw vectors' size, and adding items assigns
them to the trained lists without a rebuild. ``codec="SQ8"`` stores 8-bit codes instead (a
quarter of the memory) and re-scores its ``rescore·k`` best candidates exactly from the
``.npy`` vectors kept beside the index (the same recall as Flat, exact scores, but 3× the
CPU time per scanned vector at 300-d: docs/search.md). Loading memory-maps the FAISS
files (``IO_FLAG_MMAP``) and the ``.npy`` files, so a catalogue larger than RAM is paged
in as it is read.

An item may lack a modality (an audio-only file has no video embedding): its row there is
zeros, the modality is in its ``absent`` list, and searches of that gallery skip it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trimodal.search.errors import SearchError
from trimodal.utils import atomic_path, atomic_write_json

INDEX_VERSION = 1
INDEX_FILE = "index.json"
ITEMS_FILE = "items.parquet"
# Above this many items the default index is approximate (docs/search.md#index-choice).
APPROXIMATE_ABOVE = 50_000
# Measured at 1M clustered 300-d vectors (BENCHMARKS.md): recall@10 0.955 at 192 of 4000
# lists (0.892 at 32).
DEFAULT_NPROBE = 192
# float32 vectors in the lists: FAISS's 8-bit codes took 3x the CPU time per scanned vector
# at 300-d (its SIMD path needs a dimension divisible by 8), for a quarter of the memory.
DEFAULT_CODEC = "Flat"
# SQ8's candidates re-scored exactly from the stored vectors: rescore·k of them (5·k gave
# Flat's recall at 1M); Flat's scores are exact already.
DEFAULT_RESCORE = {"Flat": 1, "SQ8": 5}
CODECS = ("Flat", "SQ8")
# k-means wants ~39 training points per list; more only costs time.
TRAIN_POINTS_PER_LIST = 64
ITEM_COLUMNS = ("id", "path", "title", "labels", "clips", "source", "absent")


@dataclasses.dataclass
class IndexSpec:
    """How to index: ``kind`` ``"auto"`` (exact up to ``approximate_above`` items, else IVF),
    ``"exact"`` or ``"ivf"``; for IVF ``nlist`` (``None``: ``4·√N``), ``nprobe``, ``codec``
    (``Flat`` or ``SQ8``) and ``rescore`` (candidates re-scored exactly: ``rescore·k``;
    1: none; ``None``: :data:`DEFAULT_RESCORE` of the codec)."""

    kind: str = "auto"
    approximate_above: int = APPROXIMATE_ABOVE
    nlist: int | None = None
    nprobe: int = DEFAULT_NPROBE
    codec: str = DEFAULT_CODEC
    rescore: int | None = None

    def __post_init__(self) -> None:
        if self.rescore is None:
            self.rescore = DEFAULT_RESCORE.get(self.codec, 1)

    def resolve(self, count: int) -> str:
        if self.kind not in ("auto", "exact", "ivf"):
            raise SearchError(f"index kind must be auto, exact or ivf, got {self.kind!r}")
        if self.codec not in CODECS or self.rescore < 1 or self.nprobe < 1:
            raise SearchError(
                f"IVF codec must be one of {CODECS} (got {self.codec!r}), rescore and nprobe >= 1"
            )
        if self.kind != "auto":
            return self.kind
        return "ivf" if count > self.approximate_above else "exact"

    def lists_for(self, count: int) -> int:
        """The number of IVF lists for ``count`` items (at least 1, at most ``count``)."""
        nlist = self.nlist or int(round(4 * math.sqrt(count)))
        return max(1, min(nlist, count))


def _faiss():
    import faiss

    return faiss


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise SearchError(f"{what}: expected vectors [N, D] with N >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise SearchError(f"{what}: vectors contain NaN or infinity")
    return x


def new_faiss_index(vectors: np.ndarray, kind: str, spec: IndexSpec) -> Any:
    """A FAISS inner-product index of ``vectors`` (float32 [N, D]): flat, or IVF (lists and
    codes) trained on (a seeded sample of) them."""
    faiss = _faiss()
    n, dim = vectors.shape
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = spec.lists_for(n)
        index = faiss.index_factory(dim, f"IVF{nlist},{spec.codec}", faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if n > nlist * TRAIN_POINTS_PER_LIST:
            rows = np.random.default_rng(0).choice(n, nlist * TRAIN_POINTS_PER_LIST, replace=False)
            sample = vectors[np.sort(rows)]
        index.train(np.ascontiguousarray(sample))
        index.nprobe = min(spec.nprobe, nlist)
    index.add(vectors)
    return index


def _write_faiss(index: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        _faiss().write_index(index, str(tmp))


def _write_npy(vectors: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, vectors)


def _items_table(items: Sequence[dict[str, Any]]) -> pa.Table:
    columns = {name: [item.get(name) for item in items] for name in ITEM_COLUMNS}
    columns["labels"] = [list(x or []) for x in columns["labels"]]
    columns["absent"] = [list(x or []) for x in columns["absent"]]
    columns["clips"] = [int(x or 0) for x in columns["clips"]]
    for name in ("path", "title", "source"):
        columns[name] = [str(x or "") for x in columns[name]]
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("title", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("clips", pa.int64()),
            ("source", pa.string()),
            ("absent", pa.list_(pa.string())),
        ]
    )
    return pa.table(columns, schema=schema)


def build_index(
    out_dir: str | Path,
    items: Sequence[dict[str, Any]],
    vectors: dict[str, np.ndarray],
    spec: IndexSpec | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a new index of ``items`` (dicts with :data:`ITEM_COLUMNS`) to ``out_dir``.

    Args:
        vectors: ``{modality: float32 [N, D]}``, row ``i`` = ``items[i]``.
        info: extra entries for ``index.json`` (the model, the embedding runs).

    Returns:
        The contents of ``index.json``.
    """
    spec = spec or IndexSpec()
    out = Path(out_dir)
    ids = [str(item["id"]) for item in items]
    if len(set(ids)) != len(ids):
        raise SearchError("duplicate item ids")
    if not vectors:
        raise SearchError("no modality to index")
    kind = spec.resolve(len(ids))
    dims = set()
    for modality, x in vectors.items():
        x = _unit_rows(x, modality)
        if x.shape[0] != len(ids):
            raise SearchError(f"{modality}: {x.shape[0]} vectors for {len(ids)} items")
        dims.add(x.shape[1])
        _write_npy(x, out / f"{modality}.npy")
        _write_faiss(new_faiss_index(x, kind, spec), out / f"{modality}.faiss")
    if len(dims) != 1:
        raise SearchError(f"modalities have different dimensions {sorted(dims)}")
    with atomic_path(out / ITEMS_FILE) as tmp:
        pq.write_table(_items_table(items), tmp)
    meta = {
        "version": INDEX_VERSION,
        "kind": kind,
        "dim": dims.pop(),
        "count": len(ids),
        "modalities": sorted(vectors),
        "nlist": spec.lists_for(len(ids)) if kind == "ivf" else None,
        "nprobe": spec.nprobe if kind == "ivf" else None,
        "codec": spec.codec if kind == "ivf" else None,
        "rescore": spec.rescore if kind == "ivf" else None,
        **(info or {}),
    }
    atomic_write_json(out / INDEX_FILE, meta)
    return meta


class Catalogue:
    """A loaded index (:meth:`load`): search each modality's gallery, read items and vectors."""

    def __init__(self, root: Path, meta: dict[str, Any], items: pa.Table, indices: dict, vectors):
        self.root = root
        self.meta = meta
        self.items = items
        self.indices = indices
        self.vectors = vectors
        self.ids: list[str] = items.column("id").to_pylist()
        self._row = {item_id: i for i, item_id in enumerate(self.ids)}
        self._skip = _absent_selectors(items, self.modalities)

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = True) -> Catalogue:
        """Open ``index_dir``; ``mmap``: memory-map the FAISS and vector files."""
        root = Path(index_dir)
        meta_path = root / INDEX_FILE
        if not meta_path.is_file():
            raise SearchError(f"no index at {root} ({INDEX_FILE} not found)")
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != INDEX_VERSION:
            raise SearchError(
                f"{root}: index version {meta.get('version')}, expected {INDEX_VERSION}"
            )
        faiss = _faiss()
        flag = faiss.IO_FLAG_MMAP if mmap else 0
        indices, vectors = {}, {}
        for modality in meta["modalities"]:
            indices[modality] = faiss.read_index(str(root / f"{modality}.faiss"), flag)
            if meta["kind"] == "ivf":
                indices[modality].nprobe = int(meta["nprobe"])
            vectors[modality] = np.load(root / f"{modality}.npy", mmap_mode="r" if mmap else None)
        items = pq.read_table(root / ITEMS_FILE)
        counts = {items.num_rows, meta["count"]}
        counts |= {i.ntotal for i in indices.values()} | {v.shape[0] for v in vectors.values()}
        if len(counts) != 1:
            raise SearchError(f"{root}: its files disagree on the item count {sorted(counts)}")
        return cls(root, meta, items, indices, vectors)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    @property
    def modalities(self) -> list[str]:
        return list(self.meta["modalities"])

    def row_of(self, item_id: str) -> int:
        """The row of ``item_id``; :class:`KeyError` naming it when unknown."""
        if item_id not in self._row:
            raise KeyError(f"unknown item id {item_id!r}")
        return self._row[item_id]

    def item(self, row: int) -> dict[str, Any]:
        names = [n for n in ITEM_COLUMNS if n in self.items.column_names]
        return {"absent": [], **{n: self.items.column(n)[row].as_py() for n in names}}

    def has(self, row: int, modality: str) -> bool:
        """Whether item ``row`` has a ``modality`` embedding (an audio-only file has no video)."""
        return modality in self.modalities and modality not in self.item(row)["absent"]

    def set_nprobe(self, nprobe: int) -> None:
        """Lists an IVF query scans (more: higher recall, slower); no effect on exact."""
        for index in self.indices.values():
            if hasattr(index, "nprobe"):
                index.nprobe = max(1, int(nprobe))

    def search(self, modality: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of ``modality``'s gallery for each query.

        Args:
            queries: float32 ``[Q, D]`` (unit length for cosine scores).

        Returns:
            ``(scores float32 [Q, k'], rows int64 [Q, k'])``, best first, ``k' = min(k, N)``
            (rows -1 where fewer items were reached); an exact index returns exactly the
            brute-force top-k, an IVF one with ``rescore`` > 1 the exact scores of the best
            of its ``rescore·k`` candidates.
        """
        if modality not in self.indices:
            raise SearchError(f"the index has no {modality} gallery (has: {self.modalities})")
        q = _unit_rows(np.atleast_2d(queries), "queries")
        if q.shape[1] != self.meta["dim"]:
            raise SearchError(f"queries have dimension {q.shape[1]}, the index {self.meta['dim']}")
        k = max(1, min(int(k), len(self)))
        rescore = int(self.meta.get("rescore") or 1)
        if rescore == 1:
            return self._faiss_search(modality, q, k)
        _, rows = self._faiss_search(modality, q, min(k * rescore, len(self)))
        return self._rescore(modality, q, rows, k)

    def _rescore(
        self, modality: str, q: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact top ``k`` of each query's ``candidates`` (int64 [Q, C], -1 padded)."""
        scores = np.full((len(q), k), -np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        for i, cand in enumerate(candidates):
            cand = np.unique(cand[cand >= 0])  # sorted: the memory-mapped rows read in order
            exact = np.asarray(self.vectors[modality][cand], np.float32) @ q[i]
            best = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(best)], rows[i, : len(best)] = exact[best], cand[best]
        return scores, rows

    def _faiss_search(self, modality: str, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.indices[modality]
        params = None
        if modality in self._skip:  # items without this modality are not in its gallery
            params = _faiss().SearchParametersIVF() if hasattr(index, "nprobe") else None
            params = params or _faiss().SearchParameters()
            params.sel = self._skip[modality][0]
            if hasattr(index, "nprobe"):
                params.nprobe = index.nprobe
        scores, rows = index.search(q, k, params=params)
        return scores, rows.astype(np.int64)


def _absent_selectors(items: pa.Table, modalities: Sequence[str]) -> dict[str, tuple]:
    """``{modality: (FAISS selector of the rows that have it, rows without it)}`` for the
    modalities some item lacks (the rows are held so the selector's memory stays valid)."""
    if "absent" not in items.column_names:
        return {}  # an index written before items could lack a modality
    column = items.column("absent")
    lacking = np.flatnonzero(pc.list_value_length(column).to_numpy(zero_copy_only=False) > 0)
    gone = column.take(lacking).to_pylist()
    out = {}
    for modality in modalities:
        rows = [int(r) for r, names in zip(lacking, gone) if modality in names]
        if rows:
            rows = np.asarray(rows, np.int64)
            batch = _faiss().IDSelectorBatch(rows)
            out[modality] = (_faiss().IDSelectorNot(batch), batch, rows)
    return out


def add_to_index(
    index_dir: str | Path, items: Sequence[dict[str, Any]], vectors: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Append ``items`` (ids not yet in the index) without rebuilding: flat indices grow,
    IVF items go to the trained lists. Returns the new ``index.json``."""
    cat = Catalogue.load(index_dir, mmap=False)
    root = Path(index_dir)
    new_ids = [str(item["id"]) for item in items]
    clash = sorted(set(new_ids) & set(cat.ids)) or sorted(
        {i for i in new_ids if new_ids.count(i) > 1}
    )
    if clash:
        raise SearchError(f"ids already in the index or repeated: {', '.join(clash[:5])}")
    if sorted(vectors) != cat.modalities:
        raise SearchError(
            f"new items have modalities {sorted(vectors)}, the index {cat.modalities}"
        )
    for modality in cat.modalities:
        x = _unit_rows(vectors[modality], modality)
        if x.shape != (len(new_ids), cat.meta["dim"]):
            raise SearchError(f"{modality}: vectors {x.shape}, expected ({len(new_ids)}, dim)")
        index = cat.indices[modality]
        index.add(x)
        _write_npy(np.concatenate([np.asarray(cat.vectors[modality]), x]), root / f"{modality}.npy")
        _write_faiss(index, root / f"{modality}.faiss")
    table = pa.concat_tables([cat.items, _items_table(items)])
    with atomic_path(root / ITEMS_FILE) as tmp:
        pq.write_table(table, tmp)
    meta = {**cat.meta, "count": table.num_rows}
    atomic_write_json(root / INDEX_FILE, meta)
    return meta


def index_bytes(index_dir: str | Path, modality: str) -> int:
    """Size on disk of ``modality``'s FAISS file (what a query needs in memory)."""
    return os.path.getsize(Path(index_dir) / f"{modality}.faiss")
