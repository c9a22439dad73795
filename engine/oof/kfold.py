"""Stratified K-fold runner, resumable at fold granularity.

The folds are the parts of a job folder (`engine.jobs.Job` at `parts_dir`): each finished fold is saved as
the part `fold_XX` before the next one starts: one row per held-out row (`split` = "oof") and per test row
("test") with its probabilities, and with the transformers backend's training dynamics one row per training
row ("train") with that fold's `dyn_confidence` and `dyn_variability`; the part's `meta` holds the
transformers backend's epoch history and selected epoch. The manifest pins the fingerprint (data, options,
hardaug version) and each part's digest, so a rerun reuses a fold only when it came from the same job and
is intact (a missing, truncated or edited fold is named and trained again), and only when it holds the rows
its fold holds out (a fold swapped for another, its digest updated in the manifest, is named and trained
again: the assembled file never holds a row twice); folds are deterministic given
the seed, so a resumed run ends with the same final file as an uninterrupted one (on CUDA, folds
recomputed after a crash match up to the GPU's nondeterminism). `run_folds` runs some folds in a shared
job (one process per GPU on disjoint folds); `engine.oof.job` writes the final files and the done marker.

Backends: `tfidf` (CPU, scikit-learn, `engine.tfidf`) and `transformers` (fine-tuning,
`engine.oof.transformer`, imported only when chosen, so the TF-IDF path never loads torch).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from engine import tfidf
from engine.config import OofConfig, TfidfConfig
from engine.errors import InputError
from engine.jobs import Job, first_line
from engine.jobs import fingerprint as job_fingerprint
from engine.oof.refit import mark_checkpoints
from engine.oof.transformer import TransformerBackend, check_texts
from engine.progress import OnProgress, report
from engine.schema import argmax_expr, prob_columns

log = logging.getLogger(__name__)

DYNAMICS = ("dyn_confidence", "dyn_variability")


@dataclass(frozen=True)
class OofResult:
    oof: pl.DataFrame  # train columns + fold, oof_pred, oof_confidence, prob_0..prob_{K-1} [+ dyn_*]
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


def fingerprint(
    config: OofConfig,
    k: int,
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    class_names: Sequence[str] | None = None,
) -> str:
    """The oof job's identity (engine.jobs.fingerprint): the options that decide the results, the class
    names, the id, text and label columns of train and test by content, and the hardaug version."""
    options: dict = {"config": config.job(), "k": k, "classes": list(class_names or [])}
    if config.backend == "tfidf":  # folds fitted before every fit ran on one thread are another job
        options["fit"] = [tfidf.FIT, tfidf.FOLD_FEATURES]

    def columns(frame: pl.DataFrame | None) -> pl.DataFrame | None:
        if frame is None:
            return None
        return frame.select(pl.col([c for c in ("id", "text", "label") if c in frame.columns]).cast(pl.String))

    return job_fingerprint("oof", options, {"train": columns(train), "test": columns(test)})


def _check_class_sizes(labels: np.ndarray, k: int, n_folds: int, names: list[str]) -> None:
    counts = np.bincount(labels, minlength=k)
    small = [f"{names[c]} ({counts[c]} rows)" for c in range(k) if counts[c] < n_folds]
    if small:
        raise InputError(
            f"classes {', '.join(small)} have fewer rows than folds ({n_folds}); stratified K-fold needs at "
            "least one row of each class per fold. Use fewer folds, or merge or drop those classes."
        )


def _fold_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    return {
        "n": len(labels),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
    }


def _make_backend(config: OofConfig, k: int, class_names: list[str], train: pl.DataFrame, test: pl.DataFrame | None):
    """The backend object; for transformers this checks model, tokenizer, device and texts (InputError)."""
    if config.backend == "tfidf":
        return None  # the folds are plain functions (`_tfidf_folds`), run in this process or in workers

    check_texts(train, "training data")
    if test is not None:
        check_texts(test, "test data")
    return TransformerBackend(config.transformer, k=k, class_names=class_names)


def _tfidf_part(fold: int, held_out: np.ndarray, oof_probs: np.ndarray, test_probs: np.ndarray, k: int):
    probs = prob_columns(k)
    return pl.concat(
        [
            pl.DataFrame({"split": "oof", "row": held_out}).hstack(pl.DataFrame(oof_probs, schema=probs)),
            pl.DataFrame({"split": "test", "row": np.arange(len(test_probs), dtype=np.int64)}).hstack(
                pl.DataFrame(test_probs.reshape(-1, k), schema=probs)
            ),
        ]
    ).with_columns(pl.lit(fold, dtype=pl.Int64).alias("fold"))


def _fit_tfidf_fold(
    config: TfidfConfig, counts: sp.csr_matrix, train_rows: np.ndarray, train_labels: np.ndarray, predict, k: int
) -> list[np.ndarray]:
    """One fold: features from the shared counts, a classifier on one thread, probabilities of `predict`."""
    features, others = tfidf.fold_features(config, counts, train_rows, predict)
    model = tfidf.fit_classifier(config, features, train_labels)
    return [tfidf.predict_proba(model, x, k) for x in others]


# The n-gram counts of every text of the job, saved once in the job's scratch folder (its manifest pins the
# data and options): workers map them read-only (one copy in the page cache for all), and a resumed run skips
# counting.
_COUNTS = ("data", "indices", "indptr")


def _shared_counts(config: TfidfConfig, texts: list[str], scratch: Path) -> Path:
    folder = scratch / "ngrams"
    if not (folder / "shape.json").exists():
        counts = tfidf.count_ngrams(config, texts)
        tmp = scratch / f".ngrams.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for name in _COUNTS:
                _save_array(tmp / f"{name}.npy", getattr(counts, name))
            (tmp / "shape.json").write_text(json.dumps(list(counts.shape)))  # written last: marks a whole folder
        except BaseException:  # a full disk, an interrupt: give the space back now, not at the next run
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:  # a folder appears whole or not at all; never replace one: another process may be reading it
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "shape.json").exists():  # not another process's whole folder: a leftover
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
            else:  # another process of a shared job counted the same texts first
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _save_array(path: Path, array: np.ndarray) -> None:
    """np.save through `write`, in numpy's chunks: given a real file numpy writes with `tofile`, whose short
    write on a full disk is an OSError without an errno ("124638 requested and 36832 written"); through
    `write` it is ENOSPC, which the CLI names ("the disk is full"). No copy of the array is made."""
    try:
        with open(path, "wb") as fh:
            np.lib.format.write_array(_Writer(fh.write), array, allow_pickle=False)
    except OSError as exc:
        if exc.filename is None:  # write() names no file; the message should name the disk
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@dataclass(frozen=True)
class _Writer:
    """A file seen only through `write`, so numpy does not treat it as a real file."""

    write: Callable[[bytes], int]


def _load_counts(folder: Path) -> sp.csr_matrix:
    arrays = [np.load(folder / f"{name}.npy", mmap_mode="r") for name in _COUNTS]
    shape = tuple(json.loads((folder / "shape.json").read_text()))
    return sp.csr_matrix(tuple(arrays), shape=shape, copy=False)


def _tfidf_worker(config: TfidfConfig, folder: Path, fold: int, folds: np.ndarray, labels, n_test: int, k: int):
    held_out = np.flatnonzero(folds == fold)
    trained_on = np.flatnonzero(folds != fold)
    test_rows = np.arange(len(folds), len(folds) + n_test)
    oof_probs, test_probs = _fit_tfidf_fold(
        config, _load_counts(folder), trained_on, labels[trained_on], [held_out, test_rows], k
    )
    return fold, held_out, oof_probs, test_probs


def _tfidf_folds(
    config: TfidfConfig,
    todo: list[int],
    folds: np.ndarray,
    labels: np.ndarray,
    texts: list[str],
    test_texts: list[str],
    k: int,
    scratch: Path,
    processes: int,
) -> Iterator[tuple[int, pl.DataFrame]]:
    """Fit the folds `todo`; yields (fold, part) as each finishes (in fold order with one process). A fold's
    model depends only on its rows and options, never on which process fitted it or in which order: every
    fit runs on one thread, so 1 or N processes give the same bytes."""
    if not todo:
        return
    folder = _shared_counts(config, texts + test_texts, scratch)
    args = (folds, labels, len(test_texts), k)
    if processes <= 1 or len(todo) == 1:
        for fold in todo:
            yield fold, _tfidf_result(_tfidf_worker(config, folder, fold, *args), k)
        return
    # spawn: a clean interpreter per worker (no inherited locks of this process's thread pools)
    pool = ProcessPoolExecutor(max_workers=min(processes, len(todo)), mp_context=get_context("spawn"))
    finished = False
    try:
        futures = [pool.submit(_tfidf_worker, config, folder, fold, *args) for fold in todo]
        for future in as_completed(futures):
            result = future.result()
            yield result[0], _tfidf_result(result, k)
        finished = True
    finally:  # on an error or an interrupt: drop the queued folds, do not wait for the running ones
        pool.shutdown(wait=finished, cancel_futures=True)


def _tfidf_result(result: tuple, k: int) -> pl.DataFrame:
    fold, held_out, oof_probs, test_probs = result
    return _tfidf_part(fold, held_out, oof_probs, test_probs, k)


def _transformer_fold(backend, fold, folds, encoded, test_encoded, labels, k, seed, scratch, on_progress):
    """Train fold `fold`; returns the part frame, the fold's extra metrics and its checkpoint (or None)."""
    probs = prob_columns(k)
    held_out = np.flatnonzero(folds == fold)
    trained_on = np.flatnonzero(folds != fold)
    out = backend.fit_predict_fold(
        seed=seed + fold,
        encoded=encoded,
        train_rows=trained_on,
        train_labels=labels[trained_on],
        eval_rows=held_out,
        eval_labels=labels[held_out],
        test=test_encoded,
        checkpoint=scratch / f"ckpt_fold_{fold:02d}",
        on_progress=(
            (
                lambda p: (
                    p.unit == "step" and report(on_progress, f"fold {fold} steps", "step", p.done, p.total, fold=fold)
                )
            )
            if on_progress is not None
            else None
        ),
    )
    n_test = len(test_encoded) if test_encoded is not None else 0
    frames = [
        pl.DataFrame({"split": "oof", "row": held_out}).hstack(pl.DataFrame(out.eval_probs, schema=probs)),
        pl.DataFrame({"split": "test", "row": np.arange(n_test, dtype=np.int64)}).hstack(
            pl.DataFrame(out.test_probs.reshape(-1, k), schema=probs)
        ),
    ]
    if out.dyn_confidence is not None:
        frames.append(
            pl.DataFrame(
                {
                    "split": "train",
                    "row": trained_on,
                    "dyn_confidence": out.dyn_confidence,
                    "dyn_variability": out.dyn_variability,
                }
            )
        )
    part = pl.concat(frames, how="diagonal").with_columns(pl.lit(fold, dtype=pl.Int64).alias("fold"))
    extra = {"best_epoch": out.best_epoch, "history": out.history}
    return part, extra, out.checkpoint


