"""The raw-corpus layout: records, validation, atomic reading and writing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import TEST_DATA

from trimodal.prepare.corpus import (
    MUSIC45_LABELS,
    CorpusError,
    VideoRecord,
    is_safe_video_id,
    read_corpus,
    record_problems,
    write_corpus,
)


def test_music45_labels_match_the_reference_list_in_order():
    with open(TEST_DATA / "youtube8m" / "music45_labels.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["order_in_select_music_labels_txt"]))
    assert list(MUSIC45_LABELS) == [r["Name"] for r in rows]
    listed = (TEST_DATA / "youtube8m" / "select-music-labels.txt").read_text()
    assert list(MUSIC45_LABELS) == [x.strip() for x in listed.splitlines() if x.strip()]


def _record(i: int, **kw) -> VideoRecord:
    base = dict(
        video_id=f"vid{i}",
        media=f"media/vid{i}.mp4",
        labels=["Music video", "Guitar"],
        tags=["live", "rock band"],
        title=f"Title {i}",
        published_at="2012-05-01",
        duration_s=31.5,
    )
    base.update(kw)
    return VideoRecord(**base)


def test_write_read_round_trip(tmp_path: Path):
    records = [_record(0), _record(1, split="dev", audio="media/vid1.m4a", extra={"views": 10})]
    write_corpus(tmp_path, records)
    assert read_corpus(tmp_path) == records
    lines = (tmp_path / "videos.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["labels"] == ["Music video", "Guitar"]  # multi-word kept


def test_write_refuses_duplicates_and_leaves_the_old_file(tmp_path: Path):
    write_corpus(tmp_path, [_record(0)])
    before = (tmp_path / "videos.jsonl").read_text()
    with pytest.raises(CorpusError, match="duplicate"):
        write_corpus(tmp_path, [_record(1), _record(1)])
    assert (tmp_path / "videos.jsonl").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["videos.jsonl"]  # no temp file left


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"labels": "Guitar"}, "labels"),
        ({"published_at": "May 2012"}, "ISO"),
        ({"duration_s": -1}, "duration_s"),
        ({"split": "validation"}, "split"),
        ({"video_id": ""}, "video_id"),
        ({"media": None}, "media"),
    ],
)
def test_malformed_fields_are_refused(bad, match):
    with pytest.raises(CorpusError, match=match):
        _record(0, **bad)


def test_read_reports_line_numbers_or_collects_errors(tmp_path: Path):
    good = json.dumps(_record(0).to_dict())
    (tmp_path / "videos.jsonl").write_text(
        good + "\n{not json\n" + json.dumps({"video_id": "x", "media": "m", "colour": 1}) + "\n"
        + good + "\n"
    )  # fmt: skip
    with pytest.raises(CorpusError, match=r"videos.jsonl:2"):
        read_corpus(tmp_path)
    errors: list = []
    assert [r.video_id for r in read_corpus(tmp_path, errors=errors)] == ["vid0"]
    assert [e["line"] for e in errors] == [2, 3, 4]
    assert "unknown field" in errors[1]["reason"] and "duplicate" in errors[2]["reason"]


def test_record_problems(tmp_path: Path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "vid0.mp4").write_bytes(b"x" * 10)
    (tmp_path / "media" / "vid1.mp4").touch()
    assert record_problems(_record(0), tmp_path) == []
    assert record_problems(_record(1), tmp_path)[0].startswith("empty_media")
    assert record_problems(_record(2), tmp_path)[0].startswith("missing_media")
    assert record_problems(_record(0, labels=["Kazoo"]), tmp_path)[0].startswith("unknown_label")
    assert record_problems(_record(0, labels=["Kazoo"]), known_labels=None) == []
    assert record_problems(_record(0, video_id="../x"))[0].startswith("unsafe_id")


@pytest.mark.parametrize("vid", ["../etc", "a/b", "..", ".hidden", "a\\b", "x" * 300, "é"])
def test_unsafe_ids(vid):
    assert not is_safe_video_id(vid)


@pytest.mark.parametrize("vid", ["dQw4w9WgXcQ", "-0CMnp02rNY", "abc-_1", "synth0_00001", "a.b"])
def test_safe_ids(vid):
    assert is_safe_video_id(vid)
