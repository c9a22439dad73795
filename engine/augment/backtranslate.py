"""Back-translation (ko -> pivot -> ko) with mBART-50 on CTranslate2.

- `BacktranslateConfig`: every option, validated once (frozen).
- `BackTranslator` owns the `ctranslate2.Translator` and the tokenizer of one converted model folder
  (`hardaug convert-mbart` writes one). `translate(texts, ...)` runs one leg and returns CTranslate2's
  tokens (the first one is the forced target language code) and the decoded text; `backtranslate(texts)`
  runs both legs and returns, per input and in input order, one `BackTranslation` per pivot and variant.
- `BacktranslateJob(config)`, run by `common.augment_file`, is the resumable job behind `hardaug
  backtranslate` (in this process or on Ray): it writes the augmented schema of `engine.augment.common`
  (method `backtranslate`, variant `{pivot}.{k}`, the pivot text in `extra`, the decoding options in
  `params`).

Variants: for each pivot language, variant 0 is beam search (greedy with beam_size=1) on both legs, and
variants 1..N-1 are N-1 independent samples (top-k, temperature) of the pivot, each translated back by
sampling too. So `--pivot en_XX --pivot ja_XX --variants 3` gives up to 6 rows per source.

Drops (counted in the drops file, OUT with the suffix .drops.json): sources shorter than `min_chars`
(too_short, one row per source), variants whose pivot came out empty (empty_pivot), and, in
`common.to_rows`, empty outputs (empty) and outputs identical to the source (identical_to_source).

Batching: each leg is one `translate_batch` call over the whole chunk with `max_batch_size` counted in
tokens (`batch_type="tokens"`): CTranslate2 sorts the inputs by length, cuts batches under that budget,
spreads them over its workers (several GPUs with `device_index=[0, 1]`) and returns results in input
order. benchmarks/bench_backtranslate.py measures this against engine/batching.py's planner.

Determinism: beam variants depend only on the input and the model. Sampled variants are seeded by
`seed` when the translator is created; CTranslate2 cannot reseed a loaded translator, so a resumed job
draws new samples for the sources it had not finished (still exactly one row per source and variant).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from engine.augment.common import Generated, job_fingerprint, to_rows
from engine.cores import threads_for
from engine.errors import InputError
from engine.models import resolve_model
from engine.options import non_negative_int, option, positive_float, positive_int
from engine.stage import ChunkRows

log = logging.getLogger(__name__)

METHOD = "backtranslate"
# mBART-50's language codes (fairseq order), as in transformers' MBart50Tokenizer.
LANGUAGE_CODES = (
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN", "it_IT", "ja_XX",
    "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO", "ru_RU", "si_LK", "tr_TR", "vi_VN",
    "zh_CN", "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK", "ml_IN",
    "mn_MN", "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN", "th_TH", "tl_XX", "uk_UA",
    "ur_PK", "xh_ZA", "gl_ES", "sl_SI",
)  # fmt: skip
DEVICES = ("cpu", "cuda")
COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)  # fmt: skip
DEFAULT_COMPUTE_TYPE = {"cpu": "int8", "cuda": "int8_float16"}
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 16384}
DEFAULT_CHUNK_SIZE = {"cpu": 256, "cuda": 8192}
MAX_DEFAULT_THREADS = 16
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
TOO_SHORT = "too_short"
EMPTY_PIVOT = "empty_pivot"


def check_language(code: str, valid: Sequence[str], what: str) -> None:
    if code in valid:
        return
    close = [c for c in valid if c.split("_")[0] == code.split("_")[0].lower()] or difflib.get_close_matches(
        code, valid, n=1
    )
    hint = f" Did you mean {close[0]}?" if close else ""
    raise InputError(f"{what} {code!r} is not an mBART-50 language code.{hint} Valid codes: {', '.join(valid)}.")


def _pivots_from_flag(pivots: list[str] | None) -> tuple[str, ...]:
    """--pivot, repeated: the pivots in order; none given = en_XX."""
    return tuple(pivots or ("en_XX",))


def _device_indices(value: str) -> tuple[int, ...]:
    """--device-index 0,1: GPU numbers."""
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU numbers like 0 or 0,1, got {value!r}") from None


@dataclass(frozen=True)
class BacktranslateConfig:
    """Every option of a back-translation job.

    Languages: `source_lang` (the texts' language), `pivots` (one or more pivot languages).
    Decoding: `variants` per pivot (variant 0 = beam search with `beam_size`, 1 = greedy; the others
    sampled with `sampling_topk` / `sampling_temperature`), `max_input_tokens` (longer inputs are cut),
    `max_output_tokens` / `min_output_tokens` per leg, language code included (min = max forces equal
    lengths: benchmarks only), `seed` for the sampled variants, `min_chars` (shorter sources are skipped
    and counted as too_short: they translate badly).
    Engine: `device` cpu | cuda, `device_index` (several GPUs share the batches), `compute_type` (None =
    int8 on CPU, int8_float16 on CUDA), `threads` (CPU threads per translator; 0 = the cores this
    process may use, at most 16), `max_batch_tokens` (batch budget in source tokens; None = 2048 on
    CPU, 16384 on CUDA). None and 0 are resolved in `__post_init__`, so `config.compute_type` is the real one.
    """

    model: str | Path = option(type=Path, help="CTranslate2 mBART-50 folder (from convert-mbart)")
    source_lang: str = option("ko_KR", group="translation", help="mBART-50 code of the texts' language")
    pivots: tuple[str, ...] = option(
        ("en_XX",),
        group="translation",
        flag="--pivot",
        action="append",
        metavar="CODE",
        cli_default=None,
        convert=_pivots_from_flag,
        help="pivot language, mBART-50 code; repeat for several (each adds --variants rows per source; default: en_XX)",
    )
    variants: int = option(
        1,
        group="translation",
        type=positive_int,
        help="outputs per source and pivot: 1 = beam search only; N = beam + N-1 samples",
    )
    beam_size: int = option(4, group="translation", type=positive_int, help="beam size of variant 0; 1 = greedy")
    sampling_topk: int = option(
        20,
        group="translation",
        flag="--top-k",
        type=non_negative_int,
        help="sampled variants: sample among the K most likely tokens; 0 = all",
    )
    sampling_temperature: float = option(
        0.9, group="translation", flag="--temperature", type=positive_float, help="sampled variants: temperature"
    )
    seed: int = option(0, group="translation", type=non_negative_int, help="seed of the sampled variants")
    max_input_tokens: int = option(
        256,
        group="translation",
        type=positive_int,
        help="longer inputs are cut to this many tokens, language code and </s> included",
    )
    max_output_tokens: int = option(
        256,
        group="translation",
        type=positive_int,
        help="longest output of each leg in tokens, language code included",
    )
    min_output_tokens: int = option(0, cli=False, help="shortest output of each leg (= max: benchmarks only)")
    min_chars: int = option(
        10,
        group="translation",
        type=non_negative_int,
        help="skip sources shorter than this many characters; counted as too_short",
    )
    device: str = option("cpu", group="engine", choices=DEVICES, help="where to run")
    device_index: tuple[int, ...] = option(
        (0,),
        group="engine",
        type=_device_indices,
        help="GPU numbers, comma-separated; batches are spread over all of them",
    )
    compute_type: str | None = option(
        None,
        group="engine",
        choices=tuple(c for c in COMPUTE_TYPES if c not in ("default", "auto")),
        help="computation type (default: int8 on CPU, int8_float16 on CUDA); the model is converted on load",
    )
    threads: int = option(
        0,
        group="engine",
        type=non_negative_int,
        help=f"CPU threads for the model; 0 = the cores this process may use, at most {MAX_DEFAULT_THREADS} "
        "(default: 0). Never more than the free cores: an oversubscribed CPU is many times slower",
    )
    max_batch_tokens: int | None = option(
        None,
        group="engine",
        type=positive_int,
        help=f"batch budget in source tokens (default: {DEFAULT_BATCH_TOKENS['cpu']} on CPU, "
        f"{DEFAULT_BATCH_TOKENS['cuda']} on CUDA; raise it on large GPUs)",
    )

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise InputError("model must be a CTranslate2 model folder, got an empty string")
        pivots = (self.pivots,) if isinstance(self.pivots, str) else tuple(self.pivots)
        object.__setattr__(self, "pivots", pivots)
        check_language(self.source_lang, LANGUAGE_CODES, "source language")
        if not pivots:
            raise InputError("pivots must name at least one pivot language, e.g. ('en_XX',)")
        for pivot in pivots:
            check_language(pivot, LANGUAGE_CODES, "pivot language")
        if len(set(pivots)) != len(pivots):
            raise InputError(f"pivots must not repeat a language, got {list(pivots)}")
        if self.source_lang in pivots:
            raise InputError(f"the pivot languages {list(pivots)} must differ from the source {self.source_lang}")
        for name in ("variants", "beam_size", "max_input_tokens", "max_output_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_input_tokens < 3:
            raise InputError(
                f"max_input_tokens must leave room for a language code and </s>, got {self.max_input_tokens}"
            )
        if not 0 <= self.min_output_tokens <= self.max_output_tokens:
            raise InputError(
                f"min_output_tokens must be in 0..max_output_tokens ({self.max_output_tokens}), "
                f"got {self.min_output_tokens}"
            )
        if self.sampling_topk < 0:
            raise InputError(f"sampling_topk must be >= 0 (0 = the whole vocabulary), got {self.sampling_topk}")
        if self.variants > 1 and self.sampling_topk == 1:
            raise InputError(f"variants={self.variants} needs sampling_topk != 1: greedy samples would all be equal")
        if self.sampling_temperature <= 0:
            raise InputError(f"sampling_temperature must be positive, got {self.sampling_temperature}")
        if self.min_chars < 0:
            raise InputError(f"min_chars must be >= 0, got {self.min_chars}")
        if not 0 <= self.seed < 2**31:
            raise InputError(f"seed must be in [0, 2**31), got {self.seed}")
        if self.device not in DEVICES:
            raise InputError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        index = (self.device_index,) if isinstance(self.device_index, int) else tuple(self.device_index)
        if not index or any(not isinstance(i, int) or i < 0 for i in index) or len(set(index)) != len(index):
            raise InputError(f"device_index must be distinct GPU numbers like (0, 1), got {self.device_index!r}")
        if self.device == "cpu" and len(index) > 1:
            raise InputError("several device_index values need device='cuda'; on CPU use threads instead")
        object.__setattr__(self, "device_index", index)
        compute_type = self.compute_type or DEFAULT_COMPUTE_TYPE[self.device]
        if compute_type not in COMPUTE_TYPES:
            raise InputError(f"compute_type must be one of {list(COMPUTE_TYPES)}, got {compute_type!r}")
        object.__setattr__(self, "compute_type", compute_type)
        if self.threads < 0:
            raise InputError(f"threads must be >= 0 (0 = the available cores), got {self.threads}")
        # An explicit count above the cores this process may use only oversubscribes them: capped too.
        object.__setattr__(self, "threads", threads_for(self.threads, most=MAX_DEFAULT_THREADS, what="threads"))
        budget = self.max_batch_tokens or DEFAULT_BATCH_TOKENS[self.device]
        if budget < 1:
            raise InputError(f"max_batch_tokens must be at least 1, got {self.max_batch_tokens}")
        object.__setattr__(self, "max_batch_tokens", budget)

    @property
    def variant_tags(self) -> list[str]:
        """Every variant a source can get, in output order."""
        return [f"{pivot}.{k}" for pivot in self.pivots for k in range(self.variants)]

    def params(self, *, sampled: bool | None = None) -> dict:
        """The options that decide the outputs (for the fingerprint and the rows' `params`)."""
        common = {
            "source_lang": self.source_lang,
            "max_input_tokens": self.max_input_tokens,
            "max_output_tokens": self.max_output_tokens,
            "min_output_tokens": self.min_output_tokens,
            "compute_type": self.compute_type,
            "device": self.device,
        }
        beam = {"decoding": "beam", "beam_size": self.beam_size}
        sample = {
            "decoding": "sampling",
            "sampling_topk": self.sampling_topk,
            "sampling_temperature": self.sampling_temperature,
            "seed": self.seed,
        }
        if sampled is None:
            return {**common, "pivots": list(self.pivots), "variants": self.variants, "min_chars": self.min_chars,
                    "beam": beam, "sample": sample}  # fmt: skip
        return {**common, **(sample if sampled else beam)}


@dataclass(frozen=True)
class Translation:
    """One hypothesis of one leg: CTranslate2's tokens (target language code first) and the decoded text."""

    tokens: list[str]
    text: str


@dataclass(frozen=True)
class BackTranslation:
    """One back-translation of one input: `text` in the source language, via `pivot_text` in `pivot`."""

    text: str
    pivot_text: str
    pivot: str
    variant: str  # "{pivot}.{k}"; k = 0 is beam search, k >= 1 sampled
    sampled: bool
    output_tokens: int  # generated over both legs, language codes included

    @property
    def skipped(self) -> bool:
        """True when the pivot came out empty, so nothing was translated back."""
        return not self.pivot_text.strip()


class _Tokenizer:
    """mBART-50 sentencepiece pieces as token strings, from tokenizer.json (preferred) or
    sentencepiece.bpe.model. CTranslate2 takes and returns token strings, not ids."""

    def __init__(self, model_dir: Path) -> None:
        if (model_dir / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self._hf = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            vocab = self._hf.get_vocab(with_added_tokens=True)
            self.pieces = [""] * len(vocab)
            for piece, i in vocab.items():
                self.pieces[i] = piece
            self._ids = vocab
            self._sp = None
        else:
            import sentencepiece as spm

            self._hf = None
            self._sp = spm.SentencePieceProcessor(model_file=str(model_dir / "sentencepiece.bpe.model"))
            # fairseq layout: <s> <pad> </s> <unk>, the pieces after the sentencepiece specials, then the
            # language codes and <mask> (ids do not matter to CTranslate2; membership does)
            self.pieces = [*SPECIAL_TOKENS[:4], *(self._sp.id_to_piece(i) for i in range(3, len(self._sp)))]
            self.pieces += [*LANGUAGE_CODES, "<mask>"]
            self._ids = {piece: i for i, piece in enumerate(self.pieces)}
        self.specials = frozenset([*SPECIAL_TOKENS, *(c for c in LANGUAGE_CODES if c in self._ids)])

    def __len__(self) -> int:
        return len(self.pieces)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def encode(self, texts: Sequence[str], max_pieces: int) -> list[list[str]]:
        """Pieces of each text, without language code or </s>, cut to `max_pieces`. Characters outside the
        vocabulary become <unk> (as in transformers), not their own surface string."""
        if self._hf is not None:
            encodings = self._hf.encode_batch(list(texts), add_special_tokens=False)
            pieces = self.pieces
            return [[pieces[i] for i in e.ids[:max_pieces]] for e in encodings]
        ids = self._sp.encode(list(texts), out_type=int)
        return [[self._sp.id_to_piece(i) if i else "<unk>" for i in row[:max_pieces]] for row in ids]

    def decode(self, token_lists: Sequence[Sequence[str]]) -> list[str]:
        """Texts of generated tokens; language codes and special tokens are left out."""
        specials = self.specials
        if self._hf is not None:
            unk = self._ids["<unk>"]
            ids = [[self._ids.get(t, unk) for t in tokens if t not in specials] for tokens in token_lists]
            return self._hf.decode_batch(ids, skip_special_tokens=True)
        return [self._sp.decode_pieces([t for t in tokens if t not in specials]) for tokens in token_lists]


def read_model_folder(model: str | Path) -> tuple[Path, dict]:
    """Check that `model` is a CTranslate2 mBART-50 folder with its tokenizer; return it and its config.

    Reads only small files (config.json), so it costs nothing before the model is loaded.
    """
    fix = f"Convert a Hugging Face mBART-50 model with: hardaug convert-mbart <hub id or folder> {model}"
    try:  # engine.models: a folder, or a hub id found in the local cache (CTranslate2 loads folders only)
        source = resolve_model(str(model), needs=(), what="CTranslate2 model")
    except InputError as exc:
        raise InputError(f"model folder {model} does not exist or cannot be used ({exc}) {fix}") from None
    if source.path is None:
        raise InputError(f"{model} is a model-hub id, not a CTranslate2 model folder. {fix}")
    path = source.path
    config_path = path / "config.json"
    if not (path / "model.bin").is_file():
        hf = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        if hf.get("model_type") or (path / "model.safetensors").exists() or (path / "pytorch_model.bin").exists():
            raise InputError(
                f"{path} is a Hugging Face checkpoint (model_type {hf.get('model_type')!r}), not a CTranslate2 "
                f"model. Convert it first: hardaug convert-mbart {path} {path}-ct2, then pass --model {path}-ct2."
            )
        raise InputError(f"{path} is not a CTranslate2 model folder (no model.bin in it). {fix}")
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if config.get("decoder_start_token") != "</s>":
        raise InputError(
            f"{path} was converted with decoder start token {config.get('decoder_start_token')!r} instead of "
            "'</s>' (mBART-50 starts decoding with </s>, then the language code): the source config.json "
            "lacked tokenizer_class='MBart50Tokenizer', and every translation would be wrong. Reconvert with "
            "hardaug convert-mbart, which checks this."
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES)}). hardaug convert-mbart copies it beside "
            "the model; or copy the files from the original Hugging Face model folder."
        )
    return path, config


