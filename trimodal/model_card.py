"""The model card (``README.md``) written into every saved model directory.

It is rendered from what the directory holds: the model's configuration (channels,
backbones, shared space) and, for a model saved by the trainer, its training record
(``training.json``: objective, data, hyper-parameters, the run's environment and its
validation numbers; see :func:`trimodal.training.run_record`). The card's YAML front matter
is the Hugging Face Hub's model-card metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAINING_RECORD = "training.json"
CARD = "README.md"

# Hyper-parameters shown on the card (the whole resolved config is in training.json).
_HYPERPARAMETERS = (
    "epochs", "batch_size", "gradient_accumulation_steps", "lr", "lr_schedule", "warmup_ratio",
    "weight_decay", "max_grad_norm", "mixed_precision", "seed", "select_metric",
)  # fmt: skip
_REPORTED_METRICS = ("R@1", "R@5", "R@10", "median_rank", "mAP", "any@1", "any@5", "any@10")


def read_training_record(directory: str | Path) -> dict[str, Any] | None:
    """The ``training.json`` of a saved model directory, or ``None``."""
    path = Path(directory) / TRAINING_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _front_matter(record: dict[str, Any] | None) -> str:
    lines = ["---", "library_name: trimodal", "license: mit", "tags:"]
    lines += [f"- {t}" for t in ("trimodal", "music", "video", "audio", "cross-modal-retrieval")]
    if record:
        lines.append(f"- {record['objective']}")
    lines.append("---")
    return "\n".join(lines)


def _channels_table(config: Any) -> list[str]:
    rows = ["| modality | backbone | trainable blocks | head |", "|---|---|---|---|"]
    for modality in config.modalities:
        channel = config.channels[modality]
        head = channel.head
        shape = "identity" if head.kind == "identity" else (
            f"MLP {[*head.hidden_sizes, config.embed_dim]}"
        )  # fmt: skip
        rows.append(f"| {modality} | {channel.backbone} | {channel.trainable_blocks} | {shape} |")
    return rows


def _training_section(record: dict[str, Any] | None) -> list[str]:
    if not record:
        return [
            "## Training",
            "",
            "Not recorded: this model was saved outside a training run (no `training.json`).",
        ]
    train = record["config"]["train"]
    options = record.get("objective_options") or {}
    lines = ["## Training", "", f"- Objective: `{record['objective']}`"]
    if options:
        lines[-1] += f" with options `{json.dumps(options)}`"
    data = record.get("data") or {}
    splits = data.get("splits") or {}
    if splits:
        counts = ", ".join(
            f"{name} {s['videos']} videos / {s['clips']} clips" for name, s in splits.items()
        )
        lines.append(f"- Data: `{data.get('prepared_dir')}` ({counts})")
    else:
        lines.append(f"- Data: `{data.get('prepared_dir')}`")
    lines.append(f"- Optimiser steps: {record.get('step')}")
    lines += ["", "| hyper-parameter | value |", "|---|---|"]
    lines += [f"| {k} | {train[k]} |" for k in _HYPERPARAMETERS if k in train]
    run = record.get("run") or {}
    if run:
        launcher = run.get("launcher", {})
        lines += [
            "",
            f"Trained with trimodal {run.get('versions', {}).get('trimodal')} on "
            f"{launcher.get('num_processes')} process(es), mixed precision "
            f"{launcher.get('mixed_precision')}"
            + (f", commit {run['git_commit'][:12]}" if run.get("git_commit") else "")
            + ". The run's full record (versions, command line, resolved config) is in "
            "`training.json`.",
        ]
    return lines


def _metrics_section(record: dict[str, Any] | None) -> list[str]:
    if not record or not record.get("validation"):
        return []
    best = record.get("best") or {}
    metrics = record["validation"]
    lines = ["## Validation (dev split)", ""]
    if best:
        lines.append(
            f"Selected on `{best['metric']}` ({best['mode']}): {best['value']:.4f} at step "
            f"{best['step']}."
        )
        lines.append("")
    lines += ["| level | direction | metric | value |", "|---|---|---|---|"]
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[2] in _REPORTED_METRICS and "→" in parts[1]:
            lines.append(f"| {parts[0]} | {parts[1]} | {parts[2]} | {value:.4f} |")
    return lines


def render_model_card(config: Any, record: dict[str, Any] | None = None) -> str:
    """The card's Markdown for a :class:`~trimodal.configuration.TrimodalConfig` and, when
    known, its training record."""
    modalities = ", ".join(config.modalities)
    parts = [
        _front_matter(record),
        "",
        "# trimodal model",
        "",
        f"Embeds {modalities} of music videos into one shared, L2-normalised "
        f"{config.embed_dim}-dimensional space: one channel per modality, *backbone → "
        "projection head → L2 normalisation*. Retrieval across modalities is a cosine "
        "similarity between embeddings.",
        "",
        "## Channels",
        "",
        *_channels_table(config),
        "",
        *_training_section(record),
        "",
        *_metrics_section(record),
        "",
        "## Use",
        "",
        "```python",
        "import trimodal  # registers the model with transformers' auto classes",
        "from transformers import AutoModel",
        "",
        'model = AutoModel.from_pretrained("THIS_DIRECTORY_OR_HUB_ID")  # offline by default',
        "out = model(text=[...], audio=waveforms, video=frames)  # any subset of the channels",
        "out.embeddings  # {modality: [B, embed_dim]}, unit norm",
        "```",
        "",
        "A Hub id is read from the local Hugging Face cache; pass `local_files_only=False` to "
        "download it. Evaluate with `trimodal evaluate --model DIR --data PREPARED --output OUT`.",
        "",
        "## Limitations",
        "",
        "- Inputs must match the channels' preprocessing (see `config.json`: audio sample rate, "
        "frame count and size); each backbone applies its own normalisation.",
        "- The space reflects the training data: retrieval quality on other music, other "
        "languages of text or other video styles is unknown until measured.",
        "- Text is embedded from subword vectors averaged over the words; word order is not "
        "modelled.",
    ]
    return "\n".join(p for p in parts if p is not None).rstrip() + "\n"


def write_model_card(directory: str | Path, config: Any, record: dict[str, Any] | None) -> Path:
    """Write ``README.md`` (and ``training.json`` when there is a record) into ``directory``."""
    from trimodal.utils import atomic_write_json, atomic_write_text

    directory = Path(directory)
    if record is not None:
        atomic_write_json(directory / TRAINING_RECORD, record)
    return atomic_write_text(directory / CARD, render_model_card(config, record))
