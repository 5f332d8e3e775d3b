"""The one atomic writer: whole files or none, flushed to disk before and after the rename."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from trimodal.utils import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_land_whole_with_the_permissions_of_a_plain_open(tmp_path: Path):
    atomic_write_bytes(tmp_path / "a" / "blob.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "note.txt", "hé")
    atomic_write_json(tmp_path / "data.json", {"b": 1, "a": [2]})
    assert (tmp_path / "a" / "blob.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "note.txt").read_text() == "hé"
    assert json.loads((tmp_path / "data.json").read_text()) == {"a": [2], "b": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "note.txt").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_file_and_then_its_directory_are_synced(tmp_path: Path, monkeypatch):
    synced: list[bool] = []  # per fsync: was it a directory?
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_bytes(tmp_path / "weights.bin", b"x" * 100)
    assert synced == [False, True]
