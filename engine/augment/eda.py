"""EDA for Korean: random deletion, swap and insertion of whole words, so particles stay on their words.

Easy Data Augmentation (Wei & Zou 2019) edits words at random. Korean glues particles and endings to
their word ("영화가", "재미없다"), so editing morphemes one by one would strand a particle ("가 영화")
or break an ending. Here the unit of every edit is a *word unit*: a content morpheme together with the
particles, endings, suffixes and punctuation that follow it, found with Kiwi's morpheme positions. In
well-spaced text that is the space-separated word (eojeol); in reviews written without spaces
("입김이많이들어간듯") Kiwi still finds the boundaries ("입김이" | "많이" | "들어간듯"). Units are cut
from the original characters, so nothing is re-spelled; untouched neighbours keep their original spacing
and moved or inserted words are separated by one space.

Operations (one per variant, cycling delete -> swap -> insert over the enabled ones):
- delete: each movable unit is dropped with probability `p_delete` (at least one is);
- swap: `max(1, round(p_swap * words))` times, two movable units trade places;
- insert: `max(1, round(p_insert * words))` times, a content word of the same text (a general noun,
  proper noun or general adverb from Kiwi, 2+ characters: "영화", "진짜") is inserted before a random unit
  up to the last word. Words come from the text itself, so no new sentiment word is brought in.
Never moved or deleted: a unit that ends a sentence (holds a final ending, e.g. "재미없다.") and the
last word, so the text keeps its predicate, and (by default) units with a negation ("안", "못", "없다",
"않다"), whose loss or move would flip the label. Output is never empty. Synonym replacement is left out:
no Korean synonym resource with a clear license is installable from PyPI.

English: a text written in Latin script is cut into space-separated words (with the punctuation glued to
them) instead of Kiwi units, and the same three operations apply. Negations ("not", "no", "never",
"without", "nobody", any word ending in "n't", ...) are protected exactly like Korean ones; a word that ends
a sentence ("good.") and the last word stay; insertion repeats a content word of the same text (3+ letters,
not one of scikit-learn's English stop words, not a negation). Kiwi would tag English words as foreign
(SL), which offered nothing to insert and left "isn't" or "without" free to be deleted. Texts in any other
script are refused before anything is written: no rule here knows their negations.

Determinism: each source gets its own `random.Random` seeded from (seed, source id), so the output does
not depend on the order of the sources, the chunking, or a resume.
"""

from __future__ import annotations

import argparse
import logging
import operator
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import polars as pl

from engine import english
from engine.augment.common import Generated, job_fingerprint, to_rows
from engine.errors import InputError
from engine.options import option, positive_int
from engine.stage import ChunkRows
from engine.text import HANGUL, LATIN, kiwi_tokens

log = logging.getLogger(__name__)

METHOD = "eda"
OPS = ("delete", "swap", "insert")
# A unit starts at a morpheme with one of these tags only after whitespace: they lean on the word before.
_ATTACHED = ("J", "E", "XS", "VCP", "VCN", "VX", "NNB", "SF", "SP", "SE", "SSC", "SO", "SW", "W_EMOJI")
# Inside a space-separated word a new unit starts only after a particle, an ending, or a full stop or
# comma ("입김이|많이", "감독임.|근데"): splitting after symbols like "~" trusted Kiwi too far ("은근~|히").
_CLOSING = ("J", "E", "SF", "SP")
# ... and these even after a space: bound nouns (수, 것, 거) and auxiliary predicates (않다, 싶다, 보다).
_LEANING = ("NNB", "VX")
_WORD_TAGS = ("N", "V", "M", "XR", "SL", "SH", "SN", "IC")
_INSERTABLE = ("NNG", "NNP", "MAG")
_LETTER = re.compile(r"[^\W\d_]")
_SENTENCE_END = (".", "!", "?", "…")
_NEGATION = {("안", "MAG"), ("못", "MAG"), ("없", "VA"), ("않", "VX"), ("못하", "VX"), ("말", "VX"), ("아니", "VCN")}


