"""Mining speed: the motivating notebook's pandas code vs `engine.mine`, side by side in one run.

Builds a 4-class out-of-fold table shaped like the motivating data (id, text, label, class_0_prob ..
class_3_prob; real nsmc4 reviews drawn with replacement, so labels keep the nsmc4 class shares;
Dirichlet probabilities around a noisy prediction), then times, on the same rows:

- the notebook's pandas path (p_true by `df.apply` over rows, and a vectorized numpy variant), then the
  notebook's filter chain (top 20% hardness, >= 10 chars, confidence <= 0.7, classes 1 and 3, top 30%);
- the engine: validation, `score` + `select(PRESETS["notebook"])` with and without cleanlab label
  issues, and `load_predictions(parquet)` + score + select end to end;
- optionally, the background 10-fold TF-IDF OOF run's figures (read from its files, never rerun) and
  Korean tokenization for term analysis with 1 and 2 threads.

Only the work is timed (perf_counter around the calls); data generation and loading for the in-memory
rows are not. gc.collect() runs before every repeat; the cheap rows get one untimed warm-up (it also
pays one-off imports such as cleanlab's). The machine is shared: load averages before and after are
recorded; compare ratios from one run, not absolute seconds across runs.

    .venv/bin/python benchmarks/bench_mine.py --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from machine import data_file, describe, load_average, run_record

from engine.io import read_table
from engine.mine import PRESETS, load_predictions, score, select
from engine.validate import prepare_dataset, prepare_probs

ROOT = Path(__file__).resolve().parents[1]
K = 4
PROB_COLS = [f"class_{i}_prob" for i in range(K)]
SOURCE = "bench (in memory)"


# ------------------------------------------------------------------------------------------------ data
def make_oof_table(train_csv: Path, rows: int, seed: int) -> pl.DataFrame:
    """`rows` real reviews drawn with replacement (each keeps its own label, so class shares follow the
    data) and class probabilities from a Dirichlet concentrated on a noisy prediction: right ~80% of the
    time, otherwise mostly an adjacent star band (ordinal sentiment confusions). Argmax accuracy ~0.7."""
    rng = np.random.default_rng(seed)
    train = pl.read_csv(train_csv, infer_schema_length=None)
    pick = rng.integers(0, train.height, rows)
    label = train["label"].to_numpy()[pick]
    text = train["text"].gather(pick)

    step = np.where(rng.random(rows) < 0.5, -1, 1)
    adjacent = np.clip(label + step, 0, K - 1)
    adjacent = np.where(adjacent == label, label - step, adjacent)
    other = (label + rng.integers(1, K, rows)) % K
    wrong = np.where(rng.random(rows) < 0.8, adjacent, other)
    pred = np.where(rng.random(rows) < 0.8, label, wrong)

    alpha = np.full((rows, K), 0.6)
    alpha[np.arange(rows), pred] += rng.gamma(2.0, 2.0, rows)  # per-row sharpness: some sure, some not
    gammas = rng.gamma(alpha)
    probs = gammas / gammas.sum(axis=1, keepdims=True)

    return pl.DataFrame({"id": np.arange(rows, dtype=np.int64), "text": text, "label": label}).hstack(
        pl.DataFrame(probs, schema=PROB_COLS)
    )


def describe_table(table: pl.DataFrame) -> dict:
    probs = table.select(PROB_COLS).to_numpy()
    label = table["label"].to_numpy()
    shares = np.bincount(label, minlength=K) / len(label)
    return {
        "rows": table.height,
        "class_shares": [round(float(s), 4) for s in shares],
        "argmax_accuracy": round(float((probs.argmax(axis=1) == label).mean()), 4),
        "share_confidence_le_0.7": round(float((probs.max(axis=1) <= 0.7).mean()), 4),
        "median_chars": int(table["text"].str.len_chars().median()),
    }


# ------------------------------------------------------------------------------- the notebook (pandas)
def notebook_chain(df: pd.DataFrame) -> pd.DataFrame:
    """The motivating notebook's selection, given its `p_true` column."""
    df["hardness"] = 1 - df["p_true"]
    df["confidence"] = df[PROB_COLS].max(axis=1)
    hard = df[df["hardness"] >= df["hardness"].quantile(0.8)]
    hard = hard[hard["text"].str.len() >= 10]
    hard = hard[hard["confidence"] <= 0.7]
    hard = hard[hard["label"].isin([1, 3])]
    return hard[hard["hardness"] >= hard["hardness"].quantile(0.7)]


