"""``python tests/search_faults.py EMBED-ARGS...``: ``embed`` that pauses after each finished
video, so that a test can kill it (SIGKILL, as a crash or an out-of-memory kill would) with
some videos finished and others not."""

from __future__ import annotations

import sys
import time

from trimodal.search import cli, embedder

_write_part = embedder._write_part


def slow_write_part(*args, **kwargs) -> None:
    _write_part(*args, **kwargs)
    time.sleep(1.5)


if __name__ == "__main__":
    embedder._write_part = slow_write_part
    sys.exit(cli.main_embed(sys.argv[1:]))