def model_vocabulary(path: Path) -> list[str] | None:
    """The CTranslate2 model's target vocabulary, in id order (None if the folder has none)."""
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        if (path / name).is_file():
            return json.loads((path / name).read_text(encoding="utf-8"))
    for name in ("shared_vocabulary.txt", "target_vocabulary.txt"):
        if (path / name).is_file():
            return (path / name).read_text(encoding="utf-8").splitlines()
    return None


def check_tokenizer_matches(path: Path, tokenizer: _Tokenizer) -> None:
    """The tokenizer beside the model must be the model's: same tokens in the same order."""
    vocabulary = model_vocabulary(path)
    if vocabulary is None or vocabulary == tokenizer.pieces:
        return
    where = next((i for i, (a, b) in enumerate(zip(vocabulary, tokenizer.pieces, strict=False)) if a != b), None)
    found = (
        f"has {len(tokenizer)} tokens but the model's vocabulary has {len(vocabulary)}"
        if where is None
        else f"differs from the model's vocabulary at id {where} ({tokenizer.pieces[where]!r} vs {vocabulary[where]!r})"
    )
    raise InputError(
        f"the tokenizer beside {path} {found}: the tokenizer files belong to another model. Copy the ones of "
        "the model that was converted, or reconvert with hardaug convert-mbart."
    )


