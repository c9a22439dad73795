"""Near-duplicates by character n-gram TF-IDF cosine, exact and without comparing all pairs.

Vectors: every text is lower-cased, its whitespace runs collapsed to one space and stripped; its
character 1..`ngram_max`-grams (spaces included) are counted; weights are `(1 + ln tf) * idf` with
`idf = ln((1 + N) / (1 + df)) + 1` over the N texts vectorized together, and rows are L2-normalized. This
is exactly scikit-learn's `TfidfVectorizer(analyzer="char", ngram_range=(1, ngram_max), sublinear_tf=True)`
on the same normalized texts, built in numpy (n-grams packed into integers, 21 bits per code point) because
the Python analyzer takes ~35 s for 275,000 reviews.

Search: all pairs with cosine >= t, by prefix filtering (Bayardo, Ma & Srikant 2007, "Scaling up all
pairs similarity search"). Columns are ordered rarest first; the *prefix* of a row is its leading (rarest)
entries up to the point where the rest of the row has norm < t. Two unit vectors with cosine >= t must
share a column inside both prefixes (their rarest shared column `f`: if `f` were outside a's prefix, every
shared column would be in a's suffix and the cosine would be at most the suffix norm, < t). So the sparse
product of the two binary prefix matrices lists every candidate pair, and it is tiny because prefixes hold
rare n-grams (about 4% of the entries at t = 0.95); each candidate is then scored exactly. No pair with
cosine >= t is missed, and nothing below t is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from engine.progress import OnProgress, report

log = logging.getLogger(__name__)

_BITS = np.uint64(21)  # Unicode code points fit in 21 bits, so up to three of them pack into a uint64
_CHUNK_ROWS = 20_000  # query rows per sparse product
_PAIR_CHUNK = 200_000  # candidate pairs scored at once
# float32 sums put the cosine of two identical texts at 1 +- 1e-7: a threshold of 1.0 must still match them
_ROUNDING = 1e-6


def at_least(cosine: np.ndarray, threshold: float) -> np.ndarray:
    """cosine >= threshold, less the float32 rounding (NaN: False)."""
    return np.nan_to_num(np.asarray(cosine, dtype=np.float64), nan=-np.inf) >= threshold - _ROUNDING


def normalize_texts(texts: Sequence[str]) -> pl.Series:
    """Lower-case, whitespace runs to one space, stripped: the text the n-grams are taken from."""
    return (
        pl.Series(list(texts), dtype=pl.String)
        .fill_null("")
        .str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def char_ngram_tfidf(texts: Sequence[str], *, ngram_max: int = 3) -> sp.csr_matrix:
    """L2-normalized character n-gram TF-IDF, shape (len(texts), n_features), float32, columns ordered
    by document frequency (rarest first) with sorted indices in every row. Empty texts give zero rows."""
    if not 1 <= ngram_max <= 3:
        raise ValueError(f"ngram_max must be 1, 2 or 3 (n-grams are packed into 64 bits), got {ngram_max}")
    norm = normalize_texts(texts)
    n_docs = len(norm)
    lengths = norm.str.len_chars().to_numpy().astype(np.int64)
    points = np.frombuffer("".join(norm.to_list()).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int32), lengths)
    # characters left in its text from each position (1 = the text's last character)
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(points.size)
    keys, docs = [], []
    for n in range(1, ngram_max + 1):
        m = points.size - n + 1
        if m <= 0:
            break
        key = points[:m].copy()
        for j in range(1, n):
            key = (key << _BITS) | points[j : m + j]
        # No text contains U+0000, so an n-gram's leading code point is never 0 and the n-gram sizes
        # occupy disjoint integer ranges: a 1-gram is < 2**21 <= a 2-gram < 2**42 <= a 3-gram.
        valid = left[:m] >= n
        keys.append(key[valid])
        docs.append(doc_of[:m][valid])
    if not keys or not sum(k.size for k in keys):
        return sp.csr_matrix((n_docs, 0), dtype=np.float32)
    key = np.concatenate(keys)
    doc = np.concatenate(docs)
    del keys, docs
    feature = pl.Series(key).rank("dense").to_numpy().astype(np.int64) - 1
    n_features = int(feature.max()) + 1
    counts = sp.csr_matrix(
        (np.ones(key.size, dtype=np.float32), (doc, feature)), shape=(n_docs, n_features)
    )  # duplicates are summed: term counts
    del key, doc, feature
    df = np.bincount(counts.indices, minlength=n_features)
    rank = np.empty(n_features, dtype=np.int32)
    rank[np.argsort(df, kind="stable")] = np.arange(n_features, dtype=np.int32)
    idf = (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)
    data = (1.0 + np.log(counts.data)) * idf[counts.indices]
    matrix = sp.csr_matrix((data, rank[counts.indices], counts.indptr), shape=counts.shape)
    matrix.sort_indices()
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(matrix.indptr)).astype(np.float32)
    return matrix


def prefix_matrix(matrix: sp.csr_matrix, threshold: float) -> sp.csr_matrix:
    """Binary matrix of each row's prefix: its leading entries while the rest of the row has norm >= t.

    Rows must be unit-norm (or zero) with columns sorted. The margin of 1e-4 only makes prefixes longer,
    which keeps the search exact under float rounding.
    """
    sq = matrix.data.astype(np.float64) ** 2
    cum = np.cumsum(sq)
    counts = np.diff(matrix.indptr)
    row_total = np.repeat(cum[matrix.indptr[1:] - 1] if sq.size else np.zeros(0), counts)
    remaining = row_total - cum + sq  # squared norm of the entry and everything after it in its row
    keep = remaining >= max(threshold - 1e-4, 0.0) ** 2  # 1e-4 > _ROUNDING: still exact at threshold - _ROUNDING
    kept_per_row = np.bincount(np.repeat(np.arange(matrix.shape[0]), counts)[keep], minlength=matrix.shape[0])
    indptr = np.concatenate([[0], np.cumsum(kept_per_row)])
    return sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), matrix.indices[keep], indptr), shape=matrix.shape)


def _pair_cosines(a: sp.csr_matrix, b: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    out = np.empty(rows.size, dtype=np.float32)
    for start in range(0, rows.size, _PAIR_CHUNK):
        r, c = rows[start : start + _PAIR_CHUNK], cols[start : start + _PAIR_CHUNK]
        out[start : start + r.size] = np.asarray(a[r].multiply(b[c]).sum(axis=1)).ravel()
    return out


@dataclass(frozen=True)
class Pairs:
    """Pairs (query row, reference row) with cosine >= threshold, sorted by query then reference."""

    query: np.ndarray  # int64 row indices into the queries
    ref: np.ndarray  # int64 row indices into the references
    cosine: np.ndarray  # float32


def similar_pairs(
    queries: sp.csr_matrix,
    refs: sp.csr_matrix | None,
    threshold: float,
    *,
    stage: str = "dedup",
    on_progress: OnProgress | None = None,
) -> Pairs:
    """Every (query, ref) pair with cosine >= `threshold` (less 1e-6 for float32 rounding). `refs=None`
    searches the queries against themselves and returns each pair once, with query > ref. Progress:
    `stage`, unit "text", over the queries."""
    self_join = refs is None
    refs = queries if self_join else refs
    q_prefix = prefix_matrix(queries, threshold)
    r_prefix_t = (q_prefix if self_join else prefix_matrix(refs, threshold)).T.tocsr()
    found_q, found_r, found_c = [], [], []
    n = queries.shape[0]
    report(on_progress, stage, "text", 0, n, 0)
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n)
        candidates = (q_prefix[start:stop] @ r_prefix_t).tocoo()
        rows = candidates.row.astype(np.int64) + start
        cols = candidates.col.astype(np.int64)
        if self_join:
            earlier = cols < rows
            rows, cols = rows[earlier], cols[earlier]
        cos = _pair_cosines(queries, refs, rows, cols)
        hit = cos >= threshold - _ROUNDING
        found_q.append(rows[hit])
        found_r.append(cols[hit])
        found_c.append(cos[hit])
        report(on_progress, stage, "text", stop, n, stop - start)
    query = np.concatenate(found_q) if found_q else np.zeros(0, dtype=np.int64)
    ref = np.concatenate(found_r) if found_r else np.zeros(0, dtype=np.int64)
    cosine = np.concatenate(found_c) if found_c else np.zeros(0, dtype=np.float32)
    order = np.lexsort((ref, query))
    return Pairs(query[order], ref[order], cosine[order])


def best_match(pairs: Pairs, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query row (0..n-1): the reference with the highest cosine, ties to the first; -1 and NaN if none."""
    index = np.full(n, -1, dtype=np.int64)
    cosine = np.full(n, np.nan)
    if pairs.query.size:
        best = (
            pl.DataFrame({"q": pairs.query, "r": pairs.ref, "c": pairs.cosine})
            .sort(["q", "c", "r"], descending=[False, True, False])
            .unique("q", keep="first", maintain_order=True)
        )
        index[best["q"].to_numpy()] = best["r"].to_numpy()
        cosine[best["q"].to_numpy()] = best["c"].to_numpy()
    return index, cosine


