"""``embed --executor ray``: the model pass in replicas on Ray actors (docs/cluster.md).

The decoding is ``prepare``'s, on Ray tasks (:mod:`trimodal.prepare.ray_executor`): CPU tasks
write each video's clips to the prepared directory. :func:`embed_on_ray` then starts
``replicas`` actors, each holding a copy of the model (one GPU each when the device is CUDA,
else one CPU), and hands them the batches still to embed (:func:`~trimodal.search.embedder._groups`:
whole videos, the same batches as a local run) a few at a time; each actor runs
:func:`~trimodal.search.embedder.embed_groups`, the local path, on its share and writes the
part of each video it finishes to ``OUT/parts/``, which must be on storage every node sees.
The driver then writes the tables from the parts as after a local run.

Same batches, same model, same code: the same embeddings as a local run on the same kind of
device. An actor that dies is restarted and its call retried (a part is written whole, so a
retried batch only overwrites a finished part with the same numbers); a rerun embeds only
the videos without a part.
"""

from __future__ import annotations

import dataclasses

from trimodal.prepare.ray_executor import ray_session
from trimodal.search.embedder import PartJob, embed_groups
from trimodal.search.errors import SearchError

# Calls per replica: small enough to balance the replicas, large enough that each call's
# overhead (a few milliseconds) is small beside its batches.
CALLS_PER_REPLICA = 4


class Replica:
    """A model replica: embeds batches of a prepared split into parts (a Ray actor)."""

    def __init__(self, job: PartJob) -> None:
        job.model.to(job.options.device).eval()
        self.job = job

    def embed(self, groups: list[list[int]]) -> int:
        """Embed ``groups`` (batches of dataset rows), writing their parts; return how many."""
        embed_groups(self.job, groups)
        return len(groups)


def embed_on_ray(job: PartJob, todo: list[list[int]]) -> None:
    """Embed the batches ``todo`` of ``job.dataset`` in ``job.options.replicas`` Ray actors,
    each writing the parts of the videos it finishes to ``job.parts`` (storage every node
    sees)."""
    from tqdm.auto import tqdm

    options = job.options
    with ray_session(options.ray_address, max(options.prepare_workers, options.replicas)) as ray:
        from ray.util import ActorPool

        gpu = options.device.startswith("cuda")
        n, unit = min(options.replicas, len(todo)), "GPU" if gpu else "CPU"
        have = int(ray.cluster_resources().get(unit, 0))
        if have < n:  # Ray would wait for them for ever
            raise SearchError(f"{n} replicas need {n} {unit}s; the Ray cluster has {have}")
        # Each actor sees its own GPU as "cuda"; its bar would only interleave with the others.
        actor_options = dataclasses.replace(
            options, device="cuda" if gpu else options.device, show_progress=False
        )
        actor = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0,
                           max_restarts=1, max_task_retries=1)(Replica)  # fmt: skip
        # One copy of the model and the dataset in the object store, shared by the actors.
        shared = ray.put(dataclasses.replace(job, parts=job.parts.resolve(), options=actor_options))
        replicas = [actor.remote(shared) for _ in range(n)]
        size = max(1, -(-len(todo) // (len(replicas) * CALLS_PER_REPLICA)))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        with tqdm(total=len(todo), desc="embed", unit="batch",
                  disable=not options.show_progress) as bar:  # fmt: skip
            for batches in ActorPool(replicas).map_unordered(
                lambda a, c: a.embed.remote(c), chunks
            ):
                bar.update(batches)
        for replica in replicas:
            ray.kill(replica)