def check_device_here(config: BacktranslateConfig) -> None:
    """The device and compute type are usable on this machine (InputError with the fix if not)."""
    import ctranslate2

    if config.device == "cuda" and ctranslate2.get_cuda_device_count() > 0:
        from engine.cuda_libs import load_cublas12

        load_cublas12()  # CTranslate2's wheels open CUDA 12 cuBLAS by name; the gpu extra's torch has CUDA 13
    try:
        supported = ctranslate2.get_supported_compute_types(config.device, config.device_index[0])
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"device {config.device!r} is not usable here ({exc}). Use --device cpu.") from exc
    if config.compute_type not in (*supported, "default", "auto"):
        raise InputError(
            f"compute type {config.compute_type!r} is not supported on {config.device} here; supported: "
            f"{', '.join(sorted(supported))}."
        )


class BackTranslator:
    """Owns one `ctranslate2.Translator` and the tokenizer of a converted mBART-50 folder.

    Opening checks the folder, the tokenizer and the languages (`InputError` with the fix) before the
    model is loaded. Use as a context manager, or call `close()` to free the model's memory. `load=False`
    runs the checks only (a Ray driver checks the folder before its workers load the model).
    """

    def __init__(self, config: BacktranslateConfig, *, load: bool = True) -> None:
        self.config = config
        self.model_dir, self.model_config = read_model_folder(config.model)
        self.tokenizer = _Tokenizer(self.model_dir)
        check_tokenizer_matches(self.model_dir, self.tokenizer)
        self.languages = [c for c in LANGUAGE_CODES if c in self.tokenizer]
        if not self.languages:
            raise InputError(
                f"the tokenizer beside {self.model_dir} has no mBART-50 language codes (ko_KR, en_XX, ...): "
                "this is not an mBART-50 many-to-many model."
            )
        for code in (config.source_lang, *config.pivots):
            check_language(code, self.languages, f"language of model {self.model_dir}:")
        self.translator = self._load() if load else None

    def _load(self):
        import ctranslate2

        config = self.config
        check_device_here(config)
        ctranslate2.set_random_seed(config.seed)  # seeds the sampling of the translator created next
        started = time.perf_counter()
        translator = ctranslate2.Translator(
            str(self.model_dir),
            device=config.device,
            device_index=list(config.device_index),
            compute_type=config.compute_type,
            intra_threads=config.threads,
            inter_threads=1,
        )
        log.info(
            "loaded %s on %s %s (%s, %d threads) in %.1f s",
            self.model_dir,
            config.device,
            list(config.device_index),
            translator.compute_type,
            config.threads,
            time.perf_counter() - started,
        )
        return translator

    def close(self) -> None:
        translator = getattr(self, "translator", None)
        if translator is not None:
            translator.unload_model()
            self.translator = None

    def __enter__(self) -> BackTranslator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def translate(
        self,
        texts: Sequence[str],
        *,
        source_lang: str | Sequence[str],
        target_lang: str | Sequence[str],
        sample: bool = False,
        num_hypotheses: int = 1,
    ) -> list[list[Translation]]:
        """One leg: translate `texts` (languages per text or one for all) in one engine call.

        Returns, in input order, `num_hypotheses` translations per text (beam search, or independent
        samples with `sample=True`). Each hypothesis's tokens start with the forced target language code.
        """
        n = len(texts)
        if n == 0:
            return []
        sources = [source_lang] * n if isinstance(source_lang, str) else list(source_lang)
        targets = [target_lang] * n if isinstance(target_lang, str) else list(target_lang)
        if len(sources) != n or len(targets) != n:
            raise ValueError(f"got {n} texts but {len(sources)} source and {len(targets)} target languages")
        for code in {*sources, *targets}:
            check_language(code, self.languages, "language")
        config = self.config
        pieces = self.tokenizer.encode(texts, config.max_input_tokens - 2)
        tokens = [[lang, *p, "</s>"] for lang, p in zip(sources, pieces, strict=True)]
        options = {
            "beam_size": 1,
            "sampling_topk": config.sampling_topk,
            "sampling_temperature": config.sampling_temperature,
        }
        if not sample:
            options = {"beam_size": max(config.beam_size, num_hypotheses)}
        results = self.translator.translate_batch(
            tokens,
            target_prefix=[[t] for t in targets],
            max_batch_size=config.max_batch_tokens,
            batch_type="tokens",
            num_hypotheses=num_hypotheses,
            max_input_length=config.max_input_tokens,
            max_decoding_length=config.max_output_tokens,
            min_decoding_length=config.min_output_tokens,
            return_scores=False,
            **options,
        )
        hypotheses = [h for r in results for h in r.hypotheses]
        texts_out = self.tokenizer.decode(hypotheses)
        out, k = [], 0
        for r in results:
            m = len(r.hypotheses)
            out.append([Translation(hypotheses[k + j], texts_out[k + j]) for j in range(m)])
            k += m
        return out

    def backtranslate(self, texts: Sequence[str]) -> list[list[BackTranslation]]:
        """Both legs for every pivot and variant; per input (input order), `config.variant_tags` order.

        A variant whose pivot comes out empty is returned with an empty pivot and text (`skipped`).
        """
        config = self.config
        n = len(texts)
        if n == 0:
            return []
        pivots = config.pivots
        # leg 1: every (text, pivot) pair at once; beam for variant 0, samples for the others
        pair_texts = [t for t in texts for _ in pivots]
        pair_pivots = [p for _ in texts for p in pivots]
        legs = [(False, 1)] + ([(True, config.variants - 1)] if config.variants > 1 else [])
        forward = [
            (sampled, self.translate(pair_texts, source_lang=config.source_lang, target_lang=pair_pivots,
                                     sample=sampled, num_hypotheses=k))
            for sampled, k in legs
        ]  # fmt: skip
        # leg 2: every non-empty pivot text back to the source language, again one call per decoding
        slots: dict[tuple[int, str, int], tuple[Translation, Translation | None]] = {}
        for sampled, results in forward:
            todo = [
                (pair, k, hyp) for pair, hyps in enumerate(results) for k, hyp in enumerate(hyps) if hyp.text.strip()
            ]
            back = self.translate(
                [hyp.text for _, _, hyp in todo],
                source_lang=[pair_pivots[pair] for pair, _, _ in todo],
                target_lang=config.source_lang,
                sample=sampled,
            )
            for (pair, k, hyp), (result,) in zip(todo, back, strict=True):
                slots[(pair, pair_pivots[pair], k + sampled)] = (hyp, result)
            for pair, hyps in enumerate(results):
                for k, hyp in enumerate(hyps):
                    slots.setdefault((pair, pair_pivots[pair], k + sampled), (hyp, None))
        out: list[list[BackTranslation]] = []
        for i in range(n):
            row = []
            for j, pivot in enumerate(pivots):
                for k in range(config.variants):
                    pivot_hyp, back_hyp = slots[(i * len(pivots) + j, pivot, k)]
                    row.append(
                        BackTranslation(
                            text=back_hyp.text if back_hyp else "",
                            pivot_text=pivot_hyp.text,
                            pivot=pivot,
                            variant=f"{pivot}.{k}",
                            sampled=k > 0,
                            output_tokens=len(pivot_hyp.tokens) + (len(back_hyp.tokens) if back_hyp else 0),
                        )
                    )
            out.append(row)
        return out


