"""Quality filters for augmented text: cheap checks, near-duplicates, semantic similarity, label consistency.

    from engine.filters import FilterConfig, attach_sources, filter_augmented, load_augmented, load_dataset

    train, names = load_dataset("train.csv")
    rows = attach_sources(load_augmented("augmented.parquet"), train, where="train.csv")
    result = filter_augmented(rows, train, config=FilterConfig(min_similarity=0.8))
    kept = result.rows.filter("kept")

See `engine.filters.core` for the columns and `engine.filters.config.REASONS` for the order of reasons.
"""

from engine.filters.config import DEFAULT_EMBED_MODEL, REASONS, FilterConfig
from engine.filters.core import (
    FILTER_COLUMNS,
    FilterResult,
    attach_sources,
    filter_augmented,
    format_summary,
    load_augmented,
    load_dataset,
)

__all__ = [
    "DEFAULT_EMBED_MODEL",
    "FILTER_COLUMNS",
    "REASONS",
    "FilterConfig",
    "FilterResult",
    "attach_sources",
    "filter_augmented",
    "format_summary",
    "load_augmented",
    "load_dataset",
]
