"""Id mapping and metadata fetch against a loopback fake server (never the real network)."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from test_youtube8m_fakes import FakeYouTube, make_item

from data_prep.youtube8m import api
from data_prep.youtube8m.jsonl import read_jsonl

KEY = "AIzaFAKE-secret_key.123"


def fast_policy(**kw):
    """Real backoff arithmetic, but sleeps recorded instead of slept (the timeouts are real)."""
    sleeps: list[float] = []
    defaults = {"max_attempts": 4, "base_delay": 0.5, "timeout": 0.3, "sleep": sleeps.append}
    return api.RetryPolicy(**{**defaults, **kw}), sleeps


def yt(i: int) -> str:
    return f"vid{i:08d}"


PSEUDO = [f"P{i:03d}" for i in range(12)]


@pytest.fixture
def fake():
    id_map = {p: yt(i) for i, p in enumerate(PSEUDO) if i not in (3, 7)}
    videos = {yt(i): make_item(yt(i)) for i in range(130) if i != 5}
    with FakeYouTube(id_map, videos, KEY, slow_s=0.8) as server:
        yield server


def test_jsonp_parsing():
    assert api.parse_id_jsonp('i("Ab12","dQw4w9WgXcQ");', "Ab12") == "dQw4w9WgXcQ"
    assert api.parse_id_jsonp(' i( "Ab12" , "dQw4w9WgXcQ" ) \n', "Ab12") == "dQw4w9WgXcQ"
    for bad, match in [
        ('i("Xy12","dQw4w9WgXcQ");', "not 'Ab12'"),
        ('i("Ab12","short");', "not a YouTube video id"),
        ("<html>", "unexpected"),
    ]:
        with pytest.raises(ValueError, match=match):
            api.parse_id_jsonp(bad, "Ab12")
    assert api.pseudo_id_url("http://h/2/j/i/", "Ab12") == "http://h/2/j/i/Ab/Ab12.js"


def test_id_mapping_with_retries_and_resume(fake, tmp_path):
    out = tmp_path / "id_map.jsonl"
    fake.id_failures = {"P000": ["500", "500"], "P001": ["slow"], "P002": ["garbage"]}
    policy, sleeps = fast_policy()
    s = api.map_pseudo_ids(
        PSEUDO[:8] + ["bad/id"],
        out,
        base_url=fake.url + "/2/j/i",
        policy=policy,
        workers=3,
        progress=False,
    )
    got = api.read_id_map(out)
    assert got["P000"] == yt(0) and got["P001"] == yt(1)  # recovered after 500s / a timeout
    assert got["P003"] is None and got["P007"] is None  # 404: recorded as missing
    assert got["P002"] is None  # garbage answer: recorded with its reason
    lines = {e["pseudo_id"]: e for e in read_jsonl(out)}
    assert lines["P003"]["reason"] == "HTTP 404"
    assert "unexpected id-mapping answer" in lines["P002"]["reason"]
    assert lines["bad/id"]["reason"] == "invalid pseudo id"
    assert (s.done, s.missing, s.failed) == (5, 4, 0)
    assert len(sleeps) == 3 and all(0.25 <= x <= 1.0 for x in sleeps[:1])
    assert fake.id_requests().count("P000") == 3

    # Resume: only the new ids are requested.
    before = len(fake.id_requests())
    s2 = api.map_pseudo_ids(
        PSEUDO, out, base_url=fake.url + "/2/j/i", policy=policy, workers=2, progress=False
    )
    assert s2.already_done == 8 and s2.done == 4
    assert sorted(fake.id_requests()[before:]) == PSEUDO[8:]


def test_id_mapping_stops_when_the_server_keeps_failing(fake, tmp_path):
    fake.id_failures = {p: ["500"] * 10 for p in PSEUDO}
    policy, _ = fast_policy(max_attempts=2)
    s = api.map_pseudo_ids(
        PSEUDO,
        tmp_path / "m.jsonl",
        base_url=fake.url,
        policy=policy,
        workers=1,
        max_consecutive_failures=3,
        progress=False,
    )
    assert s.exit_code == api.EXIT_QUOTA and "unreachable" in s.stopped
    assert s.failed == 8  # one chunk of 8 ids, then the stop; nothing recorded as missing
    assert list(read_jsonl(tmp_path / "m.jsonl")) == []


def test_metadata_retries_partial_answers_and_missing_ids(fake, tmp_path):
    out = tmp_path / "metadata.jsonl"
    fake.api_failures = ["500", "slow", "garbled", "ratelimit", "ok"]
    fake.drop_ids = {yt(10)}
    policy, sleeps = fast_policy(max_attempts=5)
    ids = [yt(i) for i in range(60)]
    s = api.fetch_metadata(ids, out, KEY, base_url=fake.url, policy=policy, progress=False)
    assert s.exit_code == 0 and s.stopped is None
    assert (s.done, s.missing) == (58, 2)  # yt(5) unknown to the API, yt(10) left out
    meta = api.read_metadata(out)
    assert meta[yt(5)]["status"] == "missing" and "not returned" in meta[yt(5)]["reason"]
    assert meta[yt(10)]["status"] == "missing"
    assert meta[yt(0)]["statistics"]["viewCount"] == "50000"
    assert "thumbnails" not in meta[yt(0)]["snippet"]
    reqs = fake.api_requests()
    assert [len(r["query"]["id"].split(",")) for r in reqs] == [50] * 5 + [10]
    assert len(sleeps) == 4
    # The key travels in a header, never in the URL.
    assert all(r["headers"].get("X-Goog-Api-Key") == KEY and "key" not in r["query"] for r in reqs)


def test_quota_stop_then_resume_without_rerequesting(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "metadata.jsonl"
    fake.quota_left = 2
    policy, _ = fast_policy()
    ids = [yt(i) for i in range(130)]
    s = api.fetch_metadata(
        ids, out, KEY, base_url=fake.url, policy=policy, batch_size=20, progress=False
    )
    assert s.exit_code == api.EXIT_QUOTA
    assert "quota exhausted" in s.stopped and "40 of 130 ids done" in s.stopped
    assert "Quota resets at midnight Pacific time" in s.stopped
    done_first = {e["youtube_id"] for e in read_jsonl(out)}
    assert done_first == set(ids[:40])

    # A crash while appending leaves a torn line: the resume must cope.
    with out.open("ab") as f:
        f.write(b'{"youtube_id": "vid000000')
    fake.quota_left = None
    n_before = len(fake.api_requests())
    s2 = api.fetch_metadata(
        ids, out, KEY, base_url=fake.url, policy=policy, batch_size=20, progress=False
    )
    assert s2.exit_code == 0 and s2.already_done == 40 and s2.done + s2.missing == 90
    again = fake.requested_video_ids()[-90:]
    assert sorted(again) == ids[40:]
    assert not set(again) & done_first
    assert len(fake.api_requests()) - n_before == 5
    lines = out.read_text().splitlines()
    assert len(lines) == 130 and all(json.loads(x) for x in lines)

    # The key is nowhere: not in outputs, not in logs.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace")
    assert KEY not in caplog.text


def test_invalid_key_error_is_redacted(fake, tmp_path):
    policy, _ = fast_policy()
    wrong = "AIzaWRONG-but-still+secret"
    with pytest.raises(api.ApiError) as err:
        api.fetch_metadata(
            [yt(1)], tmp_path / "m.jsonl", wrong, base_url=fake.url, policy=policy, progress=False
        )
    msg = str(err.value)
    assert "HTTP 400" in msg and "keyInvalid" in msg
    assert wrong not in msg and "***" in msg
    # the same with the key in the query string (echoed back URL-decoded)
    with pytest.raises(api.ApiError) as err:
        api.fetch_metadata(
            [yt(1)],
            tmp_path / "m.jsonl",
            wrong,
            base_url=fake.url,
            policy=policy,
            key_in_query=True,
            progress=False,
        )
    assert wrong not in str(err.value)


def test_key_in_query_works(fake, tmp_path):
    policy, _ = fast_policy()
    s = api.fetch_metadata(
        [yt(1), yt(2)],
        tmp_path / "m.jsonl",
        KEY,
        base_url=fake.url,
        policy=policy,
        key_in_query=True,
        progress=False,
    )
    assert s.done == 2 and fake.api_requests()[0]["query"]["key"] == KEY


def test_budget_and_consecutive_failures_stop_cleanly(fake, tmp_path):
    policy, _ = fast_policy(max_attempts=2)
    ids = [yt(i) for i in range(100)]
    s = api.fetch_metadata(
        ids,
        tmp_path / "a.jsonl",
        KEY,
        base_url=fake.url,
        policy=policy,
        batch_size=10,
        max_requests=3,
        progress=False,
    )
    assert s.exit_code == api.EXIT_QUOTA and s.requests == 3 and s.done + s.missing == 30
    fake.api_failures = ["500"] * 20
    s = api.fetch_metadata(
        ids,
        tmp_path / "b.jsonl",
        KEY,
        base_url=fake.url,
        policy=policy,
        batch_size=10,
        max_consecutive_failures=2,
        progress=False,
    )
    assert s.exit_code == api.EXIT_QUOTA and "2 batches in a row" in s.stopped
    assert s.failed == 20 and list(read_jsonl(tmp_path / "b.jsonl")) == []


def test_next_quota_reset_is_pacific_midnight():
    # 2023-07-10 20:00 UTC = 13:00 PDT -> reset 2023-07-11 00:00 PDT = 07:00 UTC
    now = dt.datetime(2023, 7, 10, 20, 0, tzinfo=dt.timezone.utc)
    assert api.next_quota_reset(now) == dt.datetime(2023, 7, 11, 7, 0, tzinfo=dt.timezone.utc)
    winter = dt.datetime(2023, 1, 10, 9, 0, tzinfo=dt.timezone.utc)  # 01:00 PST
    assert api.next_quota_reset(winter) == dt.datetime(2023, 1, 11, 8, 0, tzinfo=dt.timezone.utc)


def test_api_key_comes_from_the_environment_only():
    assert api.api_key_from_env("MY_KEY", {"MY_KEY": " abc "}) == "abc"
    with pytest.raises(api.ApiError, match="set the environment variable MY_KEY"):
        api.api_key_from_env("MY_KEY", {})


def test_urllib_client_reports_transport_errors_without_the_url():
    client = api.UrllibClient()
    with pytest.raises(api.TransportError) as err:
        # port 9 on loopback: nothing listens there (connection refused, no network used)
        client.get("http://127.0.0.1:9/videos", params={"key": KEY}, timeout=2)
    assert KEY not in str(err.value)
