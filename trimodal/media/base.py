"""The pieces every backend shares: the error type, the stream properties, which backends exist."""

from __future__ import annotations

import dataclasses
import importlib.util
import os

# The values of ``DataConfig.decoder`` (``--decoder``).
DECODERS = ("auto", "pyav", "decord")
# Set to 1 to make the library behave as if decord were not installed (tests, CI).
DISABLE_DECORD_ENV = "TRIMODAL_DISABLE_DECORD"


class MediaError(Exception):
    """A file cannot be used: ``reason`` (``unreadable``, ``no_video_stream``,
    ``no_audio_stream``, ``decoder_unavailable``) and a ``detail`` for a person."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """The properties of one video (and its audio), from the streams' timestamps.

    ``video_s``: first frame's presentation time to the end of the last frame; ``audio_s``:
    the audio stream's start to the end of its last packet; ``duration_s``: the shorter of
    the two (what every stream covers). ``width``/``height``: the picture as displayed
    (``rotation`` applied); ``rotation``: the display matrix's counterclockwise angle in
    degrees (0, 90, 180 or 270). ``video_start_s``: the first frame's presentation time in
    the file's clock (frame times in this package count from it).
    """

    duration_s: float
    video_s: float
    audio_s: float
    width: int
    height: int
    rotation: int
    video_start_s: float


def decord_available() -> bool:
    """Whether decord can be used: installed, and not disabled by ``TRIMODAL_DISABLE_DECORD=1``."""
    if os.environ.get(DISABLE_DECORD_ENV, "") not in ("", "0"):
        return False
    return importlib.util.find_spec("decord") is not None


def resolve_decoder(decoder: str) -> str:
    """The backend that ``decoder`` (``auto``/``pyav``/``decord``) reads frames with first:
    ``auto`` is decord where it is available, else PyAV. Raises ``MediaError``
    (``decoder_unavailable``) for ``decord`` without decord and for unknown names."""
    if decoder not in DECODERS:
        raise MediaError("decoder_unavailable", f"unknown decoder {decoder!r}: one of {DECODERS}")
    if decoder == "auto":
        return "decord" if decord_available() else "pyav"
    if decoder == "decord" and not decord_available():
        raise MediaError(
            "decoder_unavailable",
            "decoder 'decord' is not installed (it has wheels for x86-64 Linux and Windows "
            "only); use decoder 'auto' or 'pyav'",
        )
    return decoder
