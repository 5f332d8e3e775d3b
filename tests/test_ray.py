"""The Ray executor (docs/cluster.md): ``prepare`` and ``embed`` on a local 2-CPU Ray cluster
give byte for byte the local executor's output, survive a worker killed mid-run, skip a video
that kills every worker, and reuse every finished shard on a re-run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from data_fixtures import REPO, prepared_reference
from prepare_faults import CrashOn, KillOnce
from search_fixtures import BATCH, DEMO_DATA, embedded, media_dir, tiny_model_dir

from trimodal.prepare import pipeline, prepare, read_corpus
from trimodal.search import cli

ray = pytest.importorskip("ray")

PARTS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module (starting one takes seconds). Its
    workers import the fault-injecting work functions of ``tests/`` (``PYTHONPATH``)."""
    old = os.environ.get("PYTHONPATH")
    paths = [str(REPO), str(REPO / "tests"), *([old] if old else [])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every file of the split datasets (``split.json`` and the files it lists: not the
    ``cache-*.arrow`` files that ``datasets`` writes beside them when a test maps or filters
    a split) and ``skipped.jsonl``, by path under ``out``."""
    files = [out / "skipped.jsonl"]
    for split in PARTS:
        manifest = out / split / "split.json"
        files += [manifest, *(out / split / f for f in json.loads(manifest.read_text())["files"])]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}


def on_ray(config):
    return dataclasses.replace(config, prepare_executor="ray")


def test_prepare_on_ray_is_byte_identical_and_a_rerun_reuses_every_shard(
    tmp_path_factory, tmp_path, cluster, monkeypatch, capsys
):
    corpus, ref_out, config = prepared_reference(tmp_path_factory)
    out = tmp_path / "out"
    summary = prepare(corpus, out, on_ray(config), keep_work=True, show_progress=False)
    assert output_bytes(out) == output_bytes(ref_out)
    assert summary == json.loads((ref_out / "summary.json").read_text())
    # A re-run decodes nothing: a work function that kills every worker would otherwise
    # turn the videos into decoder_crash skips.
    ids = frozenset(r.video_id for r in read_corpus(corpus))
    monkeypatch.setattr(pipeline, "video_work", CrashOn(ids))
    capsys.readouterr()
    prepare(corpus, out, on_ray(config), force=True, show_progress=False)
    assert f"reused {summary['videos_prepared']} finished videos" in capsys.readouterr().err
    assert output_bytes(out) == output_bytes(ref_out)


def test_prepare_on_ray_survives_a_killed_worker(tmp_path_factory, tmp_path, cluster, monkeypatch):
    corpus, ref_out, config = prepared_reference(tmp_path_factory)
    victims = ["synth0_00002", "synth0_00005"]
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr(pipeline, "video_work", KillOnce(frozenset(victims), str(markers)))
    prepare(corpus, tmp_path / "out", on_ray(config), show_progress=False)
    # Both workers really died once (SIGKILL) and their videos were decoded on the retry.
    assert sorted(p.name for p in markers.iterdir()) == [f"killed-{v}" for v in victims]
    assert output_bytes(tmp_path / "out") == output_bytes(ref_out)


@pytest.mark.slow
def test_prepare_on_ray_skips_a_video_that_kills_every_worker(
    tmp_path_factory, tmp_path, cluster, monkeypatch
):
    corpus, ref_out, config = prepared_reference(tmp_path_factory)
    monkeypatch.setattr(pipeline, "video_work", CrashOn(frozenset({"synth0_00006"})))
    summary = prepare(corpus, tmp_path / "out", on_ray(config), show_progress=False)
    skipped = [json.loads(x) for x in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert [(s["video_id"], s["reason"]) for s in skipped] == [("synth0_00006", "decoder_crash")]
    assert summary["videos_prepared"] == 7


def embed_outputs(out: Path) -> dict[str, object]:
    """The tables of an embed output (embeddings compared exactly) and its skipped list."""
    tables = {name: pq.read_table(out / f"{name}.parquet") for name in ("clips", "videos")}
    return {**tables, "skipped": (out / "skipped.jsonl").read_text()}


def assert_same_embeddings(ours: dict[str, object], theirs: dict[str, object]) -> None:
    for name in ("clips", "videos"):
        assert ours[name].column("video_id") == theirs[name].column("video_id")
        for column in ("text", "audio", "video"):
            a, b = (np.asarray(t[name].column(column).to_pylist()) for t in (ours, theirs))
            np.testing.assert_array_equal(a, b, err_msg=f"{name}.{column}")


# Slow: starting two actors (each imports torch and the model) takes 10-45 s on 2 shared cores.
@pytest.mark.slow
def test_embed_prepared_on_ray_gives_the_local_embeddings(
    tmp_path_factory, tmp_path, cluster, capsys
):
    """The model pass alone on two replicas (the decoding on Ray: the prepare tests above)."""
    local = embedded(tmp_path_factory)  # the search tests' local run
    argv = ["--prepared", str(local / "cache" / "prepared"), "--split", "test", "--no-progress"]
    argv += ["--model", str(tiny_model_dir(tmp_path_factory)), "--batch-size", str(BATCH)]
    argv += ["--executor", "ray", "--replicas", "2", "--out", str(tmp_path / "out")]
    assert cli.main_embed(argv) == 0
    # One part per video, written by the replicas (keyed by the split, not the media files).
    assert len(list((tmp_path / "out" / "parts").iterdir())) == len(
        list((local / "parts").iterdir())
    )
    assert_same_embeddings(embed_outputs(tmp_path / "out"), embed_outputs(local))
    # More replicas than the cluster has CPUs: one line, not a wait for ever.
    argv[argv.index("--replicas") + 1] = "3"
    capsys.readouterr()
    assert cli.main_embed([*argv[:-1], str(tmp_path / "out3")]) == 2
    err = capsys.readouterr().err.splitlines()  # Ray's log lines may come in between
    assert "error: 3 replicas need 3 CPUs; the Ray cluster has 2" in err


@pytest.mark.slow
def test_embed_on_ray_gives_the_local_embeddings(tmp_path_factory, tmp_path, cluster, monkeypatch):
    local = embedded(tmp_path_factory)  # the search tests' local run of the same command
    argv = [str(media_dir(tmp_path_factory)), "--model", str(tiny_model_dir(tmp_path_factory))]
    argv += ["--data-config", str(DEMO_DATA), "--batch-size", str(BATCH), "--no-progress"]
    argv += ["--executor", "ray", "--replicas", "2", "--out", str(tmp_path / "out")]
    markers = tmp_path / "markers"
    markers.mkdir()
    # A decoding worker killed mid-run: its video is decoded again.
    monkeypatch.setattr(
        pipeline, "video_work", KillOnce(frozenset({"synth11_00003"}), str(markers))
    )
    assert cli.main_embed(argv) == 0
    assert [p.name for p in markers.iterdir()] == ["killed-synth11_00003"]
    ours, theirs = embed_outputs(tmp_path / "out"), embed_outputs(local)
    assert_same_embeddings(ours, theirs)
    assert ours == theirs  # the tables whole (paths, titles, clips) and skipped.jsonl


def test_ray_is_imported_only_when_asked(tmp_path):
    """The commands import no Ray; without it, ``--executor ray`` is one line, exit 2."""
    code = (
        "import sys\n"
        "import trimodal, trimodal.prepare, trimodal.search.cli, data_prep.prepare\n"
        "from trimodal.commands import main\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "sys.modules['ray'] = None  # as where the extra is not installed\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "videos.jsonl").write_text("")
    argv = ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "out"), "--executor", "ray"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: the ray executor needs Ray: pip install 'trimodal[ray]'"
