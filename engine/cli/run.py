"""`hardaug run`: the whole workflow from one TOML file, each stage cached by its inputs and options."""

from __future__ import annotations

import argparse
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
            "filtering of both, and the comparison. The whole config is checked before any work: each table's "
            "keys are options of its hardaug subcommand (key = value becomes --key value, true --key, false "
            "--no-key, a list a repeated or comma-separated option), unknown keys and bad values are refused "
            "with the table and key named, and [data] files are relative to the config file. Each stage runs as "
            "its hardaug subcommand in a process that dies with this one, in OUT/stages/<stage>-<key>, where the "
            "key covers its options, the content of its inputs and the hardaug version; finished stages are "
            "skipped, so changing only [filter] reruns only filter and compare. OUT/results gathers the report, "
            "the filter summaries and rejected rows, and the comparison; OUT/pipeline.json lists every stage "
            "with its folder, seconds and peak memory. A [strategies] table (name = 'hardaug mine selection steps') "
            "runs several selections in one experiment, each augmented, filtered and compared with its own random "
            "control; [compare] cleaning = true adds the arms that add no text. Examples: "
            "engine/data/pipelines/cpu.toml, strategies.toml and gpu.toml."
        ),
    )
    p.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="pipeline TOML (default: the bundled CPU pipeline on the bundled sample)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the config and print the plan (every stage, cached or not, and the command it runs); "
        "run and write nothing",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="change one key of the config for this run, as if the file said it (repeatable): e.g. --set "
        "oof.folds=3 --set compare.seeds=[0] --set data.train=my.csv (a [data] file given here is relative to "
        "the current folder); the value is read as TOML, a bare word as a string",
    )
    p.set_defaults(func=run)


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each hardaug subcommand's own parser (the tests check engine.pipeline_options' tables against them)."""
    from engine.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def run(args: argparse.Namespace) -> int:
    from engine.experiment_cells import compare_cost
    from engine.pipeline import StageFailed, load_config, run_pipeline
    from engine.stage_process import run_stage

    path = args.config or Path(str(PIPELINES / "cpu.toml"))
    config = load_config(path, default_data=Path(str(SAMPLE_DIR)), overrides=args.overrides)
    if args.dry_run:
        plan = run_pipeline(config, run_stage, dry_run=True)["plan"]
        print(f"plan of {path} (output: {config.out}); nothing is run or written:")
        for line in plan:
            print(f"\n{line['stage']}: {line['status']} ({line['folder']})\n  {line['command']}")
            if line["stage"] == "compare" and (cost := compare_cost(config)):
                print(f"  cost: {cost}")
        print("\n'waits': its key depends on an earlier stage's output, which is made first.")
        return 0
    try:
        summary = run_pipeline(config, run_stage)
    except StageFailed as exc:  # the stage has printed its own message
        print(f"hardaug run: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # the running stage was killed with its processes (engine.stage_process)
        print("\nhardaug run: interrupted; the same command resumes: finished stages are reused.", file=sys.stderr)
        return 130
    if "by_size" in summary:  # [data] sizes: one pipeline per size, each printed as it ran
        print(Path(summary["by_size"]["md"]).read_text(encoding="utf-8"))
        print(f"by size: {', '.join(summary['by_size'].values())}")
        print(f"runs: {config.out / 'pipeline.json'}")
        return 0
    compare = next((s for s in summary["stages"] if s["stage"] == "compare"), None)
    if compare is None or compare["cached"]:  # a compare stage that ran has printed the table itself
        print(Path(summary["comparison"]).read_text(encoding="utf-8"))
    else:  # the gathered comparison has them already
        for arm, stages in summary["not_compared"].items():
            print(f"{arm}: 0 kept, not compared (emptied by {', '.join(stages)})")
    print(_costs(summary["stages"]))
    print(f"results: {summary['results']} (the report, the filter summaries and rejected rows, the comparison)")
    print(f"report: {summary['report']}")
    print(f"stages: {config.out / 'pipeline.json'}")
    return 0


def _costs(stages: list[dict]) -> str:
    """Each stage's wall time and peak memory (of its largest process; in-process tasks: not measured)."""
    lines = [f"{'stage':<28} {'':<7} {'seconds':>8} {'peak MiB':>9}"]
    for s in stages:
        peak = f"{s['peak_mb']:,.0f}" if s.get("peak_mb") is not None else "-"
        seconds = f"{s['seconds']:,.1f}" if s.get("seconds") is not None else "-"
        lines.append(f"{s['stage']:<28} {'cached' if s['cached'] else 'ran':<7} {seconds:>8} {peak:>9}")
    return "\n".join(lines)
