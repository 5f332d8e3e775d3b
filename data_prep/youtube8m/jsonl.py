"""Append-only JSONL logs that survive a crash: the resumable state of the YouTube-8M steps.

Every network step writes one JSON object per finished item and ``fsync``\\ s it, so a re-run
reads the log, skips what is done and appends the rest. A crash can leave a torn last line
(no newline, invalid JSON); reading ignores it and :class:`JsonlAppender` cuts it off before
appending, so the next line never gets glued onto the broken one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of ``path`` (nothing if it does not exist).

    A torn last line (no trailing newline) is ignored silently: it is what a crash while
    appending leaves. A malformed line in the middle is skipped with a warning rather than
    stopping a resume half-way.
    """
    path = Path(path)
    if not path.is_file():
        return
    with path.open("rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        is_last = i == len(lines) - 1  # after the final "\n": a line that was never finished
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if not is_last:
                log.warning("%s:%d: skipping malformed line", path, i + 1)
            continue
        # A whole object without its newline is kept: the appender adds the newline.
        if isinstance(obj, dict):
            yield obj
        else:
            log.warning("%s:%d: skipping non-object line", path, i + 1)


def _repair_tail(path: Path) -> None:
    """Make ``path`` end with a newline: drop a torn last line, terminate a whole one."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1  # 0 when the file is a single torn line
        tail = data[cut:]
        try:
            json.loads(tail.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            f.truncate(cut)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


class JsonlAppender:
    """Append JSON objects to a log, one line each, flushed and fsync'd per write.

    Use as a context manager. Objects must be JSON-serialisable; keys keep their order.
    """

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)
        self._f = self.path.open("ab")

    def write(self, obj: dict[str, Any]) -> None:
        """Append one object and make it durable before returning."""
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._f.write(line.encode("utf-8"))
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl_atomic(path: str | Path, objects: list[dict[str, Any]]) -> Path:
    """Write a whole JSONL file atomically (a crash leaves the old file, never half a new one)."""
    from trimodal.utils import atomic_path

    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            for obj in objects:
                f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    return Path(path)
