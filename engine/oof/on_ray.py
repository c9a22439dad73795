"""OOF folds as Ray tasks: one task per unfinished fold, one GPU each (a CPU slot on CPU), across the cluster.

This is the hand-run recipe (`hardaug oof --only-folds i` per GPU, then once without it) done by Ray
(engine.cluster.tasks, which knows no stage). Each task runs `run_folds` for its fold in the shared oof job
folder (engine.jobs, shared mode: the tasks save their folds into one manifest at once, each touching only
its own fold's checkpoints), where `run_oof` then finds them as if the folds had run here. The driver holds
the job (shared) while the tasks run, so a run that would assemble is refused until they end. Resuming is per
fold as before: a finished fold is never trained again, a fold killed with its task or node is trained again
from the start. The job folder must be on storage every node sees.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.cluster.session import ClusterOptions, preflight
from engine.cluster.tasks import run_tasks_on_ray
from engine.config import OofConfig
from engine.jobs import Job
from engine.oof.kfold import fingerprint, part_name, run_folds
from engine.progress import OnProgress, report


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
        common = {"config": config, "k": k, "class_names": class_names, "parts_dir": str(parts_dir.resolve()),
                  "checkpoint_dir": str(checkpoint_dir.resolve())}  # fmt: skip
        landed = []

        def on_done(call: dict, metrics: dict) -> None:
            landed.append(call["fold"])
            report(on_progress, "folds", "fold", len(landed), len(pending), fold=call["fold"], metrics=metrics)

        run_tasks_on_ray(
            _fold_task,
            [{**common, "fold": fold} for fold in pending],
            options=options,
            gpu=config.backend == "transformers" and config.transformer.device != "cpu",
            shared={"train": train, "test": test},
            what="folds",
            describe=lambda call: f"fold {call['fold']}",
            on_done=on_done,
        )
