"""The Ray executor of ``prepare`` (``prepare_executor: ray``): the per-video work as Ray tasks.

:func:`run_ray` is the counterpart of :func:`~trimodal.prepare.pool.run_pool`: the same work
function (:func:`~trimodal.prepare.shards.process_video`) on the same tasks, one Ray task of
one CPU per video, returning the same results by video id; ``prepare`` then assembles the
splits exactly as after a local run. The shards are written where the tasks say, so the
output directory must be on storage every node sees (docs/cluster.md).

A killed worker (a decoder that segfaults, the OOM killer, a lost node) costs one try of its
video, not the run: Ray runs a task again once when its worker died, then, with ``decoder:
auto``, once more with PyAV alone (:func:`~trimodal.prepare.pool.crash_attempts`, the local
pool's sequence); a video whose every try died is skipped as ``decoder_crash``. A shard is
renamed into place whole, so a try killed mid-write leaves nothing a resumed run would take
for finished, and results are kept by video id: none is lost or counted twice.

Ray is an optional extra (``pip install 'trimodal[ray]'``): it is imported here, when the
executor is used, and nowhere else.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from trimodal.prepare.errors import PrepareError
from trimodal.prepare.pool import TASKS_PER_POOL, Work, crash_attempts, crash_skip
from trimodal.prepare.shards import VideoTask, process_video

# Tasks in flight per cluster CPU: enough to keep every CPU busy between two completions,
# few enough that the driver does not hold a million task handles.
IN_FLIGHT_PER_CPU = 2


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`PrepareError` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise PrepareError("the ray executor needs Ray: pip install 'trimodal[ray]'") from err
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Ray, connected for the block (yields the module).

    Joins the cluster this process has already joined, else the one at ``address``
    (``auto``: the cluster started on this machine with ``ray start``), else starts a local
    one with ``num_cpus`` CPUs. Shuts down only what it started.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    where = {"address": address} if address else {"num_cpus": num_cpus}
    try:
        ray.init(**where, include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise PrepareError(f"cannot join the Ray cluster at {address}: {err}") from err
    try:
        yield ray
    finally:
        ray.shutdown()


def _call(work: Work, task: VideoTask) -> dict[str, Any]:
    """The body of a Ray task: the work function on one video."""
    return work(task)


def run_ray(
    tasks: list[VideoTask],
    workers: int,
    progress: Any,
    work: Work = process_video,
    address: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``work`` over ``tasks`` as Ray tasks; return the results by video id.

    ``workers``: the CPUs of the local cluster started when none is joined (a joined
    cluster uses all its CPUs). ``progress`` is updated by one per finished video (a tqdm
    bar). ``work`` travels pickled (a function of an importable module, by reference).
    """
    with ray_session(address, workers) as ray:
        crashed = _crash_errors(ray)
        # A worker process retires after TASKS_PER_POOL videos (decord leaks with many
        # readers), as the local pool's workers do.
        remote = ray.remote(num_cpus=1, max_calls=TASKS_PER_POOL)(_call)
        limit = IN_FLIGHT_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Every path absolute: the tasks run in other directories, on other machines.
        attempts = {t.video_id: crash_attempts(_absolute(t)) for t in tasks}
        queue = collections.deque((t, 0) for t in tasks)  # (task, which of its attempts)
        pending: dict[Any, tuple[VideoTask, int]] = {}
        results: dict[str, dict[str, Any]] = {}
        while queue or pending:
            while queue and len(pending) < limit:
                task, n = queue.popleft()
                # The first try runs again if its worker dies (a kill may hit any video).
                retry = remote.options(max_retries=1 if n == 0 else 0)
                pending[retry.remote(work, attempts[task.video_id][n])] = (task, n)
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            task, n = pending.pop(ref)
            try:
                results[task.video_id] = ray.get(ref)
            except crashed:
                if n + 1 < len(attempts[task.video_id]):  # the next try, before new videos
                    queue.appendleft((task, n + 1))
                    continue
                results[task.video_id] = crash_skip(task)
            progress.update(1)
    return results


def _crash_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """What ``ray.get`` raises when the process running a task died (its retries spent)."""
    names = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def _absolute(task: VideoTask) -> VideoTask:
    """``task`` with absolute shard and skip-marker paths."""
    return dataclasses.replace(
        task, shard=os.path.abspath(task.shard), skip_marker=os.path.abspath(task.skip_marker)
    )
