"""Compare's cells as Ray tasks: one task per unsaved (arm, seed) cell, one GPU each (a CPU slot on CPU).

The hand-run recipe (`hardaug compare --only-cells i/N` per GPU, then once without it) done by Ray, as
engine.oof.on_ray does for the oof folds (both through engine.cluster.tasks). Each task opens compare's job
folder shared, fits its cell (engine.experiment_cells.Cells.fit: a transformers cell resumes from its last
epoch's state) and saves it as a part; the driver holds the job shared while the tasks run, then
`run_compare` assembles the tables from the saved cells. At most `--replicas` cells run at once (default: as
many as the cluster has room for). The job folder must be on storage every node sees.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from engine.cluster.session import ClusterOptions
from engine.cluster.tasks import run_tasks_on_ray
from engine.config import CompareConfig
from engine.experiment_cells import Cells, check_classifier
from engine.jobs import Job
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)


def _cell_task(
    train_set: pl.DataFrame,
    test: pl.DataFrame,
    *,
    config: CompareConfig,
    k: int,
    class_names: list[str],
    job_dir: str,
    job_key: str,
    key: str,
    about: dict,
) -> dict:
    backend = check_classifier(config, k=k, class_names=class_names, frames={})  # the driver checked the texts
    with Job(Path(job_dir), job_key, shared=True, stale="discard", what="compare job") as job:
        cells = Cells(job, test, k, config, backend)
        if key not in job.parts:
            cells.fit(key, train_set, seed=about["seed"], about=about)
    return cells.ran[0] if cells.ran else {**about, "seconds": 0.0}


def run_cells_on_ray(
    pending: list[tuple[str, pl.DataFrame, dict]],
    test: pl.DataFrame,
    *,
    job: Job,
    config: CompareConfig,
    k: int,
    class_names: list[str],
    options: ClusterOptions,
    on_progress: OnProgress | None = None,
) -> None:
    """Fit every `pending` cell (key, training set, about: arm, seed, cell) as a Ray task into the shared
    job `job`, which the caller holds open. `on_progress` hears of each cell as it lands ("cells", unit
    "cell", detail: arm, seed, cell, seconds)."""
    common = {"config": config, "k": k, "class_names": class_names, "job_dir": str(job.folder.resolve()),
              "job_key": job.key}  # fmt: skip
    landed = []

    def on_done(call: dict, ran: dict) -> None:
        landed.append(call["key"])
        report(on_progress, "cells", "cell", len(landed), len(pending), **ran)

    run_tasks_on_ray(
        _cell_task,
        [{**common, "train_set": train_set, "key": key, "about": about} for key, train_set, about in pending],
        options=options,
        gpu=config.backend == "transformers" and config.transformer.device != "cpu",
        shared={"test": test},
        at_once=options.replicas,
        what="cells",
        describe=lambda call: f"cell {call['about']['cell']} ({call['about']['arm']}, seed {call['about']['seed']})",
        on_done=on_done,
    )
