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


@dataclasses.dataclass
class HeadConfig:
    """Projection head from a backbone's output to the shared space.

    ``hidden_sizes=[]`` gives a single linear layer; otherwise Linear→activation→dropout per
    hidden size, then a final Linear to ``embed_dim``. ``input_norm: batch`` standardises
    the backbone features first (``BatchNorm1d``): features of random or frozen backbones
    often share one dominant direction, which a plain linear head must first learn away. ``kind: identity`` has no layers: the
    backbone's features are the embedding (the thesis's "single head" variant, where only the
    video side has a head, mapping into the audio backbone's feature space); it needs
    ``embed_dim`` equal to that backbone's output size.
    """

    kind: Literal["mlp", "identity"] = "mlp"
    input_norm: Literal["none", "batch"] = "none"
    hidden_sizes: list[int] = dataclasses.field(default_factory=list)
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    dropout: float = 0.1
    # The dual-encoder thesis ends its heads with a sigmoid before L2 normalisation.
    output_activation: Literal["none", "sigmoid"] = "none"


@dataclasses.dataclass
class ChannelConfig:
    """One modality's channel: backbone adapter → projection head.

    ``backbone`` names an adapter in :mod:`trimodal.backbones` (``bpemb``, ``clap_htsat``,
    ``videomae``). ``source`` is where its pretrained weights live (a directory, a checkpoint
    file or a cache directory, as the adapter documents); ``None`` keeps random weights.
    ``options`` are adapter-specific architecture settings (see each adapter's ``Options``).
    ``trainable_blocks``: ``"all"`` (fully trainable), ``"none"`` (frozen) or an integer N
    (only the last N blocks trainable).
    """

    backbone: str
    source: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    trainable_blocks: Union[Literal["all", "none"], int] = "all"  # noqa: UP007
    gradient_checkpointing: bool = False
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)


def _default_channels() -> dict[str, ChannelConfig]:
    return {
        "text": ChannelConfig(backbone="bpemb", trainable_blocks="none"),
        "audio": ChannelConfig(backbone="clap_htsat"),
        "video": ChannelConfig(backbone="videomae"),
    }


@dataclasses.dataclass
class ModelConfig:
    """The trimodal model: which channels exist and the shared space they project into.

    ``modalities`` selects the channels that exist (any two or all three); ``channels`` holds
    the settings of each. ``preset`` fills unset backbone options with a named preset
    (``tiny``: small random backbones for tests and the demo; ``full``: the published
    architectures).
    """

    preset: Literal["tiny", "full"] = "full"
    modalities: list[Modality] = dataclasses.field(default_factory=lambda: list(MODALITIES))
    embed_dim: int = 300
    channels: dict[str, ChannelConfig] = dataclasses.field(default_factory=_default_channels)
    logit_scale_init: float = math.log(1 / 0.07)
    learnable_logit_scale: bool = True
    # open_clip clamps the logit scale at ln(100) so the softmax cannot saturate.
    logit_scale_max: float = math.log(100.0)


def _default_sparse_fractions() -> list[list[float]]:
    # The trimodal study's train sampling (docs/research.md#trimodal-study-data):
    # [share of videos, share of clips kept].
    return [[0.30, 0.20], [0.20, 0.25], [0.20, 0.33], [0.20, 0.50], [0.05, 0.75], [0.05, 1.0]]