def rate(value: str) -> float:
    """--p-delete and the other rates: a number in [0, 1]."""
    x = float(value)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1], got {value}")
    return x


# Far more than the distinct one- or two-word edits most texts allow; without a bound, --n 1000000000 runs
# (and allocates) for ever.
MAX_VARIANTS = 100


@dataclass(frozen=True)
class EdaConfig:
    """Variants per source and per-operation rates (0 disables an operation); each field's help is its
    flag's (`hardaug eda --help`)."""

    n: int = option(4, type=positive_int, help="variants per source")
    p_delete: float = option(0.1, type=rate, help="deletion: chance to drop each unit; 0 disables")
    p_swap: float = option(0.1, type=rate, help="swap: swaps per word, at least 1; 0 disables")
    p_insert: float = option(0.1, type=rate, help="insertion: words per word, at least 1; 0 disables")
    seed: int = option(42, help="random seed")
    protect_negation: bool = option(
        True,
        flag="--move-negations",
        cli_default=False,
        convert=operator.not_,
        help="let delete and swap touch units with a negation (by default they stay, so the label holds)",
    )
    max_tries: int = option(10, type=positive_int, help="attempts per variant to get a new text")

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_VARIANTS:
            raise InputError(
                f"n (variants per source) must be 1..{MAX_VARIANTS}, got {self.n}: one text allows few distinct "
                "edits, and more variants of it are near-duplicates of each other that the filter drops."
            )
        for name in ("p_delete", "p_swap", "p_insert"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"{name} must be a rate in [0, 1], got {getattr(self, name)}")
        if not self.ops():
            raise InputError("every operation rate is 0: enable at least one of p_delete, p_swap, p_insert")
        if self.max_tries < 1:
            raise InputError(f"max_tries must be at least 1, got {self.max_tries}")

    def ops(self) -> tuple[str, ...]:
        return tuple(op for op in OPS if getattr(self, f"p_{op}") > 0)


@dataclass(frozen=True)
class Unit:
    """A word with its particles/endings (or a run of punctuation), cut from the original text."""

    text: str
    gap: str  # the whitespace that followed it in the source ("" inside unspaced text)
    word: bool  # holds a content morpheme; False for punctuation/symbol-only units, which never move
    fixed: bool  # ends a sentence, or is the last word: never moved or deleted
    negation: bool
    insertable: tuple[str, ...]  # content words it offers to the insert operation


def _base(tag: str) -> str:
    return tag.split("-")[0]  # Kiwi marks irregular conjugations as VA-I, VV-R, ...


def split_units(text: str, tokens: Sequence) -> list[Unit]:
    """Cut `text` into units at Kiwi morpheme boundaries (tokens: Kiwi `Token`s of `text`)."""
    if not tokens:
        return []
    starts, groups = [], []
    prev = None
    for tok in tokens:
        tag = _base(tok.tag)
        if prev is None:
            new_unit = True
        elif tok.word_position != prev.word_position:
            # a bound noun or an auxiliary predicate leans on the word before even across a space:
            # "할 수", "나가지 않았다면", "보고 싶다" stay one unit
            new_unit = not tag.startswith(_LEANING)
        else:
            new_unit = _base(prev.tag).startswith(_CLOSING) and tok.start >= prev.end and not tag.startswith(_ATTACHED)
        if new_unit:
            starts.append(tok.start if prev is not None else 0)
            groups.append([])
        groups[-1].append(tok)
        prev = tok
    bounds = [*starts[1:], len(text)]
    units = []
    for start, end, group in zip(starts, bounds, groups, strict=True):
        piece = text[start:end]
        core = piece.rstrip()
        tags = [_base(t.tag) for t in group]
        units.append(
            Unit(
                text=core.lstrip(),
                gap=piece[len(core) :],
                word=any(t.startswith(_WORD_TAGS) for t in tags),
                fixed="EF" in tags,
                negation=any((t.form, _base(t.tag)) in _NEGATION for t in group),
                insertable=_insertable(text, group),
            )
        )
    words = [i for i, u in enumerate(units) if u.word]
    if words:  # the last word carries the predicate even without a final ending ("최고", "별로")
        last = units[words[-1]]
        units[words[-1]] = Unit(last.text, last.gap, True, True, last.negation, last.insertable)
    return units


