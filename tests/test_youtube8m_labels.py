"""Selecting YouTube-8M labels from vocabulary.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import TEST_DATA

from data_prep.__main__ import main
from data_prep.youtube8m.labels import (
    LabelSelectionError,
    load_labels,
    load_vocabulary,
    read_label_list,
    select_labels,
)
from trimodal.prepare.corpus import MUSIC45_LABELS

REFERENCE = TEST_DATA / "youtube8m"
# The official vocabulary with its WikiDescription column emptied (see tests/data/README.md).
VOCAB = REFERENCE / "vocabulary.csv"

HEADER = [
    "Index",
    "TrainVideoCount",
    "KnowledgeGraphId",
    "Name",
    "WikiUrl",
    "Vertical1",
    "Vertical2",
    "Vertical3",
    "WikiDescription",
]


def write_vocab(path: Path, names: list[str]) -> Path:
    """A vocabulary.csv in the official column layout (commas and quotes included)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, name in enumerate(names):
            w.writerow(
                [
                    i,
                    1000 - i,
                    f"/m/{i:04x}",
                    name,
                    "",
                    "Arts & Entertainment",
                    "",
                    "",
                    f'A "{name}", described, with commas.',
                ]
            )
    return path


def test_small_vocabulary_by_name_index_and_kg_id(tmp_path):
    vocab = load_vocabulary(write_vocab(tmp_path / "v.csv", ["Game", "Guitar", "Music video"]))
    assert [e.name for e in vocab] == ["Game", "Guitar", "Music video"]
    assert vocab[2].verticals == ("Arts & Entertainment",)
    got = select_labels(vocab, ["Music video", 1, "/m/0000", "music VIDEO", "1"])
    # vocabulary order is not imposed: the user's order is kept, duplicates dropped
    assert [e.index for e in got] == [2, 1, 0]


def test_unknown_labels_list_near_matches(tmp_path):
    vocab = load_vocabulary(write_vocab(tmp_path / "v.csv", ["Guitar", "Electric guitar", "Drum"]))
    with pytest.raises(LabelSelectionError) as err:
        select_labels(vocab, ["Guitarr", "Drum", "Xylophone", 99])
    msg = str(err.value)
    assert "3 unknown label(s)" in msg
    assert "'Guitarr': no such label; did you mean 'Guitar'" in msg
    assert (
        "'Xylophone': no such label" in msg
        and "did you mean" not in msg.split("Xylophone")[1].split("\n")[0]
    )
    assert "index 99" in msg


def test_label_list_files(tmp_path):
    (tmp_path / "names.txt").write_text("# my labels\nGuitar\n\n  Drum  \n3\n")
    assert read_label_list(tmp_path / "names.txt") == ["Guitar", "Drum", "3"]
    with (tmp_path / "sel.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["order", "Name", "Index"], [0, "Drum", 2], [1, "Guitar", 0]])
    assert read_label_list(tmp_path / "sel.csv") == ["Drum", "Guitar"]
    with pytest.raises(LabelSelectionError, match="not found"):
        read_label_list(tmp_path / "nope.txt")


def test_malformed_vocabulary_is_refused(tmp_path):
    (tmp_path / "v.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LabelSelectionError, match="missing column"):
        load_vocabulary(tmp_path / "v.csv")


def test_default_is_the_studys_45_music_labels():
    vocab = load_vocabulary(VOCAB)
    assert len(vocab) == 3862
    got = select_labels(vocab)
    assert [e.name for e in got] == list(MUSIC45_LABELS)
    with (REFERENCE / "music45_labels.csv").open(newline="") as f:
        ref = {row["Name"]: row for row in csv.DictReader(f)}
    for e in got:
        assert e.index == int(ref[e.name]["Index"])
        assert e.knowledge_graph_id == ref[e.name]["KnowledgeGraphId"]
        assert "Arts & Entertainment" in e.verticals
    # the same list from the study's CSV file
    assert select_labels(vocab, read_label_list(REFERENCE / "music45_labels.csv")) == got


def test_cli_writes_labels_json(tmp_path, capsys):
    assert main(["yt8m-labels", "--vocabulary", str(VOCAB), "--work-dir", str(tmp_path)]) == 0
    labels = load_labels(tmp_path / "labels.json")
    assert len(labels) == 45 and labels[31].name == "Guitar Hero"
    assert json.loads((tmp_path / "labels.json").read_text())["labels"][0]["name"] == "Concert"
    rc = main(
        [
            "yt8m-labels",
            "--vocabulary",
            str(VOCAB),
            "--work-dir",
            str(tmp_path),
            "--label",
            "Guitar",
            "--label",
            "Pianno",
        ]
    )
    assert rc == 2
    assert "did you mean 'Piano'" in capsys.readouterr().err
    # the failed run did not overwrite the earlier selection
    assert len(load_labels(tmp_path / "labels.json")) == 45
