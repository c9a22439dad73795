"""OOF folds as Ray tasks: one task per unfinished fold, one GPU each (a CPU slot on CPU), across the cluster.

This is the hand-run recipe (`hardaug oof --only-folds i` per GPU, then once without it) done by Ray. Each
task runs `run_folds` for its fold in a work folder of its own (`.parts/.ray_fold_XX`: concurrent folds
must not clean up each other's half-trained checkpoints), then moves the saved fold (sidecar first, then
the part, each an atomic rename) into `.parts`, where `run_oof` finds it as if the fold had run here. So
resuming is per fold as before: a finished fold is never trained again, a fold killed with its task or
node is trained again from the start. The parts folder must be on storage every node sees.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl

from engine.cluster.session import ClusterError, ClusterOptions, connect, preflight
from engine.config import OofConfig
from engine.oof.kfold import run_folds

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
) -> dict:
    logging.basicConfig(level=logging.WARNING)
    parts = Path(parts_dir)
    work = parts / f".ray_fold_{fold:02d}"
    shutil.rmtree(work, ignore_errors=True)  # a task killed before left a half-trained fold: start it over
    (metrics,) = run_folds(
        train, test, config=config, k=k, class_names=class_names, parts_dir=work, folds=[fold],
        checkpoint_dir=Path(checkpoint_dir),
    )  # fmt: skip
    name = f"fold_{fold:02d}"
    if (work / f"{name}.json").exists():
        os.replace(work / f"{name}.json", parts / f"{name}.json")  # a part on disk always has its sidecar
    os.replace(work / f"{name}.parquet", parts / f"{name}.parquet")
    shutil.rmtree(work, ignore_errors=True)
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
    on_fold_done: Callable[[int, dict], None] | None = None,
) -> None:
    """Train every fold not saved in `parts_dir` as a Ray task; `run_oof` with the same arguments then
    assembles them. Checks (and creates) the parts folder first, as `run_folds` does."""
    preflight(options)
    run_folds(train, test, config=config, k=k, class_names=class_names, parts_dir=parts_dir, folds=[])
    pending = [f for f in range(config.n_folds) if not (parts_dir / f"fold_{f:02d}.parquet").exists()]
    if not pending:
        return
    gpu = config.backend == "transformers" and config.transformer.device != "cpu"
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    with connect(options) as ray:
        task = ray.remote(_fold_task).options(**resources, max_retries=options.max_retries, retry_exceptions=False)
        train_ref, test_ref = ray.put(train), ray.put(test)
        common = {"config": config, "k": k, "class_names": class_names, "parts_dir": str(parts_dir.resolve()),
                  "checkpoint_dir": str(checkpoint_dir.resolve())}  # fmt: skip
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
                    f"fold {fold} failed on the Ray cluster: {type(cause).__name__}: {cause}. Folds saved before "
                    "stay saved: fix the cause and run the same command again."
                ) from None
            if on_fold_done is not None:
                on_fold_done(fold, metrics)
