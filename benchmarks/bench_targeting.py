"""Issue 21 item 7, "the answer, measured": does augmenting the rows a classifier finds hard help more than
augmenting as many random rows, and does weighting by hardness help more than class balancing? Collects the
pipelines of benchmarks/targeting_nsmc4.toml (nsmc4 subsampled to each `[data] sizes` entry, several
subsample seeds) and benchmarks/targeting_sample.toml (the bundled sample) into one table per question:

- every arm against its control and against baseline, macro-F1 and accuracy, with compare's raw 95%
  interval and its Holm-adjusted one (adjusted over every comparison of that run, per metric);
- the kept share of the targeted and the random augmentations under each label policy: the pipelines ran
  `relative` (the default, margin 0.2); this script refilters the same augmented rows with `absolute` and
  `off` (the same fold models, the same other checks), in process, into RUN/policies/ (skipped when there).

    .venv/bin/python benchmarks/bench_targeting.py --run      # run both pipelines first (cached stages skip)
    .venv/bin/python benchmarks/bench_targeting.py            # collect what runs/ holds

Writes benchmarks/results/targeting.{json,md} (--results NAME changes the name). The machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path

from machine import run_record

from engine.cli import main as hardaug

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "nsmc4": ROOT / "benchmarks" / "targeting_nsmc4.toml",
    "sample": ROOT / "benchmarks" / "targeting_sample.toml",
}
OUTS = {"nsmc4": ROOT / "runs" / "targeting_nsmc4", "sample": ROOT / "runs" / "targeting_sample"}
POLICIES = ("absolute", "relative", "off")
METRICS = ("macro_f1", "accuracy")


def pipelines(name: str) -> list[tuple[str, int | None, Path]]:
    """(size, seed, folder) of every finished pipeline of one config: the size folders, or the folder itself."""
    out = OUTS[name]
    found = []
    # a size run with another [data] out (run beside the main one, whose out folder is locked) counts too
    for folder in sorted(out.parent.glob(f"{out.name}*/size-*")):
        parts = folder.name.split("-")  # size-2000-seed-0 or size-all
        size, seed = parts[1], (int(parts[3]) if len(parts) > 3 else None)
        if (folder / "results" / "comparison.json").exists():
            found.append((size, seed, folder))
    if not found and (out / "results" / "comparison.json").exists():
        found.append(("all", None, out))  # the whole training set of the config
    return sorted(found, key=lambda t: (t[0] == "all", int(t[0]) if t[0].isdigit() else 0, t[1] or 0))


def refilter(summary: dict, policy: str, where: Path) -> dict:
    """The filter stage again on the same augmented rows with another label policy (quietly, in process)."""
    out = where / "kept.parquet"
    if not out.with_suffix(".summary.json").exists():
        config = summary["config"]
        argv = ["filter", "--input", summary["input"], "--train", summary["train"], "--no-similarity"]
        argv += ["--label-policy", policy, "--label-model", config["label_model"], "--oof", summary["oof"]]
        argv += ["--label-margin", str(config["label_margin"]), "--out", str(out)]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = hardaug(argv)
        if code != 0:
            raise SystemExit(f"filter --label-policy {policy} failed on {summary['input']} (exit {code})")
    return json.loads(out.with_suffix(".summary.json").read_text(encoding="utf-8"))


def kept_shares(folder: Path) -> list[dict]:
    """One row per (augmented set, policy): rows, kept, share, label_mismatch as first reason."""
    rows = []
    for path in sorted((folder / "results").glob("filter-eda-*.summary.json")):
        name = path.name.removeprefix("filter-eda-").removesuffix(".summary.json")
        summary = json.loads(path.read_text(encoding="utf-8"))
        by_policy = {"relative": summary} if summary["config"]["label_policy"] == "relative" else {}
        for policy in POLICIES:
            if policy not in by_policy:
                by_policy[policy] = refilter(summary, policy, folder / "policies" / policy / name)
        for policy, s in by_policy.items():
            first = s["methods"]["all"]["first_reason"]
            rows.append(
                {
                    "set": name,
                    "targeted": name != "random",
                    "policy": policy,
                    "rows": s["rows"],
                    "kept": s["kept"],
                    "share": s["kept"] / s["rows"] if s["rows"] else None,
                    "label_mismatch": first.get("label_mismatch", 0),
                    "near_copy_of_source": first.get("near_copy_of_source", 0),
                }
            )
    return rows


def comparisons(folder: Path) -> tuple[list[dict], dict]:
    """Every arm's comparison with its control(s) and baseline, raw and Holm-adjusted, from comparison.json."""
    results = json.loads((folder / "results" / "comparison.json").read_text(encoding="utf-8"))
    rows = []
    for key, found in results["comparisons"].items():
        arm, other = key.split("_vs_")
        if results["arms"][arm]["kind"] in ("control", "weights-control"):
            continue  # a control against baseline: shown through its arm's "vs control"
        row = {
            "arm": arm,
            "kind": results["arms"][arm]["kind"],
            "vs": other,
            "added_rows": results["arms"][arm]["added_rows"],
        }
        for metric in METRICS:
            m = found[metric]
            row[metric] = {k: m[k] for k in ("diff", "ci_low", "ci_high", "p", "ci_low_adj", "ci_high_adj", "p_holm")}
        rows.append(row)
    about = {
        "train_rows": results["train_rows"],
        "test_rows": results["test_rows"],
        "seeds": results["seeds"],
        "adjustment": results["adjustment"],
    }
    return rows, about


