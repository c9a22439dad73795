"""Cheap checks of an augmented text against its source: empty, identical, length, script, repetition.

Measures (columns added by `measure`; "length" = characters that are not whitespace):
- `length_ratio`: augmented length / source length (null for an empty source);
- `hangul_share`: Hangul letters / all letters of the augmented text (null without letters), and
  `source_hangul_share` for the source: a source is Korean when that share is >= `korean_source_share`;
- `repeat_share`: the longest stretch made of one unit of 1-10 characters repeated 3+ times in a row,
  as a share of the text ("좋아요 좋아요 좋아요 좋아요" -> ~0.8, "ㅋㅋㅋㅋ" -> 1.0). Reviews repeat on
  purpose ("ㅋㅋㅋㅋ", "~~~~"), so a text fails only when that share is too high AND its stretch is longer
  (in characters) than the source's longest one: a deletion that shortens "원나라~~만쉐~~~~" to "만쉐~~~~"
  raises the share but repeats nothing new.
"""

from __future__ import annotations

import re

import polars as pl

from engine.filters.config import FilterConfig
from engine.text import hangul_share

_REPEAT = re.compile(r"(.{1,10}?)\1{2,}", re.S)


def longest_repeat(text: str) -> int:
    """Characters covered by the longest run of one unit (1-10 characters) repeated 3+ times in a row."""
    return max((m.end() - m.start() for m in _REPEAT.finditer(text)), default=0)


def repeat_share(text: str) -> float:
    """Share of `text` covered by its longest repeated run (0.0 for an empty text)."""
    return longest_repeat(text) / len(text) if text else 0.0


def _collapse(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(r"\s+", " ").str.strip_chars()


def measure(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the measures above to a frame with `text` and `source_text` (both String, no nulls)."""
    frame = frame.with_columns(
        _collapse(pl.col("text")).alias("_text"),
        _collapse(pl.col("source_text")).alias("_source"),
    )
    texts = frame["_text"].to_list()
    sources = frame["_source"].unique().to_list()
    source_run = dict(zip(sources, map(longest_repeat, sources), strict=True))
    runs = [longest_repeat(t) for t in texts]
    length = pl.col("_text").str.replace_all(r"\s", "").str.len_chars()
    source_length = pl.col("_source").str.replace_all(r"\s", "").str.len_chars()
    return frame.with_columns(
        length.alias("_length"),
        source_length.alias("_source_length"),
        pl.when(source_length > 0).then(length / source_length).otherwise(None).alias("length_ratio"),
        hangul_share(pl.col("_text")).alias("hangul_share"),
        hangul_share(pl.col("_source")).alias("source_hangul_share"),
        pl.Series("repeat_share", [r / len(t) if t else 0.0 for r, t in zip(runs, texts, strict=True)]),
        pl.Series("_repeat", runs, dtype=pl.Int64),
        pl.Series("_source_repeat", [source_run[s] for s in frame["_source"]], dtype=pl.Int64),
    )


def failures(frame: pl.DataFrame, config: FilterConfig) -> dict[str, pl.Expr]:
    """Boolean expressions (True = fails) over a `measure`d frame, for the enabled cheap checks."""
    out = {"empty": pl.col("_text") == ""}
    if not config.cheap_checks:
        return out
    length, source = pl.col("_length"), pl.col("_source_length")
    out["identical_to_source"] = pl.col("_text") == pl.col("_source")
    out["length_ratio"] = (length < config.min_length_ratio * source - config.length_slack) | (
        length > config.max_length_ratio * source + config.length_slack
    )
    if config.min_hangul_share > 0:
        korean = pl.col("source_hangul_share").fill_null(0) >= config.korean_source_share
        korean &= pl.col("source_hangul_share").is_not_null()
        out["low_hangul"] = korean & (pl.col("hangul_share").fill_null(0) < config.min_hangul_share)
    if config.max_repeat_share < 1:
        out["repetition"] = (pl.col("repeat_share") > config.max_repeat_share) & (
            pl.col("_repeat") > pl.col("_source_repeat")
        )
    return out