@dataclass(frozen=True)
class NearDuplicates:
    """What `find_near_duplicates` found for n augmented rows."""

    train_index: np.ndarray  # int64 (n,): row of the most similar original at cosine >= t, -1 if none
    train_cosine: np.ndarray  # float64 (n,): its cosine, NaN if none
    within: Pairs | None  # augmented pairs (later row, earlier row) at cosine >= t; None if not searched
    # float64 (n,): cosine of each row to its own source text (NaN when no sources were given). Originals
    # with the source's text are left out of `train_index`: a near copy of its own source is not a
    # duplicate of "another training text", it is `near_copy_of_source`.
    source_cosine: np.ndarray | None = None


def find_near_duplicates(
    augmented: Sequence[str],
    originals: Sequence[str] | None,
    *,
    threshold: float = 0.95,
    ngram_max: int = 3,
    within: bool = True,
    sources: Sequence[str] | None = None,
    on_progress: OnProgress | None = None,
) -> NearDuplicates:
    """Near-duplicates of each augmented text among `originals` (None: not searched) and, with `within`,
    among the augmented texts themselves (resolve those with `keep_first`). With `sources` (the text each
    augmented row was made from, same length), also each row's cosine to its own source, and originals
    whose text is the row's source text are not reported as its train match. One vectorization serves all,
    so IDF comes from the augmented and original texts together (source texts that are not originals are
    added too; sources are normally training rows, so this adds nothing). Progress: stages "dedup vs train"
    and "dedup within"."""
    n = len(augmented)
    originals = list(originals or [])
    extra: list[str] = []
    source_at = None
    if sources is not None:
        if len(sources) != n:
            raise ValueError(f"{len(sources)} source texts for {n} augmented rows")
        position = {text: i for i, text in reversed(list(enumerate(normalize_texts(originals).to_list())))}
        source_norm = normalize_texts(sources).to_list()
        source_at = np.empty(n, dtype=np.int64)
        for i, text in enumerate(source_norm):
            if text not in position:
                position[text] = len(originals) + len(extra)
                extra.append(sources[i])
            source_at[i] = position[text]
    matrix = char_ngram_tfidf(list(augmented) + originals + extra, ngram_max=ngram_max)
    train_index, train_cosine = np.full(n, -1, dtype=np.int64), np.full(n, np.nan)
    if originals:
        pairs = similar_pairs(
            matrix[:n], matrix[n : n + len(originals)], threshold, stage="dedup vs train", on_progress=on_progress
        )
        if source_at is not None:  # the own source (by text) is never "another training text"
            ref_norm = normalize_texts(originals).to_numpy()
            own = ref_norm[pairs.ref] == np.asarray(source_norm, dtype=object)[pairs.query]
            pairs = Pairs(pairs.query[~own], pairs.ref[~own], pairs.cosine[~own])
        train_index, train_cosine = best_match(pairs, n)
    source_cosine = None
    if source_at is not None:
        rows = np.arange(n, dtype=np.int64)
        source_cosine = _pair_cosines(matrix, matrix, rows, n + source_at).astype(np.float64) if n else np.zeros(0)
    pairs_within = (
        similar_pairs(matrix[:n], None, threshold, stage="dedup within", on_progress=on_progress) if within else None
    )
    return NearDuplicates(train_index, train_cosine, pairs_within, source_cosine)


def keep_first(pairs: Pairs, n: int, eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Within-set duplicates, first of a group kept. Greedy in row order: row j is a duplicate when an
    earlier row that is kept has cosine >= t (then it points at the most similar such row); rows with
    `eligible == False` (rejected by another filter) are never kept, so they never make a later row a
    duplicate. Returns (index of that earlier row or -1, its cosine or NaN), shape (n,) each. Loops over
    the similar pairs only, never over all pairs."""
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    kept = eligible.copy()
    index = np.full(n, -1, dtype=np.int64)
    cosine = np.full(n, np.nan, dtype=np.float32)
    if not pairs.query.size:
        return index, cosine
    bounds = np.flatnonzero(np.diff(pairs.query)) + 1
    for q, refs, cos in zip(
        pairs.query[np.concatenate([[0], bounds])],
        np.split(pairs.ref, bounds),
        np.split(pairs.cosine, bounds),
        strict=True,
    ):
        alive = kept[refs]
        if alive.any():
            best = int(np.argmax(np.where(alive, cos, -np.inf)))
            # recorded for rejected rows too (it explains them), but only eligible rows are ever kept
            index[q], cosine[q] = refs[best], cos[best]
            kept[q] = False
    return index, cosine
