"""``prepare``: clips, splits, sparse sampling, bad media, resumability, label texts."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import datasets
import numpy as np
import pyarrow as pa
import pytest
from data_fixtures import (
    CLIP_SECONDS,
    SPLIT_OF_INDEX,
    assert_same_output,
    prepare_cmd,
    prepared_reference,
    run_ok,
    subprocess_env,
    whole_track_audio,
    write_config,
)
from prepare_faults import CrashOn

from trimodal.config import DataConfig
from trimodal.data.schema import load_split
from trimodal.modalities import model_input
from trimodal.prepare import (
    MUSIC45_LABELS,
    WORK_DIR,
    PrepareError,
    VideoRecord,
    assembly,
    assign_keep_fractions,
    assign_split,
    pipeline,
    pool,
    prepare,
    read_corpus,
    sample_clip_indices,
    segment_starts,
    text_candidates,
    write_corpus,
)
from trimodal.prepare.synthetic import SynthOptions, generate_corpus


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return prepared_reference(tmp_path_factory)


def _load(out: Path, split: str) -> datasets.Dataset:
    return load_split(out / split)[0]


# ----------------------------------------------------------------------------- whole chain


def test_output_layout_columns_and_dtypes(reference):
    corpus, out, config = reference
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos_prepared"] == len(SPLIT_OF_INDEX) and summary["videos_skipped"] == 0
    assert (out / "skipped.jsonl").read_text() == ""
    records = {r.video_id: r for r in read_corpus(corpus)}
    for split in ("train", "dev", "test"):
        ds = _load(out, split)
        assert summary["splits"][split]["clips"] == ds.num_rows > 0
        # Memory-mapped Arrow files (one per video, concatenated), not an in-memory table.
        tables = [t for row in getattr(ds.data, "blocks", [[ds.data]]) for t in row]
        assert {type(t).__name__ for t in tables} == {"MemoryMappedTable"}
        assert set(ds.column_names) >= {
            "video_id", "clip_index", "start_s", "labels", "label_ids", "texts",
            "audio_48k", "audio_16k", "frames_224", "frames_112", "title",
        }  # fmt: skip
        assert ds.features["frames_224"].shape == (16, 3, 256, 256)
        assert ds.features["frames_112"].shape == (16, 3, 128, 128)
        assert ds.features["frames_224"].dtype == "uint8"
        assert ds.features["audio_48k"].length == int(CLIP_SECONDS * 48000)
        assert ds.features["audio_16k"].length == int(CLIP_SECONDS * 16000)
        ids = list(ds["video_id"])
        assert ids == sorted(ids)  # assembled in video-id order
        for vid in set(ids):
            assert records[vid].split == split
        row = ds.with_format("numpy", columns=["audio_48k", "audio_16k"])[0]
        for name in ("audio_48k", "audio_16k"):
            # Stored as int16, full scale 32767 (the numpy format widens integers to int64).
            assert ds.features[name].feature.dtype == "int16"
            assert ds.data.table.schema.field(name).type.value_type == pa.int16()
            assert 0.01 * 32767 < np.abs(row[name]).max() <= 32767
        first = ds[0]
        assert first["labels"] == records[first["video_id"]].labels
        assert [MUSIC45_LABELS[i] for i in first["label_ids"]] == first["labels"]
        assert first["texts"] == text_candidates(records[first["video_id"]])
        assert first["title"] == records[first["video_id"]].title


def test_dev_and_test_keep_every_clip_with_exact_times(reference):
    corpus, out, config = reference
    records = {r.video_id: r for r in read_corpus(corpus)}
    for split in ("dev", "test"):
        ds = _load(out, split)
        for vid in set(list(ds["video_id"])):
            rows = ds.filter(lambda x, v=vid: x == v, input_columns="video_id")
            n = int(records[vid].duration_s // CLIP_SECONDS)
            assert list(rows["clip_index"]) == list(range(n))
            assert list(rows["start_s"]) == [i * CLIP_SECONDS for i in range(n)]


def test_sparse_train_saves_exactly_the_sampled_clips(reference):
    """The research code saved the *first* n clips under random clip numbers
    (docs/defects.md#sparse-clip-sampling)."""
    corpus, out, config = reference
    records = {r.video_id: r for r in read_corpus(corpus)}
    ds = _load(out, "train")
    train_ids = sorted(v for v, r in records.items() if r.split == "train")
    fractions = assign_keep_fractions(train_ids, config.sparse_fractions, config.seed)
    assert sorted(set(list(ds["video_id"]))) == train_ids
    kept_total = all_total = 0
    for vid in train_ids:
        rows = ds.filter(lambda x, v=vid: x == v, input_columns="video_id").with_format("numpy")
        n = int(records[vid].duration_s // CLIP_SECONDS)
        expected = sample_clip_indices(vid, n, fractions[vid], config.seed)
        assert list(rows["clip_index"]) == expected.tolist()
        assert list(rows["start_s"]) == [i * CLIP_SECONDS for i in expected]
        kept_total, all_total = kept_total + len(expected), all_total + n
        # The stored waveform is the audio at the sampled start, not the first clips'.
        media = records[vid].media_path(corpus)
        whole = whole_track_audio(media, 16000)
        n_samples = int(CLIP_SECONDS * 16000)
        for j, idx in enumerate(expected):
            a = int(idx * n_samples)
            stored = model_input(np.asarray(rows[j]["audio_16k"], np.int16))
            # Decoding (1e-6) and int16 rounding (half a step: 1.5e-5).
            np.testing.assert_allclose(stored, whole[a : a + n_samples], atol=1.7e-5)
        # And the frames are that clip's: the first frame of clip idx is frame floor(t * fps)
        # (the synthetic videos have a constant frame rate).
        with av.open(str(media)) as container:
            fps = float(container.streams.video[0].average_rate)
            pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        t0 = expected[-1] * CLIP_SECONDS + 0.5 * CLIP_SECONDS / 16
        native = pictures[int(np.floor(t0 * fps))].astype(np.float32)
        stored = rows[len(expected) - 1]["frames_112"][0].astype(np.float32)  # [3, 128, 128]
        # Compare mean colours (the stored frame is resized and cropped).
        assert np.abs(native.mean(axis=(0, 1)) - stored.mean(axis=(1, 2))).max() < 20
    assert kept_total < all_total  # sparse: some clips were left out


def test_sparse_sampling_is_reproducible_and_follows_the_quotas():
    ids = [f"v{i:04d}" for i in range(1000)]
    fr = assign_keep_fractions(ids, DataConfig().sparse_fractions, seed=3)
    assert fr == assign_keep_fractions(list(reversed(ids)), DataConfig().sparse_fractions, seed=3)
    counts = {k: sum(1 for v in fr.values() if v == k) for k in set(fr.values())}
    assert counts == {0.2: 300, 0.25: 200, 0.33: 200, 0.5: 200, 0.75: 50, 1.0: 50}
    assert fr != assign_keep_fractions(ids, DataConfig().sparse_fractions, seed=4)
    a = sample_clip_indices("vid", 40, 0.25, seed=1)
    assert a.tolist() == sample_clip_indices("vid", 40, 0.25, seed=1).tolist()
    assert len(a) == 10 and len(set(a.tolist())) == 10 and a.tolist() == sorted(a.tolist())
    assert a.tolist() != list(range(10))  # not the first clips
    assert a.tolist() != sample_clip_indices("vid", 40, 0.25, seed=2).tolist()
    assert sample_clip_indices("vid", 3, 0.2, seed=1).size == 1  # at least one clip
    assert sample_clip_indices("vid", 7, 1.0, seed=1).tolist() == list(range(7))


def test_splits_by_hash_and_by_age():
    cfg = DataConfig()
    recs = [VideoRecord(video_id=f"v{i}", media="m") for i in range(3000)]
    splits = [assign_split(r, cfg) for r in recs]
    assert splits == [assign_split(r, DataConfig(seed=99)) for r in recs]  # seed-independent
    share = {s: splits.count(s) / len(splits) for s in ("train", "dev", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["dev"] == pytest.approx(0.1, abs=0.02)
    age = DataConfig(split_by="age", reference_date="2023-01-01")

    def rec(date, split=None):
        return VideoRecord(video_id="x", media="m", published_at=date, split=split)

    assert assign_split(rec("2015-06-01"), age) == "test"  # 7.6 years old
    assert assign_split(rec("2014-10-01"), age) == "dev"  # 8.25 years
    assert assign_split(rec("2010-01-01"), age) == "train"
    assert assign_split(rec("2010-01-01", split="test"), age) == "test"  # the record wins


def test_segment_scheme_six_non_overlapping_segments_one_per_sixth(tmp_path: Path):
    starts = segment_starts("vid", 100.0, 6, 5.0, seed=0)
    assert starts.tolist() == segment_starts("vid", 100.0, 6, 5.0, seed=0).tolist()
    for k, s in enumerate(starts):
        assert k * 100 / 6 <= s and s + 5.0 <= (k + 1) * 100 / 6 + 1e-9
    # Through prepare: a 31-s video gives six 5-s segments; a 20-s one is too short.
    generate_corpus(tmp_path / "c", 2, 11, SynthOptions(min_seconds=20.0, max_seconds=31.0))
    records = read_corpus(tmp_path / "c")
    cfg = DataConfig(scheme="segments", frame_sizes=[112], audio_rates=[16000], seed=1)
    summary = prepare(tmp_path / "c", tmp_path / "out", cfg, workers=1, show_progress=False)
    long_ones = [r for r in records if r.duration_s >= 30]
    assert summary["videos_prepared"] == len(long_ones)
    rows = datasets.concatenate_datasets(
        [_load(tmp_path / "out", s) for s in ("train", "dev", "test")]
    )
    for r in long_ones:
        mine = rows.filter(lambda x, v=r.video_id: x == v, input_columns="video_id")
        assert list(mine["clip_index"]) == list(range(6))
        assert all(
            e - s == pytest.approx(5.0) for s, e in zip(list(mine["start_s"]), list(mine["end_s"]))
        )
        assert len(mine[0]["audio_16k"]) == 5 * 16000
    skipped = [json.loads(x) for x in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert {s["reason"] for s in skipped} <= {"too_short"}


# ----------------------------------------------------------------------------- bad media


def _write_video_only(path: Path, seconds: float = 10.0) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * 10)):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _write_audio_only(path: Path, seconds: float = 10.0) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        wave = (0.3 * np.sin(np.arange(int(seconds * 16000)) * 0.1)).astype(np.float32)
        for i in range(0, len(wave), 1024):
            f = av.AudioFrame.from_ndarray(wave[None, i : i + 1024], format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def broken_corpus(tmp_path_factory) -> tuple[Path, dict[str, str], list[str]]:
    """A corpus with every kind of bad video next to valid ones that carry all 45 labels."""
    root = tmp_path_factory.mktemp("broken")
    opts = SynthOptions(min_seconds=9.0, max_seconds=11.0)
    good = generate_corpus(root, 5, seed=21, opts=opts)
    short = generate_corpus(
        root / "short", 1, seed=22, opts=SynthOptions(min_seconds=2, max_seconds=3)
    )
    media = root / "media"
    src = media / Path(good[0].media).name
    # The valid videos carry all 45 labels between them (9 each), multi-word ones included.
    for i, r in enumerate(good):
        r.labels = list(MUSIC45_LABELS[9 * i : 9 * (i + 1)])
        r.split = "dev"
    data = src.read_bytes()
    (media / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (media / "empty.mp4").write_bytes(b"")
    (media / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    _write_video_only(media / "silent.mp4")
    _write_audio_only(media / "novideo.mp4")
    shutil.copy(root / "short" / short[0].media, media / "short.mp4")
    for name in ("crash", "unknownlabel", "unsafe1", "unsafe2"):
        shutil.copy(src, media / f"{name}.mp4")

    def rec(vid, file, **kw):
        return VideoRecord(
            video_id=vid, media=f"media/{file}", labels=["Guitar"], split="dev", **kw
        )

    bad = {
        "truncated": "unreadable",
        "empty": "empty_media",
        "garbage": "unreadable",
        "silent": "no_audio_stream",
        "novideo": "no_video_stream",
        "short": "too_short",
        "missing": "missing_media",
        "crash": "decoder_crash",
        "unknownlabel": "unknown_label",
        "../unsafe1": "unsafe_id",
        "a/unsafe2": "unsafe_id",
    }
    records = list(good)
    for vid in bad:
        file = "nothere.mp4" if vid == "missing" else f"{vid.rsplit('/', 1)[-1]}.mp4"
        extra = {"labels": ["Guitar", "Kazoo"]} if vid == "unknownlabel" else {}
        r = rec(vid, file)
        r.labels = extra.get("labels", r.labels)
        records.append(r)
    write_corpus(root, records)
    # A line that is not JSON at all must not stop the run either.
    with (root / "videos.jsonl").open("a") as f:
        f.write('{"video_id": "halfwritten", "media": \n')
    bad["halfwritten"] = "malformed_record"
    return root, bad, [r.video_id for r in good]


def test_bad_media_never_stops_the_run(broken_corpus, tmp_path: Path, monkeypatch):
    root, bad, good_ids = broken_corpus
    # A decoder that kills its process on one file (decord can segfault on broken media).
    monkeypatch.setattr(pipeline, "video_work", CrashOn(frozenset({"crash"})))
    cfg = DataConfig(clip_seconds=CLIP_SECONDS, sparse_train=False)
    summary = prepare(root, tmp_path / "out", cfg, workers=2, show_progress=False)
    skipped = [json.loads(x) for x in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert {s["video_id"]: s["reason"] for s in skipped} == bad
    assert all(s["detail"] for s in skipped)
    assert summary["videos_skipped"] == len(bad)
    assert sum(summary["skipped_by_reason"].values()) == len(bad)
    # Every valid video is there with every clip.
    ds = _load(tmp_path / "out", "dev")
    records = {r.video_id: r for r in read_corpus(root, errors=[])}
    assert sorted(set(list(ds["video_id"]))) == sorted(good_ids)
    for vid in good_ids:
        n = int(records[vid].duration_s // CLIP_SECONDS)
        assert list(ds["video_id"]).count(vid) == n
    # Every one of the 45 labels survives as text, multi-word ones included
    # (docs/defects.md#multi-word-labels-and-tags).
    texts = {t for row in list(ds["texts"]) for t in row}
    assert set(MUSIC45_LABELS) <= texts
    assert {MUSIC45_LABELS[i] for row in list(ds["label_ids"]) for i in row} == set(MUSIC45_LABELS)
    assert ds.features["label_ids"].feature.names == list(MUSIC45_LABELS)


def test_split_files_are_the_shards_or_bounded_copies_that_load_the_same(reference, tmp_path, monkeypatch):  # fmt: skip
    """Up to ``MAX_LINKED_FILES`` videos a split's files are its shards (hard links); past
    it, copies of their record batches in files of about ``MAX_FILE_BYTES``. Both load as
    the same memory-mapped dataset, listed in ``split.json``."""
    corpus, ref_out, config = reference
    manifest = json.loads((ref_out / "train" / "split.json").read_text())
    assert manifest["format"] == 3 and manifest["rows"] == _load(ref_out, "train").num_rows
    linked = _load(ref_out, "train")["video_id"]
    assert len(manifest["files"]) == len(set(linked))  # one file per video
    monkeypatch.setattr(assembly, "MAX_LINKED_FILES", 1)
    monkeypatch.setattr(assembly, "MAX_FILE_BYTES", 1)  # every shard starts a new file
    out = tmp_path / "copied"
    prepare(corpus, out, config, keep_work=True, show_progress=False)
    assert_same_output(out, ref_out)
    copied = json.loads((out / "train" / "split.json").read_text())
    assert copied["files"] == [f"data-{i:05d}.arrow" for i in range(len(manifest["files"]))]
    assert all((out / "train" / f).stat().st_nlink == 1 for f in copied["files"])  # copies


# ----------------------------------------------------------------------------- resumability


def test_killed_run_resumes_to_the_same_output(reference, tmp_path: Path):
    corpus, ref_out, config = reference
    cfg_file = write_config(tmp_path / "data.yaml", dataclasses.replace(config, prepare_workers=1))
    out = tmp_path / "out"
    shards = out / WORK_DIR / "shards"
    proc = subprocess.Popen(
        prepare_cmd(corpus, out, cfg_file, "--keep-work"),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill reaches its workers too
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(shards.glob("*.arrow"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "prepare finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.arrow")}
    assert 2 <= len(finished) < len(SPLIT_OF_INDEX)
    assert not (out / "summary.json").exists()

    result = run_ok(prepare_cmd(corpus, out, cfg_file, "--keep-work"))
    reused = int(re.search(r"reused (\d+) finished videos", result.stderr).group(1))
    assert reused >= len(finished)
    for name, mtime in finished.items():  # finished videos were not redone
        assert (shards / name).stat().st_mtime_ns == mtime
    assert_same_output(out, ref_out)

    # Once complete, a re-run is a no-op that leaves the output as it is.
    again = run_ok(prepare_cmd(corpus, out, cfg_file))
    assert "already prepared" in again.stdout
    assert_same_output(out, ref_out)


def test_config_errors_are_clear(tmp_path: Path):
    with pytest.raises(PrepareError, match="cannot read the corpus"):
        prepare(tmp_path / "nowhere", tmp_path / "out")
    make_corpus_dir = tmp_path / "c"
    make_corpus_dir.mkdir()
    (make_corpus_dir / "videos.jsonl").write_text("")
    with pytest.raises(PrepareError, match="frame_sizes"):
        prepare(make_corpus_dir, tmp_path / "out", DataConfig(frame_sizes=[]))


def test_many_pool_generations_give_the_same_output(reference, tmp_path: Path, monkeypatch):
    """Workers are replaced every few videos (bounding decoder leaks); nothing hangs or
    changes. (Python < 3.13's `max_tasks_per_child` hung here once workers retired.)"""
    corpus, ref_out, config = reference
    monkeypatch.setattr(pool, "TASKS_PER_POOL", 1)
    prepare(corpus, tmp_path / "out", config, workers=2, show_progress=False)
    assert_same_output(tmp_path / "out", ref_out)


def test_media_replaced_under_the_same_name_is_prepared_again(tmp_path: Path, capsys):
    """A corpus regenerated in place keeps its ``videos.jsonl``; its new media must not be
    mistaken for the old ones (the demo regenerates its cached corpus this way)."""
    corpus = tmp_path / "corpus"
    records = generate_corpus(corpus, 3, seed=4, opts=SynthOptions(min_seconds=5, max_seconds=5))
    for record, split in zip(records, ["train", "dev", "test"]):
        record.split = split
    write_corpus(corpus, records)
    config = DataConfig(clip_seconds=2.0, sparse_train=False, frame_sizes=[32], num_frames=2)
    out = tmp_path / "out"
    prepare(corpus, out, config, workers=1, show_progress=False)
    before = _load(out, "test").with_format("numpy")[:]["frames_32"]

    prepare(corpus, out, config, workers=1, show_progress=False)
    assert "already prepared" in capsys.readouterr().out

    # Another video's picture and sound under the test video's name.
    test_media = records[2].media_path(corpus)
    shutil.copyfile(records[0].media_path(corpus), test_media)
    prepare(corpus, out, config, workers=1, show_progress=False)
    assert "already prepared" not in capsys.readouterr().out
    after = _load(out, "test").with_format("numpy")[:]["frames_32"]
    assert after.shape == before.shape and not np.array_equal(after, before)


def test_decoding_workers_import_neither_torch_nor_datasets():
    """The forkserver preloads the worker modules; torch or ``datasets`` there would cost
    every worker seconds of imports (and torch's threads in a process that forks)."""
    code = (
        "import sys\n"
        "from trimodal.prepare import pool\n"
        "for name in pool.PRELOAD:\n"
        "    __import__(name)\n"
        "print(sorted(m for m in ('torch', 'datasets') if m in sys.modules))\n"
    )
    result = run_ok([sys.executable, "-c", code])
    assert result.stdout.strip() == "[]"