@dataclasses.dataclass
class DataConfig:
    """Where the prepared dataset lives, how ``prepare`` builds it and how clips are read.

    Preparation (``python -m data_prep prepare``; a YAML's ``data:`` section feeds it):

    - ``scheme``: ``"clips"`` cuts each video into consecutive ``clip_seconds`` clips (the
      trimodal study); ``"segments"`` takes ``num_segments`` non-overlapping
      ``segment_seconds`` segments, one at a random start inside each equal part of the video
      (the dual-encoder study: six 5-s segments).
    - ``sparse_train``: with ``"clips"``, train videos keep a sampled share of their clips
      as listed in ``sparse_fractions`` (``[share of videos, share of clips kept]`` pairs);
      dev/test keep every clip.
    - ``split_by``: videos whose record has no ``split`` are assigned by ``"hash"`` (a hash
      of the video id against ``split_ratios`` train/dev/test) or by ``"age"`` on
      ``reference_date``, in calendar months (:func:`trimodal.prepare.splits.age_split`):
      ages in ``[test_min_age_years, test_max_age_years)``: test; ``[test_max_age_years,
      dev_max_age_years)``: dev; older: train; younger than ``test_min_age_years``: skipped
      as ``too_recent`` (``0`` keeps every young video in test); undated videos fall back
      to the hash.
    - ``num_frames`` frames per clip, uniformly spaced, stored per size in ``frame_sizes`` as
      ``frames_<size>`` arrays ``[num_frames, 3, S, S]`` where ``S = round(size *
      frame_margin)`` (short side resized to S, centre-cropped square): the margin leaves
      room for training-time crops. ``frame_dtype`` ``uint8`` (exact: decoded video is 8-bit)
      or ``float16`` in [0, 1].
    - ``audio_rates``: mono float32 waveforms stored as ``audio_48k``/``audio_16k`` columns.
    - ``label_vocabulary``: label names (``label_ids`` index into it); ``None``: the 45
      YouTube-8M music labels. A record with a name outside it is skipped.
    - ``prepare_workers``: decoding processes.
    - ``decoder``: the backend that reads the frames (:mod:`trimodal.media`): ``"auto"``
      (decord where it is installed, PyAV for each file decord cannot read), ``"pyav"``
      or ``"decord"``. Audio is always read by PyAV.

    Loading (:class:`trimodal.data.PreparedClips`):

    - ``audio_rate`` (48000 for CLAP, 16000 for musicnn), ``video_size`` (224 for VideoMAE,
      112 for R(2+1)D), ``crop_seconds``: a synchronous audio+video window inside the clip
      (``None``: the whole clip), random in training, centred in evaluation.
    - ``augment``: random temporal crop, random resized crop (area share in ``crop_scale``)
      and a random text among the video's labels and tags (``train_text: labels``: among its
      label names only, the texts of label queries and zero-shot tagging); evaluation is
      deterministic
      (centre crops, a text chosen per clip by a stable hash, or the first label with
      ``eval_text: first``).
    """

    prepared_dir: str | None = None
    clip_seconds: float = 8.0
    num_workers: int = 0
    seed: int = 0
    # -- prepare
    scheme: Literal["clips", "segments"] = "clips"
    segment_seconds: float = 5.0
    num_segments: int = 6
    sparse_train: bool = True
    sparse_fractions: list[list[float]] = dataclasses.field(
        default_factory=_default_sparse_fractions
    )
    split_by: Literal["hash", "age"] = "hash"
    split_ratios: list[float] = dataclasses.field(default_factory=lambda: [0.8, 0.1, 0.1])
    reference_date: str = "2023-01-01"
    test_min_age_years: float = 7.0
    test_max_age_years: float = 8.0
    dev_max_age_years: float = 8.5
    num_frames: int = 16
    frame_sizes: list[int] = dataclasses.field(default_factory=lambda: [224, 112])
    frame_margin: float = 8 / 7
    frame_dtype: Literal["uint8", "float16"] = "uint8"
    audio_rates: list[int] = dataclasses.field(default_factory=lambda: [48000, 16000])
    label_vocabulary: list[str] | None = None
    prepare_workers: int = 2
    decoder: Literal["auto", "pyav", "decord"] = "auto"
    # -- loading
    audio_rate: int = 48000
    video_size: int = 224
    crop_seconds: float | None = None
    augment: bool = True
    crop_scale: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0])
    eval_text: Literal["hashed", "first"] = "hashed"
    train_text: Literal["texts", "labels"] = "texts"


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings (defaults: the trimodal study's hyper-parameters).

    ``batch_size`` is per process; the effective batch is ``batch_size × processes ×
    gradient_accumulation_steps``, but contrastive negatives come from ``batch_size ×
    processes`` only (accumulation does not add negatives; gradient caching does, see
    ``grad_cache_chunk``). The loader draws global batches of ``batch_size × processes``
    and splits them, so P processes take the optimiser steps, at the same learning rates, of
    one process with batch ``batch_size × P``. ``mixed_precision`` unset (``None``) is the
    launcher's (``accelerate launch --mixed_precision``, ``accelerate config``); a value here
    overrides it, with a warning. ``checkpoint_every`` counts optimiser steps; ``resume`` is
    ``"latest"`` or a checkpoint directory. ``select_metric`` picks the best checkpoint among
    the validation metrics (``video/mean_R@10``: mean R@10 over all retrieval directions at
    video level; ``mean_positive_distance`` with ``select_mode: min`` is the study's rule).
    ``feature_cache`` stores the backbone outputs of frozen channels after their first
    ``feature_cache_views`` epochs. ``max_steps`` stops early (tests, smoke runs).

    ``lr_schedule``: ``linear`` (warm-up over ``warmup_ratio`` of the steps, then linear
    decay: the study), ``exponential`` (warm-up, then ×``lr_gamma`` per epoch: the
    dual-encoder thesis, γ = .95) or ``constant``. ``early_stopping_patience``: stop after
    this many validations without improvement of ``select_metric``.
    ``head_autoencoder_epochs``: before training, fit each trainable head as the encoder of
    an autoencoder of its backbone's features (the thesis's autoencoder initialisation).
    ``text_positives``: in the pairs with text, clips whose texts are the same (after the text
    channel's normalisation) are positives of each other, not negatives — multi-positive
    targets (docs/evaluation.md#repeated-texts); ``false`` trains every clip against every
    other, as the plain objectives do.
    """

    output_dir: str = "runs/trimodal"
    epochs: int = 5
    batch_size: int = 2
    gradient_accumulation_steps: int = 4
    lr: float = 6e-5
    weight_decay: float = 1e-2
    adam_betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.98])
    adam_eps: float = 1e-9
    warmup_ratio: float = 0.1
    lr_schedule: Literal["linear", "exponential", "constant"] = "linear"
    lr_gamma: float = 0.95
    max_grad_norm: float = 2.0
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    seed: int = 0
    max_steps: int | None = None
    grad_cache_chunk: int | None = None
    feature_cache: bool = True
    feature_cache_views: int = 1
    validations_per_epoch: int = 2
    select_metric: str = "video/mean_R@10"
    select_mode: Literal["max", "min"] = "max"
    early_stopping_patience: int | None = None
    head_autoencoder_epochs: int = 0
    head_autoencoder_lr: float = 1e-3
    text_positives: bool = True
    checkpoint_every: int = 500
    checkpoint_total_limit: int = 3
    resume: str | None = None
    max_nonfinite_steps: int = 10
    log_with: list[str] = dataclasses.field(default_factory=lambda: ["tensorboard", "jsonl"])
    log_every: int = 10


def _setting(default: Any = None, help: str = "", flag: str | None = None, **kw: Any) -> Any:
    """A config field with its command-line help (and flag, when not ``--field-name``): the
    evaluation command line is generated from these (:mod:`trimodal.evaluation.cli`)."""
    metadata = {"help": help, **({"flag": flag} if flag else {})}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


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

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    objective: str = "weighted_contrastive"
    objective_options: dict[str, Any] = dataclasses.field(default_factory=dict)


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
