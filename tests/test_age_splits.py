"""The split by age: one rule, the same answer from ``prepare`` and from ``yt8m-filter``.

Every case of :data:`CASES` runs through the library function
(:func:`trimodal.prepare.splits.age_split`), through ``yt8m-filter``'s path
(:func:`data_prep.youtube8m.filters.run_filter`, which writes ``selected.jsonl`` /
``excluded.jsonl``) and through ``prepare``'s path (:func:`trimodal.prepare.assign_split` on a
``split_by: age`` config, and a real :func:`trimodal.prepare.prepare` run that records its
skips in ``skipped.jsonl``). The rule is the study's (docs/research.md#trimodal-study-data):
test 7–8 years old on 2023-01-01, dev 8–8.5, train older, younger videos excluded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from data_fixtures import SMALL
from test_youtube8m_fakes import make_item

from data_prep.youtube8m.filters import FilterConfig, run_filter
from trimodal.config import DataConfig
from trimodal.data.schema import load_split
from trimodal.prepare import PrepareError, VideoRecord, VideoSkipped, assign_split, prepare
from trimodal.prepare.corpus import read_corpus, write_corpus
from trimodal.prepare.splits import AgeSplit, age_split, subtract_months
from trimodal.prepare.synthetic import generate_corpus

# (published, reference date, split or exclusion reason): each boundary on its documented side
# of the half-open ranges [min, max), ages in calendar months.
CASES = [
    ("2020-06-15", "2023-01-01", "too_recent"),  # the case: prepare said "test"
    ("2016-01-02", "2023-01-01", "too_recent"),  # one day short of 7 years
    ("2016-01-01", "2023-01-01", "test"),  # exactly 7: the lower bound is inclusive
    ("2015-06-01", "2023-01-01", "test"),
    ("2015-01-02", "2023-01-01", "test"),  # one day short of 8
    ("2015-01-01", "2023-01-01", "dev"),  # exactly 8: dev, not test
    ("2014-07-02", "2023-01-01", "dev"),  # the case: 365.25-day years said "train"
    ("2014-07-01", "2023-01-01", "train"),  # exactly 8.5 (102 months): train
    ("2005-04-23", "2023-01-01", "train"),
    ("2016-02-29", "2023-01-01", "too_recent"),  # a leap day, 6 years 10 months old
    ("2016-02-29", "2023-02-28", "too_recent"),  # 7 years before is 2016-02-28
    ("2016-02-29", "2023-03-01", "test"),  # 7 years before is 2016-03-01
    ("2016-02-29", "2024-02-29", "dev"),  # exactly 8, leap day to leap day
    ("2016-02-29", "2024-08-29", "train"),  # exactly 8.5
    ("2017-02-28", "2024-02-29", "test"),  # 7 years before a leap day: clamped to 02-28
    ("2017-03-01", "2024-02-29", "too_recent"),
]
IDS = [f"{p}@{r}" for p, r, _ in CASES]


def _library(published: str, reference: str) -> str:
    verdict = age_split(dt.date.fromisoformat(published), dt.date.fromisoformat(reference))
    return verdict.split or verdict.reason


def _filter_command(published: str, reference: str, out: Path) -> str:
    """What ``yt8m-filter`` writes for one video published on ``published``."""
    item = make_item("aaaaaaaaaaa", published=f"{published}T12:00:00Z")
    meta = {"status": "ok", **{k: item[k] for k in ("snippet", "contentDetails", "statistics")}}
    config = FilterConfig(reference_date=dt.date.fromisoformat(reference))
    run_filter(
        [{"pseudo_id": "Pa01", "labels": [1]}],
        {"Pa01": item["id"]},
        {item["id"]: meta},
        out,
        config,
    )
    selected = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    excluded = [json.loads(x) for x in (out / "excluded.jsonl").read_text().splitlines()]
    if selected:
        return selected[0]["split"]
    (reason,) = excluded[0]["reasons"]  # the age is the only thing wrong with it
    return reason.split(":", 1)[0]


def _prepare_split(published: str, reference: str) -> str:
    record = VideoRecord(video_id="x", media="m", published_at=published)
    try:
        return assign_split(record, DataConfig(split_by="age", reference_date=reference))
    except VideoSkipped as skipped:
        return skipped.reason


@pytest.mark.parametrize(("published", "reference", "expected"), CASES, ids=IDS)
def test_both_commands_split_by_the_same_calendar_rule(published, reference, expected, tmp_path):
    assert _library(published, reference) == expected
    assert _filter_command(published, reference, tmp_path) == expected
    assert _prepare_split(published, reference) == expected


def test_the_reasons_and_details_are_the_same_in_both():
    config = FilterConfig()
    assert config.split_for(dt.date(2020, 6, 15)) == (
        None,
        "too_recent: younger than 7 years on 2023-01-01",
    )
    with pytest.raises(VideoSkipped) as skipped:
        assign_split(
            VideoRecord(video_id="x", media="m", published_at="2020-06-15T08:00:00Z"),
            DataConfig(split_by="age"),
        )
    assert (skipped.value.reason, skipped.value.detail) == (
        "too_recent",
        "younger than 7 years on 2023-01-01",
    )


def test_too_old_and_gaps_between_custom_ranges():
    splits = (AgeSplit("test", 1, 2), AgeSplit("dev", 3, 4))
    ref = dt.date(2020, 3, 31)
    assert age_split(dt.date(2019, 3, 31), ref, splits).split == "test"
    assert age_split(dt.date(2017, 9, 1), ref, splits).reason == "age_between_splits"
    old = age_split(dt.date(2016, 3, 31), ref, splits)  # exactly 4: past dev's [3, 4)
    assert (old.reason, old.reason_text()) == (
        "too_old",
        "too_old: at least 4 years old on 2020-03-31",
    )
    assert subtract_months(dt.date(2024, 2, 29), 12) == dt.date(2023, 2, 28)


def test_prepare_config_bounds_are_checked_and_a_zero_minimum_keeps_young_videos(tmp_path):
    young = VideoRecord(video_id="x", media="m", published_at="2020-06-15")
    assert assign_split(young, DataConfig(split_by="age", test_min_age_years=0)) == "test"
    assert assign_split(young, DataConfig(split_by="hash")) in ("train", "dev", "test")
    undated = VideoRecord(video_id="x", media="m")  # no date: the hash decides, not skipped
    assert assign_split(undated, DataConfig(split_by="age")) == assign_split(undated, DataConfig())
    bad = DataConfig(split_by="age", test_min_age_years=8.0)  # test would be [8, 8)
    with pytest.raises(PrepareError, match="age splits"):
        prepare(tmp_path, tmp_path / "out", bad, show_progress=False)


def test_prepare_records_age_exclusions_in_skipped_jsonl(tmp_path):
    corpus = tmp_path / "corpus"
    dates = ["2020-06-15", "2014-07-02", "2016-01-01", "2014-07-01"]
    generate_corpus(corpus, len(dates), seed=3, opts=dataclasses.replace(SMALL, max_seconds=16.0))
    records = read_corpus(corpus)
    for record, date in zip(records, dates):
        record.split, record.published_at = None, date
    write_corpus(corpus, records)
    config = DataConfig(clip_seconds=4.0, split_by="age", sparse_train=False, prepare_workers=1)
    summary = prepare(corpus, tmp_path / "out", config, show_progress=False)

    skipped = [json.loads(x) for x in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert skipped == [
        {
            "video_id": records[0].video_id,
            "reason": "too_recent",
            "detail": "younger than 7 years on 2023-01-01",
        }
    ]
    assert summary["skipped_by_reason"] == {"too_recent": 1}
    for split, record in (("dev", records[1]), ("test", records[2]), ("train", records[3])):
        ids = set(load_split(tmp_path / "out" / split)[0]["video_id"])
        assert ids == {record.video_id}, split
