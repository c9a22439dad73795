"""Shards of an augmentation job mapped over a Ray Dataset by a pool of actors, each shard saved as it lands.

The sources are cut into shards by input position (shard k = the pending sources among sources
k*size .. (k+1)*size-1, so a shard's ids never change between runs). Each shard travels to an actor as one
Arrow IPC blob in one row of a Ray Dataset (`from_items`, one block per shard, so Ray balances shards
over actors); `map_batches` runs a pool of `ShardWorker` actors, each opening the stage's engine once
(`ShardJob.open`: the same BackTranslator / paraphraser / EDA code as the single-process path) and
answering with the shard's rows. `run_shards` yields every shard as it lands and the driver's job loop
(`augment.common.run_job`, the loop of the single-process job too) saves it as a part of the job folder,
so only the driver writes and only the driver's disk holds the output: a rerun after a crash, a lost node
or Ctrl-C, with or without Ray, finds the saved shards and does only the missing sources. Rows carry
`source_order`, so `AugmentedOutput.finish` restores the input order whatever order the shards came back
in (Ray Data does not keep it).

Failures: a killed actor is restarted and its shard retried up to `max_retries` times (a retried shard
replaces nothing: the driver has not saved it); an exception in a worker fails the job at once, and
`ClusterError` shows the first one with the shard it happened in.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from typing import Protocol

import polars as pl

from engine.cluster.session import ClusterError, ClusterOptions, work_in
from engine.stage import ChunkRows

log = logging.getLogger(__name__)

SHARDS_PER_REPLICA = 4


class ShardEngine(Protocol):
    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        """Rows (augment.common.PART_SCHEMA) of one chunk of sources, generated outputs, output tokens."""

    def close(self) -> None: ...


class ShardJob(Protocol):
    """What a stage hands to the cluster: a picklable description that opens its engine on a worker."""

    def open(self) -> ShardEngine: ...


def shard_size(total: int, replicas: int, most: int) -> int:
    """At most `most` sources per shard (what a worker holds and a crash loses), and at least
    `SHARDS_PER_REPLICA` shards per replica on a small input, so every replica gets work and a slow
    shard does not hold the others up. Depends on the input size, not on what is pending: a resumed
    run cuts at the same places when the cluster is the same (and stays correct when it is not)."""
    return max(1, min(most, -(-total // (replicas * SHARDS_PER_REPLICA))))


def plan_shards(pending: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    """`pending` (load_sources columns, input order) cut at every `size` input positions (not pending rows),
    so a shard holds the same ids in every run; shards with nothing pending are left out."""
    if size < 1:
        raise ValueError(f"shard size must be at least 1, got {size}")
    return [shard for _, shard in pending.group_by(pl.col("source_order") // size, maintain_order=True) if shard.height]


def _to_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return buffer.getvalue()


def _from_bytes(data: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(data))


class ShardWorker:
    """One Ray Data actor: opens the job's engine once, then turns shards of sources into shards of rows."""

    def __init__(self, job: ShardJob, folder: str | None = None) -> None:
        import ray

        logging.basicConfig(level=logging.WARNING)
        work_in(folder)  # the driver's folder: relative model paths as the driver sees them
        self.node = ray.get_runtime_context().get_node_id()  # which machine answered: the CLI counts shards per node
        self.engine = job.open()

    def __call__(self, batch):
        import pyarrow as pa

        out: dict[str, list] = {
            "shard": [],
            "rows": [],
            "outputs": [],
            "output_tokens": [],
            "seconds": [],
            "pid": [],
            "node": [],
        }
        for shard, data in zip(batch.column("shard").to_pylist(), batch.column("sources").to_pylist(), strict=True):
            started = time.perf_counter()
            result = self.engine.run(_from_bytes(data))
            out["shard"].append(shard)
            out["rows"].append(_to_bytes(result.rows))
            out["outputs"].append(result.outputs)
            out["output_tokens"].append(result.output_tokens)
            out["seconds"].append(time.perf_counter() - started)
            out["pid"].append(os.getpid())
            out["node"].append(self.node)
        return pa.table(out)


_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)): (.+)$")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and the ones inside it (Ray wraps the worker's error in RayTaskError, ActorDiedError, ...)."""
    found: list[BaseException] = []
    while exc is not None and exc not in found:
        found.append(exc)
        exc = exc.__cause__ or getattr(exc, "cause", None)
    return found


