"""The CPU backend: character n-gram TF-IDF + logistic regression (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

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
        model = build_model(self.config).fit(list(train_texts), train_labels)
        return [predict_proba(model, texts, k) for texts in predict]