def stage_seconds(folder: Path) -> float:
    stages = json.loads((folder / "pipeline.json").read_text(encoding="utf-8"))["stages"]
    return round(sum(s.get("seconds") or 0.0 for s in stages), 1)


def interval(m: dict, adjusted: bool) -> str:
    low, high = (m["ci_low_adj"], m["ci_high_adj"]) if adjusted else (m["ci_low"], m["ci_high"])
    mark = "**" if adjusted and (low > 0 or high < 0) else ""
    return f"{mark}{m['diff']:+.4f} [{low:+.4f}, {high:+.4f}]{mark}"


def verdicts(record: dict) -> list[dict]:
    """Per (data, size, arm, vs): the mean gain over subsample seeds and how many seeds' Holm-adjusted
    intervals are above 0 and below 0, for each metric."""
    groups: dict[tuple, list[dict]] = {}
    for run in record["runs"]:
        for r in run["comparisons"]:
            groups.setdefault((run["data"], run["size"], r["arm"], r["vs"]), []).append(r)
    out = []
    for (data, size, arm, vs), rows in groups.items():
        row = {"data": data, "size": size, "arm": arm, "vs": vs, "seeds": len(rows)}
        for metric in METRICS:
            ms = [r[metric] for r in rows]
            row[metric] = {
                "mean_diff": sum(m["diff"] for m in ms) / len(ms),
                "better": sum(m["ci_low_adj"] > 0 for m in ms),
                "worse": sum(m["ci_high_adj"] < 0 for m in ms),
                "better_raw": sum(m["ci_low"] > 0 for m in ms),
                "worse_raw": sum(m["ci_high"] < 0 for m in ms),
            }
        out.append(row)
    return out


