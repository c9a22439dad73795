"""Compare's cells: one (arm, seed) fit of the classifier on the arm's training set, predicting the test set.

A cell is a part of compare's job folder (engine.jobs), named by its key: a digest of the classifier's
options and the rows it trains on (text, label and weight), and for the transformers backend its seed (the
new head's initialization, dropout and data order); TF-IDF + logistic regression draws nothing, so its key
leaves the seed out and identical training sets are fitted once. A rerun, or one with more seeds or arms, fits
only the cells it has not saved. A transformers cell saves its whole training state in the job's scratch
folder after every epoch (`TransformerBackend.fine_tune`), so a killed fine-tune resumes at its next epoch.

Who runs which cell (`Cells`): every cell here, in order (the default); `only` some of them, by index, in a
job shared with other processes (one per GPU: `--only-cells 0/2` and `1/2`), which save their cells and stop;
or Ray tasks (engine.experiment_on_ray), one per pending cell. The run that assembles the tables then finds every
cell saved. Cell indices count the cells in compare's order: seeds in the order given, and within a seed the
arms in the order of the results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from engine import tfidf
from engine.arms import CLEANING_ARMS, CLEANING_CONTROLS
from engine.config import CompareConfig
from engine.io import read_table
from engine.jobs import Job
from engine.jobs import fingerprint as job_fingerprint
from engine.oof import transformer
from engine.progress import OnProgress, report
from engine.schema import prob_columns

log = logging.getLogger(__name__)

# How a transformers cell is trained (bumped when the loop changes what a cell's bytes are): in its key.
TRANSFORMER_CELL = "fine_tune/v1"


# ------------------------------------------------------------------------------------------------- keys
def cell_key(config: CompareConfig, train_set: pl.DataFrame, test: pl.DataFrame, seed: int) -> str:
    if config.backend == "tfidf":
        # TF-IDF + logistic regression is deterministic (saga draws its row order from a fixed random_state,
        # lbfgs draws nothing): the model depends only on its training rows (and their weights, when the arm
        # has them), so the key leaves the arm and seed out and identical training sets are trained once.
        options: dict = {**asdict(config.tfidf), "fit": tfidf.FIT}
    else:
        options = {**config.classifier(), "seed": seed, "loop": TRANSFORMER_CELL}
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for frame in (train_set, test.select("text", "label")):
        digest.update(frame.hash_rows(seed=3).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def cells_key(config: CompareConfig, test: pl.DataFrame, k: int) -> str:
    """The cells' job: every cell names its own content (`cell_key`), so parts of another job (another test
    set, classifier or hardaug version) are discarded, never refused. Transformers cells of other options
    (more epochs, another model) stay until a finished run keeps only the cells it used."""
    if config.backend == "tfidf":
        options: dict = {"tfidf": asdict(config.tfidf), "fit": tfidf.FIT, "k": k}
    else:
        options = {"backend": "transformers", "loop": TRANSFORMER_CELL, "k": k}
    return job_fingerprint("compare-cells", options, {"test": test.select("text", "label")})


# ------------------------------------------------------------------------------------------- the checks
def check_classifier(
    config: CompareConfig, *, k: int, class_names: Sequence[str], frames: Mapping[str, pl.DataFrame | None]
):
    """Everything about the classifier that could fail once cells run (model folder, head size, tokenizer,
    device, max length, empty texts), as one InputError before anything is written; returns the transformers
    backend (None for TF-IDF). `frames`: every table whose texts a cell reads, by the name a message gives."""
    if config.backend == "tfidf":
        return None

    for name, frame in frames.items():
        if frame is not None and frame.height:
            transformer.check_texts(frame if "id" in frame.columns else frame.with_row_index("id"), name)
    return transformer.TransformerBackend(config.transformer, k=k, class_names=class_names)


# -------------------------------------------------------------------------------------------- only-cells
@dataclass(frozen=True)
class CellSelection:
    """Which cells a process runs: `ids` by index, or every `of`-th from `start` (`i/N`: the same option on N
    processes, without knowing how many cells there are)."""

    ids: tuple[int, ...] = ()
    start: int = 0
    of: int = 0

    def __contains__(self, index: int) -> bool:
        return index % self.of == self.start if self.of else index in self.ids

    def describe(self) -> str:
        return f"{self.start}/{self.of}" if self.of else ",".join(map(str, self.ids))


def only_cells(value: str) -> CellSelection:
    """--only-cells: `0,3,5` (cell indices) or `i/N` (every N-th cell from i: one process per GPU)."""
    value = value.strip()
    try:
        if "/" in value:
            start, _, of = value.partition("/")
            selection = CellSelection(start=int(start), of=int(of))
            if not 0 <= selection.start < selection.of:
                raise ValueError
            return selection
        ids = tuple(int(v) for v in value.split(",") if v.strip())
        if not ids or any(i < 0 for i in ids):
            raise ValueError
        return CellSelection(ids=ids)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected cell indices like 0,3,5 or i/N like 1/4 (every 4th cell from cell 1), got {value!r}"
        ) from None


# ------------------------------------------------------------------------------------------------ fitting
def _fit_tfidf(config: CompareConfig, train_set: pl.DataFrame):
    texts, labels = train_set["text"].to_list(), train_set["label"].to_numpy()
    if "weight" not in train_set.columns:
        return tfidf.fit_model(config.tfidf, texts, labels)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one thread, as fit_model: the same model on every machine
        return tfidf.build_model(config.tfidf).fit(
            texts, labels, logisticregression__sample_weight=train_set["weight"].to_numpy()
        )


@dataclass
class Cells:
    """Runs and reuses the cells of one open job (see the module docstring). `backend`: the transformers
    backend of this process (check_classifier), None for TF-IDF; `only`: run only these cell indices (the
    others are skipped, not read); `defer`: collect the pending cells in `pending` instead of running them
    (for Ray); `total`: the number of cells, for progress."""

    job: Job
    test: pl.DataFrame
    k: int
    config: CompareConfig
    backend: object = None
    only: CellSelection | None = None
    defer: bool = False
    total: int | None = None
    on_progress: OnProgress | None = None
    memo: dict[str, np.ndarray] = field(default_factory=dict)
    pending: list[tuple[str, pl.DataFrame, dict]] = field(default_factory=list)
    ran: list[dict] = field(default_factory=list)  # the cells this process fitted: arm, seed, seconds
    _index: int = 0
    _done: int = 0
    _test_encoded: object = None

    def cell(self, arm: str, seed: int, train_set: pl.DataFrame) -> np.ndarray | None:
        """The test probabilities of the next cell (float64, (test rows, K)), or None where this process
        does not run it (another process's cell, or one deferred to Ray)."""
        index = self._index
        self._index += 1
        key = cell_key(self.config, train_set, self.test, seed)
        about = {"arm": arm, "seed": seed, "cell": index}
        if self.only is not None and index not in self.only:
            return None
        probs = self._reuse(key)
        if probs is None and self.defer:
            if all(key != p[0] for p in self.pending):
                self.pending.append((key, train_set, about))
            return None
        if probs is None:
            probs = self.memo[key] = self.fit(key, train_set, seed=seed, about=about)
        self._done += 1
        report(self.on_progress, "cells", "cell", self._done, self.total or 0, arm=arm, seed=seed, cell=index)
        return probs

    def _reuse(self, key: str) -> np.ndarray | None:
        if key in self.memo:
            return self.memo[key]
        if key in self.job.parts:
            log.info("reusing cell %s %s", key, {k: v for k, v in self.job.parts[key].meta.items() if k != "history"})
            self.memo[key] = self.job.read_part(key).select(prob_columns(self.k)).to_numpy()
            return self.memo[key]
        return None

    def fit(self, key: str, train_set: pl.DataFrame, *, seed: int, about: Mapping[str, object]) -> np.ndarray:
        """Fit one cell, save it as the part `key`, and return its test probabilities."""
        import time

        started = time.perf_counter()
        meta = {"arm": about["arm"], "seed": about["seed"]}  # not the index: it moves when arms are added
        if self.config.backend == "tfidf":
            probs = tfidf.predict_proba(_fit_tfidf(self.config, train_set), self.test["text"].to_list(), self.k)
        else:
            probs, history = self._fine_tune(key, train_set, seed=seed, about=about)
            meta["history"] = history
        self.job.save_part(key, pl.DataFrame(probs, schema=prob_columns(self.k)), meta=meta)
        self._state(key).unlink(missing_ok=True)
        self.ran.append({**about, "seconds": round(time.perf_counter() - started, 3)})
        return probs

    def _state(self, key: str) -> Path:
        return self.job.scratch / f"cell_{key}.pt"

    def _fine_tune(self, key: str, train_set: pl.DataFrame, *, seed: int, about: Mapping[str, object]):
        backend = self.backend
        if self._test_encoded is None:  # tokenized once per process, and only if a cell has to be trained
            self._test_encoded = backend.encode(self.test["text"].to_list())
        encoded = backend.encode(train_set["text"].to_list())
        weights = train_set["weight"].to_numpy() if "weight" in train_set.columns else None
        stage = f"cell {about['cell']}: {about['arm']}, seed {about['seed']}"

        def progress(p) -> None:
            report(self.on_progress, stage, p.unit, p.done, p.total, p.step, **p.detail, **about)

        model, history = backend.fine_tune(
            seed=seed,
            encoded=encoded,
            train_rows=np.arange(len(encoded)),
            train_labels=train_set["label"].to_numpy(),
            weights=weights,
            state=self._state(key),
            on_progress=progress if self.on_progress is not None else None,
        )
        test = self._test_encoded
        probs = transformer.predict_proba(
            model,
            test,
            np.arange(len(test)),
            batch_size=self.config.transformer.eval_batch_size,
            pad_id=backend.pad_id,
            device=backend.device,
            precision=backend.precision,
        )
        return probs, history

    def used(self) -> set[str]:
        return set(self.memo)


def compare_cost(pipeline) -> str | None:
    """What a pipeline's transformers compare will train, for `hardaug run --dry-run`: cells (arms x seeds) x
    epochs x training rows (the original rows; the kept augmentations come on top and are known only once
    the filters ran). None for TF-IDF (seconds per cell)."""
    options = pipeline.parsed["compare"]
    args, transformer = options.config, options.config.transformer
    if args.backend != "transformers":
        return None

    strategies = len(pipeline.strategies) or 1
    arms = (
        1 + 2 * strategies + 2 * len(options.get("budget"))
    )  # baseline, each strategy and its random control, budgets
    if pipeline.cleaning:
        arms += sum(2 if arm in CLEANING_CONTROLS else 1 for arm in (options.get("cleaning") or CLEANING_ARMS))
    cells = arms * len(args.seeds)
    rows = read_table(pipeline.train).height
    return (
        f"{arms} arms x {len(args.seeds)} seeds = {cells} fine-tunes of {transformer.model}, each "
        f"{transformer.epochs} epochs x "
        f">= {rows:,} rows (+ that arm's kept augmentations): >= {cells * transformer.epochs * rows:,} row-epochs on "
        f"{transformer.device}; compare's progress bar gives the time per cell once the first one runs"
    )