def script(text: str) -> str:
    """'ko' (Hangul letters at least as many as Latin ones, or no letters at all: Kiwi handles symbols and
    emoji), 'en' (Latin letters, at least as many as any other letters) or 'other'."""
    hangul, latin = len(HANGUL.findall(text)), len(LATIN.findall(text))
    letters = len(_LETTER.findall(text))
    if (hangul and hangul >= latin) or not letters:
        return "ko"
    return "en" if latin and latin >= letters - latin - hangul else "other"


def split_units_english(text: str) -> list[Unit]:
    """Cut an English text into space-separated words (punctuation stays on its word)."""
    pieces = list(re.finditer(r"\S+(\s*)", text))
    units = []
    for i, match in enumerate(pieces):
        piece = match.group(0)
        core = piece.rstrip()
        words = english.words(core)
        units.append(
            Unit(
                text=core,
                gap=piece[len(core) :],
                word=bool(words) or any(ch.isdigit() for ch in core),
                fixed=core.endswith(_SENTENCE_END) or i == len(pieces) - 1,
                negation=any(english.is_negation(w) for w in words),
                insertable=tuple(
                    w
                    for w in words
                    if len(w) >= 3
                    and w.lower() not in english.stop_words()
                    and not english.is_negation(w)
                    and "'" not in w
                ),
            )
        )
    words = [i for i, u in enumerate(units) if u.word]
    if words:  # the last word stays, as in Korean (punctuation-only tails such as "!!" do not count)
        last = units[words[-1]]
        units[words[-1]] = Unit(last.text, last.gap, True, True, last.negation, last.insertable)
    return units


def _insertable(text: str, group: Sequence) -> tuple[str, ...]:
    """Content words of a unit for the insert operation: general/proper nouns and general adverbs of 2+
    characters, as written (Kiwi's form can differ: "식스 센스" for 식스센스), except negations and
    nouns that are the root of a predicate ("재미" in 재미없다, "이상" in 이상하다)."""
    words = []
    for i, tok in enumerate(group):
        tag = _base(tok.tag)
        nxt = _base(group[i + 1].tag) if i + 1 < len(group) else ""
        if tag not in _INSERTABLE or tok.len < 2 or (tok.form, tag) in _NEGATION:
            continue
        if tag.startswith("N") and nxt.startswith(("V", "XSA", "XSV")):
            continue
        words.append(text[tok.start : tok.end])
    return tuple(words)


def _join(units: Sequence[Unit], items: Sequence[int | str]) -> str:
    """Items are unit indices (original units) or inserted words. Neighbours that were neighbours in the
    source keep their original gap; everything else is separated by one space."""
    parts = []
    for i, item in enumerate(items):
        if i:
            prev = items[i - 1]
            adjacent = isinstance(prev, int) and isinstance(item, int) and item == prev + 1
            parts.append(units[prev].gap if adjacent else " ")
        parts.append(units[item].text if isinstance(item, int) else item)
    return "".join(parts).strip()


def _movable(units: Sequence[Unit], item: int | str, protect_negation: bool) -> bool:
    if not isinstance(item, int):
        return False
    u = units[item]
    return u.word and not u.fixed and not (protect_negation and u.negation)