def _chunk_rows(chunk: pl.DataFrame, results: dict[int, list[BackTranslation]], config: BacktranslateConfig):
    """Rows (common.PART_SCHEMA) of one chunk; `results` maps row indices of `chunk` to their outputs.
    Sources shorter than `min_chars` get one too_short row each. `params` differ by pivot and decoding."""
    groups: dict[tuple[str | None, bool], list[Generated]] = {}
    for index, text in enumerate(chunk["text"].to_list()):
        if index not in results:
            extra = {"chars": len(text.strip()), "min_chars": config.min_chars}
            groups.setdefault((None, False), []).append(Generated(index, "-", "", extra, TOO_SHORT))
            continue
        for bt in results[index]:
            extra = {"pivot": bt.pivot, "pivot_text": bt.pivot_text}
            generated = Generated(index, bt.variant, bt.text, extra, EMPTY_PIVOT if bt.skipped else None)
            groups.setdefault((bt.pivot, bt.sampled), []).append(generated)
    frames = [
        to_rows(
            chunk,
            generated,
            method=METHOD,
            model=str(config.model),
            params={**config.params(sampled=sampled), **({"pivot": pivot} if pivot else {})},
        )
        for (pivot, sampled), generated in groups.items()
    ]
    return pl.concat(frames) if frames else to_rows(chunk, [], method=METHOD, model=str(config.model), params={})


