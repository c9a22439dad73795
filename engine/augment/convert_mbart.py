"""Convert a Hugging Face mBART-50 model to a CTranslate2 folder that `BackTranslator` can open.

CTranslate2's converter accepts some configs and silently produces a model that translates wrongly,
so the source config is checked first (`check_mbart_config`), and the result after:

- `tokenizer_class` missing (or "MBartTokenizer", the mBART-25 one): the converter makes the language
  code the decoder start token instead of `</s>`; every output is then off.
- `normalize_before` missing: the converter fails; `false`: it builds a post-norm model while mBART is
  pre-norm (wrong outputs). `normalize_embedding: false` drops a layer norm the model has.
- `decoder_start_token_id` other than `eos_token_id`: transformers and CTranslate2 would start decoding
  differently.
- a tokenizer whose size differs from the model's `vocab_size`: ids map to the wrong tokens (the
  converter cuts the vocabulary, which loses the language codes at its end).

The tokenizer (tokenizer.json, and sentencepiece.bpe.model when the source has it) is written beside
the model, and `conversion.json` records the source and the versions. The folder is built under a
temporary name and renamed when complete, so an interrupted conversion never looks finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

from engine.augment.backtranslate import (
    LANGUAGE_CODES,
    BacktranslateConfig,
    BackTranslator,
    model_vocabulary,
    read_model_folder,
)
from engine.errors import InputError
from engine.io import check_writable
from engine.models import refuse_custom_code, resolve_model, safe_load

log = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "int8_float16", "int8_bfloat16", "int8_float32", "float16", "bfloat16", "float32")
MBART50_TOKENIZERS = ("MBart50Tokenizer", "MBart50TokenizerFast")
SENTENCEPIECE_FILE = "sentencepiece.bpe.model"


def _read_source_config(src: str) -> tuple[dict, bool]:
    """The raw config.json of a local folder or a hub id (not transformers' defaults: a missing field must
    stay missing). Returns it and whether `src` is local."""
    path = Path(src)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{src} is a file; pass the Hugging Face model folder (with config.json) or a hub id.")
        if (path / "model.bin").is_file():
            raise InputError(f"{src} is already a CTranslate2 model (it has model.bin); pass it to --model directly.")
        if not (path / "config.json").is_file():
            raise InputError(
                f"{src} has no config.json: not a Hugging Face model folder. Pass the folder written by "
                "save_pretrained, or a hub id like facebook/mbart-large-50-many-to-many-mmt."
            )
        refuse_custom_code(path, src, "source")
        return json.loads((path / "config.json").read_text(encoding="utf-8")), True
    # engine.models: a missing folder, or a hub id neither cached nor reachable, stops here at once
    source = resolve_model(src, option="source", what="Hugging Face mBART-50")
    if source.path is not None:  # a complete snapshot in the local hub cache
        return json.loads((source.path / "config.json").read_text(encoding="utf-8")), False
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(src, "config.json")).read_text(encoding="utf-8")), False
    except Exception as exc:  # offline, unknown repo, gated model: all say the same to the user
        raise InputError(
            f"{src} is not a local folder, and its config.json could not be fetched from the model hub "
            f"({type(exc).__name__}: {exc}). Check the path; on a machine without hub access, download the "
            "model elsewhere and pass its folder."
        ) from exc


def check_mbart_config(config: dict, source: str) -> None:
    """Refuse the configs that CTranslate2 converts into a wrong model, with the fix."""
    where = f"{source}/config.json" if Path(source).is_dir() else f"config.json of {source}"
    if config.get("model_type") != "mbart":
        raise InputError(
            f"{where}: model_type is {config.get('model_type')!r}, expected 'mbart'. convert-mbart converts "
            "mBART-50 models such as facebook/mbart-large-50-many-to-many-mmt."
        )
    tokenizer_class = config.get("tokenizer_class")
    if tokenizer_class == "MBartTokenizer":
        raise InputError(
            f"{where}: tokenizer_class is MBartTokenizer (mBART-25, which starts decoding with the language "
            "code). Back-translation needs an mBART-50 many-to-many model (tokenizer_class MBart50Tokenizer)."
        )
    if tokenizer_class not in MBART50_TOKENIZERS:
        raise InputError(
            f'{where}: tokenizer_class is {tokenizer_class!r}. Without "tokenizer_class": "MBart50Tokenizer" '
            "CTranslate2 converts the model with the mBART-25 decoder start token, and every translation is "
            "silently wrong. If this is an mBART-50 model, add that line to config.json and convert again."
        )
    if config.get("normalize_before") is not True:
        raise InputError(
            f"{where}: normalize_before is {config.get('normalize_before', 'missing')!r}. mBART layers are "
            "pre-norm; CTranslate2 reads this field to build them (missing: it fails; false: wrong outputs). "
            'Add "normalize_before": true to config.json (facebook/mbart-large-50* have it).'
        )
    if config.get("normalize_embedding", True) is not True:
        raise InputError(
            f"{where}: normalize_embedding is false, but mBART has an embedding layer norm; CTranslate2 would "
            'drop it. Set "normalize_embedding": true.'
        )
    start, eos = config.get("decoder_start_token_id"), config.get("eos_token_id", 2)
    if start != eos:
        raise InputError(
            f"{where}: decoder_start_token_id is {start!r} but eos_token_id is {eos!r}. mBART-50 starts decoding "
            "with </s> (the eos token), and CTranslate2 will too: set decoder_start_token_id to the eos id."
        )
    from ctranslate2.converters.transformers import _SUPPORTED_ACTIVATIONS

    activation = config.get("activation_function", "gelu")
    if activation not in _SUPPORTED_ACTIVATIONS:
        raise InputError(
            f"{where}: activation_function {activation!r} is not supported by CTranslate2 "
            f"(supported: {', '.join(sorted(_SUPPORTED_ACTIVATIONS))})."
        )


def _check_tokenizer(tokenizer, config: dict, source: str) -> None:
    missing = [c for c in ("ko_KR", "en_XX") if tokenizer.convert_tokens_to_ids(c) in (None, tokenizer.unk_token_id)]
    if missing or type(tokenizer).__name__ not in MBART50_TOKENIZERS:
        raise InputError(
            f"the tokenizer of {source} is a {type(tokenizer).__name__} without the mBART-50 language codes "
            f"{missing or list(LANGUAGE_CODES[:3])}; expected an MBart50Tokenizer."
        )
    if len(tokenizer) != config.get("vocab_size"):
        raise InputError(
            f"the tokenizer of {source} has {len(tokenizer)} tokens but config.json says vocab_size "
            f"{config.get('vocab_size')}: CTranslate2 would pair ids with the wrong tokens (the language codes sit "
            "at the end of the vocabulary). Use the tokenizer files that belong to this model."
        )


def convert_mbart(
    src: str | Path, out: str | Path, *, quantization: str = "int8", force: bool = False, verify: bool = True
) -> Path:
    """Convert the mBART-50 model `src` (folder or hub id) into the CTranslate2 folder `out`.

    `quantization` sets the stored weight type (int8 for CPU; int8_float16 or float16 for GPU; a model is
    converted to other compute types when loaded). With `verify`, the result is loaded on CPU and one
    sentence is translated to check that the target language code comes out first. Returns `out`.
    """
    src, out = str(src), Path(out)
    if quantization not in QUANTIZATIONS:
        raise InputError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}.")
    source = Path(src).resolve()
    if Path(src).is_dir() and (out.resolve() == source or out.resolve() in source.parents):
        # --force deletes OUT before moving the converted model in: OUT must not be, or hold, the source.
        what = "the source folder" if out.resolve() == source else "a folder that holds the source"
        raise InputError(
            f"{out} is {what} {src}: replacing it would delete the model being converted. Choose another output folder."
        )
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty; pass --force to replace it.")
    check_writable(out.parent, option="OUT")  # before the minutes of conversion
    config, local = _read_source_config(src)
    check_mbart_config(config, src)

    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoTokenizer

    with safe_load(src, "source"):
        tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=False)
    _check_tokenizer(tokenizer, config, src)

    started = time.perf_counter()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        converter = TransformersConverter(src, low_cpu_mem_usage=True, trust_remote_code=False)
        with safe_load(src, "source"):
            converter.convert(str(tmp), quantization=quantization, force=True)
        tokenizer.save_pretrained(tmp)  # tokenizer.json (+ tokenizer_config.json): what BackTranslator reads
        sentencepiece = _sentencepiece_file(src, local)
        if sentencepiece is not None:
            shutil.copy(sentencepiece, tmp / SENTENCEPIECE_FILE)
        _check_converted(tmp, len(tokenizer))
        record = {
            "source": src,
            "quantization": quantization,
            "vocab_size": len(tokenizer),
            "ctranslate2": ctranslate2.__version__,
            "transformers": metadata.version("transformers"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "conversion.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if verify:
            _smoke_test(tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s to %s (%s) in %.1f s", src, out, quantization, time.perf_counter() - started)
    return out


def _sentencepiece_file(src: str, local: bool) -> Path | None:
    if local:
        path = Path(src) / SENTENCEPIECE_FILE
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(src, SENTENCEPIECE_FILE))
    except Exception:  # optional: tokenizer.json is enough
        return None


def _check_converted(path: Path, vocab_size: int) -> None:
    """The converted folder starts decoding with </s> and has the whole vocabulary."""
    read_model_folder(path)  # decoder start token, model.bin, tokenizer files
    found = len(model_vocabulary(path) or [])
    if found != vocab_size:
        raise InputError(f"the converted vocabulary has {found} tokens, expected {vocab_size}: conversion failed.")


def _smoke_test(path: Path) -> None:
    config = BacktranslateConfig(path, compute_type="default", threads=1, max_output_tokens=4, beam_size=1)
    with BackTranslator(config) as translator:
        (hypothesis,) = translator.translate(["안녕하세요"], source_lang="ko_KR", target_lang="en_XX")[0]
    if hypothesis.tokens[:1] != ["en_XX"]:
        raise InputError(f"the converted model's output starts with {hypothesis.tokens[:1]}, not en_XX.")
