"""ISO-8601 durations, quality filters with reasons, and age splits at their boundaries."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from test_youtube8m_fakes import make_item

from data_prep.youtube8m.filters import (
    DurationError,
    FilterConfig,
    evaluate,
    parse_iso8601_duration,
    run_filter,
)
from trimodal.prepare.splits import AgeSplit, subtract_months


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT5M", 300),  # the research parser dropped this one (no seconds part)
        ("PT1H2M3S", 3723),
        ("PT45S", 45),
        ("P1DT2H", 93600),
        ("PT0S", 0),
        ("P0D", 0),  # what the API reports for live streams
        ("PT1H", 3600),
        ("PT10M0S", 600),
        ("PT4M13S", 253),
        ("P1W", 604800),
        ("PT1.5S", 1.5),
        ("pt2m", 120),
        (" PT1M1S ", 61),
    ],
)
def test_durations(text, seconds):
    assert parse_iso8601_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "P", "PT", "5M", "PT5", "PT5X", "P1DT", "PTM", "-PT5M", "PT5M3H", "garbage", "1:23"],
)
def test_garbage_durations_raise(text):
    with pytest.raises(DurationError, match="not an ISO-8601 duration"):
        parse_iso8601_duration(text)


def test_calendar_units_are_refused_clearly():
    for text in ("P1Y", "P2M", "P1Y2M3DT4H"):
        with pytest.raises(DurationError, match="years and months"):
            parse_iso8601_duration(text)
    with pytest.raises(DurationError, match="must be a string"):
        parse_iso8601_duration(300)


def meta(**kw):
    item = make_item("aaaaaaaaaaa", **kw)
    return {
        "youtube_id": item["id"],
        "status": "ok",
        **{k: item[k] for k in ("snippet", "contentDetails", "statistics")},
    }


def test_filters_pass_and_fail_with_every_reason():
    cfg = FilterConfig()
    ok = evaluate(meta(), cfg)
    assert ok["reasons"] == [] and ok["split"] == "train" and ok["duration_s"] == 200
    assert ok["published_at"] == "2012-06-01"
    # inclusive bounds
    edge = evaluate(meta(duration="PT1M40S", views=10_000, likes=100, comments=5), cfg)
    assert edge["reasons"] == []
    assert evaluate(meta(duration="PT8M32S"), cfg)["reasons"] == []
    bad = evaluate(meta(duration="PT99S", views=9_999, likes=99, comments=4), cfg)
    codes = [r.split(":")[0] for r in bad["reasons"]]
    assert codes == ["too_short", "few_views", "few_likes", "few_comments"]
    assert bad["split"] is None
    assert evaluate(meta(duration="PT8M33S"), cfg)["reasons"][0].startswith("too_long: 513 s")
    assert evaluate(meta(duration="PT5M"), cfg)["reasons"] == []  # 300 s: kept


def test_missing_statistics_and_bad_fields_are_reasons_not_crashes():
    cfg = FilterConfig()
    hidden = evaluate(meta(likes=None, comments=None), cfg)
    assert [r.split(":")[0] for r in hidden["reasons"]] == ["missing_likes", "missing_comments"]
    m = meta()
    m["contentDetails"]["duration"] = "3 minutes"
    m["snippet"]["publishedAt"] = "yesterday"
    reasons = evaluate(m, cfg)["reasons"]
    assert reasons[0].startswith("invalid_duration: '3 minutes' is not an ISO-8601")
    assert reasons[1].startswith("invalid_date")
    assert [r.split(":")[0] for r in evaluate({"status": "ok"}, cfg)["reasons"]] == [
        "missing_duration",
        "missing_views",
        "missing_likes",
        "missing_comments",
        "missing_date",
    ]
    # thresholds can be switched off
    off = FilterConfig(min_likes=None, min_comments=None)
    assert evaluate(meta(likes=None, comments=None), off)["reasons"] == []


@pytest.mark.parametrize(
    ("published", "split"),
    [
        ("2016-01-02T00:00:00Z", None),  # 6.99 years: too recent
        ("2016-01-01T23:59:59Z", "test"),  # exactly 7 (by date): test
        ("2015-06-15T08:00:00Z", "test"),
        ("2015-01-02T00:00:00Z", "test"),
        ("2015-01-01T00:00:00Z", "dev"),  # exactly 8: dev ([8, 8.5))
        ("2014-07-02T00:00:00Z", "dev"),
        ("2014-07-01T00:00:00Z", "train"),  # exactly 8.5: train
        ("2005-04-23T00:00:00Z", "train"),
    ],
)
def test_age_splits_at_the_boundaries(published, split):
    result = evaluate(meta(published=published), FilterConfig())
    assert result["split"] == split
    if split is None:
        assert result["reasons"] == ["too_recent: younger than 7 years on 2023-01-01"]


def test_custom_splits_gaps_and_validation():
    cfg = FilterConfig(
        reference_date=dt.date(2020, 3, 31),
        splits=(AgeSplit("test", 1, 2), AgeSplit("train", 3)),
    )
    assert cfg.split_for(dt.date(2017, 9, 1)) == (
        None,
        "age_between_splits: age outside every split",
    )
    assert cfg.split_for(dt.date(2018, 6, 1))[0] == "test"
    assert cfg.split_for(dt.date(2017, 3, 31))[0] == "train"
    assert cfg.split_for(dt.date(2019, 3, 31))[0] == "test"
    assert cfg.split_for(dt.date(2019, 4, 1))[1].startswith("too_recent")
    with pytest.raises(ValueError, match="overlap"):
        FilterConfig(splits=(AgeSplit("a", 1, 3), AgeSplit("b", 2, math.inf)))
    with pytest.raises(ValueError, match="whole months"):
        FilterConfig(splits=(AgeSplit("a", 1.01, 2),))
    assert subtract_months(dt.date(2023, 3, 31), 1) == dt.date(2023, 2, 28)
    assert subtract_months(dt.date(2023, 1, 1), 102) == dt.date(2014, 7, 1)


def test_run_filter_writes_selection_manifest_and_summary(tmp_path):
    index = [
        {"pseudo_id": p, "labels": ["Guitar"]}
        for p in ("Aa01", "Aa02", "Aa03", "Aa04", "Aa05", "Aa06")
    ]
    id_map = {
        "Aa01": "yt000000001",
        "Aa02": None,
        "Aa03": "yt000000003",
        "Aa04": "yt000000004",
        "Aa05": "yt000000001",
    }
    metadata = {
        "yt000000001": meta(published="2015-03-01T00:00:00Z"),
        "yt000000003": {"youtube_id": "yt000000003", "status": "missing", "reason": "gone"},
    }
    s = run_filter(index, id_map, metadata, tmp_path, FilterConfig())
    selected = [json.loads(x) for x in (tmp_path / "selected.jsonl").read_text().splitlines()]
    excluded = {
        e["pseudo_id"]: e
        for e in map(json.loads, (tmp_path / "excluded.jsonl").read_text().splitlines())
    }
    assert [(v["pseudo_id"], v["youtube_id"], v["split"]) for v in selected] == [
        ("Aa01", "yt000000001", "test")
    ]
    assert selected[0]["tags"] == ["live", "rock band"] and selected[0]["duration_s"] == 200
    assert excluded["Aa02"]["reasons"][0].startswith("no_youtube_id")
    assert excluded["Aa03"]["reasons"] == ["unavailable: gone"]
    assert excluded["Aa04"]["reasons"][0].startswith("not_fetched")
    assert excluded["Aa05"]["reasons"][0].startswith("duplicate")
    assert excluded["Aa06"]["reasons"][0].startswith("not_mapped")
    # every video in exactly one place
    assert len(selected) + len(excluded) == len(index)
    summary = json.loads((tmp_path / "filter_summary.json").read_text())
    assert summary == s and summary["splits"] == {"test": 1}
    assert summary["config"]["splits"][2] == {"name": "train", "min_years": 8.5, "max_years": None}