def _settle_checkpoint(checkpoint: Path | None, fold: int, keep_in: Path | None) -> None:
    """After a fold's part is saved: move its checkpoint to `keep_in/fold_XX`, or delete it."""
    if checkpoint is None or not checkpoint.exists():
        return
    if keep_in is None:
        shutil.rmtree(checkpoint, ignore_errors=True)
        return
    target = keep_in / f"fold_{fold:02d}"
    keep_in.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(checkpoint, target)
    log.info("fold %d: kept the model in %s", fold, target)


def _leftover_checkpoints(scratch: Path, saved: set[int], mine: set[int], keep_in: Path | None) -> None:
    """Checkpoints a killed run left behind, of the folds `mine` (a shared job's process touches only its
    own folds: another process may be training the others): the selected model of a fold whose part was
    saved is kept (if asked) or deleted; a half-trained fold's is always deleted (that fold trains again)."""
    for path in sorted(scratch.glob("ckpt_fold_*")):
        name = path.name.removesuffix(".tmp")
        fold = int(name.rsplit("_", 1)[1])
        if fold not in mine:
            continue
        finished = fold in saved and not path.name.endswith(".tmp")
        _settle_checkpoint(path, fold, keep_in if finished else None)


def part_name(fold: int) -> str:
    return f"fold_{fold:02d}"


