"""Bootstrap speed: every comparison `hardaug compare` makes, old per-resample loop vs the vectorized one.

The setting of the full nsmc4 comparison: 27,500 test rows, 4 classes, arms baseline / targeted / random /
all, 3 seeds each, 1,000 resamples, the comparisons targeted-baseline, targeted-random, random-baseline and
all-baseline. Predictions are generated (about 60% accurate, mistakes mostly to a neighbouring class, as
the TF-IDF model on nsmc4); the bootstrap does not care where they come from.

- old: the loop compare used before: for each comparison and metric, 1,000 resamples, each calling
  sklearn (`f1_score` for macro-F1) on every seed of both arms;
- new: `engine.experiment.compare_pairs`: every arm's accuracy, macro-F1 and per-class F1 on all
  resamples from confusion counts (one matrix product per 100 resamples), then the differences.

Checks that the intervals (difference, 2.5% and 97.5% percentiles, share <= 0) are identical. Only the
bootstrap is timed (perf_counter around the call). The machine is shared: load averages are recorded.

    .venv/bin/python benchmarks/bench_bootstrap.py            # writes benchmarks/results/bootstrap.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from time import perf_counter

import numpy as np
from machine import cpu_name
from sklearn.metrics import f1_score

from engine.cores import usable_cores
from engine.experiment import compare_pairs

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("baseline", "targeted", "random", "all")
PAIRS = (("targeted", "baseline"), ("targeted", "random"), ("random", "baseline"), ("all", "baseline"))


def make_predictions(n: int, k: int, seeds: int, seed: int) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Labels with nsmc4-like class shares and one-hot "probabilities" per arm and seed."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(k, size=n, p=[0.37, 0.13, 0.35, 0.15][:k] if k == 4 else None)
    probs = {}
    for arm in ARMS:
        runs = []
        for _ in range(seeds):
            right = rng.random(n) < 0.6
            neighbour = np.clip(labels + rng.choice([-1, 1], size=n), 0, k - 1)
            pred = np.where(right, labels, neighbour)
            runs.append(np.eye(k)[pred])
        probs[arm] = runs
    return labels, probs


def old_bootstrap(labels, preds_a, preds_b, metric, *, resamples: int, seed: int) -> dict:
    """The per-resample loop of engine.experiment before the vectorized bootstrap (verbatim)."""
    rng = np.random.default_rng(seed)
    n = len(labels)

    def diff(idx: np.ndarray) -> float:
        y = labels[idx]
        return float(np.mean([metric(y, a[idx]) - metric(y, b[idx]) for a, b in zip(preds_a, preds_b, strict=True)]))

    point = diff(np.arange(n))
    samples = np.array([diff(rng.integers(0, n, size=n)) for _ in range(resamples)])
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return {"diff": point, "ci_low": float(lo), "ci_high": float(hi), "p_le_0": float((samples <= 0).mean())}


def run_old(labels, probs, k: int, resamples: int) -> dict:
    preds = {arm: [p.argmax(axis=1) for p in runs] for arm, runs in probs.items()}
    metrics = {
        "accuracy": lambda y, p: float((y == p).mean()),
        "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", labels=list(range(k)), zero_division=0)),
    }
    return {
        f"{a}_vs_{b}": {
            name: old_bootstrap(labels, preds[a], preds[b], fn, resamples=resamples, seed=17)
            for name, fn in metrics.items()
        }
        for a, b in PAIRS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=27_500)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the new path (the old runs once)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bootstrap")
    args = parser.parse_args()

    labels, probs = make_predictions(args.rows, args.classes, args.seeds, seed=0)
    load_before = os.getloadavg()
    new_times = []
    for _ in range(args.repeats):
        started = perf_counter()
        new = compare_pairs(labels, probs, PAIRS, k=args.classes, resamples=args.resamples)
        new_times.append(perf_counter() - started)
    started = perf_counter()
    old = run_old(labels, probs, args.classes, args.resamples)
    old_time = perf_counter() - started
    load_after = os.getloadavg()

    identical = all(new[c][m] == old[c][m] for c in old for m in old[c])
    largest = max(abs(new[c][m][key] - old[c][m][key]) for c in old for m in old[c] for key in old[c][m])
    median = statistics.median(new_times)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu_name(),
            "usable_cores": usable_cores(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
        },
        "versions": {p: metadata.version(p) for p in ("numpy", "scikit-learn")} | {"python": platform.python_version()},
        "setting": {
            "test_rows": args.rows,
            "classes": args.classes,
            "arms": list(ARMS),
            "seeds": args.seeds,
            "resamples": args.resamples,
            "comparisons": [f"{a}_vs_{b}" for a, b in PAIRS],
        },
        "old_seconds": round(old_time, 3),
        "old_metrics": ["accuracy", "macro_f1"],
        "new_seconds": [round(t, 3) for t in new_times],
        "new_median_seconds": round(median, 3),
        "new_metrics": ["accuracy", "macro_f1", "per_class_f1"],
        "speedup_median": round(old_time / median, 1),
        "identical_intervals": identical,
        "largest_abs_difference": largest,
        "goal": "all comparisons of 27,500 test rows x 1,000 resamples in < 2 s, identical intervals",
        "goal_met": bool(median < 2 and identical),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Paired bootstrap of every comparison, {args.rows:,} test rows x {args.classes} classes, {len(ARMS)} arms x "
        f"{args.seeds} seeds, {len(PAIRS)} comparisons, {args.resamples:,} resamples; {result['date']}, "
        f"{result['machine']['usable_cores']} usable cores, load average {result['machine']['load_before']} before / "
        f"{result['machine']['load_after']} after. numpy {result['versions']['numpy']}, scikit-learn "
        f"{result['versions']['scikit-learn']}.",
        "",
        "| path | metrics | runs | seconds (median) | min |",
        "|---|---|---|---|---|",
        f"| old: sklearn per resample | accuracy, macro-F1 | 1 | {old_time:.2f} | {old_time:.2f} |",
        f"| new: confusion counts of all resamples | accuracy, macro-F1, per-class F1 | {args.repeats} | "
        f"{median:.3f} | {min(new_times):.3f} |",
        "",
        f"Speed-up (median): {result['speedup_median']}x. Identical intervals (difference, 95% CI, share <= 0 of "
        f"every comparison): {'yes' if identical else 'no'} (largest difference {largest:.3g}).",
        f"Goal (< 2 s, identical): {'met' if result['goal_met'] else 'not met'}.",
        "",
        "    .venv/bin/python benchmarks/bench_bootstrap.py",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
