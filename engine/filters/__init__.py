"""Quality filters for augmented text: cheap checks, near-duplicates, semantic similarity, label consistency.

    from engine.filters import FilterConfig, attach_sources, filter_augmented, load_augmented, load_dataset

    train, names = load_dataset("train.csv")
    rows = attach_sources(load_augmented("augmented.parquet"), train, where="train.csv")
    result = filter_augmented(rows, train, config=FilterConfig(min_similarity=0.8))
    kept = result.rows.filter("kept")

See `engine.filters.core` for the columns and `engine.filters.config.REASONS` for the order of reasons.
"""

from engine.filters.config import DEFAULT_EMBED_MODEL, REASONS, FilterConfig

# engine.filters.core brings NumPy and SciPy: it loads on first use, so that `hardaug --help`, which needs
# only FilterConfig for the filter's flags, does not pay for it.
_CORE = (
    "FILTER_COLUMNS",
    "FilterResult",
    "attach_sources",
    "filter_augmented",
    "format_summary",
    "load_augmented",
    "load_dataset",
)


def __getattr__(name: str):
    if name in _CORE:
        from engine.filters import core

        return getattr(core, name)
    raise AttributeError(f"module 'engine.filters' has no attribute {name!r}")


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
