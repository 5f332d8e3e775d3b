"""The whole chain through the CLI: TFRecords -> labels -> ids -> metadata -> filter -> corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_youtube8m_fakes import (
    FakeYouTube,
    frame_level_records,
    make_item,
    video_level_records,
)
from test_youtube8m_labels import write_vocab

from data_prep.__main__ import main
from data_prep.youtube8m.api import EXIT_QUOTA
from data_prep.youtube8m.labels import LabelEntry
from data_prep.youtube8m.records import run_records
from data_prep.youtube8m.tfrecord import dequantize, write_tfrecord
from trimodal.prepare.corpus import read_corpus, record_problems

KEY = "AIzaPIPELINE-secret-0123456789"
VOCAB = ["Game", "Guitar", "Music video", "Piano", "Video game"]  # indices 0..4


def _write_inputs(root):
    """Three TFRecord files: video level, frame level, and a damaged video-level one."""
    tf = root / "tfrecords"
    tf.mkdir()
    video = [
        ("Pa01", [1, 2]),  # kept -> passes the filters (train)
        ("Pa02", [0]),  # Game only: not a selected label
        ("Pa03", [2, 4]),  # kept -> too short
        ("Pa04", [3]),  # kept -> likes hidden
        ("Pa05", [1]),  # kept -> too recent
        ("Pa06", [1, 3]),  # kept -> test split, media missing
        ("Pa07", [2]),  # kept -> no YouTube id (404 at the mapping site)
    ]
    recs, feats = video_level_records(video, seed=1)
    write_tfrecord(tf / "train0000.tfrecord", recs)
    frames, frame_data = frame_level_records([("Pb01", [3], 4), ("Pb02", [0, 4], 3)], seed=2)
    write_tfrecord(tf / "frames0000.tfrecord", frames)
    bad, bad_feats = video_level_records([("Pc01", [1]), ("Pc02", [2]), ("Pc03", [3])], seed=3)
    path = write_tfrecord(tf / "train0001.tfrecord", bad)
    raw = bytearray(path.read_bytes())
    second = 12 + len(bad[0]) + 4
    raw[second + 30] ^= 0x55  # damage Pc02's payload
    path.write_bytes(bytes(raw[:-7]))  # and cut Pc03 short
    feats.update(bad_feats)
    for pid, (rgb, audio) in frame_data.items():
        feats[pid] = (dequantize(rgb).mean(0), dequantize(audio).mean(0))
    return tf, feats


def _fake_server():
    id_map = {
        "Pa01": "yt_train_01",
        "Pa03": "yt_short_03",
        "Pa04": "yt_nolike04",
        "Pa05": "yt_recent05",
        "Pa06": "yt_test_006",
        "Pb01": "yt_dev_0b01",
        "Pc01": "yt_gone_c01",
    }
    videos = {
        "yt_train_01": make_item(
            "yt_train_01",
            published="2010-05-05T10:00:00Z",
            tags=["guitar", "live music"],
            title="Train video",
        ),
        "yt_short_03": make_item("yt_short_03", duration="PT1M"),
        "yt_nolike04": make_item("yt_nolike04", likes=None),
        "yt_recent05": make_item("yt_recent05", published="2019-01-01T00:00:00Z"),
        "yt_test_006": make_item("yt_test_006", duration="PT5M", published="2015-09-09T00:00:00Z"),
        "yt_dev_0b01": make_item(
            "yt_dev_0b01", duration="PT8M32S", published="2014-12-31T23:00:00Z"
        ),
    }  # yt_gone_c01 is unknown to the API (deleted)
    return FakeYouTube(id_map, videos, KEY, slow_s=0.5)


def test_records_step_resumes_and_reports_damage(tmp_path):
    tf, feats = _write_inputs(tmp_path)
    labels = [LabelEntry(1, "Guitar"), LabelEntry(3, "Piano")]
    out = tmp_path / "records"
    s = run_records([tf], labels, out, progress=False)
    assert (s["files"], s["read"], s["corrupt"]) == (3, 3, 1)
    index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    ids = [r["pseudo_id"] for r in index]
    # files in sorted order: frames0000, train0000, train0001 (Pc01 survives the damage)
    assert ids == ["Pb01", "Pa01", "Pa04", "Pa05", "Pa06", "Pc01"]
    assert index[1]["labels"] == ["Guitar"] and index[1]["label_indices"] == [1, 2]
    assert index[0]["num_frames"] == 4 and index[1]["num_frames"] is None
    rgb, audio = np.load(out / "mean_rgb.npy"), np.load(out / "mean_audio.npy")
    assert rgb.shape == (6, 1024) and audio.shape == (6, 128) and rgb.dtype == np.float32
    for row, pid in enumerate(ids):
        np.testing.assert_allclose(rgb[row], feats[pid][0], atol=1e-5)
        np.testing.assert_allclose(audio[row], feats[pid][1], atol=1e-5)
    skipped = [json.loads(x) for x in (out / "skipped_records.jsonl").read_text().splitlines()]
    assert [s["reason"][:17] for s in skipped] == ["data CRC mismatch", "truncated record:"]
    assert skipped[0]["offset"] > 0 and skipped[1]["offset"] > skipped[0]["offset"]
    assert {s["file"].rsplit("/", 1)[-1] for s in skipped} == {"train0001.tfrecord"}

    # Re-run: the two good files are not read again, the damaged one is retried.
    s2 = run_records([tf], labels, out, progress=False)
    assert (s2["already_done"], s2["read"], s2["videos"]) == (2, 1, 6)
    # A torn progress line (crash while appending) does not break the resume.
    with (out / "progress.jsonl").open("ab") as f:
        f.write(b'{"key": "frames0000-')
    s3 = run_records([tf], labels, out, progress=False)
    assert (s3["already_done"], s3["videos"]) == (2, 6)


NET = ["--timeout", "0.3", "--backoff", "0.001", "--retries", "3"]


def _select_labels_and_read_records(root, tf, w, capsys):
    vocab = write_vocab(root / "vocabulary.csv", VOCAB)
    labels = ["--label", "Guitar", "--label", "Music video", "--label", "3"]
    assert main(["yt8m-labels", "--vocabulary", str(vocab), *labels, *w]) == 0
    assert main(["yt8m-records", "--input", str(tf / "*.tfrecord"), *w]) == 0
    out = capsys.readouterr().out
    assert "3 files" in out and "1 corrupt" in out and "8 videos kept" in out


def _fetch_ids_and_metadata(monkeypatch, w, capsys):
    """Ids and metadata from the fake servers, through a 500, a slow answer, a missing key
    and an exhausted quota; a finished step sends no request when run again."""
    with _fake_server() as fake:
        fake.id_failures = {"Pa01": ["500"], "Pb01": ["slow"]}
        assert main(["yt8m-ids", "--base-url", fake.url + "/2/j/i", *NET, *w]) == 0
        assert "7 done now, 1 missing" in capsys.readouterr().out

        # No key: a clear error naming the variable.
        monkeypatch.delenv("YOUTUBE_API_KEY", raising=False)
        assert main(["yt8m-metadata", "--api-url", fake.url, *NET, *w]) == 2
        assert "YOUTUBE_API_KEY" in capsys.readouterr().err

        monkeypatch.setenv("YOUTUBE_API_KEY", KEY)
        fake.quota_left = 0
        assert main(["yt8m-metadata", "--api-url", fake.url, *NET, *w]) == EXIT_QUOTA
        printed = capsys.readouterr().out
        assert "quota exhausted" in printed and "Quota resets at midnight Pacific" in printed
        fake.quota_left = None
        fake.api_failures = ["500"]
        assert main(["yt8m-metadata", "--api-url", fake.url, *NET, *w]) == 0
        assert "6 done now, 1 missing" in capsys.readouterr().out
        assert len(fake.api_requests()) == 3  # quota refusal, the 500, the answer
        # Nothing left to do: no request at all.
        assert main(["yt8m-metadata", "--api-url", fake.url, *NET, *w]) == 0
        assert len(fake.api_requests()) == 3


def _filter_and_check_exclusions(work, w, capsys):
    assert main(["yt8m-filter", *w]) == 0
    printed = capsys.readouterr().out
    assert "8 videos: 3 selected (dev 1, test 1, train 1), 5 excluded" in printed
    excluded = {
        e["pseudo_id"]: e["reasons"]
        for e in map(json.loads, (work / "filtered" / "excluded.jsonl").read_text().splitlines())
    }
    assert excluded["Pa03"][0].startswith("too_short: 60 s < 100 s")
    assert excluded["Pa04"][0].startswith("missing_likes")
    assert excluded["Pa05"][0].startswith("too_recent")
    assert excluded["Pa07"][0].startswith("no_youtube_id")
    assert excluded["Pc01"][0].startswith("unavailable")
    urls = (work / "filtered" / "download_urls.txt").read_text().split()
    assert urls[0].startswith("https://www.youtube.com/watch?v=")


def _build_corpus(root, w, capsys):
    """Downloads for 2 of the 3 selected videos (the third only partial or empty), then
    ``yt8m-corpus``: returns the media and corpus directories."""
    media = root / "downloads"
    media.mkdir()
    (media / "yt_train_01.mp4").write_bytes(b"\x00" * 100)
    (media / "yt_train_01.webm").write_bytes(b"\x00" * 100)  # mp4 preferred
    (media / "yt_dev_0b01.mkv").write_bytes(b"\x00" * 10)
    (media / "yt_test_006.mp4.part").write_bytes(b"\x00" * 10)  # unfinished: missing
    (media / "yt_test_006.webm").write_bytes(b"")  # empty: missing
    corpus = root / "corpus"
    assert main(["yt8m-corpus", "--media-dir", str(media), "--corpus-dir", str(corpus), *w]) == 0
    printed = capsys.readouterr().out
    assert "3 selected videos: 2 with media, 1 without (33.3%)" in printed
    return media, corpus


def _check_corpus(media, corpus):
    records = {r.video_id: r for r in read_corpus(corpus)}
    assert set(records) == {"yt_train_01", "yt_dev_0b01"}
    train = records["yt_train_01"]
    assert train.media == "../downloads/yt_train_01.mp4"
    assert train.media_path(corpus).resolve() == (media / "yt_train_01.mp4").resolve()
    assert train.labels == ["Guitar", "Music video"] and train.tags == ["guitar", "live music"]
    assert (train.title, train.published_at, train.duration_s, train.split) == (
        "Train video",
        "2010-05-05",
        200.0,
        "train",
    )
    assert train.extra["youtube8m_id"] == "Pa01" and train.extra["view_count"] == 50_000
    assert records["yt_dev_0b01"].split == "dev" and records["yt_dev_0b01"].labels == ["Piano"]
    assert record_problems(train, corpus, known_labels=None) == []
    missing = [json.loads(x) for x in (corpus / "missing_media.jsonl").read_text().splitlines()]
    assert [(m["video_id"], m["split"]) for m in missing] == [("yt_test_006", "test")]
    summary = json.loads((corpus / "youtube8m_media.json").read_text())
    assert summary["per_split"]["test"] == {"with_media": 0, "missing_media": 1}


def test_end_to_end_cli(tmp_path, monkeypatch, capsys):
    """Every sub-command in order on one work directory; each step checks what it printed
    and wrote, and the API key appears in no file and no output."""
    tf, _ = _write_inputs(tmp_path)
    work = tmp_path / "work"
    w = ["--work-dir", str(work), "--no-progress"]
    _select_labels_and_read_records(tmp_path, tf, w, capsys)
    _fetch_ids_and_metadata(monkeypatch, w, capsys)
    _filter_and_check_exclusions(work, w, capsys)
    media, corpus = _build_corpus(tmp_path, w, capsys)
    _check_corpus(media, corpus)

    # The API key was never written anywhere.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    w = ["--work-dir", str(tmp_path), "--no-progress"]
    assert main(["yt8m-records", "--input", str(tmp_path / "none*.tfrecord"), *w]) == 2
    assert "labels.json" in capsys.readouterr().err
    assert main(["yt8m-ids", *w]) == 2
    assert "run `python -m data_prep yt8m-records` first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["yt8m-filter", "--split", "test:seven:8", *w])