def run_oof(
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    class_names: list[str],
    parts_dir: Path,
    restart: bool = False,
    on_progress: OnProgress | None = None,
    checkpoint_dir: Path | None = None,
    processes: int = 1,
) -> OofResult:
    """Out-of-fold class probabilities for every row of `train` (validated: id, text, label); the folds are
    saved in the job folder `parts_dir` as they finish and reused by a rerun (`engine.oof.job.run_oof_job`
    writes the final files and removes them).

    `on_progress` (engine.progress) hears of each fold ("folds", unit "fold", detail: fold, metrics) after
    it is saved or found saved, and of each optimizer step of the transformers backend ("fold F steps",
    unit "step"). With `config.transformer.keep_checkpoints`, each fold's selected model is moved to
    `checkpoint_dir/fold_XX` (default: beside `parts_dir`, in `checkpoints/`). `processes` > 1 fits that
    many TF-IDF folds at once, one process each (same results; the folds are then reported in completion
    order).
    """
    backend = check_job(train, test, config=config, k=k, class_names=class_names)
    key = fingerprint(config, k, train, test, class_names)
    with Job(parts_dir, key, restart=restart, what="oof job") as job:
        parts = run_in_job(
            job, backend, train, test, config=config, k=k, folds_to_run=None, on_progress=on_progress,
            checkpoint_dir=checkpoint_dir, processes=processes,
        )  # fmt: skip
    return assemble(train, test, parts, k, key, config)


