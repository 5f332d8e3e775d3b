"""Data preparation: a raw corpus of music videos → model-ready clip datasets, one per split.

``python -m data_prep prepare --corpus CORPUS --out PREPARED`` is the command line; this
package is the library behind it, one concern per module, in the order the data flows:

- :mod:`~trimodal.prepare.corpus`: the raw corpus (``videos.jsonl`` + media): records,
  their validation, the texts that describe a video;
- :mod:`~trimodal.prepare.settings`: the preparation's settings (a ``DataConfig``), checked,
  and the part of them the prepared data depends on;
- :mod:`~trimodal.prepare.splits`: which split a video goes to, which of its clips are kept
  (the study's sparse training scheme, or random segments);
- :mod:`~trimodal.prepare.decoding`: one video → its duration, clip waveforms and square
  frames (on :mod:`trimodal.media`: PyAV, and decord where it is installed);
- :mod:`~trimodal.prepare.shards`: one video → its shard of clips (the work of a worker);
- :mod:`~trimodal.prepare.pool`: the worker processes, surviving decoder crashes;
- :mod:`~trimodal.prepare.assembly`: resuming from finished shards, and assembling them into
  the split datasets;
- :mod:`~trimodal.prepare.pipeline`: :func:`prepare`, the steps above from top to bottom;
- :mod:`~trimodal.prepare.synthetic`: a synthetic corpus of real MP4 files for tests and demos.

What a prepared row holds (column names, stored shapes, stable hashing) is defined in
:mod:`trimodal.data.schema`, which the loader (:class:`trimodal.data.PreparedClips`) reads too.

The output directory::

    PREPARED/train, dev, test   Arrow files + ``split.json`` (``trimodal.data.schema.load_split``)
    PREPARED/summary.json       counts per split, skipped videos by reason, the settings
    PREPARED/skipped.jsonl      one line per video that could not be used, with its reason
    PREPARED/.work/             per-video shards while running (kept with ``keep_work``)

A row is one clip: ``video_id``, ``clip_index``, ``start_s``/``end_s``, ``split``, ``labels``,
``label_ids`` (into the label vocabulary, the 45 music labels by default), ``texts`` (labels
then tags), ``title``, ``published_at``, one mono int16 waveform per rate (``audio_48k``,
``audio_16k``) and ``num_frames`` uniformly spaced frames per size (``frames_224``,
``frames_112``: ``[T, 3, S, S]`` with a crop margin, ``S = round(size * frame_margin)``).
"""

from trimodal.utils import lazy_exports

# Imported on first use, so that importing the package (and its command-line help)
# stays cheap.
__getattr__ = lazy_exports(
    __name__,
    {
        "WORK_DIR": "trimodal.prepare.assembly",
        "MUSIC45_LABELS": "trimodal.prepare.corpus",
        "CorpusError": "trimodal.prepare.corpus",
        "VideoRecord": "trimodal.prepare.corpus",
        "read_corpus": "trimodal.prepare.corpus",
        "record_problems": "trimodal.prepare.corpus",
        "text_candidates": "trimodal.prepare.corpus",
        "write_corpus": "trimodal.prepare.corpus",
        "PrepareError": "trimodal.prepare.errors",
        "VideoSkipped": "trimodal.prepare.errors",
        "prepare": "trimodal.prepare.pipeline",
        "load_data_config": "trimodal.prepare.settings",
        "assign_keep_fractions": "trimodal.prepare.splits",
        "assign_split": "trimodal.prepare.splits",
        "clip_plan": "trimodal.prepare.splits",
        "sample_clip_indices": "trimodal.prepare.splits",
        "segment_starts": "trimodal.prepare.splits",
    },
)

__all__ = [
    "MUSIC45_LABELS",
    "WORK_DIR",
    "CorpusError",
    "PrepareError",
    "VideoRecord",
    "VideoSkipped",
    "assign_keep_fractions",
    "assign_split",
    "clip_plan",
    "load_data_config",
    "prepare",
    "read_corpus",
    "record_problems",
    "sample_clip_indices",
    "segment_starts",
    "text_candidates",
    "write_corpus",
]
