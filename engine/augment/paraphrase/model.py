"""Checks of the model before anything loads or is written: a causal LM with a chat template, and
vLLM-CPU's block size."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from engine.augment.paraphrase.config import ParaphraseConfig
from engine.augment.sampling import hub_generation_config, read_generation_config
from engine.errors import InputError
from engine.models import resolve_model, safe_load


@dataclass(frozen=True)
class ModelInfo:
    """What `check_model` found: the model's config.json as a dict, whether it is a local folder (the user's
    or a snapshot in the hub cache), what to load it from, and its generation_config.json as a dict ({} if
    it has none): the sampling defaults of `effective_sampling`."""

    config: dict
    local: bool
    load_from: str | None = None  # None: config.model
    generation: dict = dataclasses.field(default_factory=dict)


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


def max_position(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def check_block_size(config: ParaphraseConfig) -> None:
    """vLLM-CPU's attention takes KV blocks in multiples of 32 only; say so before anything starts."""
    if config.backend != "vllm" or config.block_size is None or config.block_size % 32 == 0:
        return
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        raise InputError(
            f"block_size {config.block_size}: vLLM's CPU attention needs a multiple of 32 (default 32 on CPU)"
        )