def run_folds(
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    class_names: list[str],
    parts_dir: Path,
    folds: Sequence[int],
    on_progress: OnProgress | None = None,
    checkpoint_dir: Path | None = None,
    processes: int = 1,
) -> list[dict]:
    """Run (or reuse) only `folds` and save their parts; returns their metrics. For several GPUs: one
    process per GPU on disjoint folds sharing `parts_dir` (a shared job: they run at once, a run that
    assembles is refused until they end), then `run_oof` once to assemble (it reuses every saved fold)."""
    bad = [f for f in folds if not 0 <= f < config.n_folds]
    if bad:
        raise InputError(f"folds {bad} do not exist; with {config.n_folds} folds the ids are 0..{config.n_folds - 1}.")
    backend = check_job(train, test, config=config, k=k, class_names=class_names)
    key = fingerprint(config, k, train, test, class_names)
    with Job(parts_dir, key, shared=True, what="oof job") as job:
        if job.finished() is not None:
            raise InputError(f"{parts_dir} holds a finished oof job of these data and options: nothing to run.")
        parts = run_in_job(
            job, backend, train, test, config=config, k=k, folds_to_run=sorted(set(folds)),
            on_progress=on_progress, checkpoint_dir=checkpoint_dir, processes=processes,
        )  # fmt: skip
    return [metrics for _, metrics in parts]


def check_job(train: pl.DataFrame, test: pl.DataFrame | None, *, config: OofConfig, k: int, class_names: list[str]):
    """Every check of the job's data and options, before anything is written (InputError); returns the
    backend object (None for tfidf)."""
    _check_class_sizes(train["label"].to_numpy(), k, config.n_folds, class_names)
    return _make_backend(config, k, class_names, train, test)


def run_in_job(
    job: Job,
    backend,
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    folds_to_run: list[int] | None,
    on_progress: OnProgress | None,
    checkpoint_dir: Path | None,
    processes: int = 1,
) -> list[tuple[pl.DataFrame, dict]]:
    """Run the folds `folds_to_run` (all when None) in the open job `job`, reusing its saved parts; returns
    (part, metrics) of each, in fold order."""
    labels = train["label"].to_numpy()
    folds = assign_folds(labels, config.n_folds, config.seed)
    texts = train["text"].to_list()
    test_texts = test["text"].to_list() if test is not None else []
    probs = prob_columns(k)
    transformers = config.backend == "transformers"
    scratch = job.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    keep_in = None
    if transformers and config.transformer.keep_checkpoints:
        keep_in = checkpoint_dir or job.folder.parent / "checkpoints"
    order = list(folds_to_run if folds_to_run is not None else range(config.n_folds))
    reused = _verified_parts(job, [fold for fold in order if part_name(fold) in job.parts], folds, len(test_texts))
    saved = list(reused)
    if transformers:
        mine = set(order) if job.shared else set(range(config.n_folds))
        _leftover_checkpoints(scratch, {f for f in range(config.n_folds) if part_name(f) in job.parts}, mine, keep_in)
    encoded = test_encoded = None

    todo = [fold for fold in order if fold not in saved]
    fitted: Iterator[tuple[int, pl.DataFrame | None]]
    if transformers:
        fitted = ((fold, None) for fold in todo)  # trained one by one below (one GPU per process)
    else:
        fitted = _tfidf_folds(config.tfidf, todo, folds, labels, texts, test_texts, k, scratch, processes)

    parts = []
    for fold, part in [*((fold, None) for fold in saved), *fitted]:
        name = part_name(fold)
        extra: dict = {}
        if fold in saved:
            log.info("fold %d: reusing %s", fold, job.part_path(name))
            part = reused[fold]
            extra = dict(job.parts[name].meta)
        elif transformers:
            if encoded is None:  # tokenize once per run, and only if a fold has to be trained
                encoded = backend.encode(texts)
                test_encoded = backend.encode(test_texts) if test is not None else None
            part, extra, checkpoint = _transformer_fold(
                backend, fold, folds, encoded, test_encoded, labels, k, config.seed, scratch, on_progress
            )
            job.save_part(name, part, meta=extra)
            _settle_checkpoint(checkpoint, fold, keep_in)
        else:
            job.save_part(name, part)
        held = part.filter(pl.col("split") == "oof")
        metrics = {
            "fold": fold,
            **_fold_metrics(labels[held["row"].to_numpy()], held.select(probs).to_numpy()),
        }
        if test is not None and "label" in test.columns:
            rows = part.filter(pl.col("split") == "test").sort("row")
            metrics["test_accuracy"] = _fold_metrics(test["label"].to_numpy(), rows.select(probs).to_numpy())[
                "accuracy"
            ]
        metrics |= extra
        log.info("fold %d: accuracy %.4f, macro-F1 %.4f", fold, metrics["accuracy"], metrics["macro_f1"])
        parts.append((part, metrics))
        report(on_progress, "folds", "fold", len(parts), len(order), fold=fold, metrics=metrics)
    parts.sort(key=lambda item: item[1]["fold"])  # completion order varies with processes; results do not
    if keep_in is not None:  # which job's folds each kept model held out: `filter --oof` checks it
        mark_checkpoints(keep_in, train, folds, backend.class_names, order)
    return parts


