"""``embed``: media files, directories, a raw corpus or a prepared split → clip and video embeddings.

One path to the model's inputs: media go through :func:`trimodal.prepare.prepare` (the same
decoding, clip cutting and bad-input rules as training data: an unreadable file is skipped
with its reason in ``skipped.jsonl``, the rest go on), every prepared clip through
:func:`trimodal.embedding.embed_batches` (eval mode) with the loader settings of
:func:`trimodal.embedding.open_split`, and videos are pooled with
:func:`trimodal.metrics.aggregate_by_video`. Training, evaluation and search therefore see
exactly the same inputs for the same file.

The output directory::

    OUT/videos.parquet   one row per video: video_id, path, title, labels, clips, and its
                         video-level embedding per modality (float32 lists, unit length;
                         null in the video column for an audio-only file)
    OUT/clips.parquet    one row per clip: video_id, clip_index, start_s, end_s, text, and
                         its clip embedding per modality (video null for audio-only files)
    OUT/embed.json       model, fingerprints, modalities, dimension, counts, data settings
    OUT/skipped.jsonl    every input that could not be embedded, with its reason
    OUT/previews/        per video a JPEG frame and a WAV of its first clip (the page's
                         thumbnails and audio previews: what the model saw and heard)
    OUT/parts/           one file per finished video; a rerun (after a crash or with more
                         files) embeds only the videos that have none
    OUT/cache/           the temporary corpus and its preparation (``prepare`` resumes from
                         its finished shards, ``cache/prepared/.work``)

A file with sound and no video stream (``.wav``, ``.mp3``, ``.flac``, ``.opus``, …) is
prepared with black frames (``DataConfig.audio_only = "blank"``) and gets audio (and text)
embeddings only: the model's view of black frames says nothing about the file, so its
video embedding is left out (null) and the index keeps it out of the video gallery.

Both tables load with ``datasets.load_dataset("parquet", data_files=...)`` or pyarrow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trimodal.config import DataConfig, from_dict
from trimodal.search.errors import SearchError
from trimodal.utils import atomic_path, atomic_write_json, atomic_write_text

EMBED_VERSION = 1
MEDIA_SUFFIXES = frozenset(
    ".mp4 .m4v .webm .mkv .mov .avi .mpg .mpeg .ogv .flv".split()
    + ".wav .mp3 .flac .ogg .opus .m4a .aac".split()
)
EMBED_SPLIT = "test"  # every input goes to one split, whose every clip is kept
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclasses.dataclass
class EmbedOptions:
    """How to run: batch size, loader workers, ``prepare``'s decoding processes, device
    (``cpu``, ``cuda``, ``cuda:1``, ``mps``), precision (``fp32``, ``bf16``, ``fp16``:
    autocast), previews (the page's thumbnail and audio snippet), progress bars; the
    executor: ``local`` (this process) or ``ray`` (decoding in Ray tasks, the model in
    ``replicas`` Ray actors, one GPU each when ``device`` is CUDA; ``ray_address``: the
    cluster to join, else a local one; docs/cluster.md)."""

    batch_size: int = 16
    num_workers: int = 0
    prepare_workers: int = 2
    device: str = "cpu"
    precision: str = "fp32"
    previews: bool = True
    show_progress: bool = True
    executor: str = "local"
    ray_address: str | None = None
    replicas: int = 1

    def check(self) -> None:
        if self.batch_size < 1 or self.prepare_workers < 1 or self.num_workers < 0:
            raise SearchError("batch size and workers must be >= 1 (loader workers >= 0)")
        if self.executor not in ("local", "ray") or self.replicas < 1:
            raise SearchError(
                f"executor must be local or ray (got {self.executor!r}), replicas >= 1"
            )
        if self.precision not in PRECISIONS:
            raise SearchError(
                f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}"
            )


# ----------------------------------------------------------------------------- inputs


def media_files(directory: Path) -> list[Path]:
    """The media files under ``directory`` (recursively, by suffix), sorted."""
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
    )


def file_ids(paths: Sequence[Path]) -> list[str]:
    """A safe, stable id per file: its name without suffix (unsafe characters → ``_``), with
    a hash of the full path when two files would share one."""
    stems = [_UNSAFE.sub("_", p.stem).lstrip(".") or "file" for p in paths]
    out = []
    for path, stem in zip(paths, stems):
        if stems.count(stem) > 1:
            stem = f"{stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        out.append(stem[:180])
    return out


def collect_records(sources: Iterable[str | Path]) -> list[Any]:
    """The raw-corpus records of ``sources``: media files, directories of them, or raw
    corpora (a ``videos.jsonl`` or a directory holding one), with absolute paths.

    Raises:
        SearchError: a source does not exist, or nothing to embed, or an id repeats.
    """
    from trimodal.prepare.corpus import CORPUS_FILE, CorpusError, VideoRecord, read_corpus

    records, loose = [], []
    for source in map(Path, sources):
        if source.is_dir() and (source / CORPUS_FILE).is_file() or source.name == CORPUS_FILE:
            corpus = source if source.is_dir() else source.parent
            try:
                for r in read_corpus(corpus):
                    audio = str(r.audio_path(corpus).resolve()) if r.audio else None
                    media = str(r.media_path(corpus).resolve())
                    records.append(dataclasses.replace(r, media=media, audio=audio, split=None))
            except CorpusError as err:
                raise SearchError(str(err)) from err
        elif source.is_dir():
            loose += media_files(source)
        elif source.is_file():
            loose.append(source)
        else:
            raise SearchError(f"no such file or directory: {source}")
    loose = sorted({p.resolve() for p in loose})
    for path, video_id in zip(loose, file_ids(loose)):
        records.append(VideoRecord(video_id=video_id, media=str(path), title=path.stem))
    if not records:
        raise SearchError("nothing to embed: no media files found in the sources")
    ids = [r.video_id for r in records]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise SearchError(f"video id(s) given twice: {', '.join(repeated[:5])}")
    return [dataclasses.replace(r, split=EMBED_SPLIT) for r in records]


def data_config_from(source: str | Path | None, model_dir: str | Path | None) -> DataConfig:
    """The preparation settings to cut clips with (they must be the model's training data's).

    ``source``: a YAML file (its ``data:`` section) or a prepared directory (the settings in
    its ``summary.json``). ``None``: those of the prepared data the model was trained on,
    found through the run's ``config.yaml`` beside the model directory, else the defaults.
    """
    from trimodal.prepare import load_data_config
    from trimodal.prepare.errors import PrepareError

    if source is None and model_dir is not None:
        source = _training_data_of(Path(model_dir))
    if source is None:
        return DataConfig()
    path = Path(source)
    try:
        if path.is_dir():
            summary = path / "summary.json"
            if not summary.is_file():
                raise SearchError(f"{path} is not a prepared directory (no summary.json)")
            return from_dict(DataConfig, json.loads(summary.read_text())["config"], "data")
        return load_data_config(path)
    except (PrepareError, ValueError, KeyError) as err:
        raise SearchError(f"data config {path}: {err}") from err


def _training_data_of(model_dir: Path) -> Path | None:
    """The prepared directory named in the run's ``config.yaml`` (``RUN/best`` → ``RUN``)."""
    import yaml

    for run in (model_dir, model_dir.parent):
        config = run / "config.yaml"
        if config.is_file():
            data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
            prepared = data.get("prepared_dir")
            if prepared and (Path(prepared) / "summary.json").is_file():
                return Path(prepared)
    return None


def model_data_config(model: Any, config: DataConfig, records: Sequence[Any]) -> DataConfig:
    """``config`` restricted to what ``model`` reads (its frame size and audio rate, when the
    config stores them), with a vocabulary that keeps every record's labels and audio-only
    files prepared (with black frames) rather than skipped."""
    from trimodal.embedding import data_options
    from trimodal.prepare.settings import label_vocabulary

    options = data_options(model)
    sizes = [s for s in config.frame_sizes if s == options.get("video_size")]
    rates = [r for r in config.audio_rates if r == options.get("audio_rate")]
    vocabulary = label_vocabulary(config)
    extra = sorted({label for r in records for label in r.labels} - set(vocabulary))
    return dataclasses.replace(
        config,
        audio_only="blank",
        frame_sizes=sizes or list(config.frame_sizes),
        audio_rates=rates or list(config.audio_rates),
        label_vocabulary=[*vocabulary, *extra] if extra else config.label_vocabulary,
    )


# ----------------------------------------------------------------------------- the model


def load_model(model_dir: str | Path, device: str = "cpu") -> tuple[Any, str]:
    """``(TrimodalModel in eval mode on device, fingerprint of the model directory's files)``."""
    from trimodal.evaluation.extraction import model_fingerprint
    from trimodal.modeling import TrimodalModel

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise SearchError(f"no saved model at {path} (config.json not found)")
    model = TrimodalModel.from_pretrained(path).to(device).eval()
    return model, model_fingerprint(path)


def state_fingerprint(model: Any) -> str:
    """SHA-256 of a model's parameters and buffers (for a model that has no directory)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_u8()).numpy())
    return digest.hexdigest()


def _u8() -> Any:
    import torch

    return torch.uint8


def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """``float32 [T, D]`` unit-length text embeddings (eval mode, restored afterwards)."""
    import torch

    texts = [str(t) for t in texts]
    if not texts or any(not t.strip() for t in texts):
        raise SearchError("empty text query")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [
                model.encode_text(texts[i : i + batch_size]).float().cpu()
                for i in range(0, len(texts), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(torch.cat(parts), dim=1).numpy()


def read_text_file(path: str | Path) -> list[str]:
    """The queries of a text file, one per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"no such text file: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    queries = [line for line in lines if line]
    if not queries:
        raise SearchError(f"{path} holds no query (one per line)")
    return queries


# ----------------------------------------------------------------------------- embedding


def embed_media(
    model: Any,
    sources: Iterable[str | Path],
    out_dir: str | Path,
    *,
    model_fp: str | None = None,
    data_config: DataConfig | None = None,
    options: EmbedOptions | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed media files, directories or raw corpora into ``out_dir`` (module docstring).

    Args:
        model: a :class:`~trimodal.modeling.TrimodalModel`.
        model_fp: fingerprint of the model (default: a hash of its parameters).
        data_config: preparation settings (default :class:`DataConfig`; pass the settings
            the model was trained with, :func:`data_config_from`).

    Returns:
        The run's ``embed.json`` contents. Raises :class:`SearchError` for bad sources or
        when no input could be embedded (``skipped.jsonl`` says why).
    """
    from trimodal.prepare import prepare, write_corpus
    from trimodal.prepare.errors import PrepareError

    options = options or EmbedOptions()
    options.check()
    out = Path(out_dir)
    records = collect_records(sources)
    config = model_data_config(model, data_config or DataConfig(), records)
    config = dataclasses.replace(
        config, prepare_executor=options.executor, ray_address=options.ray_address
    )
    corpus, prepared = out / "cache" / "corpus", out / "cache" / "prepared"
    write_corpus(corpus, records)
    try:
        summary = prepare(
            corpus, prepared, config, workers=options.prepare_workers, keep_work=True,
            show_progress=options.show_progress,
        )  # fmt: skip
    except PrepareError as err:
        raise SearchError(str(err)) from err
    from trimodal.data.schema import media_stamp

    sources_of = {
        r.video_id: {
            "path": r.media,
            "stamp": [media_stamp(r.media), media_stamp(r.audio_path(""))],
            "audio_only": is_audio_only(r.media),
        }
        for r in records
    }
    source_key = json.dumps(summary["config"], sort_keys=True)
    return embed_prepared(
        model, prepared, EMBED_SPLIT, out, model_fp=model_fp, options=options,
        sources=sources_of, source_key=source_key, info=info,
    )  # fmt: skip


def is_audio_only(path: str | Path) -> bool:
    """Whether ``path`` has no video stream (an unreadable file: no; ``prepare`` skips it)."""
    from trimodal.media import MediaError, has_video_stream

    try:
        return not has_video_stream(str(path))
    except MediaError:
        return False


def embed_prepared(
    model: Any,
    prepared_dir: str | Path,
    split: str,
    out_dir: str | Path,
    *,
    model_fp: str | None = None,
    options: EmbedOptions | None = None,
    sources: dict[str, dict[str, Any]] | None = None,
    source_key: str | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed every clip of a prepared ``split`` into ``out_dir``, reusing finished videos.

    ``sources``: per video id its media ``path``, file ``stamp`` (part of the key of its
    finished part, so a replaced file is embedded again) and ``audio_only`` (no video
    embedding); default: the paths in the corpus
    that was prepared (``summary.json``), keyed by the split's fingerprint. ``info``: extra
    entries for ``embed.json`` (the model's directory).
    """
    from trimodal.embedding import data_options, open_split
    from trimodal.evaluation.extraction import split_fingerprint

    options = options or EmbedOptions()
    options.check()
    out, prepared_dir = Path(out_dir), Path(prepared_dir)
    try:
        dataset = open_split(prepared_dir, split, model)
    except FileNotFoundError as err:
        raise SearchError(str(err)) from err
    model_fp = model_fp or state_fingerprint(model)
    if source_key is None:
        source_key = split_fingerprint(prepared_dir, split, data_options(model))
    sources = sources if sources is not None else corpus_paths(prepared_dir)
    loader_key = json.dumps(data_options(model), sort_keys=True)
    keys = {
        vid: _part_key(model_fp, loader_key, source_key, vid, sources.get(vid))
        for vid in dict.fromkeys(dataset.video_ids)
    }
    blank = {vid for vid, src in sources.items() if (src or {}).get("audio_only")}
    reused = _embed_missing(model, dataset, out / "parts", keys, options, blank)
    skipped = _skipped(prepared_dir)
    if not keys:
        reasons = "; ".join(f"{s.get('video_id')}: {s['reason']}" for s in skipped[:5])
        raise SearchError(f"no input could be embedded ({reasons or 'no clips'})")
    meta = {
        "version": EMBED_VERSION,
        "model_fingerprint": model_fp,
        "prepared": str(prepared_dir.resolve()),
        "split": split,
        "data_options": data_options(model),
        "videos": len(keys),
        "clips": len(dataset),
        "skipped": len(skipped),
        "reused_videos": reused,
        "embedded_videos": len(keys) - reused,
        "data_config": _prepared_settings(prepared_dir),
        **(info or {}),
    }
    meta |= write_tables(out, dataset, keys, sources)
    meta["audio_only"] = sorted(blank & set(keys))
    atomic_write_text(
        out / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped)
    )
    atomic_write_json(out / "embed.json", meta)
    return meta


def _part_key(model_fp: str, loader_key: str, source_key: str, video_id: str, source: Any) -> str:
    text = json.dumps(
        [EMBED_VERSION, model_fp, loader_key, source_key, video_id, source], default=str
    )
    return f"{video_id}.{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def corpus_paths(prepared_dir: Path) -> dict[str, dict[str, Any]]:
    """``{video_id: {"path": media file}}`` from the corpus a prepared directory came from
    (``summary.json``'s ``corpus``), empty when it is gone."""
    from trimodal.prepare.corpus import CorpusError, read_corpus

    summary = prepared_dir / "summary.json"
    if not summary.is_file():
        return {}
    corpus = Path(json.loads(summary.read_text()).get("corpus", ""))
    try:
        records = read_corpus(corpus)
    except (CorpusError, OSError):
        return {}
    return {r.video_id: {"path": str(r.media_path(corpus).resolve())} for r in records}


def _prepared_settings(prepared_dir: Path) -> dict[str, Any] | None:
    summary = prepared_dir / "summary.json"
    return json.loads(summary.read_text()).get("config") if summary.is_file() else None


def _skipped(prepared_dir: Path) -> list[dict[str, Any]]:
    path = prepared_dir / "skipped.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _groups(video_ids: Sequence[str], batch_size: int) -> list[list[int]]:
    """Dataset rows in batches of whole consecutive videos (at most ``batch_size`` clips,
    unless one video has more): the same batches on every run, so a resumed run computes
    bit for bit what an uninterrupted one does."""
    rows_of: dict[str, list[int]] = {}
    for row, vid in enumerate(video_ids):
        rows_of.setdefault(vid, []).append(row)
    groups: list[list[int]] = []
    for rows in rows_of.values():
        if groups and len(groups[-1]) + len(rows) <= batch_size:
            groups[-1].extend(rows)
        else:
            groups.append(list(rows))
    return groups


@dataclasses.dataclass
class PartJob:
    """What every pass that writes embedding parts shares, locally or in a Ray actor.

    Args:
        model: the trimodal model.
        dataset: the split's clips (:func:`open_split`).
        parts: the directory of the parts, one ``<key>.npz`` per video.
        keys: video id → its part's file name (without ``.npz``).
        done: the videos whose part is already written (never rewritten).
        options: how to embed.
        audio_only: the videos written without a video embedding (audio-only media).
    """

    model: Any
    dataset: Any
    parts: Path
    keys: dict[str, str]
    done: set[str]
    options: EmbedOptions
    audio_only: set[str]


def _embed_missing(
    model: Any,
    dataset: Any,
    parts: Path,
    keys: dict[str, str],
    options: EmbedOptions,
    audio_only: set[str],
) -> int:
    """Embed the videos without a finished part, writing one part per video (without a video
    embedding for the ids in ``audio_only``); return how many videos were reused (on Ray
    with ``options.executor``)."""
    done = {vid for vid, key in keys.items() if (parts / f"{key}.npz").is_file()}
    todo = [g for g in _groups(dataset.video_ids, options.batch_size)
            if any(dataset.video_ids[r] not in done for r in g)]  # fmt: skip
    job = PartJob(model, dataset, parts, keys, done, options, audio_only)
    if options.executor == "ray" and todo:
        from trimodal.search.ray_executor import embed_on_ray

        embed_on_ray(job, todo)
    else:
        embed_groups(job, todo)
    return len(done)


def embed_groups(job: PartJob, todo: list[list[int]]) -> None:
    """Embed the batches of dataset rows ``todo`` (:func:`_groups`), writing the part (and
    previews) of each video not ``job.done`` (without a video embedding for
    ``job.audio_only``)."""
    import torch
    from tqdm.auto import tqdm

    from trimodal.data import collate_clips
    from trimodal.embedding import embed_batches

    model, dataset, options = job.model, job.dataset, job.options
    device = torch.device(options.device)
    dtype = PRECISIONS[options.precision]
    inner = getattr(model, "module", model)

    def inputs(batch: dict[str, Any]) -> dict[str, Any]:
        return {m: batch[m].to(device) if torch.is_tensor(batch[m]) else batch[m]
                for m in inner.modalities}  # fmt: skip

    autocast = torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype else None
    bar = tqdm(todo, desc="embed", unit="batch", disable=not options.show_progress)
    for group in bar:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, group), batch_size=options.batch_size,
            num_workers=options.num_workers, collate_fn=collate_clips,
        )  # fmt: skip
        with autocast or contextlib.nullcontext():
            result = embed_batches(model, loader, inputs_fn=inputs, desc=None)  # one bar: ours
        for vid in dict.fromkeys(result.video_id):
            if vid not in job.done:
                rows = [i for i, v in enumerate(result.video_id) if v == vid]
                blank = vid in job.audio_only
                _write_part(job.parts / f"{job.keys[vid]}.npz", result, rows, blank)
                if options.previews:
                    previews = job.parts.parent / "previews"
                    write_previews(previews, dataset, group[rows[0]], vid, blank)


