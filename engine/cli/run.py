"""`hardaug run`: the whole workflow from one TOML file, each stage cached by its inputs and options."""

from __future__ import annotations

import argparse
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


def _run_stage(argv: list[str]) -> int:
    # A fresh process per stage: model engines (vLLM, torch) give their memory back when a stage ends.
    return subprocess.call([sys.executable, "-m", "engine.cli", *argv])


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
    """Each stage's seconds (cached ones: the seconds they took when they ran), slowest first."""
    width = max((len(s["stage"]) for s in stages), default=5)
    lines = [f"{'stage':<{width}}  {'seconds':>8}"]
    for s in sorted(stages, key=lambda s: -(s["seconds"] or 0)):
        seconds = "" if s["seconds"] is None else f"{s['seconds']:,.1f}"
        lines.append(f"{s['stage']:<{width}}  {seconds:>8}" + ("  (cached)" if s["cached"] else ""))
    ran = sum(s["seconds"] or 0 for s in stages if not s["cached"])
    lines.append(f"{'ran now':<{width}}  {ran:>8,.1f}")
    return "\n".join(lines)
