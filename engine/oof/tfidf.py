"""The CPU backend: character n-gram TF-IDF + logistic regression (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from threadpoolctl import threadpool_limits

from engine.config import TfidfConfig


def build_model(config: TfidfConfig) -> Pipeline:
    vectorizer = TfidfVectorizer(
        analyzer=config.analyzer,
        ngram_range=(config.ngram_min, config.ngram_max),
        max_features=config.max_features,
        min_df=config.min_df,
        sublinear_tf=config.sublinear_tf,
        dtype=np.float32,
    )
    return make_pipeline(vectorizer, LogisticRegression(C=config.C, max_iter=config.max_iter))


# Goes into cache keys of saved TF-IDF models: those fitted before fit_model pinned one thread differ.
FIT = "1-thread"


def fit_model(config: TfidfConfig, texts: Sequence[str], labels: np.ndarray) -> Pipeline:
    """Fit on one BLAS/OpenMP thread, so the model is the same on every machine. With float32 features the
    solver's path depends on the summation order: on all 274k nsmc4 reviews a fit on 2 threads stopped after
    413 iterations, on 1 after 408, and 1.7% of the hard samples' augmentations got another predicted class.
    Threads barely speed up lbfgs here (118 s vs 132 s on this machine's 2 cores)."""
    with threadpool_limits(limits=1):
        return build_model(config).fit(list(texts), np.asarray(labels))


def predict_proba(model: Pipeline, texts: Sequence[str], k: int) -> np.ndarray:
    """Probabilities as an (n, k) float64 array in class-id order, zeros for classes unseen in training."""
    out = np.zeros((len(texts), k), dtype=np.float64)
    if len(texts):
        out[:, model.classes_] = model.predict_proba(list(texts))
        # float32 features give rows that sum to 1 only within 1e-7; downstream checks expect exact sums.
        out /= out.sum(axis=1, keepdims=True)
    return out


class TfidfBackend:
    """Fits one fold and predicts the held-out rows and the test set."""

    def __init__(self, config: TfidfConfig) -> None:
        self.config = config

    def fit_predict(
        self, train_texts: Sequence[str], train_labels: np.ndarray, k: int, predict: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        model = fit_model(self.config, train_texts, train_labels)
        return [predict_proba(model, texts, k) for texts in predict]