def _write_part(path: Path, result: Any, rows: list[int], audio_only: bool = False) -> None:
    arrays = {f"emb_{m}": result.embeddings[m][rows].numpy() for m in result.modalities}
    if audio_only and "emb_video" in arrays:
        # The embedding of black frames says nothing about the file: NaN marks it absent.
        arrays["emb_video"] = np.full_like(arrays["emb_video"], np.nan)
    arrays["clip_index"] = np.asarray([result.clip_index[i] for i in rows], np.int64)
    arrays["texts"] = np.asarray(
        [result.texts[i] for i in rows] if result.texts else [""] * len(rows)
    )
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)


def write_previews(
    directory: Path, dataset: Any, row: int, video_id: str, audio_only: bool = False
) -> None:
    """``<id>.jpg`` (the middle frame; none for an ``audio_only`` file) and ``<id>.wav``
    (16-bit) of clip ``row`` as the model gets them (eval crop and size)."""
    import io
    import wave

    from PIL import Image

    item = dataset[row]
    if "video" in item and not audio_only:
        frames = item["video"].numpy()  # [T, 3, H, W] in [0, 1]
        frame = (frames[len(frames) // 2].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=90)
        with atomic_path(directory / f"{video_id}.jpg") as tmp:
            tmp.write_bytes(buf.getvalue())
    if "audio" in item:
        pcm = (np.clip(item["audio"].numpy(), -1, 1) * 32767).astype("<i2")
        with atomic_path(directory / f"{video_id}.wav") as tmp, wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(dataset.audio_rate))
            w.writeframes(pcm.tobytes())


def _vector_column(x: np.ndarray) -> Any:
    """float32 [N, D] → a fixed-size-list column; rows holding NaN (absent) become null."""
    import pyarrow as pa

    x = np.ascontiguousarray(x, np.float32)
    absent = np.isnan(x).any(axis=1)
    mask = pa.array(absent) if absent.any() else None
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1], mask=mask)


