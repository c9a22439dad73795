"""Per-row model calls on Ray: rows go out in shards to a pool of actors, each holding one model, and come back
in input order. The filter (engine.filters.on_ray) uses it for its two model passes, the sentence-embedding
similarity and the label model's probabilities: `RayEmbedder` and `RayLabelModel` answer like the local
models (`similarity`, `predict_proba`, `k`). This module knows no model class: the stage hands it picklable
specs whose `open()` loads the model on the actor.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from engine.cluster.session import ClusterError, ClusterOptions, connect, preflight, replica_count, work_in
from engine.cluster.shards import SHARDS_PER_REPLICA, describe_failure, quiet_ray_data
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

ROWS_PER_SHARD = 4096


class _ModelWorker:
    """A Ray Data actor holding one model; each row carries (method name, args) pickled, answers pickled."""

    def __init__(self, spec, folder: str | None = None) -> None:
        work_in(folder)  # the driver's folder: relative model paths as the driver sees them
        self.model = spec.open()

    def __call__(self, batch):
        import pyarrow as pa

        answers = []
        for payload in batch.column("payload").to_pylist():
            method, args = pickle.loads(payload)
            answers.append(pickle.dumps(getattr(self.model, method)(*args)))
        return pa.table({"index": batch.column("index"), "answer": answers})


class _Pool:
    def __init__(self, ray, spec, options: ClusterOptions, replicas: int) -> None:
        self.ray, self.spec, self.options, self.replicas = ray, spec, options, replicas

    def map(self, method: str, columns: Sequence[Sequence], stage: str, on_progress: OnProgress | None) -> list:
        """`method(*shard_of_each_column)` on the actors, one answer per shard, in shard order; progress as
        `stage` over the rows."""
        n = len(columns[0])
        size = max(1, min(ROWS_PER_SHARD, -(-n // (self.replicas * SHARDS_PER_REPLICA))))
        starts = list(range(0, n, size))
        items = [
            {"index": i, "payload": pickle.dumps((method, [list(c[s : s + size]) for c in columns]))}
            for i, s in enumerate(starts)
        ]
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.max_consecutive_actor_init_deaths = self.options.max_retries
        quiet_ray_data()
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = self.ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _ModelWorker,
                fn_constructor_args=(self.spec, os.getcwd()),
                batch_size=1,
                batch_format="pyarrow",
                compute=self.ray.data.ActorPoolStrategy(
                    size=min(self.replicas, len(items)), max_tasks_in_flight_per_actor=1
                ),
                **self.options.remote_args,
            )
        answers: dict[int, object] = {}
        done = 0
        try:
            for row in dataset.iter_rows():
                answers[row["index"]] = pickle.loads(row["answer"])
                done, before = min(len(answers) * size, n), done
                report(on_progress, stage, "text", done, n, done - before)
        except Exception as exc:
            if not type(exc).__module__.startswith("ray"):
                raise
            raise ClusterError(f"the filter's {method} failed on the Ray cluster: {describe_failure(exc)}") from exc
        return [answers[i] for i in range(len(starts))]


class RayEmbedder:
    """`Embedder.similarity` with the pairs spread over a pool of actors (input order kept)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool

    def similarity(self, texts, sources, *, on_progress: OnProgress | None = None) -> np.ndarray:
        if len(texts) != len(sources):
            raise ValueError(f"{len(texts)} texts but {len(sources)} sources")
        if not len(texts):
            return np.zeros(0)
        return np.concatenate(self.pool.map("similarity", [texts, sources], "embeddings", on_progress))


class RayLabelModel:
    """`LabelModel.predict_proba` with the texts spread over a pool of actors (input order kept)."""

    def __init__(self, pool: _Pool, k: int) -> None:
        self.pool, self.k = pool, k

    def predict_proba(self, texts, *, on_progress: OnProgress | None = None) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.k))
        return np.concatenate(self.pool.map("predict_proba", [texts], "label model", on_progress))


class ModelSpec(Protocol):
    """A picklable description of a model; `open()` loads it on an actor."""

    def open(self) -> object: ...


@contextmanager
def model_pools_on_ray(
    options: ClusterOptions, embedder: ModelSpec | None, label_model: ModelSpec | None, k: int
) -> Iterator[tuple[RayEmbedder | None, RayLabelModel | None]]:
    """(embedder, label model) backed by actor pools, each actor opening the spec once; None where no spec."""
    preflight(options)
    with connect(options) as ray:
        replicas = replica_count(ray, options)
        yield (
            None if embedder is None else RayEmbedder(_Pool(ray, embedder, options, replicas)),
            None if label_model is None else RayLabelModel(_Pool(ray, label_model, options, replicas), k),
        )