def run_pandas_apply(df: pd.DataFrame) -> tuple[float, np.ndarray]:
    df = df.copy(deep=False)  # new columns must not leak into the next repeat
    start = perf_counter()
    df["p_true"] = df.apply(lambda row: row[f"class_{row['label']}_prob"], axis=1)
    hard = notebook_chain(df)
    elapsed = perf_counter() - start
    return elapsed, hard["id"].to_numpy()


def run_pandas_vectorized(df: pd.DataFrame) -> tuple[float, np.ndarray]:
    df = df.copy(deep=False)
    start = perf_counter()
    probs = df[PROB_COLS].to_numpy()
    df["p_true"] = np.take_along_axis(probs, df["label"].to_numpy()[:, None], axis=1)[:, 0]
    hard = notebook_chain(df)
    elapsed = perf_counter() - start
    return elapsed, hard["id"].to_numpy()


# ---------------------------------------------------------------------------------------------- engine
def _selected_ids(mined: pl.DataFrame) -> np.ndarray:
    return mined.filter(pl.col("selected"))["id"].to_numpy()


def run_validate(raw: pl.DataFrame) -> tuple[float, pl.DataFrame]:
    start = perf_counter()
    frame, _ = prepare_dataset(raw, source=SOURCE, num_classes=K)
    frame = prepare_probs(frame, PROB_COLS, source=SOURCE)
    elapsed = perf_counter() - start
    return elapsed, frame


def run_engine(frame: pl.DataFrame) -> tuple[float, np.ndarray]:
    start = perf_counter()
    mined, _ = select(score(frame, K, label_issues=False), PRESETS["notebook"])
    elapsed = perf_counter() - start
    return elapsed, _selected_ids(mined)


def run_engine_label_issues(frame: pl.DataFrame) -> tuple[float, np.ndarray]:
    start = perf_counter()
    mined, _ = select(score(frame, K, label_issues=True, n_jobs=1), PRESETS["notebook"])
    elapsed = perf_counter() - start
    return elapsed, _selected_ids(mined)


def run_engine_from_file(path: Path) -> tuple[float, np.ndarray]:
    start = perf_counter()
    frame, names = load_predictions(path)
    mined, _ = select(score(frame, len(names), label_issues=False), PRESETS["notebook"])
    elapsed = perf_counter() - start
    return elapsed, _selected_ids(mined)


# ------------------------------------------------------------------------------------------- repeating
def repeat(run: Callable[[], tuple[float, Any]], repeats: int, warmup: int) -> tuple[list[float], Any]:
    """Call `run` `warmup` times untimed, then `repeats` times; returns the times and the last result."""
    result = None
    for _ in range(warmup):
        gc.collect()
        _, result = run()
    times = []
    for _ in range(repeats):
        gc.collect()
        elapsed, result = run()
        times.append(elapsed)
    return times, result


def row_stats(name: str, what: str, times: list[float], rows: int, warmup: int) -> dict:
    median = statistics.median(times)
    return {
        "name": name,
        "what": what,
        "repeats": len(times),
        "warmup": warmup,
        "times_s": [round(t, 4) for t in times],
        "median_s": round(median, 4),
        "min_s": round(min(times), 4),
        "rows_per_s": round(rows / median),
    }


# -------------------------------------------------------------------------------------- optional parts
def oof_section(metrics_path: Path, log_path: Path) -> dict:
    """Figures of the background `hardaug oof` run (10-fold TF-IDF on full nsmc4), read from its files."""
    log_text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    if not metrics_path.exists():
        done = sorted({int(f) for f in re.findall(r"fold (\d+): accuracy", log_text)})
        return {"status": f"pending: {metrics_path} not written yet ({len(done)} folds done per {log_path})"}
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log_text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log_text)
    return {
        "status": "done",
        "metrics": str(metrics_path),
        "log": str(log_path),
        "train": metrics.get("train"),
        "n_folds": len(metrics["folds"]),
        "config": metrics.get("config"),
        "seconds": metrics.get("seconds"),
        "fold_accuracy": [round(f["accuracy"], 4) for f in metrics["folds"]],
        "oof_accuracy": round(metrics["oof"]["accuracy"], 4),
        "oof_macro_f1": round(metrics["oof"]["macro_f1"], 4),
        "test_accuracy": round(metrics["test"]["accuracy"], 4) if "test" in metrics else None,
        "test_macro_f1": round(metrics["test"]["macro_f1"], 4) if "test" in metrics else None,
        "peak_rss_gib": round(int(rss.group(1)) / 2**20, 2) if rss else None,
        "wall_clock_time_v": wall.group(1) if wall else None,
    }


