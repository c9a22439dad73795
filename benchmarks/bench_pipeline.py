"""The whole CPU pipeline on nsmc4, stage by stage: today's settings vs the new defaults.

Runs `hardaug run` from an empty output folder (the oof stage included) on a TOML made from
benchmarks/pipeline_nsmc4.toml: 10-fold TF-IDF OOF -> mine (notebook preset, with the report) -> label
model -> EDA x4 on the hard and the random samples -> filters -> compare (3 seeds). Reported per setting:
each stage's seconds (from pipeline.json), the wall time and peak RSS of the whole run (the largest
process of the tree, from wait4), OOF and test accuracy, the selection size and the comparison table.

Settings (`--settings`):
- `new`: the code's defaults (shared n-gram counts, folds in one process per usable core, the default
  solver and tolerance);
- `today`: the oof stage as it ran before (`--solver lbfgs --tol 0.0001 --processes 1`). The label model
  and compare train TfidfConfig's defaults in both settings (they have no solver options), so on the full
  set the README's old numbers are the reference for those stages: `--quote-readme` adds them (measured on
  2026-11-30 with lbfgs, tol 1e-4, per-fold vectorizers, one process).

The full run takes minutes to tens of minutes per setting on 2 cores; run it on a quiet machine:

    .venv/bin/python benchmarks/bench_pipeline.py --settings today new --quote-readme     # full nsmc4
    .venv/bin/python benchmarks/bench_pipeline.py --rows 6000 --test-rows 1500 --name pipeline_small  # proof
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from machine import data_file, describe, load_average, versions

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = {
    "today": {"solver": "lbfgs", "tol": 0.0001, "processes": 1},
    "new": {},
}
# benchmarks/pipeline_nsmc4.toml's stages (and README "The experiment on the full nsmc4"), measured before
# this benchmark existed: 2 shared cores, the other busy; lbfgs tol 1e-4, one process, per-fold vectorizers.
README_TODAY = {
    "source": "README.md, 'The experiment on the full nsmc4' (runs/ logs of 2026-11-30)",
    "stages_s": {
        "oof": 1451,
        "mine": 70,
        "label-model": 142,
        "eda-targeted": 10,
        "filter-eda-targeted": 18,
        "eda-random": 11,
        "filter-eda-random": 20,
        "compare": 841,
    },
    "oof_accuracy": 0.598,
    "test_accuracy": 0.602,
    "selected": 5679,
    "comparison": (
        "| arm | added rows | accuracy | macro-F1 |\n|---|---|---|---|\n| baseline | 0 | 0.5993 | 0.5668 |\n"
        "| targeted | 466 | 0.6007 | 0.5682 |\n| random (mean of 3 seeds) | 466 | 0.6003 | 0.5678 |\n\n"
        "targeted vs random: +0.0004, 95% CI [-0.0007, +0.0015]"
    ),
}


def subset(train: Path, test: Path, rows: int, test_rows: int, folder: Path, seed: int) -> tuple[Path, Path]:
    """A stratified sample of the training and test files (same class shares), or the files themselves."""
    if not rows:
        return train, test
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source, n in ((train, rows), (test, test_rows)):
        frame = pl.read_csv(source, infer_schema_length=None)
        share = min(n / frame.height, 1.0)
        sample = frame.filter(pl.int_range(pl.len()).shuffle(seed=seed).over("label") < pl.len().over("label") * share)
        target = folder / source.name
        sample.write_csv(target)
        out.append(target)
    return out[0], out[1]


def write_toml(path: Path, train: Path, test: Path, out: Path, oof: dict) -> None:
    def value(v) -> str:
        return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else repr(v)

    lines = [
        "[data]",
        f"train = {json.dumps(str(train))}",
        f"test = {json.dumps(str(test))}",
        f"out = {json.dumps(str(out))}",
        "",
        "[oof]",
        *(f"{k} = {value(v)}" for k, v in oof.items()),
        "",
        "[mine]",
        'class-names = "strong neg,weak neg,weak pos,strong pos"',
        'select = "--preset notebook"',
        "",
        "[random]",
        "factor = 1.5",
        "seed = 13",
        "",
        "[augment.eda]",
        "n = 4",
        "",
        "[filter]",
        "no-similarity = true",
        "",
        "[compare]",
        'seeds = "0,1,2"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_setting(name: str, train: Path, test: Path, work: Path) -> dict:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)  # from an empty output folder: nothing cached
    out.mkdir(parents=True)
    toml = work / f"{name}.toml"
    write_toml(toml, train, test, out, SETTINGS[name])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = load_average()
    started = time.perf_counter()
    with (out.parent / f"{name}.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(toml)], stdout=log, stderr=log, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    result: dict = {
        "setting": name,
        "oof_options": SETTINGS[name],
        "exit_code": code,
        "wall_s": round(wall, 1),
        # wait4: the run and every process it waited for; ru_maxrss is the largest single process
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "load_before": load_before,
        "load_after": load_average(),
        "log": str(out.parent / f"{name}.log"),
    }
    if code != 0:
        return result
    pipeline = json.loads((out / "pipeline.json").read_text(encoding="utf-8"))
    result["stages_s"] = {s["stage"]: s["seconds"] for s in pipeline["stages"]}
    oof_metrics = next((out / "stages").glob("oof-*/metrics.json"))
    metrics = json.loads(oof_metrics.read_text(encoding="utf-8"))
    result["oof_accuracy"] = round(metrics["oof"]["accuracy"], 4)
    result["oof_macro_f1"] = round(metrics["oof"]["macro_f1"], 4)
    result["test_accuracy"] = round(metrics["test"]["accuracy"], 4) if "test" in metrics else None
    summary = json.loads((out / "results" / "mine_summary.json").read_text(encoding="utf-8"))
    result["selected"] = summary["counts"]["selected"]
    result["comparison"] = (out / "results" / "comparison.md").read_text(encoding="utf-8").strip()
    return result


def shared_model_check(train: Path) -> dict:
    """Is the filters' label model the model compare trains for its baseline arm? Both are fitted here the way
    their stages fit them (the label-model stage: `LabelModel.train_tfidf` on `filters.load_dataset`; compare:
    `fit_model` on `arm_training_sets(...)["baseline"]` of the validated training set), with CPU seconds."""
    import numpy as np

    from engine.config import TfidfConfig
    from engine.experiment import CompareConfig, arm_training_sets
    from engine.filters import load_dataset
    from engine.filters.label import LabelModel
    from engine.io import read_table
    from engine.tfidf import fit_model
    from engine.validate import prepare_dataset

    out: dict = {"train": str(train)}
    frame, names = load_dataset(train)
    start, cpu = time.perf_counter(), time.process_time()
    label_model = LabelModel.train_tfidf(frame["text"].to_list(), frame["label"].to_numpy(), len(names), TfidfConfig())
    out["label_model_s"] = round(time.perf_counter() - start, 1)
    out["label_model_cpu_s"] = round(time.process_time() - cpu, 1)

    validated, _ = prepare_dataset(read_table(train), source=str(train))
    empty = validated.head(0).select("text", "label")
    baseline = arm_training_sets(validated, targeted=empty, random_pool=None, all_pool=None, seed=0)["baseline"]
    config = CompareConfig()
    start, cpu = time.perf_counter(), time.process_time()
    model = fit_model(config.tfidf, baseline["text"].to_list(), baseline["label"].to_numpy())
    out["baseline_s"] = round(time.perf_counter() - start, 1)
    out["baseline_cpu_s"] = round(time.process_time() - cpu, 1)

    a, b = label_model.model[-1], model[-1]
    out["same_config"] = asdict_or_none(config.tfidf) == asdict_or_none(TfidfConfig())
    out["same_rows"] = frame["text"].to_list() == baseline["text"].to_list() and bool(
        (frame["label"].to_numpy() == baseline["label"].to_numpy()).all()
    )
    out["same_vocabulary"] = label_model.model[0].vocabulary_ == model[0].vocabulary_
    out["identical_coefficients"] = bool(
        np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)
    )
    out["load"] = load_average()
    return out


def asdict_or_none(config) -> dict | None:
    from dataclasses import asdict

    return asdict(config) if config is not None else None


def markdown(r: dict) -> str:
    runs = {x["setting"]: x for x in r["runs"]}
    columns = [*runs]
    if r.get("readme_today"):
        columns = ["README (today, full nsmc4)", *columns]
        runs["README (today, full nsmc4)"] = {
            "stages_s": r["readme_today"]["stages_s"],
            "oof_accuracy": r["readme_today"]["oof_accuracy"],
            "test_accuracy": r["readme_today"]["test_accuracy"],
            "selected": r["readme_today"]["selected"],
            "comparison": r["readme_today"]["comparison"],
        }
    stages = list(dict.fromkeys(s for x in runs.values() for s in x.get("stages_s", {})))
    data = r["data"]
    lines = [
        f"The CPU pipeline (benchmarks/pipeline_nsmc4.toml's stages, the oof stage included, from an empty output "
        f"folder), {r['date']}: {data['train_rows']:,} training and {data['test_rows']:,} test rows"
        f"{' (a stratified subset)' if data['subset'] else ' (all of nsmc4)'}; {r['machine']['cpu']}, "
        f"{r['machine']['usable_cpus']} usable cores. A shared machine: re-measure on a quiet one before quoting.",
        "",
        "| stage | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for stage in stages:
        cells = [_num(runs[c].get("stages_s", {}).get(stage)) for c in columns]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    total = [_num(sum(v for v in runs[c].get("stages_s", {}).values() if v is not None)) for c in columns]
    lines.append("| **sum of stages** | " + " | ".join(total) + " |")
    lines.append("| wall of `hardaug run` | " + " | ".join(_num(runs[c].get("wall_s")) for c in columns) + " |")
    lines.append("| peak RSS (GiB) | " + " | ".join(str(runs[c].get("peak_rss_gib", "")) for c in columns) + " |")
    for key, label in (("oof_accuracy", "OOF accuracy"), ("test_accuracy", "test accuracy"), ("selected", "selected")):
        lines.append(f"| {label} | " + " | ".join(str(runs[c].get(key, "")) for c in columns) + " |")
    lines += ["", "Load average per run: " + "; ".join(f"{x['setting']} {x['load_before']}" for x in r["runs"]), ""]
    for c in columns:
        lines += [f"**Comparison, {c}:**", "", runs[c].get("comparison", "(failed: see the log)"), ""]
    shared = r.get("shared_model")
    if shared:
        lines += [
            f"**Label model vs compare's baseline arm** ({shared['train']}): the label model took "
            f"{shared['label_model_s']} s wall / {shared['label_model_cpu_s']} s CPU, the baseline "
            f"{shared['baseline_s']} s / {shared['baseline_cpu_s']} s; same options {shared['same_config']}, same "
            f"rows in the same order {shared['same_rows']}, same vocabulary {shared['same_vocabulary']}, identical "
            f"coefficients {shared['identical_coefficients']}.",
            "",
        ]
    return "\n".join(lines)


def _num(v) -> str:
    return "" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["new"])
    p.add_argument("--rows", type=int, default=0, help="stratified training subset (0 = all; default 0)")
    p.add_argument("--test-rows", type=int, default=0, help="stratified test subset (with --rows)")
    p.add_argument("--quote-readme", action="store_true", help="add the README's old full-nsmc4 numbers")
    p.add_argument(
        "--check-shared-model",
        action="store_true",
        help="fit the filters' label model and compare's baseline model on the training data: are they the same?",
    )
    p.add_argument("--only-shared-model", action="store_true", help="only --check-shared-model (no pipeline runs)")
    p.add_argument("--train", type=Path, default=data_file("train.csv"))
    p.add_argument("--test", type=Path, default=data_file("test.csv"))
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_pipeline", help="run folders and logs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="pipeline", help="results file name (default pipeline)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    args.check_shared_model |= args.only_shared_model
    if args.rows and not args.test_rows:
        args.test_rows = max(args.rows // 10, 100)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    train, test = subset(args.train, args.test, args.rows, args.test_rows, args.work / "data", args.seed)
    r: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": describe(),
        "versions": versions("scikit-learn", "numpy", "scipy", "polars", "kiwipiepy"),
        "data": {
            "train": str(train),
            "test": str(test),
            "subset": bool(args.rows),
            "train_rows": pl.scan_csv(train, infer_schema_length=0).select(pl.len()).collect().item(),
            "test_rows": pl.scan_csv(test, infer_schema_length=0).select(pl.len()).collect().item(),
        },
        "runs": [],
    }
    for name in args.settings if not args.only_shared_model else []:
        print(f"setting {name}: hardaug run ...", flush=True)
        result = run_setting(name, train, test, args.work)
        r["runs"].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "comparison"}), flush=True)
    if args.quote_readme:
        r["readme_today"] = README_TODAY
    if args.check_shared_model:
        print("label model vs baseline ...", flush=True)
        r["shared_model"] = shared_model_check(train)
        print(json.dumps(r["shared_model"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(r)
    (args.out / f"{args.name}.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return 0 if all(x["exit_code"] == 0 for x in r["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
