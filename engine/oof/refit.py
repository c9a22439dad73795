"""The models of an oof job's folds, again: K TF-IDF label models refitted on the folds' training rows, and the
marker that ties a kept fold model (a transformers checkpoint or a saved `.npz`) to the job whose folds it
was trained on.

Why refit instead of keeping the oof stage's TF-IDF fold models: they are fitted on features derived from
shared n-gram counts (`engine.tfidf.fold_features`), which only a job's scratch folder holds; a label
model has to read new texts (the augmentations). A TfidfVectorizer pipeline fitted on the same rows with
the same options learns the same vocabulary and idf, so the refitted fold model judges an augmentation as
the oof fold judged its source, up to float32 summation order.

The marker (`fold_marker`): the fold, the number of folds, the class names and a digest of the held-out
rows' ids and labels. A fold model is this job's fold F exactly when it held out the rows `--oof` puts in
fold F: checkpoints of another oof job (other data, seed, folds or classes) differ in the digest or names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl

from engine.config import TfidfConfig
from engine.tfidf import fit_model

MARKER = "hardaug_fold.json"  # inside a kept transformers fold checkpoint; `fold_XX.json` beside a fold .npz
FORMAT = "hardaug-fold-model"


def fold_marker(ids: Sequence, labels: np.ndarray, folds: np.ndarray, fold: int, class_names: Sequence[str]) -> dict:
    """What identifies fold `fold` of a job: its held-out rows (ids as text, labels), folds and classes."""
    held = np.flatnonzero(np.asarray(folds) == fold)
    rows = sorted((str(ids[i]), int(labels[i])) for i in held)
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()
    return {
        "format": FORMAT,
        "fold": int(fold),
        "n_folds": int(np.max(folds)) + 1,
        "rows": len(folds),
        "classes": list(class_names),
        "held_out": digest,
    }


def write_marker(path: Path, marker: dict) -> None:
    path.write_text(json.dumps(marker, ensure_ascii=False, indent=1), encoding="utf-8")


def mark_checkpoints(
    keep_in: Path, train: pl.DataFrame, folds: np.ndarray, class_names: Sequence[str], fold_ids: Sequence[int]
) -> None:
    """Write the marker into each kept checkpoint `keep_in/fold_XX` of `fold_ids` that exists."""
    ids, labels = train["id"].to_list(), train["label"].to_numpy()
    for fold in fold_ids:
        folder = keep_in / f"fold_{fold:02d}"
        if folder.is_dir():
            write_marker(folder / MARKER, fold_marker(ids, labels, folds, fold, class_names))


def _fit_fold(config: TfidfConfig, texts: list[str], labels: np.ndarray, folds: np.ndarray, fold: int):
    trained_on = np.flatnonzero(folds != fold)
    return fit_model(config, [texts[i] for i in trained_on], labels[trained_on])


def refit_tfidf_folds(
    config: TfidfConfig, texts: Sequence[str], labels: np.ndarray, folds: np.ndarray, *, processes: int = 1
) -> list:
    """The K scikit-learn pipelines, fold F fitted on the rows with `folds != F`, in fold order. Each fit runs
    on one thread (`fit_model`), so 1 or N processes give the same models; N > 1 spawns workers as oof does."""
    texts, labels, folds = list(texts), np.asarray(labels), np.asarray(folds)
    n_folds = int(folds.max()) + 1
    if processes <= 1 or n_folds == 1:
        return [_fit_fold(config, texts, labels, folds, f) for f in range(n_folds)]
    with ProcessPoolExecutor(max_workers=min(processes, n_folds), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_fit_fold, config, texts, labels, folds, f) for f in range(n_folds)]
        return [future.result() for future in futures]
