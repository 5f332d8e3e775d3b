"""Speed settings of a training run and the timing that shows its bottleneck.

Every switch here changes speed, not results (the README, "Performance"; the step
benchmark ``benchmarks/bench_step.py`` measures each): the attention kernel, ``torch.compile``
of trainable backbones, TF32 matmuls on CUDA, frozen backbones without autograd, and a
DataLoader that decodes in worker processes ahead of the step. :class:`StepTimer` splits
each batch's wall time into the wait for data and the rest, which the trainer logs
(``train/data_time``, ``train/batch_time``) and sums up at the end of the run.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch

from trimodal.config import DataConfig, TrainConfig

logger = logging.getLogger(__name__)

#: The most DataLoader workers chosen automatically: past eight, decoding seldom limits a
#: step and each worker holds its own copy of the dataset's open files and buffers.
MAX_AUTO_WORKERS = 8


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a batch
    scheduler), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_num_workers(local_processes: int = 1, cpus: int | None = None) -> int:
    """``data.num_workers`` when the config leaves it null: ``min(8, cpus_per_process - 1)``,
    at least 0, where ``cpus_per_process`` is :func:`available_cpus` divided by the training
    processes on this machine. One CPU per process stays with the training loop itself."""
    cpus = available_cpus() if cpus is None else cpus
    per_process = cpus // max(1, local_processes)
    return max(0, min(MAX_AUTO_WORKERS, per_process - 1))


def local_process_count(num_processes: int) -> int:
    """Training processes on this machine: torchrun's and accelerate's ``LOCAL_WORLD_SIZE``,
    else all of them."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", num_processes))


def loader_options(
    data: DataConfig, train: TrainConfig, device: torch.device, local_processes: int = 1
) -> dict[str, Any]:
    """DataLoader keyword arguments for speed: workers (``data.num_workers`` or
    :func:`default_num_workers`), and with workers persistent ones that prefetch
    ``train.prefetch_factor`` batches each; on an accelerator, pinned memory (the prepared
    loader then copies without blocking)."""
    workers = data.num_workers
    if workers is None:
        workers = default_num_workers(local_processes)
    if workers < 0:
        raise ValueError(f"data.num_workers must be >= 0 or null, got {workers}")
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": bool(train.pin_memory and device.type != "cpu"),
    }
    if workers > 0:
        options["persistent_workers"] = train.persistent_workers
        options["prefetch_factor"] = train.prefetch_factor
    return options


def release_workers(loader: Any) -> None:
    """Stop the persistent workers of ``loader`` (a DataLoader or Accelerate's wrapper):
    they would otherwise stay alive, idle, as long as the loader object does."""
    # Accelerate's wrapper reads attributes through to the DataLoader it wraps, but writes
    # its own: reset the wrapped loader's iterator, or the next epoch reuses the dead one.
    base = getattr(loader, "base_dataloader", loader)
    iterator = getattr(base, "_iterator", None)
    if iterator is None:
        return
    if hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    base._iterator = None


def set_tf32(enabled: bool, device: torch.device) -> bool:
    """Allow TF32 tensor cores for float32 matmuls and cuDNN convolutions on a CUDA
    ``device`` (a process-wide setting; other devices are left alone). Returns whether the
    setting was applied."""
    if device.type != "cuda":
        return False
    precision = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision
    return True


def tf32_enabled() -> bool:
    """Whether CUDA float32 matmuls may use TF32."""
    return torch.backends.cuda.matmul.fp32_precision == "tf32"


def compile_trainable_backbones(model: Any) -> list[str]:
    """``torch.compile`` each backbone with a trainable parameter, in place
    (``nn.Module.compile``: the module and its state-dict names stay as they are, so saving
    and checkpoints are unchanged). Returns the compiled channels."""
    frozen = set(model.frozen_modalities())
    compiled = []
    for modality, backbone in model.backbones.items():
        if modality not in frozen:
            backbone.compile()
            compiled.append(modality)
    return compiled


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` was compiled in place (``nn.Module.compile``)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def apply_speed_settings(model: Any, train: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Apply the model-side switches of ``train`` to ``model`` (a ``TrimodalModel``) and the
    process; returns what is in effect (recorded in the run's log)."""
    model.frozen_no_grad = train.frozen_no_grad
    sdpa = model.set_attn_implementation(train.attn_implementation)
    compiled = compile_trainable_backbones(model) if train.compile else []
    tf32 = set_tf32(train.tf32, device) and train.tf32
    return {
        "attn_implementation": {m: b.attn_implementation for m, b in model.backbones.items()},
        "attn_choice": sdpa,
        "compiled": compiled,
        "tf32": tf32,
        "frozen_no_grad": train.frozen_no_grad,
    }


class StepTimer:
    """Wall time per batch, split into the wait for the loader and the rest.

    ``data_time``: from the end of the previous batch's work to the batch being in hand;
    ``batch_time``: from the end of the previous batch's work to the end of this one's
    (data included). Averages since the last :meth:`window` go to the log; totals to the
    end-of-run summary. On an accelerator the work is asynchronous, but every step reads
    its loss on the host (the finiteness check), so a batch's time includes its compute.
    """

    def __init__(self) -> None:
        self.total_data = self.total_batch = 0.0
        self.batches = 0
        self._window = [0.0, 0.0, 0]
        self._mark = time.perf_counter()

    def restart(self) -> None:
        """Start timing afresh (after validation or checkpointing, which are not steps)."""
        self._mark = time.perf_counter()

    def data_ready(self) -> None:
        """The loader handed over a batch."""
        self._data = time.perf_counter() - self._mark

    def batch_done(self) -> None:
        """The batch's forward, backward (and optimiser step) are done."""
        now = time.perf_counter()
        batch = now - self._mark
        self._mark = now
        self.total_data += self._data
        self.total_batch += batch
        self.batches += 1
        self._window = [self._window[0] + self._data, self._window[1] + batch, self._window[2] + 1]

    def window(self, batch_size: int) -> dict[str, float]:
        """Mean ``data_time`` and ``batch_time`` (s) and clips/s per device over the batches
        since the last call; empty if none."""
        data, batch, count = self._window
        self._window = [0.0, 0.0, 0]
        if not count:
            return {}
        return {
            "train/data_time": data / count,
            "train/batch_time": batch / count,
            "train/samples_per_s": batch_size * count / batch if batch > 0 else 0.0,
        }

    @property
    def data_fraction(self) -> float:
        """Share of the timed training time spent waiting for data."""
        return self.total_data / self.total_batch if self.total_batch > 0 else 0.0


def data_wait_advice(fraction: float, workers: int, frozen: list[str], cached: bool) -> str:
    """The end-of-run line on the loader: the share of time waiting for data and, when it
    is large (over 10 %), what to change."""
    line = f"waited for data {fraction:.0%} of the training time (data.num_workers={workers})"
    if fraction <= 0.10:
        return line
    fixes = [f"raise data.num_workers above {workers} (up to the free CPU cores)"]
    if frozen and not cached:
        fixes.append(f"turn train.feature_cache on (frozen channels: {', '.join(frozen)})")
    return line + "; to feed the step faster: " + "; ".join(fixes)
