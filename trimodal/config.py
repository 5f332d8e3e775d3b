"""Typed experiment configuration: dataclasses, YAML loading, command-line overrides.

An experiment is described by one :class:`ExperimentConfig` with four sections (``model``,
``data``, ``train``, ``eval``) plus the objective. It is read from a YAML file, then
overridden from the command line with dotted keys::

    --objective contrastive --train.lr 1e-4 --model.embed_dim 512 --model.channels.audio.trainable_blocks 2

Every key is checked against the dataclass fields: an unknown key or a value of the wrong
type is refused with a :class:`ConfigError` that names the key. The resolved configuration
is written next to every run's outputs (:func:`save_config`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from trimodal.modalities import MODALITIES, Modality


class ConfigError(ValueError):
    """A configuration key is unknown or its value has the wrong type."""


# ----------------------------------------------------------------------------- sections


def _setting(
    default: Any = dataclasses.MISSING, help: str = "", flag: str | None = None, **kw: Any
) -> Any:
    """A config field with its one-line, plain-text help (and flag, when not
    ``--field-name``): ``trimodal train --help`` (:mod:`trimodal.help`) and the evaluation
    command line (:mod:`trimodal.evaluation.cli`) are generated from these. A callable
    ``default`` is the field's default factory; no ``default``: the key is required."""
    metadata = {"help": help, **({"flag": flag} if flag else {})}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


@dataclasses.dataclass
class HeadConfig:
    """Projection head from a backbone's output to the shared space.

    Linear→activation→dropout per hidden size, then a final Linear to ``embed_dim``.
    Features of random or frozen backbones often share one dominant direction, which a plain
    linear head must first learn away: ``input_norm: batch`` removes it. ``kind: identity``
    is the thesis's "single head" variant, where only the video side has a head, mapping
    into the audio backbone's feature space.
    """

    kind: Literal["mlp", "identity"] = _setting(
        "mlp", "mlp: linear layers; identity: no layers, the backbone's features are the "
        "embedding (needs model.embed_dim equal to the backbone's output size)",
    )  # fmt: skip
    input_norm: Literal["none", "batch"] = _setting(
        "none", "batch: standardise the backbone features first (BatchNorm1d); none: as they are"
    )
    hidden_sizes: list[int] = _setting(
        list, "sizes of the hidden layers; [] gives a single linear layer"
    )
    activation: Literal["relu", "gelu", "tanh"] = _setting(
        "relu", "activation after each hidden layer"
    )
    dropout: float = _setting(0.1, "dropout probability after each hidden layer")
    # The dual-encoder thesis ends its heads with a sigmoid before L2 normalisation.
    output_activation: Literal["none", "sigmoid"] = _setting(
        "none", "activation after the last layer, before L2 normalisation (sigmoid: the thesis)"
    )


@dataclasses.dataclass
class ChannelConfig:
    """One modality's channel: backbone adapter → projection head.

    The backbone's architecture settings are the adapter's (see each adapter's ``Options``
    in :mod:`trimodal.backbones`); where its pretrained weights live is as the adapter
    documents.
    """

    backbone: str = _setting(help="the backbone adapter (bpemb, clap_htsat, videomae, ...)")
    source: str | None = _setting(
        None, "pretrained weights: a directory, checkpoint file or cache directory, as the "
        "backbone documents; null keeps random weights",
    )  # fmt: skip
    options: dict[str, Any] = _setting(
        dict,
        "the backbone's architecture settings (its Options), e.g. {vocab_size: 100000, dim: 300}",
    )
    trainable_blocks: Union[Literal["all", "none"], int] = _setting(  # noqa: UP007
        "all", "all: fully trainable; none: frozen; an integer N: only the last N blocks"
    )
    gradient_checkpointing: bool = _setting(
        False, "recompute the backbone's activations in the backward pass (less memory)"
    )
    head: HeadConfig = _setting(HeadConfig, "the projection head (keys below)")


def _default_channels() -> dict[str, ChannelConfig]:
    return {
        "text": ChannelConfig(backbone="bpemb", trainable_blocks="none"),
        "audio": ChannelConfig(backbone="clap_htsat"),
        "video": ChannelConfig(backbone="videomae"),
    }


