"""`hardaug run`: the whole workflow from one TOML file, each stage cached by its inputs and options."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from engine.cli.common import SAMPLE_DIR

PIPELINES = resources.files("engine") / "data" / "pipelines"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run oof -> mine -> augment -> filter -> compare from one TOML config",
        description=(
            "Run the whole workflow: out-of-fold predictions, mining and the report, a random control sample, "
            "augmentation of the hard and the random samples with every [augment.<method>] of the config, "
            "filtering of both, and the comparison. Each stage runs as its hardaug subcommand (options from "
            "its TOML table: key = value becomes --key value) in OUT/stages/<stage>-<hash>, where the hash "
            "covers its options and the content of its inputs; finished stages are skipped, so changing only "
            "[filter] reruns only filter and compare. OUT/results gathers the report, the filter summaries and the "
            "comparison; OUT/pipeline.json lists every stage with its folder and seconds. Examples: "
            "engine/data/pipelines/cpu.toml and gpu.toml."
        ),
    )
    p.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="pipeline TOML (default: the bundled CPU pipeline on the bundled sample)",
    )
    p.set_defaults(func=run)


# stage folder name -> peak RSS in GiB of the largest process of the stage (its own, or a worker's)
_PEAK_RSS_GIB: dict[str, float] = {}


def _run_stage(argv: list[str]) -> int:
    # A fresh process per stage: model engines (vLLM, torch) give their memory back when a stage ends.
    with subprocess.Popen([sys.executable, "-m", "engine.cli", *argv]) as proc:
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # wait4: the exit status and the child's peak RSS
        except BaseException:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    folder = next((Path(a) for a in argv if "stages" in Path(a).parts[:-1]), None)
    if folder is not None:
        name = folder.parts[folder.parts.index("stages") + 1]
        _PEAK_RSS_GIB[name] = usage.ru_maxrss / 2**20  # Linux reports kilobytes
    return proc.returncode


def run(args: argparse.Namespace) -> int:
    from engine.pipeline import load_config, run_pipeline

    path = args.config or Path(str(PIPELINES / "cpu.toml"))
    config = load_config(path, default_data=Path(str(SAMPLE_DIR)))
    summary = run_pipeline(config, _run_stage)
    print(Path(summary["comparison"]).read_text(encoding="utf-8"))
    print(f"results: {summary['results']} (the report, the filter summaries, the comparison)")
    print(f"report: {summary['report']}")
    print(f"stages: {config.out / 'pipeline.json'}")
    print(_format_stages(summary["stages"]))
    return 0


def _format_stages(stages: list[dict]) -> str:
    """Each stage's seconds (cached ones: the seconds they took when they ran), slowest first, and the peak
    RSS of the largest process of each stage that ran now as a subcommand."""
    width = max((len(s["stage"]) for s in stages), default=5)
    lines = [f"{'stage':<{width}}  {'seconds':>8}  {'peak RSS':>8}"]
    for s in sorted(stages, key=lambda s: -(s["seconds"] or 0)):
        seconds = "" if s["seconds"] is None else f"{s['seconds']:,.1f}"
        peak = _PEAK_RSS_GIB.get(Path(s["folder"]).name)
        rss = "" if s["cached"] or peak is None else f"{peak:.2f} GiB"
        lines.append(f"{s['stage']:<{width}}  {seconds:>8}  {rss:>8}" + ("  (cached)" if s["cached"] else ""))
    ran = sum(s["seconds"] or 0 for s in stages if not s["cached"])
    lines.append(f"{'ran now':<{width}}  {ran:>8,.1f}")
    return "\n".join(lines)
