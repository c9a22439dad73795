"""Running a pipeline's plan: each stage in its cached folder, then the results gathered (engine.pipeline)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import engine
from engine.errors import InputError
from engine.io import write_json, write_text
from engine.jobs import Job, locked, path_digest
from engine.pipeline_load import PipelineConfig
from engine.pipeline_plan import Arg, Output, Stage, empty_output, mine_stages, not_compared, plan
from engine.sizes import run_sizes

log = logging.getLogger(__name__)

STAGE_JOB = ".stage"  # the stage's job folder inside the stage folder (lock, done marker)


class StageFailed(Exception):
    """A stage's command ended with a non-zero exit code; it has already said why."""

    def __init__(self, stage: str, code: int, folder: Path):
        self.stage, self.code, self.folder = stage, code, folder
        super().__init__(
            f"stage {stage} failed (exit code {code}); its partial output is in {folder}. Fix the cause and run "
            "the same command again: finished stages are reused."
        )


def stage_record(folder: Path) -> dict | None:
    """What a finished stage recorded (stage, argv or options, inputs, version, seconds, peak_mb), as its
    done marker holds it; None if it has none. It does not check the outputs (the Runner does)."""
    try:
        return json.loads((folder / STAGE_JOB / "done.json").read_text(encoding="utf-8"))["summary"]
    except (OSError, ValueError, KeyError):
        return None


