"""Compare's cells as Ray tasks: one task per unsaved (arm, seed) cell, one GPU each (a CPU slot on CPU).

The hand-run recipe (`hardaug compare --only-cells i/N` per GPU, then once without it) done by Ray, as
engine.cluster.folds does for the oof folds. Each task opens compare's job folder shared, fits its cell
(engine.experiment_cells.Cells.fit: a transformers cell resumes from its last epoch's state) and saves it as
a part; the driver holds the job shared while the tasks run, then `run_compare` assembles the tables from the
saved cells. At most `--replicas` cells run at once (default: as many as the cluster has room for). The job
folder must be on storage every node sees.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

from engine.cluster.session import ClusterError, ClusterOptions, connect, preflight, work_in
from engine.config import CompareConfig
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
    folder: str,
) -> dict:
    from engine.experiment_cells import Cells, check_classifier

    logging.basicConfig(level=logging.WARNING)
    work_in(folder)  # the driver's folder: a relative --model as the driver sees it
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
    preflight(options)
    gpu = config.backend == "transformers" and config.transformer.device != "cpu"
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    at_once = options.replicas or len(pending)
    with connect(options) as ray:
        task = ray.remote(_cell_task).options(**resources, max_retries=options.max_retries, retry_exceptions=False)
        test_ref = ray.put(test)
        common = {"config": config, "k": k, "class_names": class_names, "job_dir": str(job.folder.resolve()),
                  "job_key": job.key, "folder": os.getcwd()}  # fmt: skip
        queue = list(pending)
        running: dict = {}
        done = 0
        log.info("%d cells as Ray tasks (%s each, %d at once) on %s", len(queue), resources, at_once,
                 ray.cluster_resources())  # fmt: skip
        while queue or running:
            while queue and len(running) < at_once:
                key, train_set, about = queue.pop(0)
                running[task.remote(ray.put(train_set), test_ref, key=key, about=about, **common)] = about
            (ready,), _ = ray.wait(list(running), num_returns=1)
            about = running.pop(ready)
            try:
                ran = ray.get(ready)
            except Exception as exc:
                for ref in running:
                    ray.cancel(ref, force=True)
                cause = getattr(exc, "cause", None) or exc
                raise ClusterError(
                    f"cell {about['cell']} ({about['arm']}, seed {about['seed']}) failed on the Ray cluster: "
                    f"{type(cause).__name__}: {cause}. Cells saved before stay saved: fix the cause and run the "
                    "same command again."
                ) from None
            done += 1
            report(on_progress, "cells", "cell", done, len(pending), **ran)
