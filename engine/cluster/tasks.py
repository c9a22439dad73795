"""Ray tasks, one per unit of work that a stage saves in its own job folder (an oof fold, a compare cell).

The executor knows no stage: the stage hands it a picklable function and the keyword arguments of each call;
each finished task is handed back (`on_done`) as it lands, in the order they finish. The first failure
cancels the rest and stops with one line that says what failed (`describe`); what the tasks saved before
stays saved, so the same command resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.cluster.session import ClusterError, ClusterOptions, connect, preflight, work_in

log = logging.getLogger(__name__)


def _in_driver_folder(fn: Callable[..., Any], folder: str, **kwargs: Any) -> Any:
    logging.basicConfig(level=logging.WARNING)
    work_in(folder)  # the driver's folder: a relative --model as the driver sees it
    return fn(**kwargs)


def run_tasks_on_ray(
    fn: Callable[..., Any],
    calls: Sequence[Mapping[str, Any]],
    *,
    options: ClusterOptions,
    gpu: bool,
    shared: Mapping[str, Any] | None = None,
    at_once: int | None = None,
    what: str,
    describe: Callable[[Mapping[str, Any]], str],
    on_done: Callable[[Mapping[str, Any], Any], None],
) -> None:
    """`fn(**shared, **call)` as one Ray task per call (one GPU each with `gpu`, else a CPU slot), at most
    `at_once` running (None: all at once, as the cluster has room). `shared` values go to the object store
    once (the training set every fold reads); `what`: the tasks' name in the log ("folds", "cells")."""
    preflight(options)
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    at_once = at_once or len(calls)
    with connect(options) as ray:
        task = ray.remote(_in_driver_folder).options(
            **resources, max_retries=options.max_retries, retry_exceptions=False
        )
        refs = {name: ray.put(value) for name, value in (shared or {}).items()}
        queue = list(calls)
        running: dict = {}
        log.info("%d %s as Ray tasks (%s each, %d at once) on %s", len(queue), what, resources, at_once,
                 ray.cluster_resources())  # fmt: skip
        while queue or running:
            while queue and len(running) < at_once:
                call = queue.pop(0)
                running[task.remote(fn, os.getcwd(), **refs, **call)] = call
            (ready,), _ = ray.wait(list(running), num_returns=1)
            call = running.pop(ready)
            try:
                result = ray.get(ready)
            except Exception as exc:
                for ref in running:
                    ray.cancel(ref, force=True)
                cause = getattr(exc, "cause", None) or exc
                raise ClusterError(
                    f"{describe(call)} failed on the Ray cluster: {type(cause).__name__}: {cause}. "
                    f"{what.capitalize()} saved before stay saved: fix the cause and run the same command again."
                ) from None
            on_done(call, result)