def stage_outputs(folder: Path) -> list[Path]:
    """The files a stage left in its folder, which its done marker vouches for: the regular files at the top
    (not job folders or temporary files, whose names start with a dot, nor kept checkpoints below)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


@dataclass
class Runner:
    """Runs stages in order, skipping finished ones: commands through `run_command(argv)`, which returns the
    exit code or an object with `code` and `peak_mb`, and tasks in this process. With `dry_run` it runs and
    writes nothing and records in `plan_lines` what it would do."""

    out: Path
    run_command: Callable[[list[str]], Any]
    dry_run: bool = False
    version: str = field(default_factory=lambda: engine.__version__)
    folders: dict[str, Path | None] = field(default_factory=dict)
    log_lines: list[dict] = field(default_factory=list)
    plan_lines: list[dict] = field(default_factory=list)
    _digests: dict[tuple, str] = field(default_factory=dict)

    def path(self, arg: Path | Output) -> Path | None:
        if isinstance(arg, Path):
            return arg
        folder = self.folders.get(arg.stage)
        return None if folder is None else folder / arg.name

    def shown(self, arg: Arg) -> str:
        if isinstance(arg, str):
            return arg
        path = self.path(arg)
        if isinstance(arg, Path):
            return str(path)
        return arg.prefix + str(path if path is not None else self.out / "stages" / f"{arg.stage}-<key>" / arg.name)

    def key(self, stage: Stage, inputs: list[Path]) -> str:
        # Input files by content, not by path: moving the data or OUT keeps the cache.
        argv = [a if isinstance(a, str) else getattr(a, "prefix", "") + "<file>" for a in stage.argv]
        digest = hashlib.sha256(json.dumps([self.version, stage.name, argv, stage.options]).encode())
        for path in inputs:
            stat = path.stat()
            memo = (str(path), stat.st_size, stat.st_mtime_ns)
            if memo not in self._digests:
                self._digests[memo] = path_digest(path)  # a folder too (the oof stage's checkpoints)
            digest.update(self._digests[memo].encode())
        return digest.hexdigest()[:12]

    def command(self, stage: Stage, folder: Path | None) -> list[str]:
        argv = [self.shown(a) for a in stage.argv] + list(stage.where)
        base = folder if folder is not None else self.out / "stages" / f"{stage.name}-<key>"
        for flag, name in stage.outputs:
            argv += [flag, str(base / name) if name else str(base)]
        return argv

    def run(self, stage: Stage) -> Path | None:
        """Run `stage` unless it finished in its folder and its outputs are unchanged; returns the folder (None
        in a dry run when the stage waits for an earlier one)."""
        inputs = [self.path(p) for p in stage.files()]
        if any(p is None or not p.exists() for p in inputs):
            if not self.dry_run:  # an earlier stage's output deleted by hand, its marker left
                missing = [str(p) for p in inputs if p is not None and not p.exists()]
                raise InputError(
                    f"stage {stage.name}: its input {missing} is missing; delete the folder of the stage that made "
                    "it, and run again to make it anew."
                )
            self.folders[stage.name] = None
            self._plan(stage, None, "waits")
            return None
        key = self.key(stage, inputs)
        folder = self.out / "stages" / f"{stage.name}-{key}"
        self.folders[stage.name] = folder
        job = Job(folder / STAGE_JOB, key, what=f"stage {stage.name}")
        if self.dry_run:  # a look at the done marker, without the lock: nothing is written
            self._plan(stage, folder, "cached" if job.finished() is not None else "runs")
            return folder
        with job:
            done = job.finished()
            if done is not None:
                log.info("stage %s: cached (%s)", stage.name, folder)
                self._plan(stage, folder, "cached")
                # The cost when it ran, so pipeline.json always gives the cost of every stage.
                self._record(stage, folder, True, done.get("seconds"), done.get("peak_mb"))
                return folder
            self._plan(stage, folder, "runs")
            started = time.perf_counter()
            peak = None
            if stage.task is None:
                command = self.command(stage, folder)
                log.info("stage %s: hardaug %s", stage.name, shlex.join(command))
                result = self.run_command(command)
                code, peak = (result, None) if isinstance(result, int) else (result.code, result.peak_mb)
                if code != 0:
                    raise StageFailed(stage.name, code, folder)
                extra: dict = {"argv": command}
            else:
                log.info("stage %s: %s", stage.name, stage.about)
                stage.task(folder, inputs)
                extra = {"options": stage.options}
            seconds = round(time.perf_counter() - started, 1)
            done = {"stage": stage.name, **extra, "inputs": [str(p) for p in inputs], "version": self.version}
            job.outputs = stage_outputs(folder)
            job.finish({**done, "seconds": seconds, "peak_mb": peak})
        self._record(stage, folder, False, seconds, peak)
        return folder

    def _record(self, stage: Stage, folder: Path, cached: bool, seconds: Any, peak: Any) -> None:
        line = {"stage": stage.name, "folder": str(folder), "cached": cached, "seconds": seconds, "peak_mb": peak}
        self.log_lines.append(line)

    def _plan(self, stage: Stage, folder: Path | None, status: str) -> None:
        if stage.task is None:
            what = "hardaug " + shlex.join(self.command(stage, folder))
        else:
            what = f"in-process: {stage.about}"
        where = str(folder) if folder is not None else str(self.out / "stages" / f"{stage.name}-<key>")
        self.plan_lines.append({"stage": stage.name, "status": status, "folder": where, "command": what})


def run_pipeline(config: PipelineConfig, run_command: Callable[[list[str]], Any], *, dry_run: bool = False) -> dict:
    """Run every stage of `plan(config)`; returns where each result is. With `dry_run`, runs and writes
    nothing and returns {"plan": [...]}: each stage, whether it is cached, runs, or waits for an earlier
    stage's output to know its key, and its command."""
    if config.sizes:
        return run_sizes(config, run_command, dry_run=dry_run)
    runner = Runner(config.out, run_command, dry_run=dry_run)
    if dry_run:
        for stage in plan(config):
            runner.run(stage)
        return {"plan": runner.plan_lines}
    with locked(config.out / ".run", config.out):  # two runs into one OUT: the second is refused
        emptied = run_stages(config, runner)
        return _finish(config, runner, plan(config, emptied), emptied)


def run_stages(config: PipelineConfig, runner: Runner) -> set[str]:
    """Run the plan stage by stage; a stage whose output has no rows takes what would read it out of the
    plan (an empty selection stops its strategy, not the run). Returns the stages that emptied something."""
    emptied: set[str] = set()
    ran: set[str] = set()
    while (stage := next((s for s in plan(config, emptied) if s.name not in ran), None)) is not None:
        folder = runner.run(stage)
        ran.add(stage.name)
        if folder is not None and empty_output(stage, folder):
            log.warning("stage %s: no rows; what would read its output is left out", stage.name)
            emptied.add(stage.name)
    return emptied


