"""Fault injection for the preparation's worker pool (imported by the worker processes).

The pool pickles its work function by module and name, so a replacement must live in a
module the workers can import: this one (pytest puts ``tests/`` on ``sys.path``, and the
workers get the parent's ``sys.path``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

from trimodal.prepare.shards import VideoTask, process_video


@dataclasses.dataclass(frozen=True)
class CrashOn:
    """A work function that kills its worker process on the chosen videos (as a segfaulting
    decoder would) and prepares every other video as usual."""

    video_ids: frozenset[str]

    def __call__(self, task: VideoTask) -> dict[str, Any]:
        if task.video_id in self.video_ids:
            os.abort()
        return process_video(task)


@dataclasses.dataclass(frozen=True)
class CrashUnlessPyAV:
    """A work function that kills its worker on the chosen videos unless they are read with
    ``decoder: pyav`` (as a fast-path decoder that segfaults on some files would)."""

    video_ids: frozenset[str]

    def __call__(self, task: VideoTask) -> dict[str, Any]:
        if task.video_id in self.video_ids and task.config.get("decoder") != "pyav":
            os.abort()
        return process_video(task)


@dataclasses.dataclass(frozen=True)
class KillOnce:
    """A work function that SIGKILLs its worker process the first time it meets one of the
    chosen videos (a marker file in ``marker_dir`` remembers it: the retry runs in another
    process) and prepares every video as usual otherwise."""

    video_ids: frozenset[str]
    marker_dir: str

    def __call__(self, task: VideoTask) -> dict[str, Any]:
        marker = os.path.join(self.marker_dir, f"killed-{task.video_id}")
        if task.video_id in self.video_ids and not os.path.exists(marker):
            with open(marker, "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        return process_video(task)
