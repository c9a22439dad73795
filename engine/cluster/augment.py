"""The augmenters on Ray: EDA, back-translation and paraphrasing, one shard of sources per actor call.

Each job below is a small picklable description; `open()` runs on a worker and loads the same engine the
single-process path uses (`BackTranslator`, `open_paraphraser`, EDA's `generate`), and `run(chunk)` calls
the same per-chunk function (`translate_chunk`, `paraphrase_chunk`, `eda.generate_chunk`). So a shard's
rows are the rows the single-process job writes for the same chunk, and `augment_on_ray` runs the same job
loop (`augment.common.run_job`) on the same job folder with the same fingerprint, and writes the same file
(schema, provenance, order, `.drops.json`, done marker): a job can start on one machine and finish on a
cluster, or the other way round.

Why the project's own classes and not `ray.data.llm` for paraphrasing: the rows need the project's prompt,
guided JSON schema, answer parser, per-source seeds and drop reasons, which `ray.data.llm` would make us
re-implement around its processor; and on CPU (ray 2.60.0, the tiny Qwen2, 200 rows) it needed three
non-default settings to run at all (a CPU placement group, else it waits for a GPU forever;
`log_engine_metrics=False`, else it wants ray[serve]; no per-request seed) and its process tree peaked at
5.3 GiB against 2.0 GiB for Ray with one CTranslate2 actor (README, "Beyond one process: Ray").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.augment import backtranslate as bt
from engine.augment import eda
from engine.augment import paraphrase as pp
from engine.augment.common import (
    AugmentedOutput,
    ChunkRows,
    classes_of,
    job_fingerprint,
    load_sources,
    run_job,
)
from engine.cluster.session import ClusterOptions, connect, preflight, replica_count
from engine.cluster.shards import plan_shards, run_shards, shard_size
from engine.io import check_output
from engine.progress import OnProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdaJob:
    stage = eda.METHOD
    config: eda.EdaConfig
    threads: int = 1  # Kiwi threads per replica
    params: dict | None = None  # the rows' params, from `bind` (they depend on the sources' scripts)

    def bind(self, sources: pl.DataFrame, source: str) -> EdaJob:
        return dataclasses.replace(self, params=eda.job_params(sources, self.config, source))

    def check(self) -> None:
        pass  # the options were checked by EdaConfig; Kiwi has no model folder

    def fingerprint(self, sources: pl.DataFrame) -> str:
        return job_fingerprint(sources, eda.METHOD, eda.model_name(), self.params)

    def open(self) -> EdaJob:
        return self

    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        return eda.generate_chunk(chunk, self.config, self.params, threads=self.threads)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class BacktranslateJob:
    stage = bt.METHOD
    config: bt.BacktranslateConfig

    def bind(self, sources: pl.DataFrame, source: str) -> BacktranslateJob:
        return self  # nothing of the job depends on its sources

    def check(self) -> None:
        bt.BackTranslator(self.config, load=False)  # folder, tokenizer, languages: before any output

    def fingerprint(self, sources: pl.DataFrame) -> str:
        return job_fingerprint(sources, bt.METHOD, str(self.config.model), self.config.params())

    def open(self) -> _Backtranslator:
        return _Backtranslator(bt.BackTranslator(self.config))


class _Backtranslator:
    def __init__(self, translator: bt.BackTranslator) -> None:
        self.translator = translator

    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        return bt.translate_chunk(self.translator, chunk)

    def close(self) -> None:
        self.translator.close()


@dataclass(frozen=True)
class ParaphraseJob:
    stage = pp.METHOD
    config: pp.ParaphraseConfig

    def bind(self, sources: pl.DataFrame, source: str) -> ParaphraseJob:
        return self  # nothing of the job depends on its sources

    def check(self) -> None:
        pp.check_model(self.config.model, backend=self.config.backend)
        pp.check_block_size(self.config)

    def fingerprint(self, sources: pl.DataFrame) -> str:
        info = pp.check_model(self.config.model, backend=self.config.backend)  # its generation config
        return pp.paraphrase_fingerprint(sources, self.config, info.generation)

    def open(self) -> _Paraphraser:
        return _Paraphraser(pp.open_paraphraser(self.config))


class _Paraphraser:
    def __init__(self, engine: pp.Paraphraser) -> None:
        self.engine = engine

    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        return pp.paraphrase_chunk(self.engine, chunk)

    def close(self) -> None:
        self.engine.close()


def replica_config(config, options: ClusterOptions):
    """The engine config one replica runs with: on GPU it sees only its own GPUs (Ray sets
    CUDA_VISIBLE_DEVICES), numbered from 0; vLLM spreads a replica over them by tensor parallelism."""
    gpus = int(options.gpus_per_replica)
    if isinstance(config, bt.BacktranslateConfig) and config.device == "cuda":
        return dataclasses.replace(config, device_index=tuple(range(max(gpus, 1))))
    if isinstance(config, pp.ParaphraseConfig) and gpus > 1:
        return dataclasses.replace(config, tensor_parallel_size=gpus)
    return config


def augment_on_ray(
    input: str | Path,
    out: str | Path,
    job: EdaJob | BacktranslateJob | ParaphraseJob,
    options: ClusterOptions,
    *,
    most_per_shard: int,
    restart: bool = False,
    text_col: str = "text",
    label_col: str = "label",
    id_col: str = "id",
    on_progress: OnProgress | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Run one augmentation job on Ray and write `out` exactly as the single-process job does.

    Input, output path and model are checked here, before a cluster is joined or anything is written.
    Shards of at most `most_per_shard` sources (fewer on a small input: `shards.shard_size`) are saved as
    they finish; a rerun (on Ray or not) does only the missing sources. Progress: `engine.progress.Progress`
    per saved shard, as the single-process job reports its chunks (detail: also `shard` and `worker_pid`).
    Returns the kept rows (augmented schema, input order) and the counts by drop reason.
    """
    sources = load_sources(input, text_col=text_col, label_col=label_col, id_col=id_col)
    check_output(out)
    job = job.bind(sources, str(input))  # what the job's rows record may depend on its sources
    job.check()
    preflight(options)  # Ray installed, the cluster reachable: before the output folder is touched

    def on_ray(pending: pl.DataFrame) -> Iterator[tuple[pl.DataFrame, ChunkRows]]:
        with connect(options) as ray:
            replicas = replica_count(ray, options)
            shards = plan_shards(pending, shard_size(sources.height, replicas, most_per_shard))
            yield from run_shards(ray, shards, job, options, replicas=replicas)

    key = job.fingerprint(sources)
    with AugmentedOutput(out, fingerprint=key, restart=restart, classes=classes_of(input)) as output:
        return run_job(output, sources, on_ray, stage=job.stage, on_progress=on_progress)
