"""Train/test overlap: test texts that also appear in the training set, word for word or nearly.

A test row whose text the model trained on measures memory, not generalization; public sets often have
many (one here had 619 of its 6,121 test texts word for word in train). Two levels:
- exact: the same text after lower-casing and collapsing whitespace (`engine.filters.dedup.normalize_texts`);
- near: not exact, but character 1-3-gram TF-IDF cosine >= `threshold` with some training text (the
  filters' exact all-pairs search, `engine.filters.dedup`), e.g. the same review with other punctuation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.filters.dedup import find_near_duplicates, normalize_texts

log = logging.getLogger(__name__)

NEAR_THRESHOLD = 0.9


@dataclass(frozen=True)
class Overlap:
    """Per test row: `exact` (bool), `near` (bool, never both), `train_index` (the matching training row,
    -1 if none)."""

    exact: np.ndarray
    near: np.ndarray
    train_index: np.ndarray
    threshold: float

    @property
    def any(self) -> np.ndarray:
        return self.exact | self.near

    def summary(self, train_texts: Sequence[str], test_texts: Sequence[str], n_examples: int = 5) -> dict:
        """JSON-ready counts and a few examples of each kind."""
        examples = []
        for kind, mask in (("exact", self.exact), ("near", self.near)):
            for i in np.flatnonzero(mask)[:n_examples]:
                examples.append({"kind": kind, "test": test_texts[i], "train": train_texts[self.train_index[i]]})
        n = len(self.exact)
        return {
            "test_rows": n,
            "exact": int(self.exact.sum()),
            "near": int(self.near.sum()),
            "share": float(self.any.sum() / n) if n else 0.0,
            "near_threshold": self.threshold,
            "examples": examples,
        }


def find_overlap(
    train_texts: Sequence[str], test_texts: Sequence[str], *, threshold: float = NEAR_THRESHOLD
) -> Overlap:
    """Which test texts occur in the training texts, exactly or nearly (see the module docstring)."""
    train_norm = normalize_texts(list(train_texts)).to_list()
    test_norm = normalize_texts(list(test_texts)).to_list()
    first = {}
    for i, text in enumerate(train_norm):
        first.setdefault(text, i)
    exact_index = np.array([first.get(t, -1) for t in test_norm], dtype=np.int64)
    exact = exact_index >= 0
    near = np.zeros(len(test_norm), dtype=bool)
    index = exact_index.copy()
    rest = np.flatnonzero(~exact)
    if len(rest) and len(train_norm):
        found = find_near_duplicates(
            [test_texts[i] for i in rest], list(train_texts), threshold=threshold, within=False
        )
        near[rest] = found.train_index >= 0
        index[rest] = found.train_index
    log.info("train/test overlap: %d exact, %d near of %d test texts", exact.sum(), near.sum(), len(test_norm))
    return Overlap(exact=exact, near=near, train_index=index, threshold=threshold)