@dataclasses.dataclass
class ModelConfig:
    """The trimodal model: which channels exist and the shared space they project into."""

    preset: Literal["tiny", "full"] = _setting(
        "full", "fills unset backbone options: tiny (small random backbones for tests and "
        "the demo) or full (the published architectures)",
    )  # fmt: skip
    modalities: list[Modality] = _setting(
        lambda: list(MODALITIES), "the channels that exist: any two of text, audio, video, or all"
    )
    embed_dim: int = _setting(300, "size of the shared embedding space")
    channels: dict[str, ChannelConfig] = _setting(
        _default_channels, "each modality's channel settings (keys below)"
    )
    logit_scale_init: float = _setting(
        math.log(1 / 0.07), "initial logit scale (natural log of the inverse temperature)"
    )
    learnable_logit_scale: bool = _setting(True, "train the logit scale")
    # open_clip clamps the logit scale at ln(100) so the softmax cannot saturate.
    logit_scale_max: float = _setting(
        math.log(100.0), "upper bound of the logit scale (natural log)"
    )


def _default_sparse_fractions() -> list[list[float]]:
    # The trimodal study's train sampling (docs/research.md#trimodal-study-data):
    # [share of videos, share of clips kept].
    return [[0.30, 0.20], [0.20, 0.25], [0.20, 0.33], [0.20, 0.50], [0.05, 0.75], [0.05, 1.0]]


