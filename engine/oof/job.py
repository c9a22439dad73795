"""One oof job into one output folder: what `hardaug oof` does after parsing, for library callers too.

`run_oof_job` answers "up to date" when this very job finished there and its files are still what it wrote
(the done marker of `OUT_DIR/.job` holds their digests); otherwise it runs the folds (reusing every saved
one), writes oof.parquet, test_probs.parquet, test_fold_probs.parquet, label_map.json and metrics.json, and
marks the job done last. The marker is removed before the first of those files is written, so a run killed
in its final writes (job B into the folder of a finished job A) never leaves A's marker vouching for B's
files: A again finds B's saved folds and is refused (`--restart` recomputes it).

    OUT_DIR/.job/            the job folder (engine.jobs): lock, manifest.json, parts/fold_XX.parquet,
                             scratch/ (n-gram counts, a checkpoint while a fold trains), done.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine.config import OofConfig
from engine.errors import InputError
from engine.io import write_json, write_parquet
from engine.jobs import Job
from engine.oof.kfold import OofResult, assemble, check_job, fingerprint, run_folds, run_in_job
from engine.oof.on_ray import run_folds_on_ray
from engine.progress import OnProgress

JOB = ".job"
# every file a finished job leaves (the test files only with test data); metrics.json is written last
OUTPUTS = ("oof.parquet", "test_probs.parquet", "test_fold_probs.parquet", "label_map.json", "metrics.json")


@dataclass(frozen=True)
class OofRun:
    """What `run_oof_job` did: `metrics` as in metrics.json (for `only_folds`: {"folds": [their metrics]});
    `up_to_date`: the folder already held this job's finished files; `complete`: the final files exist (False
    after `only_folds`); `result`: the frames when they were computed in this call."""

    out_dir: Path
    metrics: dict
    up_to_date: bool = False
    complete: bool = True
    result: OofResult | None = None


def output_paths(out_dir: Path, *, with_test: bool) -> list[Path]:
    return [out_dir / name for name in OUTPUTS if with_test or not name.startswith("test_")]


def run_oof_job(
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    config: OofConfig,
    k: int,
    class_names: list[str],
    out_dir: Path,
    restart: bool = False,
    only_folds: Sequence[int] | None = None,
    processes: int = 1,
    ray: Any = None,
    on_progress: OnProgress | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
) -> OofRun:
    """Run the oof job of `train` (and `test`) into `out_dir` (see the module docstring). `only_folds`: run
    and save only these folds, in a job shared with other processes on other folds, and stop. `ray`
    (engine.cluster.session.ClusterOptions): every unsaved fold as a Ray task, then assemble here.
    `extra_metrics` are recorded in metrics.json after "seconds" (the CLI records the training file)."""
    if only_folds is not None and restart:
        raise InputError("--only-folds cannot be combined with --restart (it would delete the other processes' folds)")
    if only_folds is not None and ray is not None:
        raise InputError("--only-folds and --ray exclude each other: with --ray, Ray spreads the folds")
    key = fingerprint(config, k, train, test, class_names)
    folder = out_dir / JOB
    outputs = output_paths(out_dir, with_test=test is not None)
    if not restart and Job(folder, key, outputs=outputs).finished() is not None:
        return OofRun(out_dir, json.loads((out_dir / "metrics.json").read_text(encoding="utf-8")), up_to_date=True)
    common = {"config": config, "k": k, "class_names": class_names, "parts_dir": folder}
    checkpoints = out_dir / "checkpoints"
    if only_folds is not None:
        saved = run_folds(
            train, test, folds=only_folds, on_progress=on_progress, checkpoint_dir=checkpoints, processes=processes,
            **common,
        )  # fmt: skip
        return OofRun(out_dir, {"folds": saved}, complete=False)

    started = time.perf_counter()
    if ray is not None:  # every fold a Ray task (one GPU each with --device cuda); assembled below
        if restart:  # Ray's tasks share the job, which cannot restart: discard the old parts first
            check_job(train, test, config=config, k=k, class_names=class_names)
            with Job(folder, key, restart=True, outputs=outputs, what="oof job"):
                pass
            restart = False
        run_folds_on_ray(train, test, options=ray, checkpoint_dir=checkpoints, on_progress=on_progress, **common)
        on_progress = None  # the folds were reported as they landed; assembling reuses them all
    backend = check_job(train, test, config=config, k=k, class_names=class_names)
    with Job(folder, key, restart=restart, outputs=outputs, what="oof job") as job:
        if job.finished() is not None:  # another run finished it while this one loaded
            return OofRun(out_dir, json.loads((out_dir / "metrics.json").read_text(encoding="utf-8")), up_to_date=True)
        parts = run_in_job(
            job, backend, train, test, config=config, k=k, folds_to_run=None, on_progress=on_progress,
            checkpoint_dir=checkpoints, processes=processes,
        )  # fmt: skip
        result = assemble(train, test, parts, k, key, config)
        metrics = result.metrics
        metrics["seconds"] = round(time.perf_counter() - started, 2)
        metrics.update(extra_metrics or {})
        metrics["classes"] = class_names
        write_outputs(result, out_dir, class_names)
        job.finish({"rows": result.oof.height, "oof": metrics["oof"]})
    return OofRun(out_dir, metrics, result=result)


def write_outputs(result: OofResult, out_dir: Path, class_names: list[str]) -> None:
    """The final files, metrics.json last (the job's done marker follows it)."""
    write_parquet(result.oof, out_dir / "oof.parquet", classes=class_names)
    if result.test is not None:
        write_parquet(result.test, out_dir / "test_probs.parquet", classes=class_names)
        write_parquet(result.test_folds, out_dir / "test_fold_probs.parquet", classes=class_names)
    write_json({"classes": class_names}, out_dir / "label_map.json")
    write_json(result.metrics, out_dir / "metrics.json")
