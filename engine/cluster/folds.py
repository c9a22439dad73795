"""OOF folds as Ray tasks: one task per unfinished fold, one GPU each (a CPU slot on CPU), across the cluster.

This is the hand-run recipe (`hardaug oof --only-folds i` per GPU, then once without it) done by Ray. Each
task runs `run_folds` for its fold in the shared oof job folder (engine.jobs, shared mode: the tasks save
their folds into one manifest at once, each touching only its own fold's checkpoints), where `run_oof` then
finds them as if the folds had run here. The driver holds the job (shared) while the tasks run, so a run that
would assemble is refused until they end. Resuming is per fold as before: a finished fold is never trained
again, a fold killed with its task or node is trained again from the start. The job folder must be on storage
every node sees.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

from engine.cluster.session import ClusterError, ClusterOptions, connect, preflight, work_in
from engine.config import OofConfig
from engine.jobs import Job
from engine.oof.kfold import fingerprint, part_name, run_folds
from engine.progress import OnProgress, report

log = logging.getLogger(__name__)


def _fold_task(
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    class_names: list[str],
    parts_dir: str,
    checkpoint_dir: str,
    fold: int,
    folder: str,
) -> dict:
    logging.basicConfig(level=logging.WARNING)
    work_in(folder)  # the driver's folder: a relative --model as the driver sees it
    (metrics,) = run_folds(
        train, test, config=config, k=k, class_names=class_names, parts_dir=Path(parts_dir), folds=[fold],
        checkpoint_dir=Path(checkpoint_dir),
    )  # fmt: skip
    return metrics


def run_folds_on_ray(
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    class_names: list[str],
    parts_dir: Path,
    checkpoint_dir: Path,
    options: ClusterOptions,
    on_progress: OnProgress | None = None,
) -> None:
    """Train every fold not saved in the job folder `parts_dir` as a Ray task; `run_oof` with the same
    arguments then assembles them. Checks the job first, as `run_folds` does. `on_progress` hears of each
    fold as it lands ("folds", unit "fold", detail: fold, metrics)."""
    preflight(options)
    run_folds(train, test, config=config, k=k, class_names=class_names, parts_dir=parts_dir, folds=[])
    key = fingerprint(config, k, train, test, class_names)
    with Job(parts_dir, key, shared=True, what="oof job") as job:
        pending = [f for f in range(config.n_folds) if part_name(f) not in job.parts]
        if not pending:
            return
        gpu = config.backend == "transformers" and config.transformer.device != "cpu"
        resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
        with connect(options) as ray:
            task = ray.remote(_fold_task).options(**resources, max_retries=options.max_retries, retry_exceptions=False)
            train_ref, test_ref = ray.put(train), ray.put(test)
            common = {"config": config, "k": k, "class_names": class_names, "parts_dir": str(parts_dir.resolve()),
                      "checkpoint_dir": str(checkpoint_dir.resolve()), "folder": os.getcwd()}  # fmt: skip
            running = {task.remote(train_ref, test_ref, fold=fold, **common): fold for fold in pending}
            log.info("%d folds as Ray tasks (%s each) on %s", len(pending), resources, ray.cluster_resources())
            while running:
                (ready,), _ = ray.wait(list(running), num_returns=1)
                fold = running.pop(ready)
                try:
                    metrics = ray.get(ready)
                except Exception as exc:
                    for ref in running:
                        ray.cancel(ref, force=True)
                    cause = getattr(exc, "cause", None) or exc
                    raise ClusterError(
                        f"fold {fold} failed on the Ray cluster: {type(cause).__name__}: {cause}. Folds saved "
                        "before stay saved: fix the cause and run the same command again."
                    ) from None
                report(on_progress, "folds", "fold", len(pending) - len(running), len(pending), fold=fold,
                       metrics=metrics)  # fmt: skip
