"""The stage protocol and the executors that run it, here or elsewhere: no stage is imported here.

A chunked stage is a small picklable job that follows one life cycle (`ChunkJob`):

1. `bind(sources, source)`: what the job's rows record may depend on its sources (EDA's scripts);
2. `check(local=...)`: every mistake a user can make, before anything is written; `local` says the chunks
   run in this process, so the device here must be usable too (a Ray driver may have no GPU);
3. `fingerprint(sources)`: the job's identity in its job folder (engine.jobs), computed in one place;
4. `open()`: load the engine (model) where the chunks run, at the first chunk that needs it, so a finished
   or fully resumed job loads nothing; the opened engine's `run(chunk)` gives the chunk's rows and
   `close()` frees it.

An executor turns a job and the sources still to do into finished chunks (`Producer`): `InProcess` in this
process in chunks of `chunk_size`, `engine.cluster.executor.OnRay` in shards on Ray actors. The stage
takes the executor, so "here or on Ray" is one argument of the library call, and the executors (this
module, `engine.cluster`) import no stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl


@dataclass(frozen=True)
class ChunkRows:
    """What generating one chunk gave: its rows and, for progress reports, how many outputs the engine
    produced (round trips, answers, variants), their tokens, its seconds, and any other `detail` (a Ray
    shard's number and worker)."""

    rows: pl.DataFrame
    outputs: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


# A producer turns the pending sources into finished chunks, (chunk of sources, its rows), in any order.
Producer = Callable[[pl.DataFrame], Iterable[tuple[pl.DataFrame, ChunkRows]]]


class OpenJob(Protocol):
    """A job's loaded engine, where its chunks run."""

    def run(self, chunk: pl.DataFrame) -> ChunkRows: ...

    def close(self) -> None: ...


class ChunkJob(Protocol):
    """One chunked stage (see the module docstring). `chunk_size`: its chunk in this process by default."""

    stage: str
    chunk_size: int

    def bind(self, sources: pl.DataFrame, source: str) -> ChunkJob: ...

    def check(self, *, local: bool) -> None: ...

    def fingerprint(self, sources: pl.DataFrame) -> str: ...

    def for_replica(self, gpus: int) -> ChunkJob: ...

    def open(self) -> OpenJob: ...


class Executor(Protocol):
    """Where a job's chunks run. `local`: in this process (the job checks this machine's device)."""

    local: bool

    def place(self, job: ChunkJob) -> ChunkJob:
        """The job as it runs on this executor's workers (a Ray replica sees only its own GPUs)."""
        ...

    def preflight(self) -> None:
        """What the executor needs (Ray installed, the cluster reachable), before any output is touched."""
        ...

    def producer(self, job: ChunkJob, total: int) -> Producer:
        """The chunks of the pending sources, each run by `job`; `total`: the job's sources, done or not."""
        ...


def chunks(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    for start in range(0, frame.height, size):
        yield frame.slice(start, size)


def in_chunks(generate: Callable[[pl.DataFrame], ChunkRows], chunk_size: int) -> Producer:
    """`generate` on consecutive chunks of `chunk_size` pending sources, timed, in this process."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")

    def produce(pending: pl.DataFrame) -> Iterator[tuple[pl.DataFrame, ChunkRows]]:
        for chunk in chunks(pending, chunk_size):
            started = time.perf_counter()
            result = generate(chunk)
            seconds = time.perf_counter() - started
            yield chunk, ChunkRows(result.rows, result.outputs, result.output_tokens, seconds, result.detail)

    return produce


@dataclass(frozen=True)
class InProcess:
    """Run the chunks here, one after another; `chunk_size` None: the job's own default."""

    chunk_size: int | None = None
    local = True

    def __post_init__(self) -> None:
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")

    def place(self, job: ChunkJob) -> ChunkJob:
        return job

    def preflight(self) -> None:
        pass

    def producer(self, job: ChunkJob, total: int) -> Producer:
        size = self.chunk_size or job.chunk_size

        def produce(pending: pl.DataFrame) -> Iterator[tuple[pl.DataFrame, ChunkRows]]:
            opened: OpenJob | None = None

            def run(chunk: pl.DataFrame) -> ChunkRows:
                nonlocal opened
                if opened is None:  # at the first chunk: a finished job loads no model
                    opened = job.open()
                return opened.run(chunk)

            try:
                yield from in_chunks(run, size)(pending)
            finally:
                if opened is not None:
                    opened.close()

        return produce