def markdown(record: dict) -> str:
    lines = [
        f"# Targeting, measured (issue 21 item 7): {record['date']}",
        "",
        f"`{record['command']}`; {record['machine']['cpu']}, {record['machine']['usable_cpus']} usable CPUs "
        f"(shared), load before {record['load_before']}.",
        "",
    ]
    lines += [
        "## Summary over subsample seeds: mean gain; seeds whose Holm-adjusted (raw) interval is above / below 0",
        "",
        "| data | size | arm | vs | seeds | macro-F1 mean | better adj (raw) | worse adj (raw) | accuracy mean | "
        "better adj (raw) | worse adj (raw) |",
        "|" + "---|" * 11,
    ]
    for v in record["verdicts"]:
        cells = [v["data"], v["size"], v["arm"], v["vs"], str(v["seeds"])]
        for metric in METRICS:
            m = v[metric]
            cells += [
                f"{m['mean_diff']:+.4f}",
                f"{m['better']} ({m['better_raw']})",
                f"{m['worse']} ({m['worse_raw']})",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [
        "## Kept share of the EDA rows by label policy (targeted sets vs the random sample)",
        "",
        "| data | size | seed | policy | weak-classes | misclassified | clean-hard | per-class | random | "
        "targeted / random (mean of the four) |",
        "|" + "---|" * 10,
    ]
    for run in record["runs"]:
        for policy in POLICIES:
            got = {r["set"]: r for r in run["kept"] if r["policy"] == policy}
            cells = []
            for name in ("weak-classes", "misclassified", "clean-hard", "per-class", "random"):
                r = got.get(name)
                cells.append(f"{r['share']:.1%} ({r['kept']}/{r['rows']})" if r and r["rows"] else "-")
            targeted = [got[n]["share"] for n in got if n != "random" and got[n]["share"] is not None]
            ratio = (sum(targeted) / len(targeted)) / got["random"]["share"] if targeted and "random" in got else None
            lines.append(
                f"| {run['data']} | {run['size']} | {run['seed'] if run['seed'] is not None else '-'} | "
                f"{policy} | " + " | ".join(cells) + f" | {'-' if ratio is None else f'{ratio:.2f}'} |"
            )
    lines += [
        "",
        "## Every arm against its control and baseline (diff [95% CI]; Holm-adjusted intervals in bold "
        "where they exclude 0)",
        "",
    ]
    for run in record["runs"]:
        about = run["about"]
        lines += [
            f"### {run['data']}, {about['train_rows']:,} training rows (subsample seed "
            f"{run['seed'] if run['seed'] is not None else '-'}), {about['test_rows']:,} test rows, "
            f"compare seeds {about['seeds']}, Holm over {about['adjustment']['comparisons']} comparisons "
            "per metric",
            "",
            "| arm | vs | added rows | macro-F1 raw | macro-F1 adjusted | p Holm | accuracy raw | "
            "accuracy adjusted | p Holm |",
            "|" + "---|" * 9,
        ]
        for r in run["comparisons"]:
            f1, acc = r["macro_f1"], r["accuracy"]
            lines.append(
                f"| {r['arm']} | {r['vs']} | {r['added_rows']} | {interval(f1, False)} | "
                f"{interval(f1, True)} | {f1['p_holm']:.3f} | {interval(acc, False)} | "
                f"{interval(acc, True)} | {acc['p_holm']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run both pipelines (hardaug run) before collecting")
    parser.add_argument("--results", default="targeting", help="write benchmarks/results/RESULTS.{json,md}")
    args = parser.parse_args()
    os.chdir(ROOT)  # the pipelines' out folders and the paths in their summaries are relative to the root
    record = run_record("scikit-learn", "polars", "numpy")
    if args.run:
        for name, config in CONFIGS.items():
            started = time.perf_counter()
            if hardaug(["run", str(config)]) != 0:
                raise SystemExit(f"hardaug run {config} failed")
            record.setdefault("run_seconds", {})[name] = round(time.perf_counter() - started, 1)
    record["runs"] = []
    for name in CONFIGS:
        for size, seed, folder in pipelines(name):
            rows, about = comparisons(folder)
            record["runs"].append(
                {
                    "data": name,
                    "size": size,
                    "seed": seed,
                    "folder": str(folder.relative_to(ROOT)),
                    "stage_seconds": stage_seconds(folder),
                    "about": about,
                    "kept": kept_shares(folder),
                    "comparisons": rows,
                }
            )
    record["verdicts"] = verdicts(record)
    results = ROOT / "benchmarks" / "results"
    (results / f"{args.results}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (results / f"{args.results}.md").write_text(markdown(record), encoding="utf-8")
    print(f"wrote {results / args.results}.json and .md ({len(record['runs'])} runs)")


if __name__ == "__main__":
    main()
