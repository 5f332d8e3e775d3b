"""``embed`` and ``index``/``search`` on real media: the same inputs and embeddings as
evaluation, a corrupt file skipped with its reason, a killed run resumed, exact search over
real embeddings, and bad command lines refused with one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from search_fixtures import BATCH, DEMO_DATA, REPO, embedded, indexed, media_dir, tiny_model_dir

from trimodal.search import cli
from trimodal.search.embedder import load_videos


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}


def test_embed_skips_the_corrupt_file_and_matches_evaluation(tmp_path_factory):
    from trimodal.embedding import extract_split
    from trimodal.metrics import aggregate_by_video
    from trimodal.modeling import TrimodalModel

    out = embedded(tmp_path_factory)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["video_id"], s["reason"]) for s in skipped] == [("broken", "unreadable")]
    items, vectors, meta = load_videos(out)
    assert [i["id"] for i in items] == [f"synth11_{i:05d}" for i in range(6)]
    assert meta["videos"] == 6 and meta["clips"] == 12 and meta["skipped"] == 1
    assert all(Path(i["path"]).is_file() and i["clips"] == 2 for i in items)
    # The one path: evaluation's extraction of the prepared split, pooled by video.
    model = TrimodalModel.from_pretrained(tiny_model_dir(tmp_path_factory))
    ref = extract_split(model, out / "cache" / "prepared", "test", batch_size=BATCH)
    clips = pq.read_table(out / "clips.parquet")
    for m in ("text", "audio", "video"):
        pooled, ids = aggregate_by_video(ref.embeddings[m], ref.video_id)
        assert ids == [i["id"] for i in items]
        np.testing.assert_allclose(vectors[m], pooled.numpy(), atol=1e-6)
        clip_vectors = np.asarray(clips.column(m).to_pylist(), np.float32)
        np.testing.assert_allclose(clip_vectors, ref.embeddings[m].numpy(), atol=1e-6)
    assert clips.column("start_s").to_pylist()[:2] == [0.0, 4.0]
    assert sorted(p.name for p in (out / "previews").iterdir())[:2] == [
        "synth11_00000.jpg",
        "synth11_00000.wav",
    ]


def test_exact_search_on_real_embeddings_is_brute_force(tmp_path_factory, capsys):
    out, index = embedded(tmp_path_factory), indexed(tmp_path_factory)
    items, vectors, _ = load_videos(out)
    ids = [i["id"] for i in items]
    for row in range(len(ids)):
        scores = vectors["video"].astype(np.float64) @ vectors["audio"][row]
        order = np.argsort(-scores, kind="stable")[:4]
        capsys.readouterr()
        from trimodal.search.index import Catalogue
        from trimodal.search.query import search_vector

        hits = search_vector(Catalogue.load(index), "video", vectors["audio"][row], k=4)
        assert [h.id for h in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], scores[order], atol=1e-5)
    assert cli.main_search(["--index", str(index), "--like", ids[0], "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    both = 0.5 * (vectors["audio"] @ vectors["audio"][0]) + 0.5 * (
        vectors["video"] @ vectors["video"][0]
    )
    both[0] = -np.inf
    assert [h["id"] for h in result[0]["hits"]] == [ids[i] for i in np.argsort(-both)[:3]]
    assert cli.main_search(["--index", str(index), "--text", "Guitar", "-k", "2"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("Guitar\n\n| rank | score | id |") and len(table.splitlines()) == 6


def test_a_killed_embed_resumes_without_redoing_finished_videos(tmp_path_factory, tmp_path):
    reference = embedded(tmp_path_factory)
    out = tmp_path / "out"
    # The decoded clips are reused (prepare resumes by itself); what is killed is embedding.
    shutil.copytree(reference / "cache", out / "cache")
    args = [str(media_dir(tmp_path_factory)), "--model", str(tiny_model_dir(tmp_path_factory))]
    args += ["--out", str(out), "--data-config", str(DEMO_DATA), "--batch-size", str(BATCH)]
    args += ["--no-progress"]
    slow = [sys.executable, str(REPO / "tests" / "search_faults.py"), *args]
    proc = subprocess.Popen(
        slow, env=env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while len(list((out / "parts").glob("*.npz"))) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.npz")}
    assert 2 <= len(finished) < 6 and not (out / "videos.parquet").exists()
    run = subprocess.run(
        [sys.executable, "-m", "trimodal.search", "embed", *args],
        env=env(), cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"{len(finished)} reused from an earlier run" in run.stdout
    assert {
        p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.npz") if p.name in finished
    } == finished
    for name in ("videos.parquet", "clips.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(reference / name)), name
    assert (out / "skipped.jsonl").read_text() == (reference / "skipped.jsonl").read_text()


def test_embedding_the_prepared_split_gives_the_same_catalogue(tmp_path_factory, tmp_path, capsys):
    reference = embedded(tmp_path_factory)
    model = str(tiny_model_dir(tmp_path_factory))
    argv = ["--prepared", str(reference / "cache" / "prepared"), "--model", model]
    argv += ["--out", str(tmp_path / "out"), "--batch-size", str(BATCH), "--no-progress"]
    capsys.readouterr()
    assert cli.main_embed(argv) == 0
    assert "batch:" not in capsys.readouterr().err  # --no-progress: no per-batch bar either
    # The paths come from the corpus that was prepared (its summary.json names it).
    a, b = (pq.read_table(p / "videos.parquet") for p in (tmp_path / "out", reference))
    assert a.equals(b)


def test_index_grows_with_add(tmp_path_factory, tmp_path, capsys):
    out = embedded(tmp_path_factory)
    assert cli.main_index([str(out), "--out", str(tmp_path / "ix")]) == 0
    assert cli.main_index([str(out), "--out", str(tmp_path / "ix"), "--add"]) == 2
    assert "already in the index" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, argv, message",
    [
        (
            "embed",
            ["/no/such/file.mp4", "--model", "{model}", "--out", "{tmp}/o"],
            "no such file or directory",
        ),
        ("embed", ["{media}", "--model", "{tmp}/nomodel", "--out", "{tmp}/o"], "no saved model"),
        ("embed", ["--model", "{model}", "--out", "{tmp}/o"], "give exactly one of"),
        (
            "embed",
            ["{media}", "--model", "{model}", "--out", "{tmp}/o", "--batch-size", "0"],
            "batch size",
        ),
        ("embed", ["--text", " ", "--model", "{model}", "--out", "{tmp}/o"], "empty text query"),
        ("index", ["{tmp}", "--out", "{tmp}/ix"], "is not an embed output"),
        ("search", ["--index", "{tmp}", "--text", "x"], "no index at"),
        ("search", ["--index", "{index}", "--like", "nope"], "unknown item id 'nope'"),
        ("search", ["--index", "{index}", "--text", ""], "empty text query"),
        ("search", ["--index", "{index}", "--text", "x", "-k", "0"], "-k must be >= 1"),
        ("search", ["--index", "{index}", "--video", "{tmp}/none.mp4"], "no such media file"),
        (
            "search",
            ["--index", "{index}", "--like", "x", "--like-weights", "0", "0"],
            "weights must be",
        ),
        ("search", ["--index", "{index}"], "one of the arguments"),
        ("search", ["--index", "{index}", "--text", "x", "--in", "text"], "invalid choice"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    tmp_path_factory, tmp_path, capsys, command, argv, message
):
    values = {
        "model": tiny_model_dir(tmp_path_factory),
        "media": media_dir(tmp_path_factory),
        "index": indexed(tmp_path_factory),
        "tmp": tmp_path,
    }
    argv = [a.format(**values) for a in argv]
    capsys.readouterr()
    with (
        pytest.raises(SystemExit)
        if command == "search" and message in ("one of the arguments", "invalid choice")
        else _no_exit()
    ):
        code = cli.COMMANDS[command](argv)
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_python_dash_m_entry_and_debug(tmp_path):
    base = [sys.executable, "-m", "trimodal.search"]
    run = subprocess.run(
        [*base, "search", "--index", str(tmp_path), "--text", "x"],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 2
        and run.stderr == f"error: no index at {tmp_path} (index.json not found)\n"
    )
    run = subprocess.run(
        [*base, "search", "--index", str(tmp_path), "--text", "x", "--debug"],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "Traceback" in run.stderr
    run = subprocess.run([*base, "nope"], env=env(), cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
