"""The decoding worker pool: runs the per-video work in processes and survives their crashes.

A media file can crash a decoder (decord or FFmpeg can segfault on broken media) or the OOM killer
can take a worker: that must cost the run one video, not the run. :func:`run_pool` runs the
work function over the tasks in a ``ProcessPoolExecutor``; when a worker dies the pool
breaks, the videos that may have been running are retried one by one in a pool of their own
(with ``decoder: auto``, a video that dies again is tried once more with PyAV alone, in case
decord is what crashes; a last death skips it as ``decoder_crash``) and the others go back
into a new shared pool.

The workers are forked from a ``forkserver`` (:func:`worker_context`): a fresh process that
imports the decoding modules once (:data:`PRELOAD`), never a fork of a parent that holds
threads or torch. Because they are separate processes, the work function travels pickled by
reference (module and name): it must be a top-level function (or an instance of a top-level
class) of a module the workers can import. That is also how a test puts a failing work
function in place of :func:`~trimodal.prepare.shards.process_video`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
from collections.abc import Callable
from typing import Any

from trimodal.media import decord_available
from trimodal.prepare.shards import VideoTask, process_video, skip_result

# Modules the forkserver imports once, so that each worker starts without importing them
# (decord only where it is installed and not disabled).
PRELOAD = ["trimodal.prepare.shards", "trimodal.data.schema", "numpy", "pyarrow", "av", "PIL.Image"]
PRELOAD += ["decord"] if decord_available() else []
# A fresh pool for every TASKS_PER_POOL videos per worker bounds the memory a worker can
# leak (decord leaks with many readers). `max_tasks_per_child` would do the same, but on
# Python < 3.13 the executor can hang when a worker retires with tasks still queued.
TASKS_PER_POOL = 64

Work = Callable[[VideoTask], dict[str, Any]]


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of the workers: ``forkserver`` with the decoding modules preloaded.

    ``spawn`` where ``forkserver`` is not available.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # used when the server starts (once per process)
    return ctx


def start_workers_early() -> None:
    """Start the forkserver (it imports the decoding modules) while the main process works."""
    ctx = worker_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def run_pool(
    tasks: list[VideoTask], workers: int, progress: Any, work: Work = process_video
) -> dict[str, dict[str, Any]]:
    """Run ``work`` over ``tasks`` in ``workers`` processes; return the results by video id.

    ``progress`` is updated by one per finished task (a tqdm bar). ``work`` must be picklable
    by reference (see the module docstring).
    """
    results: dict[str, dict[str, Any]] = {}
    order = {t.video_id: i for i, t in enumerate(tasks)}
    ctx = worker_context()
    pending = list(tasks)
    while pending:
        size = workers * TASKS_PER_POOL
        group, rest = pending[:size], pending[size:]
        unfinished = _run_group(group, workers, ctx, work, results, progress)
        if not unfinished:
            pending = rest
            continue
        unfinished.sort(key=lambda t: order[t.video_id])
        # Tasks are handed to workers in submission order, so the ones that were running
        # are among the first unfinished ones (one per worker + the pool's one queued call).
        n_suspects = workers + 1
        for task in unfinished[:n_suspects]:
            results[task.video_id] = _run_alone(task, ctx, work)
            progress.update(1)
        pending = unfinished[n_suspects:] + rest
    return results


def _run_group(
    group: list[VideoTask],
    workers: int,
    ctx: multiprocessing.context.BaseContext,
    work: Work,
    results: dict[str, dict[str, Any]],
    progress: Any,
) -> list[VideoTask]:
    """Run ``group`` in one shared pool, adding to ``results``; return the tasks that did not
    finish because a worker died (every one still queued or running at that moment)."""
    unfinished: list[VideoTask] = []
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(work, t): i for i, t in enumerate(group)}
        for fut in cf.as_completed(futures):
            task = group[futures[fut]]
            try:
                results[task.video_id] = fut.result()
                progress.update(1)
            except cf.process.BrokenProcessPool:
                unfinished.append(task)
    return unfinished


def crash_attempts(task: VideoTask) -> list[VideoTask]:
    """The tries left for a video whose worker died: the task again, then, with ``decoder:
    auto``, the task with PyAV alone (the fast path may be what crashes). When they die too,
    the video is skipped as ``decoder_crash`` (:func:`crash_skip`)."""
    attempts = [task]
    if task.config.get("decoder", "auto") == "auto":
        attempts.append(dataclasses.replace(task, config={**task.config, "decoder": "pyav"}))
    return attempts


def crash_skip(task: VideoTask) -> dict[str, Any]:
    """The result of a video that killed its worker on every try."""
    return skip_result(task, "decoder_crash", "the decoding process died on this file")


def _run_alone(
    task: VideoTask, ctx: multiprocessing.context.BaseContext, work: Work
) -> dict[str, Any]:
    """Run one suspect task in a pool of its own. If it dies again with ``decoder: auto``,
    the fast path may be what crashes: once more with PyAV alone; a last death skips the
    video as ``decoder_crash``."""
    for attempt in crash_attempts(task):
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as solo:
            try:
                return solo.submit(work, attempt).result()
            except cf.process.BrokenProcessPool:
                continue
    return crash_skip(task)