def _finish(config: PipelineConfig, runner: Runner, stages: list[Stage], emptied: Collection[str] = ()) -> dict:

    folders = {name: folder for name, folder in runner.folders.items() if folder is not None}
    filters = [s.name for s in stages if s.table == "filter" and s.task is None]
    mines = {name: mine for name, _, mine, _ in mine_stages(config)}
    first = next(iter(mines.values()))
    results = collect_results(config.out / "results", folders, filters, mines=list(mines.values()))
    skipped = not_compared(config, emptied)
    if skipped:
        write_not_compared(results["comparison.md"], results["comparison.json"], skipped)
    kept = {
        arm: [
            str(folders[f"filter-{method}-{arm}"] / "kept.parquet")
            for method in config.augmenters
            if f"filter-{method}-{arm}" in folders
        ]
        for arm in [*mines, "random"]
    }
    summary = {
        "config": str(config.path),
        "version": runner.version,
        "results": str(config.out / "results"),
        "report": str(results["report.html"]),
        "hard": str(folders[first] / "hard.parquet"),
        # every strategy's selection (the one of [mine] select is "targeted")
        "strategies": {name: str(folders[mine] / "hard.parquet") for name, mine in mines.items()},
        "kept": kept,
        "rejected": {f: str(folders[f] / "rejected.parquet") for f in filters},
        "comparison": str(results["comparison.md"]),
        # strategies with no kept rows: not compared, and the stages that emptied them
        "not_compared": skipped,
        "stages": runner.log_lines,
    }
    write_json(summary, config.out / "pipeline.json")
    return summary


def collect_results(
    folder: Path, folders: Mapping[str, Path], filters: Sequence[str], mines: Sequence[str] = ("mine",)
) -> dict[str, Path]:
    """Gather what people read into one folder: the miner's report (of the first mine stage), every
    strategy's mine summary, every filter summary and rejected rows, the comparison. Copies of the small
    files; hard links to the Parquet files where the file system allows (the rejected rows can be large; a
    link is a real file, so the folder stays readable when zipped or moved)."""
    compared = folders.get("compare", folder / ".none")  # no compare stage when no arm had rows
    wanted = {
        "report.html": folders[mines[0]] / "report.html",
        "mine_summary.json": folders[mines[0]] / "summary.json",
        "comparison.md": compared / "results.md",
        "comparison.json": compared / "results.json",
        "comparison.svg": compared / "results.svg",
    }
    for stage in mines if len(mines) > 1 else ():  # mine-<strategy>
        wanted[f"{stage}.summary.json"] = folders[stage] / "summary.json"
    for stage in filters:  # filter-<method>-<arm>
        wanted[f"{stage}.summary.json"] = folders[stage] / "kept.summary.json"
        wanted[f"{stage}.rejected.parquet"] = folders[stage] / "rejected.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in wanted.items():
        target = folder / name
        if not source.exists():
            target.unlink(missing_ok=True)  # a comparison of an earlier run into OUT is not this run's
            continue
        target.unlink(missing_ok=True)
        try:
            if name.endswith(".parquet"):
                os.link(source, target)
                continue
        except OSError:  # another file system, or links not allowed
            pass
        shutil.copyfile(source, target)
    return {name: folder / name for name in wanted}


def write_not_compared(md: Path, js: Path, skipped: Mapping[str, list[str]]) -> None:
    """Add the strategies that kept no rows to the gathered comparison (.md and .json): each is a row
    "0 kept, not compared" naming the stages that emptied it."""
    lines = ["", "| strategy | kept | emptied by |", "|---|---|---|"]
    lines += [f"| {arm} | 0 kept, not compared | {', '.join(stages)} |" for arm, stages in skipped.items()]
    text = md.read_text(encoding="utf-8") if md.exists() else "No arm had rows to compare.\n"
    write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n", md)
    results = json.loads(js.read_text(encoding="utf-8")) if js.exists() else {}
    results["not_compared"] = {arm: {"kept": 0, "emptied_by": stages} for arm, stages in skipped.items()}
    write_json(results, js)
