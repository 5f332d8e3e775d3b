"""Helpers shared by the data tests: small synthetic corpora and a prepared reference.

Building a corpus and preparing it takes seconds, so the reference preparation is made once
per test session (memoised here) and shared by test_prepare.py and test_loader.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trimodal.config import DataConfig
from trimodal.prepare.corpus import read_corpus, write_corpus
from trimodal.prepare.synthetic import SynthOptions, generate_corpus

REPO = Path(__file__).resolve().parents[1]
# Short videos and clips keep the tests fast; 16–24 s with 4-s clips gives 4–6 clips a video.
SMALL = SynthOptions(min_seconds=16.0, max_seconds=24.0)
CLIP_SECONDS = 4.0
# Fixed splits: six train videos (sparse sampling), one dev and one test video.
SPLIT_OF_INDEX = ["train"] * 6 + ["dev", "test"]

_cache: dict[str, tuple[Path, Path, DataConfig]] = {}


def reference_config() -> DataConfig:
    return DataConfig(clip_seconds=CLIP_SECONDS, prepare_workers=2, seed=7)


def make_corpus(root: Path, n: int = 8, seed: int = 0) -> Path:
    """A synthetic corpus of ``n`` videos with the fixed splits of ``SPLIT_OF_INDEX``."""
    generate_corpus(root, n, seed, SMALL, workers=2)
    records = read_corpus(root)
    for i, r in enumerate(records):
        r.split = SPLIT_OF_INDEX[i] if i < len(SPLIT_OF_INDEX) else None
    write_corpus(root, records)
    return root


def prepared_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, DataConfig]:
    """(corpus, prepared output, config) of the session's reference preparation."""
    if "ref" not in _cache:
        from trimodal.prepare import prepare

        base = tmp_path_factory.mktemp("reference")
        corpus = make_corpus(base / "corpus")
        config = reference_config()
        prepare(corpus, base / "prepared", config, show_progress=False)
        _cache["ref"] = (corpus, base / "prepared", config)
    return _cache["ref"]


def whole_track_audio(path: str | Path, rate: int) -> np.ndarray:
    """float32 [S]: the first audio stream of ``path``, mono at ``rate``, resampled in one
    piece (the library streams it decoded frame by decoded frame; this is the reference)."""
    import av

    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.audio[0]))
    first = frames[0]
    scale = {"flt": 1.0, "s16": 32768.0, "s32": 2147483648.0}[first.format.name.rstrip("p")]
    chunks = [f.to_ndarray().astype(np.float32) / scale for f in frames]
    if not first.format.is_planar:  # packed [1, S * C] → planar [C, S]
        chunks = [c.reshape(-1, len(first.layout.channels)).T for c in chunks]
    whole = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(np.concatenate(chunks, axis=1)), "fltp", first.layout.name
    )
    whole.sample_rate = first.sample_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    out = resampler.resample(whole) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out])


def write_config(path: Path, config: DataConfig) -> Path:
    """A YAML config file with ``config`` as its ``data:`` section."""
    import yaml

    path.write_text(yaml.safe_dump({"data": dataclasses.asdict(config)}))
    return path


def prepare_cmd(corpus: Path, out: Path, config_file: Path, *extra: str) -> list[str]:
    """The command line of ``python -m data_prep prepare`` for a subprocess."""
    return [
        sys.executable,
        "-m",
        "data_prep",
        "prepare",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--config",
        str(config_file),
        "--no-progress",
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_ok(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_same_output(a: Path, b: Path) -> None:
    """Two prepared outputs hold the same datasets, skipped list and summary."""
    from trimodal.data.schema import load_split

    for split in ("train", "dev", "test"):
        da, db = load_split(a / split)[0], load_split(b / split)[0]
        assert da.features == db.features, split
        assert da.num_rows == db.num_rows, split
        assert da.data.table.equals(db.data.table), f"{split} differs"
    assert (a / "skipped.jsonl").read_text() == (b / "skipped.jsonl").read_text()
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert sa == sb


def prepared_training_corpus(root: Path, train_videos: int) -> Path:
    """``train_videos`` + 2 synthetic 9–10-s videos (the last two: one dev, one test) prepared
    with the demo's settings (two 4-s clips a video) for the tiny presets; returns the
    prepared directory."""
    from trimodal.cli import demo_data_config
    from trimodal.prepare import prepare

    generate_corpus(
        root / "corpus", train_videos + 2, seed=3, opts=SynthOptions(min_seconds=9, max_seconds=10)
    )
    records = read_corpus(root / "corpus")
    for record, split in zip(records, ["train"] * train_videos + ["dev", "test"]):
        record.split = split
    write_corpus(root / "corpus", records)
    prepare(root / "corpus", root / "prepared", demo_data_config(), show_progress=False)
    return root / "prepared"
