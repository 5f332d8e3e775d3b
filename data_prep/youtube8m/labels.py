"""Choose which YouTube-8M labels a corpus keeps.

The vocabulary is the official ``vocabulary.csv`` (columns Index, TrainVideoCount,
KnowledgeGraphId, Name, WikiUrl, Vertical1..3, WikiDescription). By default the 45 music labels
of the trimodal study are selected (:data:`trimodal.prepare.corpus.MUSIC45_LABELS`); any other list can
be given as names, vocabulary indices or Knowledge Graph ids, inline or from a file.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trimodal.prepare.corpus import MUSIC45_LABELS

LABELS_FILE_VERSION = 1


class LabelSelectionError(ValueError):
    """A label that is not in the vocabulary, or a malformed vocabulary / label file."""


@dataclasses.dataclass(frozen=True)
class LabelEntry:
    """One row of ``vocabulary.csv`` (the fields the pipeline uses)."""

    index: int
    name: str
    knowledge_graph_id: str = ""
    train_video_count: int = 0
    verticals: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as stored in ``labels.json``)."""
        d = dataclasses.asdict(self)
        d["verticals"] = list(self.verticals)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelEntry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(d["index"]),
            name=str(d["name"]),
            knowledge_graph_id=str(d.get("knowledge_graph_id", "")),
            train_video_count=int(d.get("train_video_count", 0)),
            verticals=tuple(d.get("verticals", ())),
        )


def load_vocabulary(path: str | Path) -> list[LabelEntry]:
    """Read ``vocabulary.csv``; raises :class:`LabelSelectionError` naming a bad row."""
    path = Path(path)
    if not path.is_file():
        raise LabelSelectionError(f"vocabulary file not found: {path}")
    entries = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"Index", "Name"} - set(reader.fieldnames or [])
        if missing:
            raise LabelSelectionError(
                f"{path}: not a YouTube-8M vocabulary (missing column(s) {sorted(missing)})"
            )
        for row_no, row in enumerate(reader, start=2):
            try:
                index = int(row["Index"])
                count = int(row.get("TrainVideoCount") or 0)
            except (TypeError, ValueError) as err:
                raise LabelSelectionError(f"{path}:{row_no}: bad Index/TrainVideoCount") from err
            verticals = tuple(
                v for v in (row.get(f"Vertical{i}") or "" for i in (1, 2, 3)) if v.strip()
            )
            entries.append(
                LabelEntry(
                    index=index,
                    name=(row.get("Name") or "").strip(),
                    knowledge_graph_id=(row.get("KnowledgeGraphId") or "").strip(),
                    train_video_count=count,
                    verticals=verticals,
                )
            )
    indices = [e.index for e in entries]
    if len(set(indices)) != len(indices):
        raise LabelSelectionError(f"{path}: duplicate Index values")
    return entries


def read_label_list(path: str | Path) -> list[str]:
    """Read a list of labels to select.

    A ``.csv`` file with a ``Name`` column (or else an ``Index`` column) gives that column,
    e.g. ``music45_labels.csv``. Any other file holds one label per line: a name, a vocabulary
    index or a Knowledge Graph id (``/m/...``); blank lines and lines starting with ``#`` are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelSelectionError(f"label list not found: {path}")
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for column in ("Name", "Index"):
                if column in (reader.fieldnames or []):
                    return [row[column].strip() for row in reader if (row[column] or "").strip()]
        raise LabelSelectionError(f"{path}: a CSV label list needs a Name or Index column")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        # Only whole-line comments: a label name could contain "#".
        line = line.strip()
        if line and not line.startswith("#"):
            items.append(line)
    return items


def select_labels(
    vocabulary: Sequence[LabelEntry], wanted: Iterable[str | int] | None = None
) -> list[LabelEntry]:
    """Look up ``wanted`` labels (default: the study's 45) in ``vocabulary``, keeping its order.

    Each item is a name (exact; else a unique case-insensitive match), a vocabulary index
    (int or digit string) or a Knowledge Graph id. Duplicates are dropped.

    Raises:
        LabelSelectionError: listing every unknown item with its closest vocabulary names.
    """
    wanted = list(MUSIC45_LABELS if wanted is None else wanted)
    if not wanted:
        raise LabelSelectionError("no labels selected")
    by_name = {e.name: e for e in vocabulary}
    by_lower: dict[str, list[LabelEntry]] = {}
    for e in vocabulary:
        by_lower.setdefault(e.name.lower(), []).append(e)
    by_index = {e.index: e for e in vocabulary}
    by_kg = {e.knowledge_graph_id: e for e in vocabulary if e.knowledge_graph_id}
    selected: list[LabelEntry] = []
    problems: list[str] = []
    for item in wanted:
        entry = None
        if isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            entry = by_index.get(int(item))
            if entry is None:
                problems.append(f"index {item}: not in the vocabulary (0..{max(by_index)})")
                continue
        else:
            text = str(item).strip()
            entry = by_name.get(text) or by_kg.get(text)
            if entry is None and len(by_lower.get(text.lower(), [])) == 1:
                entry = by_lower[text.lower()][0]
            if entry is None:
                near = difflib.get_close_matches(text, list(by_name), n=5, cutoff=0.6)
                hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
                problems.append(f"{text!r}: no such label{hint}")
                continue
        if entry not in selected:
            selected.append(entry)
    if problems:
        raise LabelSelectionError(f"{len(problems)} unknown label(s):\n  " + "\n  ".join(problems))
    return selected


def save_labels(path: str | Path, labels: Sequence[LabelEntry], vocabulary: str | Path) -> Path:
    """Write the selection to ``labels.json`` (atomically)."""
    from trimodal.utils import atomic_write_json

    return atomic_write_json(
        path,
        {
            "version": LABELS_FILE_VERSION,
            "vocabulary": str(vocabulary),
            "labels": [e.to_dict() for e in labels],
        },
    )


def load_labels(path: str | Path) -> list[LabelEntry]:
    """Read a ``labels.json`` written by :func:`save_labels`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [LabelEntry.from_dict(d) for d in data["labels"]]
    except FileNotFoundError as err:
        raise LabelSelectionError(
            f"{path} not found: run `python -m data_prep yt8m-labels` first"
        ) from err
    except (ValueError, KeyError, TypeError) as err:
        raise LabelSelectionError(f"{path}: not a labels.json file ({err})") from err
