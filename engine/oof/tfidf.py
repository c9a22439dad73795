"""Moved to `engine.tfidf` (the classifier is shared by oof, the filters' label model and compare).

This alias stays only because `engine/pipeline.py`, being restructured on another branch, still imports
`engine.oof.tfidf.FIT`, and branches in flight may too; delete it once they import `engine.tfidf`."""

from engine.tfidf import (
    FIT,
    FOLD_FEATURES,
    build_classifier,
    build_model,
    count_ngrams,
    fit_classifier,
    fit_model,
    fold_features,
    predict_proba,
)

__all__ = [
    "FIT",
    "FOLD_FEATURES",
    "build_classifier",
    "build_model",
    "count_ngrams",
    "fit_classifier",
    "fit_model",
    "fold_features",
    "predict_proba",
]
