"""`hardaug filter` on Ray: the two model passes spread over actors (engine.cluster.pools), everything that
needs all rows here.

What parallelizes: the sentence-embedding similarity and the label model's probabilities are per row, so
rows go out in shards to a pool of actors, each loading the embedder / label model once (the same
`Embedder` and `LabelModel` classes), and come back in input order. The TF-IDF label model is trained here
(it needs the whole training set) and shipped to the actors fitted. What does not: the near-duplicate
search must compare every row with every other and with the training set, and it is sparse matrix work
that takes seconds on a CPU; it stays in the driver, as do the cheap checks and the decisions. So
`filter_augmented` runs unchanged, handed the pools' models, which answer like the local ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.cluster.pools import model_pools_on_ray
from engine.cluster.session import ClusterOptions
from engine.filters.label import LabelModel
from engine.filters.semantic import Embedder


@dataclass(frozen=True)
class _EmbedderSpec:
    model: str
    device: str
    batch_size: int

    def open(self) -> Embedder:
        return Embedder(self.model, device=self.device, batch_size=self.batch_size)


@dataclass(frozen=True)
class _LabelModelSpec:
    spec: str
    k: int
    device: str
    batch_size: int
    max_length: int
    fitted: object = None  # a trained LabelModel (TF-IDF) to use as it is

    def open(self) -> LabelModel:
        if self.fitted is not None:
            return self.fitted
        return LabelModel.load(
            self.spec, self.k, device=self.device, batch_size=self.batch_size, max_length=self.max_length
        )


@contextmanager
def filter_models_on_ray(config, k: int, options: ClusterOptions, *, fitted_label_model=None) -> Iterator[tuple]:
    """(embedder, label model) for `filter_augmented` backed by actor pools; None where the filter is off."""
    device = "cuda" if config.device.startswith("cuda") else config.device  # a replica sees its own GPUs only
    embedder = _EmbedderSpec(config.embed_model, device, config.batch_size) if config.similarity else None
    label_model = None
    if config.label_check:
        label_model = _LabelModelSpec(
            config.label_model, k, device, config.batch_size, config.max_length, fitted_label_model
        )
    with model_pools_on_ray(options, embedder, label_model, k) as models:
        yield models
