"""The paraphrase engines' sampling parameters: the notebook's distribution, on both backends.

The notebook called transformers' `generate(do_sample=True, temperature=0.9, top_p=0.9)`. `generate`
takes every sampling option it is not given from the model's `generation_config.json`, and transformers'
own default where the model sets none: top_k 50, repetition_penalty 1.0, no min_p. vLLM's
`SamplingParams` defaults differ (top_k off), and vLLM applies the model's generation config only when no
`SamplingParams` are passed. So the engine resolves the five options both backends share here, once, by
one rule: an option the user gave wins; else the model's generation config; else transformers' default.
Both backends are then handed all five explicitly.

(transformers' `generate` also applies the model's other generation settings, e.g.
no_repeat_ngram_size, that vLLM has no equivalent for; a model that sets those samples differently on
the two backends.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from engine.errors import InputError

# transformers' GenerationConfig defaults for the options both backends take (transformers 4.x, which
# the notebook ran; generate falls back to them where the model sets nothing).
GENERATE_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "min_p": None,
    "repetition_penalty": 1.0,
}
SAMPLING_KEYS = tuple(GENERATE_DEFAULTS)

log = logging.getLogger(__name__)


def read_generation_config(folder: str | Path) -> dict:
    """The model folder's generation_config.json as a dict; {} when there is none."""
    path = Path(folder) / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); fix or delete it.") from exc
    if not isinstance(config, dict):
        raise InputError(f"{path} holds a {type(config).__name__}, not a JSON object; fix or delete it.")
    return config


def hub_generation_config(repo_id: str) -> dict:
    """The generation config of a model on the hub, as transformers reads it (`to_diff_dict`); {} only when
    the hub answers that the model has no generation_config.json (logged). Any other failure (the hub
    unreachable, a gated repo, a file that is not JSON) stops with an `InputError`: the dict is part of the
    job's fingerprint and picks the sampling defaults, so a {} in its place would start another job."""
    from huggingface_hub import hf_hub_download  # heavy, and only installed with the model engines
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from transformers import GenerationConfig

    try:
        hf_hub_download(repo_id, "generation_config.json")
    except RemoteEntryNotFoundError:
        log.info("%s has no generation_config.json on the hub: transformers' sampling defaults apply", repo_id)
        return {}
    except OSError as exc:  # huggingface_hub's HTTP, connection and cache errors are all OSErrors
        raise InputError(
            f"--model {repo_id}: its generation_config.json could not be read from the model hub "
            f"({type(exc).__name__}: {str(exc)[:300]}). Check the connection and run again, or pass a local folder."
        ) from exc
    try:
        return GenerationConfig.from_pretrained(repo_id).to_diff_dict()
    except OSError as exc:  # transformers reports a file that is not JSON as an OSError
        raise InputError(
            f"--model {repo_id}: its generation_config.json on the hub cannot be read ({str(exc)[:300]}). "
            "Pass a local folder with a fixed copy."
        ) from exc


def effective_sampling(given: dict[str, Any], generation: dict) -> dict[str, Any]:
    """{option: value} for each of SAMPLING_KEYS: `given[option]` unless None, else the model's
    `generation` config unless absent or None, else transformers' default. top_k 0 and min_p None mean off."""
    out = {}
    for key, default in GENERATE_DEFAULTS.items():
        if given.get(key) is not None:
            out[key] = given[key]
        elif generation.get(key) is not None:
            out[key] = generation[key]
        else:
            out[key] = default
    return out


def origins(given: dict[str, Any], generation: dict) -> dict[str, str]:
    """Where each effective value comes from: "option", "model" (generation_config.json) or "default"."""
    return {
        key: "option" if given.get(key) is not None else "model" if generation.get(key) is not None else "default"
        for key in SAMPLING_KEYS
    }


def describe(given: dict[str, Any], generation: dict) -> str:
    """One line for the log: `temperature 0.9 (option), top_k 20 (model), ...`."""
    values, where = effective_sampling(given, generation), origins(given, generation)
    return ", ".join(f"{key} {values[key]} ({where[key]})" for key in SAMPLING_KEYS)