def terms_section(train_csv: Path, n_texts: int, seed: int) -> dict:
    """Kiwi tokenization of `n_texts` real reviews, 1 and 2 threads, one run each (includes model load)."""
    try:
        from engine.analyze import tokenize
    except Exception as exc:  # the module is being written concurrently; any failure means "not ready"
        return {"status": f"skipped: engine.analyze not available ({type(exc).__name__}: {exc})"}
    texts = pl.read_csv(train_csv, infer_schema_length=None)["text"].fill_null("")
    texts = texts.sample(min(n_texts, len(texts)), seed=seed).to_list()
    runs, outputs = [], {}
    for threads in (1, 2):
        gc.collect()
        start = perf_counter()
        tokenize(texts[:1], kind="kiwi", threads=threads)  # the fixed cost: Kiwi model load
        load_s = perf_counter() - start
        gc.collect()
        start = perf_counter()
        tokens = tokenize(texts, kind="kiwi", threads=threads)
        elapsed = perf_counter() - start
        outputs[threads] = tokens
        runs.append(
            {
                "threads": threads,
                "seconds": round(elapsed, 2),
                "one_text_seconds": round(load_s, 2),
                "texts_per_s": round(len(texts) / elapsed),
                "tokens": sum(map(len, tokens)),
            }
        )
    return {"status": "done", "texts": len(texts), "runs": runs, "same_tokens_1_vs_2_threads": outputs[1] == outputs[2]}


def cli_section(csv_path: Path, repeats: int) -> dict:
    """`hardaug mine` end to end as a user runs it (a fresh interpreter: imports, CSV, scoring with cleanlab,
    selection, outputs), with and without the report; plus cold import times (`python -X importtime`)."""
    runs: dict[str, list[float]] = {"no_report": [], "report": []}
    cpu: dict[str, list[float]] = {"no_report": [], "report": []}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="bench_mine_cli_") as tmp:
        for r in range(repeats):
            for name, extra in (("no_report", ["--no-report"]), ("report", [])):
                cmd = [sys.executable, "-m", "engine.cli", "mine", "--input", str(csv_path), "--preset", "notebook"]
                cmd += ["--out-dir", str(Path(tmp) / f"{name}{r}"), *extra]
                start = perf_counter()
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _, status, usage = os.wait4(proc.pid, 0)
                runs[name].append(round(perf_counter() - start, 2))
                if os.waitstatus_to_exitcode(status) != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed")
                # CPU seconds of the process (and its threads): on a loaded machine far steadier than wall time
                cpu[name].append(round(usage.ru_utime + usage.ru_stime, 2))
                print(f"hardaug mine {name}: {runs[name][-1]} s wall, {cpu[name][-1]} s CPU", flush=True)
        imports = {}
        for name, args in (("help", ["--help"]), ("mine_help", ["mine", "--help"])):
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-m", "engine.cli", *args], env=env, capture_output=True, text=True
            )
            imports[name] = _import_seconds(done.stderr)
    return {
        "status": "done",
        "runs_s": runs,
        "median_s": {k: statistics.median(v) for k, v in runs.items()},
        "min_s": {k: min(v) for k, v in runs.items()},
        "cpu_s": cpu,
        "min_cpu_s": {k: min(v) for k, v in cpu.items()},
        "imports": imports,
        "load": load_average(),
    }


def _import_seconds(importtime: str) -> dict:
    """Total and the largest top-level packages from `-X importtime` output (microseconds, cumulative)."""
    top: dict[str, int] = {}
    for line in importtime.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if not name.startswith("  "):  # depth 0 (one space after the bar)
                top[name.strip()] = top.get(name.strip(), 0) + int(parts[1])
    biggest = sorted(top.items(), key=lambda kv: -kv[1])[:6]
    return {"total_s": round(sum(top.values()) / 1e6, 3), "largest_s": {k: round(v / 1e6, 3) for k, v in biggest}}


