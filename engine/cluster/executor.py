"""`OnRay`: the executor (engine.stage) that runs a chunked stage's shards on Ray actors.

It knows the protocol, not the stages: each replica opens the same engine the in-process executor opens
(`job.open()` on the worker) and runs the same per-chunk function, so a shard's rows are the rows the
single-process job writes for the same chunk, in the same job folder with the same fingerprint: a job can
start on one machine and finish on a cluster, or the other way round.

Why the project's own classes and not `ray.data.llm` for paraphrasing: the rows need the project's prompt,
guided JSON schema, answer parser, per-source seeds and drop reasons, which `ray.data.llm` would make us
re-implement around its processor; and on CPU (ray 2.60.0, the tiny Qwen2, 200 rows) it needed three
non-default settings to run at all (a CPU placement group, else it waits for a GPU forever;
`log_engine_metrics=False`, else it wants ray[serve]; no per-request seed) and its process tree peaked at
5.3 GiB against 2.0 GiB for Ray with one CTranslate2 actor (README, "Beyond one process: Ray").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from engine.cluster.session import ClusterOptions, connect, preflight, replica_count
from engine.cluster.shards import plan_shards, run_shards, shard_size
from engine.stage import ChunkJob, ChunkRows, Producer


@dataclass(frozen=True)
class OnRay:
    """Shards of at most `most_per_shard` sources (fewer on a small input: `shards.shard_size`) on the
    replicas `options` asks for; finished shards are saved as they arrive."""

    options: ClusterOptions
    most_per_shard: int
    local = False

    def place(self, job: ChunkJob) -> ChunkJob:
        return job.for_replica(int(self.options.gpus_per_replica))

    def preflight(self) -> None:
        preflight(self.options)

    def producer(self, job: ChunkJob, total: int) -> Producer:
        def on_ray(pending: pl.DataFrame) -> Iterator[tuple[pl.DataFrame, ChunkRows]]:
            with connect(self.options) as ray:
                replicas = replica_count(ray, self.options)
                shards = plan_shards(pending, shard_size(total, replicas, self.most_per_shard))
                yield from run_shards(ray, shards, job, self.options, replicas=replicas)

        return on_ray