def _verified_parts(job: Job, saved: list[int], folds: np.ndarray, n_test: int) -> dict[int, pl.DataFrame]:
    """The saved folds' parts that hold what their fold makes: its held-out rows and every test row, once
    each; a part that does not (swapped for another fold's, with the manifest's digest updated) is redone."""
    reused = {}
    for fold in saved:
        name = part_name(fold)
        try:
            part = job.read_part(name)
            held = np.sort(part.filter(pl.col("split") == "oof")["row"].to_numpy())
            tests = np.sort(part.filter(pl.col("split") == "test")["row"].to_numpy())
            fold_ids = part["fold"].unique().to_list()
        except (OSError, pl.exceptions.PolarsError) as exc:
            job.drop_part(name, f"unreadable as a fold ({first_line(exc)})")
            continue
        if fold_ids != [fold] or not np.array_equal(held, np.flatnonzero(folds == fold)):
            job.drop_part(name, f"does not hold the rows fold {fold} holds out (swapped for another fold or edited)")
        elif not np.array_equal(tests, np.arange(n_test)):
            job.drop_part(name, f"does not hold each of the {n_test} test rows once (edited)")
        else:
            reused[fold] = part
    return reused


def assemble(
    train: pl.DataFrame, test: pl.DataFrame | None, parts: list, k: int, key: str, config: OofConfig
) -> OofResult:
    probs = prob_columns(k)
    p = [pl.col(c) for c in probs]
    every = pl.concat([part for part, _ in parts])
    held = every.filter(pl.col("split") == "oof").sort("row")
    if not np.array_equal(held["row"].to_numpy(), np.arange(train.height)):  # _verified_parts makes this a bug
        raise RuntimeError(f"the folds' parts do not hold each of the {train.height} training rows once")
    oof = (
        train.hstack(held.select("fold", *probs))
        .with_columns(
            argmax_expr(p).alias("oof_pred"),
            pl.max_horizontal(p).alias("oof_confidence"),
        )
        .select(*train.columns, "fold", "oof_pred", "oof_confidence", *probs)
    )
    labels = oof["label"].to_numpy()
    if DYNAMICS[0] in every.columns:
        oof = oof.hstack(_dynamics(every, train.height, config.n_folds))
    metrics: dict = {
        "fingerprint": key,
        "config": config.job(),
        "num_classes": k,
        "folds": [m for _, m in parts],
        "oof": _fold_metrics(labels, oof.select(probs).to_numpy()),
    }
    metrics["oof"]["per_class_f1"] = f1_score(
        labels, oof["oof_pred"].to_numpy(), average=None, labels=list(range(k)), zero_division=0
    ).tolist()

    test_out = test_folds = None
    if test is not None:
        test_rows = every.filter(pl.col("split") == "test").sort("fold", "row").select("row", "fold", *probs)
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


def _dynamics(every: pl.DataFrame, n: int, n_folds: int) -> pl.DataFrame:
    """Per row, the mean over the K-1 folds that trained on it of that fold's confidence and variability.
    numpy over a fixed (row, fold) layout: the same bytes on every run, resumed or not."""
    rows = every.filter(pl.col("split") == "train").sort("row", "fold")
    values = rows.select(DYNAMICS).to_numpy().reshape(n, n_folds - 1, 2).mean(axis=1)
    return pl.DataFrame(values, schema=list(DYNAMICS))
