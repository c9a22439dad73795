"""The file job: `ParaphraseJob` (engine.stage.ChunkJob), run by `augment.common.augment_file`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from engine.augment.common import Generated, job_fingerprint, to_rows
from engine.augment.paraphrase.base import Paraphraser, SourceResult
from engine.augment.paraphrase.config import METHOD, ParaphraseConfig, sampling_given
from engine.augment.paraphrase.model import ModelInfo, check_block_size, check_model
from engine.augment.paraphrase.transformers_engine import TransformersParaphraser
from engine.augment.paraphrase.vllm_engine import VllmParaphraser
from engine.augment.sampling import effective_sampling
from engine.models import check_device
from engine.stage import ChunkRows


def open_paraphraser(config: ParaphraseConfig, info: ModelInfo | None = None) -> Paraphraser:
    """The paraphraser of `config.backend`, loaded and ready (use it as a context manager)."""
    cls = VllmParaphraser if config.backend == "vllm" else TransformersParaphraser
    return cls(config, info)


@dataclass(frozen=True)
class ParaphraseJob:
    """The paraphrase job (engine.stage.ChunkJob): run it with `augment.common.augment_file`, here or on
    Ray. `ParaphraseJob.using(engine)` runs on an open paraphraser (its config is the job's), in this
    process only, and leaves it open. `progress`: a tqdm-like factory for the engine's bar inside a chunk."""

    stage = METHOD
    chunk_size = 4096  # sources per saved chunk in this process
    config: ParaphraseConfig
    engine: Paraphraser | None = field(default=None, compare=False, repr=False)
    progress: Callable | None = field(default=None, compare=False, repr=False)
    info: ModelInfo | None = None  # the model's checks and generation config, from `bind`

    @classmethod
    def using(cls, engine: Paraphraser, *, progress: Callable | None = None) -> ParaphraseJob:
        return cls(engine.config, engine, progress)

    def bind(self, sources: pl.DataFrame, source: str) -> ParaphraseJob:
        info = (
            self.engine.info if self.engine is not None else check_model(self.config.model, backend=self.config.backend)
        )
        return dataclasses.replace(self, info=info)

    def check(self, *, local: bool) -> None:
        check_block_size(self.config)
        if local and self.config.backend == "transformers" and self.engine is None:
            check_device(self.config.device)  # before the model loads: torch would fail with an AssertionError

    def fingerprint(self, sources: pl.DataFrame) -> str:
        return paraphrase_fingerprint(sources, self.config, self._info().generation)

    def for_replica(self, gpus: int) -> ParaphraseJob:
        """On Ray vLLM spreads a replica over its GPUs by tensor parallelism."""
        if gpus <= 1:
            return self
        return dataclasses.replace(self, config=dataclasses.replace(self.config, tensor_parallel_size=gpus))

    def open(self) -> _Paraphrasing:
        if self.engine is not None:
            return _Paraphrasing(self.engine, self.progress, owned=False)
        return _Paraphrasing(open_paraphraser(self.config, self._info()), self.progress, owned=True)

    def _info(self) -> ModelInfo:
        if self.info is not None:  # bound
            return self.info
        if self.engine is not None:
            return self.engine.info
        return check_model(self.config.model, backend=self.config.backend)


class _Paraphrasing:
    def __init__(self, engine: Paraphraser, progress: Callable | None, *, owned: bool) -> None:
        self.engine, self.progress, self.owned = engine, progress, owned

    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        return paraphrase_chunk(self.engine, chunk, progress=self.progress)

    def close(self) -> None:
        if self.owned:
            self.engine.close()


def paraphrase_fingerprint(sources: pl.DataFrame, config: ParaphraseConfig, generation: dict) -> str:
    """The job's fingerprint: what was asked for, with the sampling the model's generation config gives
    (the rows' params also say what the engine could do)."""
    requested = {**_requested_params(config, generation), "backend": config.backend}
    return job_fingerprint(sources, METHOD, config.model, requested)


def paraphrase_chunk(engine: Paraphraser, chunk: pl.DataFrame, *, progress=None) -> ChunkRows:
    """One chunk of sources (`load_sources` columns): its rows (common.PART_SCHEMA), answers and output
    tokens. The single-process job and the Ray shards (engine.cluster) both call this."""
    results = engine.generate(chunk["text"].to_list(), progress=progress)
    rows = to_rows(chunk, list(_generated(results)), method=METHOD, model=engine.config.model, params=engine.params())
    return ChunkRows(
        rows, outputs=sum(len(r.completions) for r in results), output_tokens=sum(r.output_tokens for r in results)
    )


def _requested_params(config: ParaphraseConfig, generation: dict) -> dict:
    return {
        "prompt_version": config.prompt_version,
        "n": config.n,
        "samples": config.samples,
        **effective_sampling(sampling_given(config), generation),
        "max_tokens": config.max_tokens,
        "seed": config.seed,
        "seed_per_source": config.seed_per_source,
        "guided": config.guided,
    }


def _generated(results: Sequence[SourceResult]):
    """Candidates as `Generated` rows: variants number every candidate of a source in answer order."""
    for index, result in enumerate(results):
        variant = 0
        for k, (completion, parsed) in enumerate(zip(result.completions, result.parsed, strict=True)):
            for candidate in parsed.candidates:
                extra = {"answer": k, "format": parsed.format, "finish_reason": completion.finish_reason}
                yield Generated(index, str(variant), candidate.text, extra, candidate.drop_reason)
                variant += 1