def terms_sampling_section(oof_path: Path, caps: list[int], class_names: list[str]) -> list[dict]:
    """`terms_sampling` for each cap against one reference run (the reference is most of the time)."""
    reference: dict = {}
    return [terms_sampling(oof_path, cap, class_names, reference) for cap in caps]


def terms_sampling(oof_path: Path, cap: int, class_names: list[str], cache: dict) -> dict:
    """Does a bounded sample give the same term statistics? On real out-of-fold predictions, the term
    analysis with the old caps (every hard row, at most 10,000 easy rows per class) against `cap` hard and
    `cap` easy rows per class: overlap of the top terms, and their document shares side by side."""
    from engine import mine
    from engine.analyze import _distinctive_terms
    from engine.config import AnalysisConfig

    frame, names = mine.load_predictions(oof_path, class_names=class_names)
    scored = mine.score(frame, len(names), label_issues=False)
    out: dict = {"status": "done", "source": str(oof_path), "rows": scored.height, "cap": cap, "classes": {}}
    results = {}
    for label, hard_cap, easy_cap in (("reference", None, 10_000), ("sampled", cap, cap)):
        if label == "reference" and cache:
            results[label], out["reference_seconds"], out["reference_cpu_seconds"] = cache["reference"]
            out["reference_texts"] = sum(t["n_hard"] + t["n_easy"] for t in results[label].values())
            continue
        config = AnalysisConfig(max_hard_per_class=hard_cap, max_easy_per_class=easy_cap)
        start, cpu = perf_counter(), time.process_time()
        results[label] = _distinctive_terms(scored, len(names), config)
        out[f"{label}_seconds"] = round(perf_counter() - start, 1)
        out[f"{label}_cpu_seconds"] = round(time.process_time() - cpu, 1)
        if label == "reference":
            cache["reference"] = (results[label], out["reference_seconds"], out["reference_cpu_seconds"])
        out[f"{label}_texts"] = sum(t["n_hard"] + t["n_easy"] for t in results[label].values())
        print(f"terms {label}: {out[f'{label}_texts']} texts, {out[f'{label}_seconds']} s", flush=True)
    overlaps, share_diffs = [], []
    for c, ref in results["reference"].items():
        got = results["sampled"].get(c, {"hard": [], "easy": []})
        per_side = {}
        for side in ("hard", "easy"):
            ref_terms = [(t["term"], t["tag"]) for t in ref[side]]
            got_by = {(t["term"], t["tag"]): t for t in got[side]}
            common = [t for t in ref_terms if t in got_by]
            overlap = len(common) / max(len(ref_terms), 1)
            top5 = len([t for t in ref_terms[:5] if t in got_by]) / max(min(5, len(ref_terms)), 1)
            diffs = [
                abs(got_by[key][f"{side}_share"] - r[f"{side}_share"])
                for r in ref[side]
                if (key := (r["term"], r["tag"])) in got_by
            ]
            overlaps.append(overlap)
            share_diffs += diffs
            per_side[side] = {
                "top_overlap": round(overlap, 3),
                "top5_kept": round(top5, 3),
                "max_share_diff": round(max(diffs), 4) if diffs else None,
                "reference": [t[0] for t in ref_terms[:8]],
                "sampled": [t["term"] for t in got[side][:8]],
            }
        out["classes"][names[c]] = per_side
    out["mean_top_overlap"] = round(float(np.mean(overlaps)), 3)
    out["max_share_diff"] = round(float(max(share_diffs)), 4) if share_diffs else None
    return out


# ---------------------------------------------------------------------------------------------- machine
def machine() -> dict:
    return describe() | {"polars_threads": pl.thread_pool_size(), "other_jobs": other_jobs()}