def apply_op(units: Sequence[Unit], op: str, rng: random.Random, config: EdaConfig) -> tuple[str, dict] | None:
    """One edit of the unit sequence; None when `op` cannot apply to this text (e.g. one word to swap)."""
    items: list[int | str] = list(range(len(units)))
    n_words = sum(u.word for u in units)
    movable = [i for i in items if _movable(units, i, config.protect_negation)]
    if op == "delete":
        if not movable:
            return None
        gone = [i for i in movable if rng.random() < config.p_delete] or [rng.choice(movable)]
        kept = [i for i in items if i not in set(gone)]
        return _join(units, kept), {"op": op, "deleted": [units[i].text for i in gone]}
    if op == "swap":
        if len(movable) < 2:
            return None
        swapped = []
        for _ in range(max(1, round(config.p_swap * n_words))):
            a, b = rng.sample(movable, 2)
            pa, pb = items.index(a), items.index(b)
            items[pa], items[pb] = items[pb], items[pa]
            swapped.append([units[a].text, units[b].text])
        return _join(units, items), {"op": op, "swapped": swapped}
    if op == "insert":
        pool = [w for u in units for w in u.insertable]
        if not pool:
            return None
        inserted = []
        for _ in range(max(1, round(config.p_insert * n_words))):
            last_word = max(p for p, it in enumerate(items) if isinstance(it, int) and units[it].word)
            word = rng.choice(pool)
            items.insert(rng.randint(0, last_word), word)
            inserted.append(word)
        return _join(units, items), {"op": op, "inserted": inserted}
    raise ValueError(f"unknown operation {op!r}; expected one of {OPS}")


def source_rng(seed: int, source_id: str) -> random.Random:
    """The RNG of one source: str seeds hash with SHA-512, stable across runs and Python versions."""
    return random.Random(f"{seed}\x1f{source_id}")


def augment_units(
    units: Sequence[Unit], source_id: str, config: EdaConfig
) -> list[tuple[str, str, dict | None, str | None]]:
    """`config.n` variants of one source as (variant, text, extra, drop_reason), variant = "V.op".

    Variant v starts with operation `ops[v % len(ops)]` and falls back to the next one that applies.
    A variant equal to the source or to an earlier variant is retried up to `max_tries` times, then dropped.
    """
    ops = config.ops()
    rng = source_rng(config.seed, source_id)
    source = _join(units, list(range(len(units))))
    seen = {" ".join(source.split())}
    out = []
    for v in range(config.n):
        result, repeat = None, None
        for op in [ops[(v + j) % len(ops)] for j in range(len(ops))]:
            for _ in range(config.max_tries):
                attempt = apply_op(units, op, rng, config)
                if attempt is None:
                    break  # this operation cannot apply to this text: try the next one
                if " ".join(attempt[0].split()) not in seen:
                    result = attempt
                    break
                repeat = attempt
            if result is not None:
                break
        if result is None:
            if repeat is None:
                out.append((f"{v}.none", source, None, "no_edit"))
            else:
                out.append((f"{v}.{repeat[1]['op']}", repeat[0], repeat[1], "duplicate_variant"))
            continue
        text, extra = result
        seen.add(" ".join(text.split()))
        out.append((f"{v}.{extra['op']}", text, extra, None))
    return out


def tokenize(texts: list[str], threads: int | None = None) -> list[list]:
    """Kiwi tokens of each text (the cached Kiwi of engine.text)."""
    return kiwi_tokens(texts, threads)


def generate(sources: pl.DataFrame, config: EdaConfig, *, threads: int | None = None) -> list[Generated]:
    """Variants for every row of `sources` (`id`, `text`); `source_index` is the row in `sources`.
    Korean texts are cut into Kiwi units, English ones into words (see the module docstring)."""
    texts = sources["text"].to_list()
    scripts = [script(t) for t in texts]
    korean = [i for i, kind in enumerate(scripts) if kind == "ko"]
    tokens = dict(zip(korean, tokenize([texts[i] for i in korean], threads), strict=True))
    out = []
    for index, (source_id, text) in enumerate(zip(sources["id"].to_list(), texts, strict=True)):
        if scripts[index] == "other":  # no word units or negation rules for it: dropped, counted
            out += [Generated(index, f"{v}.none", text, None, "other_script") for v in range(config.n)]
            continue
        units = split_units(text, tokens[index]) if index in tokens else split_units_english(text)
        for variant, new_text, extra, drop in augment_units(units, str(source_id), config):
            out.append(Generated(index, variant, new_text, extra, drop))
    return out


