"""Which hard samples are worth augmenting, and does cleaning beat augmenting? Every strategy arm in one
experiment, run through the `hardaug` CLI (each step is the command a user would type).

    oof (TF-IDF, 5 folds) -> mine, once per strategy (each a list of mine steps) -> a random control sample
    -> eda (n=4) on every strategy's sources and on the random sample -> filter (cheap checks, near-
    duplicates, the shared TF-IDF label model) -> compare: baseline, every strategy with its own random
    control, a hardness-proportional budget of the notebook's selection, drop-label-issues / relabel /
    reweight

Strategies (`hardaug mine` steps): notebook (the preset), weak-classes, misclassified, clean-hard,
per-class (the per-class preset's chain, then the same quota N/4 from every class). Every strategy keeps at
most as many sources as the notebook's chain, N (`--limit N`), so all arms augment about the same number of
samples and differ in which. `ambiguous` needs training dynamics
(`oof --backend transformers --dynamics`), which the TF-IDF backend has not: it is left out here.

Writes OUT/... (every stage's files) and, with --results NAME, benchmarks/results/NAME.{json,md}: the
strategy table of `compare` and the wall time of each stage. The machine is shared: times are one run.

    .venv/bin/python benchmarks/bench_strategies.py --out runs/strategies --results strategies_sample
    .venv/bin/python benchmarks/bench_strategies.py --train ../shared/data/nsmc4/train.csv \\
        --test ../shared/data/nsmc4/test.csv --folds 10 --out runs/strategies_full --results strategies_nsmc4
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from machine import cpu_name, load_average

from engine.cli import main as hardaug
from engine.cli.common import SAMPLE_DIR
from engine.cores import usable_cores
from engine.filters import label as label_module

ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = "strong neg,weak neg,weak pos,strong pos"
K = 4
PER_CLASS_CHAIN = ["--top-quantile", "0.2", "--min-chars", "10", "--max-confidence", "0.7"]
# Selection steps of each strategy, given N = the notebook chain's count: all keep (at most) N sources.
STRATEGIES = {
    "notebook": lambda n: ["--preset", "notebook"],
    "weak-classes": lambda n: ["--preset", "weak-classes", "--limit", str(n)],
    "misclassified": lambda n: ["--preset", "misclassified", "--limit", str(n)],
    "clean-hard": lambda n: ["--preset", "clean-hard", "--limit", str(n)],
    # the per-class preset's chain with the same quota from every class: N / K per class
    "per-class": lambda n: [*PER_CLASS_CHAIN, "--limit-per-class", str(max(1, n // K))],
}


def run(argv: list[str], times: dict[str, float], stage: str) -> None:
    print(f"\n$ hardaug {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    started = time.perf_counter()
    code = hardaug(argv)
    times[stage] = times.get(stage, 0.0) + time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"stage {stage} failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=Path(str(SAMPLE_DIR / "train.csv")))
    parser.add_argument("--test", type=Path, default=Path(str(SAMPLE_DIR / "test.csv")))
    parser.add_argument("--out", type=Path, default=Path("runs/strategies"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--random-factor", type=float, default=1.5)
    parser.add_argument("--results", default=None, help="write benchmarks/results/RESULTS.{json,md}")
    args = parser.parse_args()
    out, times = args.out, {}
    started = time.perf_counter()

    oof = out / "oof"
    if not (oof / "oof.parquet").exists():
        run(
            [
                "oof",
                "--train",
                str(args.train),
                "--test",
                str(args.test),
                "--folds",
                str(args.folds),
                "--out-dir",
                str(oof),
            ],
            times,
            "oof",
        )

    limit = None
    for name, steps in STRATEGIES.items():
        mine_dir = out / f"mine-{name}"
        argv = ["mine", "--input", str(oof / "oof.parquet"), "--class-names", CLASS_NAMES, *steps(limit)]
        run([*argv, "--out-dir", str(mine_dir), *([] if name == "notebook" else ["--no-report"])], times, "mine")
        if limit is None:  # every other strategy keeps as many sources as the notebook's chain
            limit = pl.scan_parquet(mine_dir / "hard.parquet").select(pl.len()).collect().item()

    scores = pl.read_parquet(out / "mine-notebook" / "scores.parquet")
    largest = max(
        pl.scan_parquet(out / f"mine-{n}" / "hard.parquet").select(pl.len()).collect().item() for n in STRATEGIES
    )
    sources = {name: out / f"mine-{name}" / "hard.parquet" for name in STRATEGIES}
    sources["random"] = out / "random_sources.parquet"
    scores.sample(n=min(scores.height, round(largest * args.random_factor)), seed=13, shuffle=True).select(
        "id", "text", "label", "hardness"
    ).write_parquet(sources["random"])

    # the file type `hardaug filter --save-label-model` writes (.npz arrays where pickles are refused)
    label_model = out / f"label_model{getattr(label_module, 'SAVED_SUFFIX', '.joblib')}"
    kept = {}
    for name, path in sources.items():
        augmented = out / f"eda-{name}.parquet"
        run(["eda", "--input", str(path), "--n", "4", "--out", str(augmented)], times, "eda")
        kept[name] = out / f"kept-{name}.parquet"
        model = (
            ["--label-model", str(label_model)] if label_model.exists() else ["--save-label-model", str(label_model)]
        )
        argv = ["filter", "--input", str(augmented), "--train", str(args.train), "--no-similarity", *model]
        run([*argv, "--out", str(kept[name])], times, "filter")

    compare_dir = out / "compare"
    argv = ["compare", "--train", str(args.train), "--test", str(args.test), "--class-names", CLASS_NAMES]
    argv += [a for name in STRATEGIES for a in ("--strategy", f"{name}={kept[name]}")]
    argv += [
        "--random",
        str(kept["random"]),
        "--budget",
        "notebook",
        "--scores",
        str(out / "mine-notebook" / "scores.parquet"),
    ]
    run([*argv, "--seeds", args.seeds, "--out-dir", str(compare_dir)], times, "compare")
    total = time.perf_counter() - started

    if args.results:
        results = json.loads((compare_dir / "results.json").read_text(encoding="utf-8"))
        record = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": {
                "cpu": cpu_name(),
                "usable_cores": usable_cores(),
            },
            "load_after": load_average(),
            "train": str(args.train),
            "test": str(args.test),
            "sources_per_strategy": limit,
            "stage_seconds": {k: round(v, 1) for k, v in times.items()},
            "total_seconds": round(total, 1),
            "compare": results,
        }
        base = ROOT / "benchmarks" / "results" / args.results
        base.with_suffix(".json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        stage_line = ", ".join(f"{k} {v:.0f} s" for k, v in record["stage_seconds"].items())
        header = (
            f"Strategy arms on {args.train} ({results['train_rows']:,} rows) / {args.test} ({results['test_rows']:,} "
            f"rows), {limit:,} sources per strategy, EDA x4, seeds {args.seeds}; {record['date']}, "
            f"{record['machine']['usable_cores']} cores (shared, load {record['load_after']} after). Time per stage "
            f"(one run): {stage_line}; total {total:.0f} s.\n\n"
            "    .venv/bin/python benchmarks/bench_strategies.py "
            + " ".join(shlex.quote(a) for a in os.sys.argv[1:])
            + "\n\n"
        )
        base.with_suffix(".md").write_text(
            header + (compare_dir / "results.md").read_text(encoding="utf-8"), encoding="utf-8"
        )
        print(f"\nwrote {base.with_suffix('.json')} and {base.with_suffix('.md')}")


if __name__ == "__main__":
    main()
