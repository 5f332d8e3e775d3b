"""The two ways preparation fails: for the whole run, or for one video.

:class:`PrepareError` stops the run (bad settings, an unreadable corpus). :class:`VideoSkipped`
only drops one video: the decoding worker catches it and returns its ``reason`` (a short
machine-readable word such as ``too_short`` or ``unreadable``) and ``detail`` (for a person),
which end up in ``skipped.jsonl`` and the summary's counts.
"""

from __future__ import annotations


class PrepareError(RuntimeError):
    """The preparation cannot run at all (bad configuration, unreadable corpus)."""


class VideoSkipped(Exception):
    """One video cannot be prepared: ``reason`` (e.g. ``too_short``) and a ``detail``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