def _vector_rows(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size-list column → ``(float32 [N, D] with zeros for nulls, bool [N] present)``."""
    column = column.combine_chunks()
    present = np.asarray(column.is_valid())
    x = np.zeros((len(column), column.type.list_size), np.float32)
    x[present] = column.flatten().to_numpy().reshape(-1, column.type.list_size)
    return x, present


def write_tables(
    out: Path, dataset: Any, keys: dict[str, str], sources: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``clips.parquet`` and ``videos.parquet`` from the finished parts (video-id order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trimodal.metrics.pooling import aggregate_by_video

    cols = ["video_id", "clip_index", "start_s", "end_s", "labels", "title"]
    meta = dataset.dataset.select_columns(cols)[:]
    parts = {vid: np.load(out / "parts" / f"{key}.npz") for vid, key in keys.items()}
    modalities = sorted(k[4:] for k in next(iter(parts.values())).files if k.startswith("emb_"))
    clip_vectors = {m: np.concatenate([parts[v][f"emb_{m}"] for v in keys]) for m in modalities}
    clip_index = np.concatenate([parts[v]["clip_index"] for v in keys])
    if clip_index.tolist() != [int(i) for i in meta["clip_index"]]:
        raise RuntimeError("finished parts do not match the prepared split's clips")
    clips = pa.table(
        {
            "video_id": meta["video_id"], "clip_index": clip_index,
            "start_s": meta["start_s"], "end_s": meta["end_s"],
            "text": np.concatenate([parts[v]["texts"] for v in keys]).astype(str).tolist(),
            **{m: _vector_column(x) for m, x in clip_vectors.items()},
        }
    )  # fmt: skip
    first = {}
    for i, vid in enumerate(meta["video_id"]):
        first.setdefault(vid, i)
    video_ids = list(keys)
    pooled = {}
    for m, x in clip_vectors.items():
        pooled[m], ids = aggregate_by_video(x, meta["video_id"])
        if ids != video_ids:
            raise RuntimeError("pooled video order does not match the parts")
    videos = pa.table(
        {
            "video_id": video_ids,
            "path": [str((sources.get(v) or {}).get("path", "")) for v in video_ids],
            "title": [meta["title"][first[v]] for v in video_ids],
            "labels": [list(meta["labels"][first[v]]) for v in video_ids],
            "clips": [int(np.sum(np.asarray(meta["video_id"]) == v)) for v in video_ids],
            **{m: _vector_column(x.numpy()) for m, x in pooled.items()},
        }
    )
    for name, table in (("clips", clips), ("videos", videos)):
        with atomic_path(out / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp)
    return {"modalities": modalities, "dim": int(next(iter(clip_vectors.values())).shape[1])}


def load_videos(embed_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], dict]:
    """``(items, {modality: float32 [V, D]}, embed.json)`` of an ``embed`` output: what
    :func:`trimodal.search.index.build_index` takes. An item without a modality's embedding
    (an audio-only file's video) has a zero row there and the modality in its ``absent``."""
    import pyarrow.parquet as pq

    root = Path(embed_dir)
    if not (root / "embed.json").is_file() or not (root / "videos.parquet").is_file():
        raise SearchError(f"{root} is not an embed output (embed.json/videos.parquet missing)")
    meta = json.loads((root / "embed.json").read_text())
    table = pq.read_table(root / "videos.parquet")
    vectors, absent = {}, [[] for _ in range(table.num_rows)]
    for m in meta["modalities"]:
        vectors[m], present = _vector_rows(table.column(m))
        for row in np.flatnonzero(~present):
            absent[row].append(m)
    source = str(root.resolve())
    columns = (
        table.column(c).to_pylist() for c in ("video_id", "path", "title", "labels", "clips")
    )
    items = [
        {
            "id": vid,
            "path": path,
            "title": title,
            "labels": labels,
            "clips": clips,
            "source": source,
            "absent": gone,
        }
        for vid, path, title, labels, clips, gone in zip(*columns, absent)
    ]
    return items, vectors, meta


def embed_files(
    model: Any,
    files: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    data_config: DataConfig | None = None,
    options: EmbedOptions | None = None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Video-level embeddings of media ``files``: ``(items, {modality: float32 [V, D]})``,
    the items in video-id order (``items[i]["path"]`` names the file). Files that cannot be
    used are left out (:func:`embed_media` raises when none can). ``out_dir`` ``None``: a
    temporary directory, removed afterwards."""
    import tempfile

    if out_dir is not None:
        embed_media(model, files, out_dir, data_config=data_config, options=options)
        items, vectors, _ = load_videos(out_dir)
        return items, vectors
    with tempfile.TemporaryDirectory(prefix="trimodal-embed-") as tmp:
        return embed_files(model, files, tmp, data_config=data_config, options=options)


def write_texts(
    out_dir: str | Path, texts: Sequence[str], vectors: np.ndarray, info: dict[str, Any]
) -> Path:
    """``OUT/texts.parquet`` (``text``, ``embedding``) and ``OUT/embed.json``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    path = out / "texts.parquet"
    table = pa.table({"text": list(texts), "text_embedding": _vector_column(vectors)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    meta = {"version": EMBED_VERSION, "texts": len(texts), "dim": int(vectors.shape[1]), **info}
    atomic_write_json(out / "embed.json", meta)
    return path
