"""The CPU backend: character n-gram TF-IDF + logistic regression (scikit-learn).

Two ways to the same kind of features:
- `fit_model` / `build_model`: a scikit-learn pipeline (TfidfVectorizer + LogisticRegression) fitted on one
  text list; the filters' label model and compare's arms use it.
- the K-fold runner counts every text's n-grams once (`count_ngrams`: the training and the test rows, no
  labels) and derives each fold's TF-IDF matrix from the counts of that fold's training rows
  (`fold_features`): the vocabulary (min_df, the max_features most frequent n-grams) and the idf come from
  the training split only, exactly as a TfidfVectorizer fitted on it, so nothing of the held-out fold but
  its texts' own counts enters its features, and its labels never do. Counting is a third of a fold's
  time, so counting once instead of K times saves most of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from engine.config import TfidfConfig


def build_classifier(config: TfidfConfig) -> LogisticRegression:
    # random_state: saga/sag visit rows in a seeded random order; a fixed seed keeps the model reproducible.
    return LogisticRegression(
        C=config.C, solver=config.solver, tol=config.tol, max_iter=config.max_iter, random_state=0
    )


def build_model(config: TfidfConfig) -> Pipeline:
    vectorizer = TfidfVectorizer(
        analyzer=config.analyzer,
        ngram_range=(config.ngram_min, config.ngram_max),
        max_features=config.max_features,
        min_df=config.min_df,
        sublinear_tf=config.sublinear_tf,
        dtype=np.float32,
    )
    return make_pipeline(vectorizer, build_classifier(config))


# Goes into cache keys of saved TF-IDF models: those fitted before fit_model pinned one thread differ.
FIT = "1-thread"
# Goes into the fingerprint of K-fold jobs: folds whose features came from shared n-gram counts (sorted
# indices, so the float32 row norms are summed in another order than TfidfVectorizer's) are another job.
FOLD_FEATURES = "shared-counts"


def fit_model(config: TfidfConfig, texts: Sequence[str], labels: np.ndarray) -> Pipeline:
    """Fit on one BLAS/OpenMP thread, so the model is the same on every machine. With float32 features the
    solver's path depends on the summation order: on all 274k nsmc4 reviews an lbfgs fit on 2 threads
    stopped after 413 iterations, on 1 after 408, and 1.7% of the hard samples' augmentations got another
    predicted class. Threads barely speed up lbfgs here (118 s vs 132 s on this machine's 2 cores); saga
    has no threads at all. More cores are used by fitting several models in processes instead."""
    with threadpool_limits(limits=1):
        return build_model(config).fit(list(texts), np.asarray(labels))


def predict_proba(model: Pipeline | LogisticRegression, texts_or_features, k: int) -> np.ndarray:
    """Probabilities as an (n, k) float64 array in class-id order, zeros for classes unseen in training.
    Takes texts for a pipeline, a feature matrix for a bare classifier."""
    n = texts_or_features.shape[0] if sp.issparse(texts_or_features) else len(texts_or_features)
    out = np.zeros((n, k), dtype=np.float64)
    if n:
        features = texts_or_features if sp.issparse(texts_or_features) else list(texts_or_features)
        out[:, model.classes_] = model.predict_proba(features)
        # float32 features give rows that sum to 1 only within 1e-7; downstream checks expect exact sums.
        out /= out.sum(axis=1, keepdims=True)
    return out


def count_ngrams(config: TfidfConfig, texts: Sequence[str]) -> sp.csr_matrix:
    """Raw n-gram counts of `texts` over every n-gram seen (float32 like TfidfVectorizer's, columns in sorted
    n-gram order, sorted indices in every row). Label-free: pruning happens per fold in `fold_features`."""
    counter = CountVectorizer(
        analyzer=config.analyzer, ngram_range=(config.ngram_min, config.ngram_max), dtype=np.float32
    )
    counts = sp.csr_matrix(counter.fit_transform(list(texts)))
    counts.sort_indices()
    return counts


def fold_features(
    config: TfidfConfig, counts: sp.csr_matrix, train_rows: np.ndarray, other_rows: Sequence[np.ndarray]
) -> tuple[sp.csr_matrix, list[sp.csr_matrix]]:
    """TF-IDF matrices of the training rows and of each of `other_rows`, with the vocabulary and idf a
    TfidfVectorizer (min_df, max_features, sublinear tf, smooth idf, l2 rows) fitted on the training rows'
    texts would learn: same n-grams, same ordering rule for ties, same float32 arithmetic per entry."""
    train = counts[train_rows]
    df = np.bincount(train.indices, minlength=counts.shape[1])
    keep = df >= config.min_df  # an n-gram seen only outside the training rows has df 0: dropped here
    if config.max_features is not None and keep.sum() > config.max_features:
        # TfidfVectorizer's rule: the most frequent by total count, ties in its (unstable) argsort order
        totals = np.asarray(train.sum(axis=0)).ravel()
        chosen = (-totals[keep]).argsort()[: config.max_features]
        limited = np.zeros_like(keep)
        limited[np.flatnonzero(keep)[chosen]] = True
        keep = limited
    columns = np.flatnonzero(keep)
    # smooth idf, in float32 as TfidfTransformer computes it for float32 counts
    idf = np.full(len(columns), train.shape[0] + 1, dtype=np.float32)
    idf /= df[columns].astype(np.float32) + np.float32(1.0)
    np.log(idf, out=idf)
    idf += np.float32(1.0)

    def weigh(rows: sp.csr_matrix) -> sp.csr_matrix:
        out = sp.csr_matrix(rows[:, columns], dtype=np.float32, copy=True)
        if out.shape[0] == 0:  # no test set
            return out
        if config.sublinear_tf:
            np.log(out.data, out.data)
            out.data += np.float32(1.0)
        out.data *= idf[out.indices]
        return normalize(out, norm="l2", copy=False)

    return weigh(train), [weigh(counts[rows]) for rows in other_rows]


def fit_classifier(config: TfidfConfig, features: sp.csr_matrix, labels: np.ndarray) -> LogisticRegression:
    """The fold classifier on prepared features, on one thread (see `fit_model`)."""
    with threadpool_limits(limits=1):
        return build_classifier(config).fit(features, np.asarray(labels))
