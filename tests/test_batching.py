"""Properties of length-sorted batching: coverage, budget, order, round trip, and input validation."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.batching import map_batched, padding_efficiency, plan_batches, restore_order

NSMC_TRAIN = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample" / "train.csv"  # real reviews

length_lists = st.lists(st.integers(min_value=0, max_value=300), max_size=200)
budgets = st.integers(min_value=1, max_value=2000)
batch_caps = st.none() | st.integers(min_value=1, max_value=64)


def _cost(lengths, batch) -> int:
    """Padded cost of one batch, with 0-length items counting as 1 like plan_batches does."""
    costs = np.maximum(np.asarray(lengths, dtype=np.int64)[batch], 1)
    return len(batch) * int(costs.max())


@given(length_lists, budgets, batch_caps, st.booleans())
def test_every_index_exactly_once(lengths, budget, cap, descending):
    batches = plan_batches(lengths, max_tokens=budget, max_batch_size=cap, descending=descending)
    assert all(b.dtype == np.int64 and b.ndim == 1 and b.size > 0 for b in batches)
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(lengths)))


@given(length_lists, budgets, batch_caps, st.booleans())
def test_batches_respect_budget_and_size_cap(lengths, budget, cap, descending):
    batches = plan_batches(lengths, max_tokens=budget, max_batch_size=cap, descending=descending)
    for batch in batches:
        if cap is not None:
            assert len(batch) <= cap
        if len(batch) > 1:
            assert _cost(lengths, batch) <= budget


@given(length_lists, budgets, batch_caps)
def test_plan_is_sorted_longest_first(lengths, max_tokens, max_batch_size):
    batches = plan_batches(lengths, max_tokens=max_tokens, max_batch_size=max_batch_size)
    in_plan = [max(lengths[i], 1) for b in batches for i in b.tolist()]
    assert all(a >= b for a, b in itertools.pairwise(in_plan))


@given(length_lists, budgets)
def test_ascending_plan_is_sorted_shortest_first(lengths, max_tokens):
    batches = plan_batches(lengths, max_tokens=max_tokens, descending=False)
    in_plan = [max(lengths[i], 1) for b in batches for i in b.tolist()]
    assert all(a <= b for a, b in itertools.pairwise(in_plan))


@given(length_lists, budgets, batch_caps, st.booleans())
def test_over_long_items_get_singleton_batches(lengths, budget, cap, descending):
    batches = plan_batches(lengths, max_tokens=budget, max_batch_size=cap, descending=descending)
    for batch in batches:
        if any(lengths[i] > budget for i in batch.tolist()):
            assert len(batch) == 1


def test_greedy_cut_concrete():
    # Sorted: 5 (idx 1), 4 (idx 3), 3 (idx 0), 3 (idx 4, stable after idx 0), 1 (idx 2 is 0 -> 1).
    batches = plan_batches([3, 5, 0, 4, 3], max_tokens=10)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 4, 2]]
    # An item over budget is kept, alone, and the rest still batch normally.
    batches = plan_batches([2, 50, 2, 2], max_tokens=6)
    assert [b.tolist() for b in batches] == [[1], [0, 2, 3]]
    assert plan_batches([], max_tokens=8) == []


@given(length_lists, budgets, batch_caps)
def test_map_batched_equals_direct_map(lengths, budget, cap):
    items = list(range(100, 100 + len(lengths)))

    def double(xs):
        return [x * 2 for x in xs]

    out = map_batched(items, double, lengths=lengths, max_tokens=budget, max_batch_size=cap)
    assert out == [x * 2 for x in items]


@given(length_lists, budgets)
def test_restore_order_round_trips(lengths, max_tokens):
    batches = plan_batches(lengths, max_tokens=max_tokens)
    results = [[f"r{i}" for i in b.tolist()] for b in batches]
    assert restore_order(batches, results) == [f"r{i}" for i in range(len(lengths))]


def test_restore_order_empty():
    assert restore_order([], []) == []
    assert restore_order([np.array([], dtype=np.int64)], [[]]) == []


@given(st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=200), budgets, batch_caps)
def test_padding_efficiency_in_unit_interval(lengths, max_tokens, max_batch_size):
    batches = plan_batches(lengths, max_tokens=max_tokens, max_batch_size=max_batch_size)
    assert 0.0 < padding_efficiency(lengths, batches) <= 1.0


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=1, max_value=200), budgets)
def test_padding_efficiency_is_one_for_equal_lengths(length, n, max_tokens):
    lengths = [length] * n
    assert padding_efficiency(lengths, plan_batches(lengths, max_tokens=max_tokens)) == 1.0


def test_padding_efficiency_concrete():
    # One batch [4, 2]: 6 real tokens, 8 padded positions.
    assert padding_efficiency([4, 2], [np.array([0, 1])]) == pytest.approx(0.75)
    assert padding_efficiency([], []) == 1.0


def _in_order_batches(lengths, max_tokens):
    """Greedy cut in dataset order under the same padded budget: the baseline without sorting."""
    batches, current, longest = [], [], 0
    for i, length in enumerate(lengths):
        cost = max(length, 1)
        if current and (len(current) + 1) * max(longest, cost) > max_tokens:
            batches.append(np.array(current))
            current, longest = [], 0
        current.append(i)
        longest = max(longest, cost)
    if current:
        batches.append(np.array(current))
    return batches


def test_sorting_pads_less_than_dataset_order_on_korean_reviews():
    with NSMC_TRAIN.open(newline="", encoding="utf-8") as f:
        lengths = [len(row["text"]) for row in itertools.islice(csv.DictReader(f), 2000)]
    assert len(lengths) == 2000
    max_tokens = 1024
    sorted_batches = plan_batches(lengths, max_tokens=max_tokens)
    order_batches = _in_order_batches(lengths, max_tokens)
    sorted_eff = padding_efficiency(lengths, sorted_batches)
    order_eff = padding_efficiency(lengths, order_batches)
    # Measured: about 0.98 sorted vs 0.39 in dataset order; the sorted plan also needs far fewer calls.
    assert sorted_eff > 0.95
    assert sorted_eff > order_eff + 0.3
    assert len(sorted_batches) < len(order_batches)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tokens": 0}, r"max_tokens must be a positive int, got 0"),
        ({"max_tokens": -5}, r"max_tokens must be a positive int, got -5"),
        ({"max_tokens": 4.0}, r"max_tokens must be a positive int, got 4\.0 \(float\)"),
        ({"max_tokens": True}, r"max_tokens must be a positive int, got True"),
        ({"max_tokens": 8, "max_batch_size": 0}, r"max_batch_size must be a positive int, got 0"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_batches([1, 2, 3], **kwargs)


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        ([3, -1, 2], r"non-negative ints, got lengths\[1\] = -1"),
        ([1.5, 2.0], r"non-negative ints, got dtype float64"),
        ([[1, 2], [3, 4]], r"1-D .* got shape \(2, 2\)"),
        (["a", "b"], r"non-negative ints, got dtype <U1"),
        ([True, False], r"non-negative ints, got dtype bool"),
    ],
)
def test_bad_lengths_raise(lengths, match):
    with pytest.raises(ValueError, match=match):
        plan_batches(lengths, max_tokens=8)


def test_numpy_inputs_accepted():
    batches = plan_batches(np.array([3, 1, 2], dtype=np.int32), max_tokens=np.int64(6))
    assert [b.tolist() for b in batches] == [[0, 2], [1]]


def test_restore_order_rejects_mismatches():
    batches = [np.array([1, 0]), np.array([2])]
    with pytest.raises(ValueError, match=r"batch 0 has 2 items but 1 results"):
        restore_order(batches, [["a"], ["b"]])
    with pytest.raises(ValueError, match=r"got 1 result lists for 2 batches"):
        restore_order(batches, [["a", "b"]])
    with pytest.raises(ValueError, match=r"cover indices 0\.\.2 exactly once; index 0 appears 2x"):
        restore_order([np.array([0, 0]), np.array([2])], [["a", "b"], ["c"]])
    with pytest.raises(ValueError, match=r"cover indices 0\.\.1 exactly once; found index 2"):
        restore_order([np.array([1, 2])], [["a", "b"]])


def test_map_batched_rejects_wrong_result_count_and_length_mismatch():
    with pytest.raises(ValueError, match=r"batch 0 has 2 items but 1 results"):
        map_batched(["x", "y"], lambda xs: xs[:1], lengths=[1, 1], max_tokens=8)
    with pytest.raises(ValueError, match=r"lengths has 1 entries but items has 2"):
        map_batched(["x", "y"], lambda xs: xs, lengths=[1], max_tokens=8)