def other_jobs() -> list[str]:
    """Command lines of other `hardaug` processes (e.g. the background OOF run) competing for the cores."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "hardaug" in cmd and "python" in cmd:
            found.append(cmd[:200])
    return found


VERSIONS = ("polars", "pandas", "numpy", "cleanlab", "pyarrow", "kiwipiepy", "hardaug")


# ---------------------------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    base_apply = results["baseline_medians_s"]["pandas_apply"]
    base_vec = results["baseline_medians_s"]["pandas_vectorized"]
    data, mach, ver = results["data"], results["machine"], results["versions"]
    lines = [
        f"Mining {data['rows']:,} rows x {K} classes (notebook preset), {results['date']}. "
        f"{mach['cpu']}, {mach['usable_cpus']} usable cores, load average "
        f"{results['load_before']} before / {results['load_after']} after"
        + (" (a background `hardaug oof` job was running)." if mach["other_jobs"] else "."),
        f"Python {ver['python']}, polars {ver['polars']}, pandas {ver['pandas']}, numpy {ver['numpy']}, "
        f"cleanlab {ver['cleanlab']}.",
        "",
        "| path | repeats | median s | min s | rows/s (median) | vs notebook apply | vs pandas vectorized |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        median = row["median_s"]
        lines.append(
            f"| {row['what']} | {row['repeats']} | {median:.3f} | {row['min_s']:.3f} | "
            f"{row['rows_per_s']:,} | {_ratio(base_apply / median)} | {_ratio(base_vec / median)} |"
        )
    check = results["selection_check"]
    lines += [
        "",
        f"Selection: {check['engine_rows']:,} rows; identical ids in every path: "
        f"{'yes' if check['identical'] else 'NO'}.",
        f"Goal (engine score+select >= 5x faster than the notebook's pandas path and < 2 s): "
        f"{results['goal']['verdict']}",
    ]
    if results.get("apply_note"):
        lines.append(results["apply_note"])
    oof = results.get("tfidf_oof")
    if oof is not None:
        lines += ["", "TF-IDF OOF on full nsmc4 (one run): " + _oof_line(oof)]
    terms = results.get("terms")
    if terms is not None:
        lines += ["", "Term analysis tokenization (kiwi, one run each): " + _terms_line(terms)]
    return "\n".join(lines) + "\n"


def _ratio(x: float) -> str:
    """Speed-up as text; values below 1 keep two decimals so that slower paths do not read as 0.0x."""
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def _oof_line(oof: dict) -> str:
    if oof["status"] != "done":
        return oof["status"]
    rss = f"{oof['peak_rss_gib']} GiB" if oof["peak_rss_gib"] is not None else "not in log"
    folds = ", ".join(f"{a:.3f}" for a in oof["fold_accuracy"])
    return (
        f"{oof['n_folds']} folds in {oof['seconds']:.0f} s, peak RSS {rss}; fold accuracy {folds}; "
        f"OOF accuracy {oof['oof_accuracy']:.4f}, test accuracy "
        f"{'n/a' if oof['test_accuracy'] is None else format(oof['test_accuracy'], '.4f')}."
    )


def _terms_line(terms: dict) -> str:
    if terms["status"] != "done":
        return terms["status"]
    runs = "; ".join(
        f"{r['threads']} thread(s) {r['seconds']:.1f} s ({r['texts_per_s']:,} texts/s; one text "
        f"alone {r['one_text_seconds']:.1f} s)"
        for r in terms["runs"]
    )
    return f"{terms['texts']:,} texts: {runs}; same tokens: {terms['same_tokens_1_vs_2_threads']}."


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row (default 5)")
    p.add_argument(
        "--apply-repeats",
        type=int,
        default=None,
        help="timed repeats of the df.apply baseline, at full size (default: --repeats)",
    )
    p.add_argument("--rows", type=int, default=275_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--data", type=Path, default=data_file("train.csv"))
    p.add_argument("--skip-oof", action="store_true", help="leave out the background TF-IDF OOF figures")
    p.add_argument("--oof-log", type=Path, default=ROOT / "runs" / "nsmc4_oof.log")
    p.add_argument("--oof-metrics", type=Path, default=ROOT / "runs" / "nsmc4_oof" / "metrics.json")
    p.add_argument("--skip-terms", action="store_true", help="leave out the tokenization timing")
    p.add_argument("--term-texts", type=int, default=55_000)
    p.add_argument("--cli", action="store_true", help="also time `hardaug mine` end to end and its imports")
    p.add_argument("--cli-repeats", type=int, default=3)
    p.add_argument(
        "--terms-oof",
        type=Path,
        default=None,
        help="real oof.parquet: check that the term analysis on a bounded sample keeps the statistics",
    )
    p.add_argument(
        "--terms-cap", type=int, nargs="+", default=[1_000, 2_500], help="rows per class and side for that check"
    )
    p.add_argument("--only-new", action="store_true", help="run only --cli / --terms-oof (results: --name)")
    p.add_argument("--name", default="mine_e2e", help="results file name of --only-new (default mine_e2e)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only_new:
        return main_new(args)
    if args.apply_repeats is None:
        args.apply_repeats = args.repeats
    started = time.time()
    results: dict[str, Any] = run_record(*VERSIONS, machine=machine())

    table = make_oof_table(args.data, args.rows, args.seed)
    results["data"] = {"source": str(args.data), "seed": args.seed, **describe_table(table)}
    print(f"data: {results['data']}", flush=True)
    n = table.height

    with tempfile.TemporaryDirectory(prefix="bench_mine_") as tmp:
        csv_path, parquet_path = Path(tmp) / "oof.csv", Path(tmp) / "oof.parquet"
        table.write_csv(csv_path)
        table.write_parquet(parquet_path)
        results["data"]["csv_mib"] = round(csv_path.stat().st_size / 2**20, 1)
        results["data"]["parquet_mib"] = round(parquet_path.stat().st_size / 2**20, 1)
        # Both sides start from the same CSV, loaded the way each would load it (not timed).
        df = pd.read_csv(csv_path)
        raw = read_table(csv_path)
        del table

        rows, ids = [], {}

        def bench(name: str, what: str, run: Callable, repeats: int, warmup: int) -> None:
            times, result = repeat(run, repeats, warmup)
            rows.append(row_stats(name, what, times, n, warmup))
            if result is not None and not isinstance(result, pl.DataFrame):
                ids[name] = np.sort(result)
            print(f"{what}: median {statistics.median(times):.3f} s, min {min(times):.3f} s", flush=True)

        bench("pandas_apply", "pandas apply (notebook)", lambda: run_pandas_apply(df), args.apply_repeats, 0)
        bench("pandas_vectorized", "pandas vectorized", lambda: run_pandas_vectorized(df), args.repeats, 1)
        validated: dict[str, pl.DataFrame] = {}

        def validate() -> tuple[float, None]:
            elapsed, validated["frame"] = run_validate(raw)
            return elapsed, None

        bench("engine_validate", "engine validation (prepare_dataset + prepare_probs)", validate, args.repeats, 1)
        frame = validated["frame"]
        bench("engine", "engine score + select", lambda: run_engine(frame), args.repeats, 1)
        bench(
            "engine_label_issues",
            "engine score (+ cleanlab label issues, n_jobs=1) + select",
            lambda: run_engine_label_issues(frame),
            args.repeats,
            1,
        )
        bench(
            "engine_from_parquet",
            "engine load_predictions(parquet) + score + select (end to end)",
            lambda: run_engine_from_file(parquet_path),
            args.repeats,
            1,
        )

    results["rows"] = rows
    medians = {r["name"]: r["median_s"] for r in rows}
    results["baseline_medians_s"] = {k: medians[k] for k in ("pandas_apply", "pandas_vectorized")}
    if args.apply_repeats < args.repeats:
        results["apply_note"] = (
            f"The df.apply baseline ran {args.apply_repeats} timed repeats (full size) instead of {args.repeats}."
        )

    reference = ids["pandas_apply"]
    identical = all(np.array_equal(reference, v) for v in ids.values())
    results["selection_check"] = {
        "identical": identical,
        "engine_rows": len(ids["engine"]),
        "rows_per_path": {k: len(v) for k, v in ids.items()},
        "differing_paths": [k for k, v in ids.items() if not np.array_equal(reference, v)],
    }
    engine_s = medians["engine"]
    speedup_apply = medians["pandas_apply"] / engine_s
    speedup_vec = medians["pandas_vectorized"] / engine_s
    met = speedup_apply >= 5 and engine_s < 2
    results["goal"] = {
        "engine_median_s": engine_s,
        "speedup_vs_notebook_apply": round(speedup_apply, 2),
        "speedup_vs_pandas_vectorized": round(speedup_vec, 2),
        "met": met,
        "verdict": (
            f"{'met' if met else 'NOT met'} against the notebook's df.apply path: {engine_s:.3f} s median, "
            f"{_ratio(speedup_apply)} faster. Against the vectorized pandas rewrite: {_ratio(speedup_vec)} "
            f"({'also' if speedup_vec >= 5 else 'not'} >= 5x)."
        ),
    }

    if not args.skip_oof:
        results["tfidf_oof"] = oof_section(args.oof_metrics, args.oof_log)
    if not args.skip_terms:
        results["terms"] = terms_section(args.data, args.term_texts, args.seed)

    results["load_after"] = load_average()
    results["machine"]["other_jobs_after"] = other_jobs()
    results["total_seconds"] = round(time.time() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    as_json = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    (args.out / "mine.json").write_text(as_json, encoding="utf-8")
    table_md = markdown(results)
    (args.out / "mine.md").write_text(table_md, encoding="utf-8")
    print("\n" + table_md)
    print(f"wrote {args.out / 'mine.json'} and {args.out / 'mine.md'}")
    if not identical:
        print(
            f"selection differs from the notebook's in: {results['selection_check']['differing_paths']}",
            file=sys.stderr,
        )
        return 1
    return 0


NAMES = ["strong neg", "weak neg", "weak pos", "strong pos"]


def main_new(args: argparse.Namespace) -> int:
    """`hardaug mine` end to end on the notebook layout, and the term-sampling check: mine_e2e.{json,md}."""
    started = time.time()
    results: dict[str, Any] = run_record(*VERSIONS, machine=machine())
    if args.cli:
        with tempfile.TemporaryDirectory(prefix="bench_mine_") as tmp:
            csv_path = Path(tmp) / "oof.csv"
            table = make_oof_table(args.data, args.rows, args.seed)
            table.write_csv(csv_path)
            results["data"] = {"source": str(args.data), "rows": table.height}
            del table
            results["cli"] = cli_section(csv_path, args.cli_repeats)
    if args.terms_oof is not None:
        results["terms_sampling"] = terms_sampling_section(args.terms_oof, args.terms_cap, NAMES)
    results["load_after"] = load_average()
    results["total_seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    text = markdown_new(results)
    (args.out / f"{args.name}.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return 0


def markdown_new(r: dict) -> str:
    mach = r["machine"]
    lines = [
        f"`hardaug mine` end to end, {r['date']}: {mach['cpu']}, {mach['usable_cpus']} usable cores, load average "
        f"{r['load_before']} before / {r['load_after']} after (a shared machine: re-measure on a quiet one "
        "before quoting seconds).",
        "",
    ]
    cli = r.get("cli")
    if cli:
        lines += [
            f"{r['data']['rows']:,} rows in the notebook's CSV layout, `--preset notebook`, a fresh process per "
            f"run ({len(cli['runs_s']['report'])} runs each):",
            "",
            "| command | wall s (median) | wall s (min) | CPU s (min) | wall s of each run |",
            "|---|---|---|---|---|",
        ]
        for name, flag in (("no_report", "--no-report"), ("report", "(with report)")):
            runs = ", ".join(f"{x:.1f}" for x in cli["runs_s"][name])
            lines.append(
                f"| `hardaug mine ... {flag}` | {cli['median_s'][name]:.1f} | {cli['min_s'][name]:.1f} | "
                f"{cli['min_cpu_s'][name]:.1f} | {runs} |"
            )
        for name, imp in cli["imports"].items():
            largest = ", ".join(f"{k} {v:.2f}" for k, v in imp["largest_s"].items())
            lines.append(f"\nImports of `hardaug {name.replace('_', ' ')}`: {imp['total_s']:.2f} s ({largest}).")
        lines.append("")
    for t in r.get("terms_sampling") or []:
        lines += [
            f"Term analysis on a bounded sample, real out-of-fold predictions ({t['source']}, {t['rows']:,} rows): "
            f"reference (every hard row, <= 10,000 easy rows per class) {t['reference_texts']:,} texts in "
            f"{t['reference_seconds']} s wall, {t['reference_cpu_seconds']} s CPU; sample (<= {t['cap']:,} hard and "
            f"easy rows per class) {t['sampled_texts']:,} texts in {t['sampled_seconds']} s wall, "
            f"{t['sampled_cpu_seconds']} s CPU. Mean overlap of the top-term lists "
            f"{t['mean_top_overlap']:.0%}; largest difference of a shown term's document share "
            f"{t['max_share_diff']:.2%} points.",
            "",
            "| class | side | top overlap | top 5 kept | max share diff | reference top terms | sample top terms |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, sides in t["classes"].items():
            for side, v in sides.items():
                diff = "n/a" if v["max_share_diff"] is None else f"{v['max_share_diff']:.2%}"
                lines.append(
                    f"| {name} | {side} | {v['top_overlap']:.0%} | {v['top5_kept']:.0%} | {diff} | "
                    f"{' '.join(v['reference'])} | {' '.join(v['sampled'])} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
