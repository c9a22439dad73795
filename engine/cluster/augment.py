"""The augmenters on Ray: EDA, back-translation and paraphrasing, one shard of sources per actor call.

Each job below is a small picklable description; `open()` runs on a worker and loads the same engine the
single-process path uses (`BackTranslator`, `open_paraphraser`, EDA's `generate`), and `run(chunk)` calls
the same per-chunk function (`translate_chunk`, `paraphrase_chunk`, `to_rows(generate(...))`). So a shard's
rows are the rows the single-process job writes for the same chunk, and `augment_on_ray` writes the same
file (schema, provenance, order, `.drops.json`, job marker) through the same `AugmentedOutput`: a job can
start on one machine and finish on a cluster, or the other way round.

Why the project's own classes and not `ray.data.llm` for paraphrasing: the rows need the project's prompt,
guided JSON schema, answer parser, per-source seeds and drop reasons, which `ray.data.llm` would make us
re-implement around its processor; and on CPU it needed three non-default settings to run at all and 5.3
GiB for the tiny Qwen2 against 2.0 GiB for a CTranslate2 actor (FEASIBILITY.md, "Beyond one node").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.augment import backtranslate as bt
from engine.augment import eda
from engine.augment import paraphrase as pp
from engine.augment.common import (
    AugmentedOutput,
    check_output,
    classes_of,
    job_fingerprint,
    load_sources,
    to_rows,
)
from engine.cluster.session import ClusterOptions, connect, preflight, replica_count
from engine.cluster.shards import ShardDone, plan_shards, run_shards, shard_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdaJob:
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

    def run(self, chunk: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
        generated = eda.generate(chunk, self.config, threads=self.threads)
        rows = to_rows(chunk, generated, method=eda.METHOD, model=eda.model_name(), params=self.params)
        return rows, len(generated), 0

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class BacktranslateJob:
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

    def run(self, chunk: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
        rows, translated = bt.translate_chunk(self.translator, chunk)
        return rows, sum(len(r) for r in translated), sum(x.output_tokens for r in translated for x in r)

    def close(self) -> None:
        self.translator.close()


@dataclass(frozen=True)
class ParaphraseJob:
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

    def run(self, chunk: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
        rows, results = pp.paraphrase_chunk(self.engine, chunk)
        return rows, sum(len(r.completions) for r in results), sum(r.output_tokens for r in results)

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
    on_shard: Callable[[ShardDone], None] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Run one augmentation job on Ray and write `out` exactly as the single-process job does.

    Input, output path and model are checked here, before a cluster is joined or anything is written.
    Shards of at most `most_per_shard` sources (fewer on a small input: `shards.shard_size`) are saved as
    they finish; a rerun sends only the missing ones.
    Returns the kept rows (augmented schema, input order) and the counts by drop reason.
    """
    sources = load_sources(input, text_col=text_col, label_col=label_col, id_col=id_col)
    check_output(out)
    job = job.bind(sources, str(input))  # what the job's rows record may depend on its sources
    job.check()
    preflight(options)  # Ray installed, the cluster reachable: before the output folder is touched
    writer = AugmentedOutput(out, fingerprint=job.fingerprint(sources), restart=restart, classes=classes_of(input))
    if (finished_job := writer.finished()) is not None:
        return finished_job
    seen = writer.done_sources()
    pending = sources.filter(~pl.col("id").is_in(list(seen))) if seen else sources
    if seen:
        log.info("resuming: %d of %d sources already done", sources.height - pending.height, sources.height)
    if pending.height:
        with connect(options) as ray:
            replicas = replica_count(ray, options)
            shards = plan_shards(pending, shard_size(sources.height, replicas, most_per_shard))
            run_shards(
                ray, shards, job, writer, options, replicas=replicas, done=sources.height - pending.height,
                total=sources.height, on_shard=on_shard,
            )  # fmt: skip
    return writer.finish()
