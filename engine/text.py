"""Text helpers shared by the stages: the cached Kiwi morphological analyzer, Kiwi tokens, and the Hangul
letter patterns (`engine.analyze` picks its tokenizer with them, `engine.augment.eda` its script, and
`engine.filters.cheap` measures the Hangul share of augmented texts).

Nothing heavy at import: kiwipiepy loads on the first `load_kiwi` call.
"""

from __future__ import annotations

import functools
import re

import polars as pl

from engine.cores import threads_for

# Hangul syllables and compatibility jamo, for Python's `re` (what a reader calls Korean letters).
HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
# Every Hangul block (syllables, jamo, compatibility jamo, extended jamo), for Polars' regex engine: the
# filter's share counts decomposed text too.
HANGUL_ANY = r"[\x{AC00}-\x{D7A3}\x{1100}-\x{11FF}\x{3130}-\x{318F}\x{A960}-\x{A97F}\x{D7B0}-\x{D7FF}]"


@functools.lru_cache(maxsize=2)
def load_kiwi(workers: int):
    """Loading Kiwi's model takes seconds: keep one per thread count. Its batch API needs a worker pool;
    one worker is its single-threaded mode."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=workers)


def kiwi_tokens(texts: list[str], threads: int | None = None) -> list[list]:
    """Kiwi `Token`s of each text, with at most `threads` workers (None = every usable core): more threads
    than usable cores only oversubscribe them."""
    kiwi = load_kiwi(threads_for(threads, what="Kiwi threads"))
    return [list(tokens) for tokens in kiwi.tokenize(texts)]


def hangul_share(expr: pl.Expr) -> pl.Expr:
    """Hangul letters / all letters of each text (null for a text without letters)."""
    letters = expr.str.count_matches(r"\p{L}")
    return pl.when(letters > 0).then(expr.str.count_matches(HANGUL_ANY) / letters).otherwise(None)
