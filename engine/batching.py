"""Length-sorted batching under a token budget, and putting results back in input order.

Transformer forward passes pad every sequence in a batch to the longest one, so a batch costs
`len(batch) * max(length)` positions whatever its real content. Users: the transformer classifier
(`engine.oof.transformer`), the label filter's scorer (`engine.filters.label`) and the back-translation
benchmark's planned-batch engine; the back-translator hands CTranslate2 whole lists (it batches itself). Sorting by
length before cutting batches keeps similar lengths together and wastes little on padding; the price is
that results come back in sorted order, which `restore_order` undoes.

Pure functions over numpy and the standard library only, so importing this module costs nothing.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _positive_int(name: str, value: object) -> int:
    # bool is an int subclass, but `max_tokens=True` is always a mistake, never a budget of one.
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    try:
        number = operator.index(value)  # accepts int and numpy integers, rejects 4.0 and "4"
    except TypeError:
        raise ValueError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})") from None
    if number <= 0:
        raise ValueError(f"{name} must be a positive int, got {number}")
    return number


def _costs(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Validate `lengths` (shape (n,), non-negative ints) and return int64 costs, shape (n,), each >= 1."""
    array = np.asarray(lengths)
    if array.ndim != 1:
        raise ValueError(f"lengths must be a 1-D sequence of non-negative ints, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)  # np.asarray([]) is float64; an empty list is still valid
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"lengths must be non-negative ints, got dtype {array.dtype} (e.g. {array[0]!r})")
    if (array < 0).any():
        where = int(np.flatnonzero(array < 0)[0])
        raise ValueError(f"lengths must be non-negative ints, got lengths[{where}] = {array[where]}")
    # A sequence occupies at least one position (an empty text still gets BOS/EOS), so 0 costs 1;
    # this also keeps every batch's cost positive and the greedy cut below always advancing.
    return np.maximum(array.astype(np.int64), 1)


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    *,
    max_tokens: int,
    max_batch_size: int | None = None,
    descending: bool = True,
) -> list[np.ndarray]:
    """Cut inputs into length-sorted batches whose padded cost fits `max_tokens`.

    `lengths` has shape (n,): the token count of each input (0 counts as 1). Returns a list of int64
    arrays of original indices; every index in 0..n-1 appears exactly once over all batches, and
    concatenating the batches gives the inputs sorted by length (stable, so ties keep input order).
    Each batch satisfies `len(batch) * max(lengths[batch]) <= max_tokens` and, when given,
    `len(batch) <= max_batch_size`, except that an item longer than `max_tokens` gets a batch of its own.
    `descending=True` puts the longest batch first, so an out-of-memory budget fails on the first call.
    """
    max_tokens = _positive_int("max_tokens", max_tokens)
    if max_batch_size is not None:
        max_batch_size = _positive_int("max_batch_size", max_batch_size)
    costs = _costs(lengths)
    n = costs.size
    order = np.argsort(-costs if descending else costs, kind="stable")
    sorted_costs = costs[order]
    size_cap = n if max_batch_size is None else max_batch_size

    batches: list[np.ndarray] = []
    start = 0
    while start < n:
        # Every item in a batch starting here pads to at least sorted_costs[start] (it is the batch max
        # when descending, the batch min when ascending), which bounds the window examined below.
        window = min(n - start, size_cap, max(1, max_tokens // int(sorted_costs[start])))
        # Padded cost of taking the first k items: k * (running max). Both factors never decrease,
        # so the costs are sorted and the count of those within budget is the longest prefix that fits.
        padded = np.arange(1, window + 1) * np.maximum.accumulate(sorted_costs[start : start + window])
        take = max(1, int(np.count_nonzero(padded <= max_tokens)))  # an over-long item still goes alone
        batches.append(order[start : start + take].astype(np.int64))
        start += take
    return batches


def restore_order(batches: Sequence[np.ndarray], batch_results: Sequence[Sequence[Any]]) -> list[Any]:
    """Put per-batch results back in input order.

    `batch_results[b]` holds one result per index in `batches[b]`, in that batch's order. Returns a list
    of n results where position i is the result for input i. Raises ValueError if the counts differ or
    the batches do not cover 0..n-1 exactly once (which would silently misalign results otherwise).
    """
    if len(batches) != len(batch_results):
        raise ValueError(f"got {len(batch_results)} result lists for {len(batches)} batches")
    for b, (batch, results) in enumerate(zip(batches, batch_results, strict=True)):
        if len(results) != len(batch):
            raise ValueError(f"batch {b} has {len(batch)} items but {len(results)} results")
    indices = np.concatenate([np.asarray(b, dtype=np.int64).reshape(-1) for b in batches] or [np.zeros(0)])
    n = indices.size
    if n == 0:
        return []
    # Name the first bad index: a silent misalignment would pair results with the wrong inputs.
    expected = f"batches must cover indices 0..{n - 1} exactly once"
    if indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"{expected}; found index {int(indices[(indices < 0) | (indices >= n)][0])}")
    counts = np.bincount(indices, minlength=n)
    if (counts != 1).any():
        bad = int(np.flatnonzero(counts != 1)[0])
        raise ValueError(f"{expected}; index {bad} appears {counts[bad]}x")
    out: list[Any] = [None] * n
    flat_results = (result for results in batch_results for result in results)
    for index, result in zip(indices.tolist(), flat_results, strict=True):
        out[index] = result
    return out


def padding_efficiency(lengths: Sequence[int] | np.ndarray, batches: Sequence[np.ndarray]) -> float:
    """Real tokens / padded tokens over `batches` (1.0 means no padding at all).

    Lengths are counted as in `plan_batches` (0 counts as 1), so the value is in (0, 1]; no batches
    means nothing was padded and gives 1.0.
    """
    costs = _costs(lengths)
    real = padded = 0
    for batch in batches:
        batch_costs = costs[np.asarray(batch, dtype=np.int64)]
        if batch_costs.size:
            real += int(batch_costs.sum())
            padded += batch_costs.size * int(batch_costs.max())
    return real / padded if padded else 1.0


def map_batched(
    items: Sequence[Any],
    fn: Callable[[list[Any]], Sequence[Any]],
    *,
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    max_batch_size: int | None = None,
) -> list[Any]:
    """Call `fn` on length-sorted batches of `items` and return its results in input order.

    `fn` gets a list of items and must return one result per item, in the same order.
    """
    if len(lengths) != len(items):
        raise ValueError(f"lengths has {len(lengths)} entries but items has {len(items)}")
    batches = plan_batches(lengths, max_tokens=max_tokens, max_batch_size=max_batch_size)
    results = [list(fn([items[i] for i in batch.tolist()])) for batch in batches]
    return restore_order(batches, results)