@dataclasses.dataclass
class DataConfig:
    """Where the prepared dataset lives, how ``prepare`` builds it and how clips are read.

    Preparation (``python -m data_prep prepare``; a YAML's ``data:`` section feeds it) cuts
    each video into clips (the trimodal study) or segments (the dual-encoder study: six 5-s
    segments) and assigns each video without a ``split`` in its record to train, dev or
    test: by hash or by age (:func:`trimodal.prepare.splits.age_split`), in calendar months
    from ``reference_date``; undated videos fall back to the hash. Frames are stored per size
    as ``frames_<size>`` arrays ``[num_frames, 3, S, S]`` with ``S = round(size *
    frame_margin)`` (short side resized to S, centre-cropped square): the margin leaves room
    for training-time crops. Frames are read by :mod:`trimodal.media`; audio always by PyAV.

    Loading (:class:`trimodal.data.PreparedClips`) takes a synchronous audio+video window
    inside the clip, random in training, centred in evaluation. Evaluation is deterministic
    (centre crops, a text chosen per clip by a stable hash, or the first label).
    """

    prepared_dir: str | None = _setting(None, "directory of the prepared dataset")
    clip_seconds: float = _setting(8.0, "clip length in seconds (scheme clips)")
    num_workers: int | None = _setting(
        None, "DataLoader worker processes; null: min(8, CPUs of this process's share of the "
        "machine - 1), the CPUs this process may use divided by the processes on this machine",
    )  # fmt: skip
    seed: int = _setting(0, "seed of the data sampling and augmentation")
    # -- prepare
    scheme: Literal["clips", "segments"] = _setting(
        "clips", "clips: consecutive clip_seconds clips; segments: num_segments "
        "non-overlapping segment_seconds segments, one at a random start inside each equal "
        "part of the video",
    )  # fmt: skip
    segment_seconds: float = _setting(5.0, "segment length in seconds (scheme segments)")
    num_segments: int = _setting(6, "segments per video (scheme segments)")
    sparse_train: bool = _setting(
        True, "with scheme clips, train videos keep a sampled share of their clips as in "
        "sparse_fractions; dev and test keep every clip",
    )  # fmt: skip
    sparse_fractions: list[list[float]] = _setting(
        _default_sparse_fractions, "[share of videos, share of clips kept] pairs of sparse_train"
    )
    split_by: Literal["hash", "age"] = _setting(
        "hash", "how videos without a split are assigned: hash (of the video id, against "
        "split_ratios) or age (on reference_date)",
    )  # fmt: skip
    split_ratios: list[float] = _setting(
        lambda: [0.8, 0.1, 0.1], "train, dev, test shares of split_by hash"
    )
    reference_date: str = _setting("2023-01-01", "date the ages of split_by age count from")
    test_min_age_years: float = _setting(
        7.0, "split_by age: videos at least this old (years) and younger than "
        "test_max_age_years go to test; younger ones are skipped as too_recent (0 keeps "
        "every young video in test)",
    )  # fmt: skip
    test_max_age_years: float = _setting(
        8.0, "split_by age: from this age (years) to dev_max_age_years, dev"
    )
    dev_max_age_years: float = _setting(8.5, "split_by age: videos this old (years) or older go to train")  # fmt: skip
    num_frames: int = _setting(16, "frames per clip, uniformly spaced")
    frame_sizes: list[int] = _setting(
        lambda: [224, 112], "frame sizes stored, each as a frames_<size> column"
    )
    frame_margin: float = _setting(
        8 / 7, "stored frame side over frame size: room for training-time crops"
    )
    frame_dtype: Literal["uint8", "float16"] = _setting(
        "uint8", "uint8 (exact: decoded video is 8-bit) or float16 in [0, 1]"
    )
    audio_rates: list[int] = _setting(
        lambda: [48000, 16000], "sample rates (Hz) of the mono float32 waveforms stored"
    )
    label_vocabulary: list[str] | None = _setting(
        None, "label names (label ids index into it); null: the 45 YouTube-8M music labels; "
        "a record with a name outside it is skipped",
    )  # fmt: skip
    prepare_workers: int = _setting(2, "decoding processes of prepare")
    prepare_executor: Literal["local", "ray"] = _setting(
        "local", "where prepare decodes: local (a process pool) or ray (Ray tasks on a "
        "cluster; the ray extra, docs/cluster.md)",
    )  # fmt: skip
    ray_address: str | None = _setting(
        None, "executor ray: the cluster to join (auto, or ray://HOST:10001); null: start a "
        "local one with prepare_workers CPUs",
    )  # fmt: skip
    decoder: Literal["auto", "pyav", "decord"] = _setting(
        "auto", "frame decoder: auto (decord where installed, PyAV for each file decord "
        "cannot read), pyav or decord",
    )  # fmt: skip
    audio_only: Literal["skip", "blank"] = _setting(
        "skip", "a file with sound and no video stream: skip (reason no_video_stream) or "
        "blank (prepared with black frames; embed uses this and leaves out its video "
        "embedding)",
    )  # fmt: skip
    # -- loading
    audio_rate: int = _setting(48000, "sample rate read (Hz): 48000 for CLAP, 16000 for musicnn")
    video_size: int = _setting(224, "frame size read: 224 for VideoMAE, 112 for R(2+1)D")
    crop_seconds: float | None = _setting(
        None, "length (s) of the audio+video window read from each clip; null: the whole clip"
    )
    augment: bool = _setting(
        True, "in training: random temporal crop, random resized crop and a random text"
    )
    crop_scale: list[float] = _setting(
        lambda: [0.5, 1.0], "range of the area share of the random resized crop"
    )
    eval_text: Literal["hashed", "first"] = _setting(
        "hashed", "evaluation text per clip: hashed (chosen by a stable hash) or first (the "
        "first label)",
    )  # fmt: skip
    train_text: Literal["texts", "labels"] = _setting(
        "texts", "training texts drawn from: texts (the video's labels and tags) or labels "
        "(its label names only, the texts of label queries and zero-shot tagging)",
    )  # fmt: skip


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings (defaults: the trimodal study's hyper-parameters).

    The effective batch is ``batch_size × processes × gradient_accumulation_steps``, but
    contrastive negatives come from ``batch_size × processes`` only (accumulation does not
    add negatives; gradient caching does). The loader draws global batches of ``batch_size ×
    processes`` and splits them, so P processes take the optimiser steps, at the same
    learning rates, of one process with batch ``batch_size × P``.
    """

    output_dir: str = _setting("runs/trimodal", "directory of the run's outputs")
    epochs: int = _setting(5, "training epochs")
    batch_size: int = _setting(2, "clips per batch, per process")
    gradient_accumulation_steps: int = _setting(4, "batches per optimiser step")
    lr: float = _setting(6e-5, "peak learning rate")
    weight_decay: float = _setting(1e-2, "AdamW weight decay")
    adam_betas: list[float] = _setting(lambda: [0.9, 0.98], "AdamW betas")
    adam_eps: float = _setting(1e-9, "AdamW epsilon")
    warmup_ratio: float = _setting(0.1, "share of the steps of linear learning-rate warm-up")
    lr_schedule: Literal["linear", "exponential", "constant"] = _setting(
        "linear", "linear (warm-up, then linear decay: the study), exponential (warm-up, then "
        "times lr_gamma per epoch: the dual-encoder thesis) or constant",
    )  # fmt: skip
    lr_gamma: float = _setting(0.95, "per-epoch factor of lr_schedule exponential")
    max_grad_norm: float = _setting(2.0, "gradient norm clipping threshold")
    mixed_precision: Literal["no", "fp16", "bf16"] | None = _setting(
        None, "null: the launcher's (accelerate launch --mixed_precision, accelerate config); "
        "a value overrides it, with a warning",
    )  # fmt: skip
    seed: int = _setting(0, "seed of the model initialisation and training")
    max_steps: int | None = _setting(None, "stop after this many optimiser steps (tests, smoke runs)")  # fmt: skip
    grad_cache_chunk: int | None = _setting(
        None, "gradient caching: encode the batch in chunks of this many clips, so a larger "
        "batch (more negatives) fits in memory; null: off",
    )  # fmt: skip
    feature_cache: bool = _setting(
        True, "cache the backbone outputs of frozen channels: computed in the first "
        "feature_cache_views epochs, then reused",
    )  # fmt: skip
    feature_cache_views: int = _setting(
        1, "augmentation views cached per clip: epoch e uses view e mod feature_cache_views"
    )
    validations_per_epoch: int = _setting(2, "validations on dev per epoch")
    select_metric: str = _setting(
        "video/mean_R@10", "validation metric that picks the best checkpoint "
        "(video/mean_R@10: mean R@10 over all retrieval directions at video level)",
    )  # fmt: skip
    select_mode: Literal["max", "min"] = _setting(
        "max", "whether the best select_metric is the largest or smallest (min with "
        "mean_positive_distance is the study's rule)",
    )  # fmt: skip
    early_stopping_patience: int | None = _setting(
        None, "stop after this many validations without improvement of select_metric; null: never"
    )
    head_autoencoder_epochs: int = _setting(
        0, "before training, fit each trainable head as the encoder of an autoencoder of its "
        "backbone's features for this many epochs (the thesis's initialisation)",
    )  # fmt: skip
    head_autoencoder_lr: float = _setting(1e-3, "learning rate of the head autoencoder")
    text_positives: bool = _setting(
        True, "in the pairs with text, clips whose normalised texts are the same are "
        "positives of each other, not negatives; false: every clip against every other",
    )  # fmt: skip
    checkpoint_every: int = _setting(500, "save a checkpoint every this many optimiser steps")
    checkpoint_total_limit: int = _setting(3, "checkpoints kept")
    resume: str | None = _setting(None, "latest or a checkpoint directory to resume from")
    max_nonfinite_steps: int = _setting(
        10, "stop, saving the last good state, after this many optimiser steps in a row with "
        "a non-finite loss or gradient",
    )  # fmt: skip
    log_with: list[str] = _setting(
        lambda: ["tensorboard", "jsonl"], "metric loggers: jsonl and the trackers accelerate "
        "knows (tensorboard, wandb, ...)",
    )  # fmt: skip
    log_every: int = _setting(10, "log the training metrics every this many optimiser steps")
    # -- speed (the README, "Performance"): each changes speed, not results.
    attn_implementation: Literal["sdpa", "eager"] = _setting(
        "sdpa", "attention kernel of the backbones that offer a choice (VideoMAE): sdpa "
        "(torch's scaled_dot_product_attention) or eager (explicit softmax of QK)",
    )  # fmt: skip
    compile: bool = _setting(
        False, "torch.compile each trainable backbone (compiles on the first steps)"
    )
    tf32: bool = _setting(
        True, "on CUDA GPUs that have them (Ampere and later), TF32 tensor cores for float32 "
        "matmuls and convolutions",
    )  # fmt: skip
    optimizer_impl: Literal["auto", "fused", "foreach", "for_loop"] = _setting(
        "auto", "AdamW implementation: fused (one kernel over all parameters), foreach "
        "(batched per group), for_loop, or auto (fused where the device has it, else foreach)",
    )  # fmt: skip
    frozen_no_grad: bool = _setting(
        True, "run frozen backbones under torch.no_grad (no autograd bookkeeping)"
    )
    pin_memory: bool = _setting(
        True, "on accelerators, page-locked loader batches copied to the device without blocking"
    )
    persistent_workers: bool = _setting(
        True, "keep the DataLoader workers alive between epochs (with data.num_workers > 0)"
    )
    prefetch_factor: int = _setting(
        4, "batches each DataLoader worker loads ahead (with data.num_workers > 0)"
    )


@dataclasses.dataclass
class ProbeOptions:
    """Settings of the ``probe`` evaluation task (multilabel probes on the embeddings)."""

    probes: list[str] = _setting(
        lambda: ["sklearn_mlp", "torch_linear"], "comma list of probes (sklearn_mlp, "
        "torch_linear, torch_mlp)",
    )  # fmt: skip
    probe_levels: list[str] = _setting(
        lambda: ["video", "clip"], "video (per-video mean features, the study's) and/or clip"
    )
    probe_modalities: list[str] | None = _setting(
        None, "single modalities probed (default audio and video; text leaks the labels)"
    )
    backbone_baselines: bool = _setting(
        True, "probe the backbones' features (before the heads) too",
        flag="--no-backbone-baselines",
    )  # fmt: skip
    baseline_features: str | None = _setting(
        None, "YouTube-8M video-level features (.npz with video_id, mean_rgb, mean_audio)"
    )


@dataclasses.dataclass
class NeighboursOptions:
    """Settings of the ``neighbours`` evaluation task."""

    num_seeds: int = _setting(10, "seed videos of the nearest-neighbour report")


@dataclasses.dataclass
class ThesisProbesOptions:
    """Settings of the ``thesis_probes`` evaluation task (the thesis's genre and tagging)."""

    genre_labels: str | dict[str, str] | None = _setting(
        None, "thesis_probes: CSV/JSON video_id → genre (default: first label)"
    )
    thesis_levels: list[str] = _setting(lambda: ["video"], "video and/or clip")
    top_tags: int = _setting(10, "thesis_probes: number of tags")
    tag_threshold: Union[Literal["dev"], float] = _setting(  # noqa: UP007
        "dev", "thesis_probes tagging threshold: dev (best macro F1 on dev) or a number"
    )
    min_genre_videos: int = _setting(2, "thesis_probes: training videos a genre needs")
    thesis_epochs: int = _setting(300, "thesis_probes: most epochs")


@dataclasses.dataclass
class EvalConfig(ThesisProbesOptions, NeighboursOptions, ProbeOptions):
    """Evaluation settings (``python -m trimodal.evaluate`` and a YAML's ``eval:`` section).

    The fields of each task's options (:class:`ProbeOptions`, :class:`NeighboursOptions`,
    :class:`ThesisProbesOptions`) are fields of this class too, so the YAML section and the
    command line stay flat (``--probe-levels``, ``eval.probe_levels``).
    """

    batch_size: int = _setting(16, "extraction batch size")
    ks: list[int] = _setting(lambda: [1, 5, 10], "the R@k cut-offs")
    split: str = _setting("test", "the split reported on")
    tasks: list[str] = _setting(
        lambda: ["retrieval", "probe", "zero_shot", "neighbours"],
        "comma list of retrieval, probe, zero_shot, neighbours, thesis_probes "
        "(default: all but thesis_probes)",
    )
    num_workers: int = _setting(0, "extraction DataLoader workers")
    make_plots: bool = _setting(True, "write the PNG figures", flag="--no-plots")
    recompute: bool = _setting(False, "ignore stored embeddings")
    seed: int = _setting(0, "probe and t-SNE seed")


@dataclasses.dataclass
class ExperimentConfig:
    """A whole experiment: model, data, training, evaluation and the objective."""

    model: ModelConfig = _setting(ModelConfig, "the model (keys below)")
    data: DataConfig = _setting(DataConfig, "the dataset (keys below)")
    train: TrainConfig = _setting(TrainConfig, "the training (keys below)")
    eval: EvalConfig = _setting(EvalConfig, "the evaluation (keys below)")
    objective: str = _setting("weighted_contrastive", "the training objective (listed below)")
    objective_options: dict[str, Any] = _setting(
        dict, "the objective's settings, e.g. {temperature: 0.3}"
    )


# ----------------------------------------------------------------------------- typed loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', origin)}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_YAML_BOOLS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked (and losslessly converted) against type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is Literal:
        options = typing.get_args(tp)
        if value in options:
            return value
        if isinstance(value, bool):
            # YAML 1.1 reads `no`, `off`, `yes`, `on` as booleans (`mixed_precision: no`):
            # give a choice of words its word back.
            words = [o for o in options if isinstance(o, str) and o in _YAML_BOOLS[value]]
            if len(words) == 1:
                return words[0]
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping ({_type_name(tp)}), got {value!r}")
        _, value_tp = typing.get_args(tp) or (str, Any)
        return {str(k): _coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected a boolean, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads "1e-4" (no dot) as a string; accept any literal float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types.

    Missing keys keep their defaults. Nested dataclasses are built recursively.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in {prefix}" if prefix else ""
        names = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {names}{where}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"missing required config key {prefix + '.' if prefix else ''}{missing[0]}"
        )
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config dataclass (what :func:`save_config` writes)."""
    return dataclasses.asdict(config)


# ----------------------------------------------------------------------------- overrides


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--{dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


# Short flags accepted by every entry point, mapped onto their dotted keys.
ALIASES = {
    "output": "train.output_dir",
    "data": "data.prepared_dir",
    "resume": "train.resume",
    "grad_cache_chunk": "train.grad_cache_chunk",
}


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """Parse ``--dotted.key value`` / ``--dotted.key=value`` pairs into a nested mapping.

    Values are read as YAML scalars or flow collections (``--eval.ks [1,5,10]``).
    """
    result: dict[str, Any] = {}
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"expected an option --key value, got {arg!r}")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            i += 1
            raw = args[i]
        key = key.replace("-", "_")
        key = ALIASES.get(key, key)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or "not valid YAML"
            raise ConfigError(
                f"--{key}: cannot read {raw!r} ({problem}); lists and mappings are YAML flow "
                "collections, e.g. [1,5,10] or {block_size: 64}"
            ) from None
        _set_dotted(result, key, value)
        i += 1
    return result


def merge_config_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, recursively for nested mappings (neither is changed)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (``yaml.safe_load``), not yet checked against the
    dataclasses: :func:`load_config` merges it with defaults and overrides, then checks it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open() as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | dict[str, Any] = (),
    config_class: type = ExperimentConfig,
) -> Any:
    """Load an :class:`ExperimentConfig` from YAML (or defaults) and apply overrides.

    Args:
        path: a YAML file; ``None`` starts from the defaults.
        overrides: ``["--train.lr", "1e-4", ...]`` or an already nested mapping.
        config_class: the config dataclass to build (default :class:`ExperimentConfig`);
            its defaults, unknown keys and types are handled the same way.
    """
    data: dict[str, Any] = to_dict(config_class())
    if path is not None:
        data = merge_config_dicts(data, read_config_file(path))
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    data = merge_config_dicts(data, overrides)
    return from_dict(config_class, data)


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically) and return the path."""
    from trimodal.utils import atomic_write_text

    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    return atomic_write_text(Path(path), text)