def check_scripts(sources: pl.DataFrame, source: str) -> dict[str, int]:
    """Counts of Korean, English and other texts. EDA has word units and negation rules for Korean and
    English only: a few stray texts in another script (a Chinese review among Korean ones) get no variants
    (drop reason `other_script`, with a warning); a file that is mostly another language is refused."""
    kinds = sources.select(pl.col("text").map_elements(script, return_dtype=pl.String).alias("script"), "id")
    other = kinds.filter(pl.col("script") == "other")
    if other.height:
        first = other.head(3)["id"].to_list()
        example = sources.filter(pl.col("id") == first[0])["text"][0][:60]
        found = (
            f"{other.height:,} of {sources.height:,} texts are neither Korean nor English "
            f"(first ids {first}, e.g. {example!r})"
        )
        if 2 * other.height > sources.height:
            raise InputError(
                f"{source}: {found}. EDA knows the negations and word units of Korean (Kiwi) and English only; "
                "augment this data with backtranslate or paraphrase."
            )
        log.warning("%s: %s; they get no EDA variants (drop reason other_script)", source, found)
    counts = dict(kinds.group_by("script").len().iter_rows())
    return {"ko": counts.get("ko", 0), "en": counts.get("en", 0), "other": other.height}


def model_name() -> str:
    import kiwipiepy

    return f"kiwipiepy {kiwipiepy.__version__}"


def params(config: EdaConfig) -> dict:
    return {**asdict(config), "ops": list(config.ops())}


def job_params(sources: pl.DataFrame, config: EdaConfig, source: str) -> dict:
    """The rows' `params` for a job on `sources` (one process or Ray shards alike); stops when most texts are
    neither Korean nor English."""
    scripts = check_scripts(sources, source)
    job = params(config)
    if scripts["en"]:
        # English units are another algorithm: such a job is not the one an earlier hardaug ran on these texts.
        job["english"] = "words"
        log.info("%d English texts: cut into words, negations protected", scripts["en"])
    return job


def generate_chunk(chunk: pl.DataFrame, config: EdaConfig, params: dict, *, threads: int | None = None) -> ChunkRows:
    """One chunk of sources (`load_sources` columns) as rows (common.PART_SCHEMA); `params` from `job_params`.
    The single-process job and the Ray shards (engine.cluster) both call this, so their outputs match."""
    generated = generate(chunk, config, threads=threads)
    rows = to_rows(chunk, generated, method=METHOD, model=model_name(), params=params)
    return ChunkRows(rows, outputs=len(generated))


@dataclass(frozen=True)
class EdaJob:
    """The EDA job (engine.stage.ChunkJob): run it with `augment.common.augment_file`, here or on Ray.
    Rows: method "eda", model "kiwipiepy X.Y.Z"."""

    stage = METHOD
    chunk_size = 5000  # sources per saved chunk in this process
    config: EdaConfig
    threads: int | None = 1  # Kiwi threads (per replica on Ray; None: Kiwi's default)
    params: dict | None = None  # the rows' params, from `bind` (they depend on the sources' scripts)

    def bind(self, sources: pl.DataFrame, source: str) -> EdaJob:
        return replace(self, params=job_params(sources, self.config, source))

    def check(self, *, local: bool) -> None:
        pass  # the options were checked by EdaConfig; Kiwi has no model folder

    def fingerprint(self, sources: pl.DataFrame) -> str:
        return job_fingerprint(sources, METHOD, model_name(), self.params)

    def for_replica(self, gpus: int) -> EdaJob:
        return self

    def open(self) -> EdaJob:
        return self

    def run(self, chunk: pl.DataFrame) -> ChunkRows:
        return generate_chunk(chunk, self.config, self.params, threads=self.threads)

    def close(self) -> None:
        pass