def describe_failure(exc: BaseException) -> str:
    """The worker's own error line ("InputError: model folder ... does not exist") from Ray's wrappers, whose
    text is a remote traceback that ends with it; else the innermost exception's first line."""
    for inner in reversed(_chain(exc)):
        lines = [line.strip() for line in str(inner).splitlines()]
        errors = [m for line in lines if (m := _ERROR_LINE.match(line)) and "ray." not in m.group(0)[:40]]
        if errors:
            return f"{errors[-1].group(1)}: {errors[-1].group(2)}"
    inner = _chain(exc)[-1]
    text = next((line for line in str(inner).splitlines() if line.strip()), "")
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def quiet_ray_data() -> None:
    """Ray Data's warnings and errors stay in its log file (ray-data.log in the session's logs folder) and off
    the terminal: a failed task printed Ray's whole traceback above the one line `ClusterError` gives."""
    logger = logging.getLogger("ray.data")
    logger.setLevel(logging.WARNING)
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):  # terminal
            handler.setLevel(logging.CRITICAL)


LOST = ("ActorUnavailableError", "ActorDiedError", "NodeDiedError", "OwnerDiedError", "WorkerCrashedError")


def _rows_as_they_land(dataset):
    """The rows of each block as soon as it is done. Not `iter_rows`: it prefetches one block, so a finished
    shard reached the driver only when the next one was done too (measured: the first shard of the base mBART
    landed one whole shard, about 6 s, after its actor had finished it), which delays every save and makes
    a Ctrl-C lose a shard that was already done."""
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        yield from batch.to_pylist()


def run_shards(
    ray,
    shards: list[pl.DataFrame],
    job: ShardJob,
    options: ClusterOptions,
    *,
    replicas: int,
) -> Iterator[tuple[pl.DataFrame, ChunkRows]]:
    """Map `shards` over a pool of actors and yield each shard with its rows as it arrives (the caller saves
    it before asking for the next); `detail` names the shard, the worker's pid and its Ray node id."""
    if not shards:
        return
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI has its own bar over sources
    context.execution_options.preserve_order = False  # order comes back from source_order
    # an engine that cannot open (a model missing on a node) kills every actor in its constructor, which
    # Ray Core never restarts: Ray Data starts new ones, this many times in a row, then fails the job
    context.max_consecutive_actor_init_deaths = options.max_retries
    quiet_ray_data()
    replicas = min(replicas, len(shards))
    log.info("%d shards over %d replicas (%s each)", len(shards), replicas, options.remote_args)
    items = [{"shard": k, "sources": _to_bytes(shard)} for k, shard in enumerate(shards)]
    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter in Ray 2.60 (its remote-args route is
        # deprecated for 2.64), and Ray Data's default for both is -1: unbounded retries of a crash that repeats
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardWorker,
            fn_constructor_args=(job, os.getcwd()),
            batch_size=1,
            batch_format="pyarrow",
            # one shard in flight per actor: shards go to whichever actor is free, and a killed actor
            # takes only its own shard with it
            compute=ray.data.ActorPoolStrategy(size=replicas, max_tasks_in_flight_per_actor=1),
            **options.remote_args,
        )
    saved = 0  # sources of this run's shards the caller saved
    try:
        for row in _rows_as_they_land(dataset):
            shard = shards[row["shard"]]
            rows = _from_bytes(row["rows"])
            detail = {"shard": row["shard"], "worker_pid": row["pid"], "node": row["node"]}
            yield shard, ChunkRows(rows, row["outputs"], row["output_tokens"], row["seconds"], detail)
            saved += shard.height
    except (KeyboardInterrupt, ClusterError):
        raise
    except Exception as exc:
        if not type(exc).__module__.startswith("ray"):
            raise  # the driver's own failure (a full disk, a bug): the traceback belongs to it
        failure = describe_failure(exc).rstrip(".")
        lost = " (a node or a worker process of the cluster was lost)" if failure.startswith(LOST) else ""
        raise ClusterError(
            f"the job failed on the Ray cluster{lost}: {failure}. The {saved} sources saved before the failure "
            "stay saved: fix the cause and run the same command again to do the rest (Ray's own account: "
            "ray-data.log in the session's logs folder, /tmp/ray/session_latest/logs by default)."
        ) from exc
