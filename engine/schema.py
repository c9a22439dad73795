"""Column names shared by the stages, and the expressions every stage computes the same way."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def prob_columns(k: int) -> list[str]:
    """`prob_0..prob_{k-1}`: class probabilities in class-id order."""
    return [f"prob_{i}" for i in range(k)]


def argmax_expr(probs: Sequence[pl.Expr]) -> pl.Expr:
    """Index of the largest column, the first on ties (like numpy's argmax). Column-wise expressions are
    ~10x faster here than `concat_list(...).list.arg_max()`, which builds a list per row."""
    top = pl.max_horizontal(probs)
    return pl.coalesce([pl.when(p == top).then(pl.lit(i, dtype=pl.Int64)) for i, p in enumerate(probs)])
