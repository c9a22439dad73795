"""Stratified K-fold runner, resumable at fold granularity.

Each finished fold is written to `<parts_dir>/fold_XX.parquet` (held-out rows and test rows with their
probabilities) before the next one starts. A manifest pins the configuration and a fingerprint of the
data, so a restart reuses finished folds only when they came from the same job; folds are deterministic
given the seed, so a resumed run ends with the same final file as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from engine.config import OofConfig
from engine.errors import InputError
from engine.io import write_parquet, write_text
from engine.oof.tfidf import TfidfBackend
from engine.schema import argmax_expr, prob_columns

log = logging.getLogger(__name__)

FoldCallback = Callable[[int, dict], None]


@dataclass(frozen=True)
class OofResult:
    oof: pl.DataFrame  # train columns + fold, oof_pred, oof_confidence, prob_0..prob_{K-1}
    test: pl.DataFrame | None  # test columns + fold-averaged prob_*, pred, confidence
    test_folds: pl.DataFrame | None  # long form: id, fold, prob_* (one row per test row and fold)
    metrics: dict


def assign_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold id (0..n_folds-1) of each row; stratified by label, shuffled with `seed`."""
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[held_out] = fold
    return folds


def fingerprint(config: OofConfig, k: int, train: pl.DataFrame, test: pl.DataFrame | None) -> str:
    digest = hashlib.sha256(json.dumps([asdict(config), k], sort_keys=True).encode())
    for frame in (train, test):
        if frame is not None:
            cols = [c for c in ("id", "text", "label") if c in frame.columns]
            digest.update(frame.select(pl.col(cols).cast(pl.String)).hash_rows(seed=7).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _check_class_sizes(labels: np.ndarray, k: int, n_folds: int, names: list[str]) -> None:
    counts = np.bincount(labels, minlength=k)
    small = [f"{names[c]} ({counts[c]} rows)" for c in range(k) if counts[c] < n_folds]
    if small:
        raise InputError(
            f"classes {', '.join(small)} have fewer rows than folds ({n_folds}); stratified K-fold needs at "
            "least one row of each class per fold. Use fewer folds, or merge or drop those classes."
        )


def _open_parts(parts_dir: Path, key: str, restart: bool) -> None:
    manifest = parts_dir / "manifest.json"
    if restart and parts_dir.exists():
        shutil.rmtree(parts_dir)
    if manifest.exists():
        found = json.loads(manifest.read_text())["fingerprint"]
        if found != key:
            raise InputError(
                f"{parts_dir} holds folds of a different job (data or options changed: fingerprint {found}, "
                f"this job {key}). Pass --restart to discard them, or use another --out-dir."
            )
        return
    parts_dir.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps({"fingerprint": key}) + "\n", manifest)


def _fold_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    return {
        "n": len(labels),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
    }


def run_oof(
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    class_names: list[str],
    parts_dir: Path,
    restart: bool = False,
    on_fold_done: FoldCallback | None = None,
) -> OofResult:
    """Out-of-fold class probabilities for every row of `train` (validated: id, text, label).

    `on_fold_done(fold, metrics)` is called after each fold is saved (the CLI advances a progress bar).
    """
    labels = train["label"].to_numpy()
    _check_class_sizes(labels, k, config.n_folds, class_names)
    key = fingerprint(config, k, train, test)
    _open_parts(parts_dir, key, restart)
    folds = assign_folds(labels, config.n_folds, config.seed)
    texts = train["text"].to_list()
    test_texts = test["text"].to_list() if test is not None else []
    backend = TfidfBackend(config.tfidf)
    probs = prob_columns(k)

    parts = []
    for fold in range(config.n_folds):
        path = parts_dir / f"fold_{fold:02d}.parquet"
        if path.exists():
            log.info("fold %d: reusing %s", fold, path)
            part = pl.read_parquet(path)
        else:
            held_out = np.flatnonzero(folds == fold)
            trained_on = np.flatnonzero(folds != fold)
            oof_probs, test_probs = backend.fit_predict(
                [texts[i] for i in trained_on],
                labels[trained_on],
                k,
                [[texts[i] for i in held_out], test_texts],
            )
            part = pl.concat(
                [
                    pl.DataFrame({"split": "oof", "row": held_out}).hstack(pl.DataFrame(oof_probs, schema=probs)),
                    pl.DataFrame({"split": "test", "row": np.arange(len(test_texts), dtype=np.int64)}).hstack(
                        pl.DataFrame(test_probs.reshape(-1, k), schema=probs)
                    ),
                ]
            ).with_columns(pl.lit(fold, dtype=pl.Int64).alias("fold"))
            write_parquet(part, path)
        held = part.filter(pl.col("split") == "oof")
        metrics = {
            "fold": fold,
            **_fold_metrics(labels[held["row"].to_numpy()], held.select(probs).to_numpy()),
        }
        log.info("fold %d: accuracy %.4f, macro-F1 %.4f", fold, metrics["accuracy"], metrics["macro_f1"])
        parts.append((part, metrics))
        if on_fold_done is not None:
            on_fold_done(fold, metrics)

    return _assemble(train, test, parts, k, key, config)


def _assemble(
    train: pl.DataFrame, test: pl.DataFrame | None, parts: list, k: int, key: str, config: OofConfig
) -> OofResult:
    probs = prob_columns(k)
    p = [pl.col(c) for c in probs]
    every = pl.concat([part for part, _ in parts])
    held = every.filter(pl.col("split") == "oof").sort("row")
    oof = (
        train.hstack(held.select("fold", *probs))
        .with_columns(
            argmax_expr(p).alias("oof_pred"),
            pl.max_horizontal(p).alias("oof_confidence"),
        )
        .select(*train.columns, "fold", "oof_pred", "oof_confidence", *probs)
    )
    labels = oof["label"].to_numpy()
    metrics: dict = {
        "fingerprint": key,
        "config": asdict(config),
        "num_classes": k,
        "folds": [m for _, m in parts],
        "oof": _fold_metrics(labels, oof.select(probs).to_numpy()),
    }
    metrics["oof"]["per_class_f1"] = f1_score(
        labels, oof["oof_pred"].to_numpy(), average=None, labels=list(range(k)), zero_division=0
    ).tolist()

    test_out = test_folds = None
    if test is not None:
        test_rows = every.filter(pl.col("split") == "test").sort("fold", "row")
        ids = test.select("id").with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        test_folds = test_rows.join(ids, on="row", maintain_order="left").select("id", "fold", *probs)
        # numpy mean over a fixed (fold, row) layout: the same bytes on every run, resumed or not.
        stacked = test_rows.select(probs).to_numpy().reshape(len(parts), test.height, k)
        mean = pl.DataFrame(stacked.mean(axis=0), schema=probs)
        test_out = test.hstack(mean).with_columns(
            argmax_expr(p).alias("pred"),
            pl.max_horizontal(p).alias("confidence"),
        )
        if "label" in test.columns:
            metrics["test"] = _fold_metrics(test["label"].to_numpy(), test_out.select(probs).to_numpy())
            metrics["test"]["per_class_f1"] = f1_score(
                test["label"].to_numpy(),
                test_out["pred"].to_numpy(),
                average=None,
                labels=list(range(k)),
                zero_division=0,
            ).tolist()
    return OofResult(oof=oof, test=test_out, test_folds=test_folds, metrics=metrics)