def translate_chunk(translator: BackTranslator, chunk: pl.DataFrame) -> ChunkRows:
    """One chunk of sources (`load_sources` columns) through both legs: its rows (common.PART_SCHEMA), round
    trips and output tokens. The single-process job and the Ray shards (engine.cluster) both call this, so
    their outputs match."""
    texts = chunk["text"].to_list()
    long_enough = [i for i, t in enumerate(texts) if len(t.strip()) >= translator.config.min_chars]
    translated = translator.backtranslate([texts[i] for i in long_enough])
    rows = _chunk_rows(chunk, dict(zip(long_enough, translated, strict=True)), translator.config)
    return ChunkRows(
        rows,
        outputs=sum(len(r) for r in translated),
        output_tokens=sum(bt.output_tokens for r in translated for bt in r),
    )


@dataclass(frozen=True)
class BacktranslateJob:
    """The back-translation job (engine.stage.ChunkJob): run it with `augment.common.augment_file`, here or
    on Ray. `BacktranslateJob.using(translator)` runs on an open translator (its config is the job's),
    in this process only, and leaves it open."""

    stage = METHOD
    config: BacktranslateConfig
    translator: BackTranslator | None = field(default=None, compare=False, repr=False)

    @classmethod
    def using(cls, translator: BackTranslator) -> BacktranslateJob:
        return cls(translator.config, translator)

    @property
    def chunk_size(self) -> int:
        return DEFAULT_CHUNK_SIZE[self.config.device]

    def bind(self, sources: pl.DataFrame, source: str) -> BacktranslateJob:
        return self  # nothing of the job depends on its sources

    def check(self, *, local: bool) -> None:
        if self.translator is not None:
            return  # checked when it was opened
        BackTranslator(self.config, load=False)  # folder, tokenizer, languages: before any output
        if local:
            check_device_here(self.config)

    def fingerprint(self, sources: pl.DataFrame) -> str:
        return job_fingerprint(sources, METHOD, str(self.config.model), self.config.params())

    def for_replica(self, gpus: int) -> BacktranslateJob:
        """On Ray a replica sees only its own GPUs (Ray sets CUDA_VISIBLE_DEVICES), numbered from 0."""
        if self.config.device != "cuda":
            return self
        return replace(self, config=replace(self.config, device_index=tuple(range(max(gpus, 1)))))

    def open(self) -> _Translating:
        if self.translator is not None:
            return _Translating(self.translator, owned=False)
        return _Translating(BackTranslator(self.config), owned=True)


class _Translating:
    def __init__(self, translator: BackTranslator, *, owned: bool) -> None:
        self.translator, self.owned = translator, owned

    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        return translate_chunk(self.translator, chunk)

    def close(self) -> None:
        if self.owned:
            self.translator.close()
