"""What makes the 10-fold TF-IDF OOF stage faster, measured lever by lever on real nsmc4 reviews.

One fold of a stratified 10-fold split (fold 0, seed 42, as `hardaug oof`) of a random subset of the
training set (`--rows`, 0 = all 274,275), the test set predicted too, every fit on one thread:

- **vectorize**: today's per-fold TfidfVectorizer (fit on the fold's training rows, transform held-out and
  test) against counting every text's n-grams once and deriving the fold's TF-IDF from the training rows'
  counts (`engine.tfidf.fold_features`); the two matrices are compared entry by entry. The K-fold cost
  is extrapolated: K x per-fold vs one count + K x per-fold selection.
- **solvers**: logistic regression variants on the same features (lbfgs / saga / sag, tolerances, an
  iteration cap, float64 features): fit seconds (median and min of `--repeats`), iterations, held-out and
  test accuracy and macro-F1, and how many held-out predictions differ from today's (lbfgs, tol 1e-4).
- **warm start**: saga started from another fold's model. That model was trained on this fold's held-out
  rows, so their labels leak into the start point: measured to show what it would buy, never a default.
- **processes**: `run_oof` on the subset, all K folds, 1 process vs `--processes` processes (one thread
  each), wall seconds and whether every output is identical.

The machine is shared: read the numbers side by side within one run; the load average is recorded.

    .venv/bin/python benchmarks/bench_oof_levers.py                    # 100,000 rows, about 15-25 min on 2 cores
    .venv/bin/python benchmarks/bench_oof_levers.py --quick            # 20,000 rows, a few minutes: checks the script
    .venv/bin/python benchmarks/bench_oof_levers.py --rows 0 --variants lbfgs-1e-4 saga-1e-3 --skip processes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

import numpy as np
from machine import data_file, describe, load_average, versions
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import tfidf  # noqa: E402
from engine.config import OofConfig, TfidfConfig  # noqa: E402
from engine.io import read_table  # noqa: E402
from engine.oof.kfold import assign_folds, run_oof  # noqa: E402
from engine.validate import prepare_dataset  # noqa: E402

# name -> (solver, tol, max_iter, float64 features)
VARIANTS = {
    "lbfgs-1e-4": ("lbfgs", 1e-4, 1000, False),  # today's default
    "lbfgs-1e-4-f64": ("lbfgs", 1e-4, 1000, True),
    "lbfgs-1e-3": ("lbfgs", 1e-3, 1000, False),
    "lbfgs-max100": ("lbfgs", 1e-4, 100, False),
    "saga-1e-4": ("saga", 1e-4, 1000, False),
    "saga-1e-3": ("saga", 1e-3, 1000, False),
    "saga-1e-3-f64": ("saga", 1e-3, 1000, True),
    "saga-1e-2": ("saga", 1e-2, 1000, False),
    "sag-1e-3": ("sag", 1e-3, 1000, False),
}
TODAY = "lbfgs-1e-4"
CPU_SECONDS: list[float] = []  # CPU seconds of each fit, in call order
K = 4


def load(train_path: Path, test_path: Path, rows: int, seed: int):
    train, names = prepare_dataset(read_table(train_path), source=str(train_path))
    if rows and rows < train.height:
        train = train.sample(n=rows, seed=seed, shuffle=True)
    test, _ = prepare_dataset(read_table(test_path), source=str(test_path), num_classes=len(names))
    return train, test


def scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    return {
        "accuracy": round(float(accuracy_score(labels, pred)), 4),
        "macro_f1": round(float(f1_score(labels, pred, average="macro")), 4),
    }


def vectorize(config, texts, test_texts, train_rows, held_rows, repeats):
    """Today's per-fold vectorizer vs shared counts + per-fold selection; returns timings and features."""
    out: dict = {"per_fold_s": [], "count_once_s": [], "select_per_fold_s": [], "cpu_s": []}
    for _ in range(repeats):
        cpu = [time.process_time()]
        start = perf_counter()
        vectorizer = tfidf.build_model(config).steps[0][1]
        x_train = vectorizer.fit_transform([texts[i] for i in train_rows])
        x_held = vectorizer.transform([texts[i] for i in held_rows])
        vectorizer.transform(test_texts)
        out["per_fold_s"].append(perf_counter() - start)
        cpu.append(time.process_time())

        start = perf_counter()
        counts = tfidf.count_ngrams(config, texts + test_texts)
        out["count_once_s"].append(perf_counter() - start)
        cpu.append(time.process_time())
        start = perf_counter()
        test_rows = np.arange(len(texts), len(texts) + len(test_texts))
        s_train, (s_held, s_test) = tfidf.fold_features(config, counts, train_rows, [held_rows, test_rows])
        out["select_per_fold_s"].append(perf_counter() - start)
        cpu.append(time.process_time())
        steps = zip(("per_fold", "count_once", "select"), cpu, cpu[1:], strict=False)
        out["cpu_s"].append({k: round(b - a, 2) for k, a, b in steps})
    out["identical_entries"] = bool((s_train != x_train).nnz == 0 and (s_held != x_held).nnz == 0)
    out["features"] = int(s_train.shape[1])
    out["nnz_all_counts"] = int(counts.nnz)
    return out, (s_train, s_held, s_test)


def fit(name: str, config: TfidfConfig, x, y, init=None):
    solver, tol, max_iter, f64 = VARIANTS[name]
    if f64:
        x = x.astype(np.float64)
    model = LogisticRegression(C=config.C, solver=solver, tol=tol, max_iter=max_iter, random_state=0)
    if init is not None:
        model.set_params(warm_start=True)
        model.coef_, model.intercept_ = init.coef_.copy(), init.intercept_.copy()
    with threadpool_limits(limits=1):
        start, cpu = perf_counter(), time.process_time()
        model.fit(x, y)
        CPU_SECONDS.append(time.process_time() - cpu)  # one thread: CPU time barely depends on the load
        return model, perf_counter() - start


def solver_rows(names, config, features, labels, test_labels, repeats) -> list[dict]:
    x_train, x_held, x_test = features
    y_train, y_held = labels
    rows, reference = [], None
    for name in names:  # today's first: the others are compared with it
        seconds, cpu = [], []
        for _ in range(repeats):
            model, s = fit(name, config, x_train, y_train)
            seconds.append(s)
            cpu.append(CPU_SECONDS[-1])
            print(f"  {name}: {s:.1f} s wall, {cpu[-1]:.1f} s CPU, {int(model.n_iter_.max())} iterations", flush=True)
        f64 = VARIANTS[name][3]
        held = tfidf.predict_proba(model, x_held.astype(np.float64) if f64 else x_held, K)
        test = tfidf.predict_proba(model, x_test.astype(np.float64) if f64 else x_test, K)
        if reference is None:
            reference = held
        rows.append(
            {
                "variant": name,
                "solver": VARIANTS[name][0],
                "tol": VARIANTS[name][1],
                "max_iter": VARIANTS[name][2],
                "float64": f64,
                "seconds": [round(s, 2) for s in seconds],
                "median_s": round(statistics.median(seconds), 2),
                "min_s": round(min(seconds), 2),
                "cpu_s": [round(c, 2) for c in cpu],
                "min_cpu_s": round(min(cpu), 2),
                "iterations": int(model.n_iter_.max()),
                "held_out": scores(y_held, held),
                "test": scores(test_labels, test),
                "held_out_pred_differs_from_today": round(float((held.argmax(1) != reference.argmax(1)).mean()), 4),
                "max_abs_prob_diff_vs_today": round(float(np.abs(held - reference).max()), 4),
                "load": load_average(),
            }
        )
    return rows


def warm_start(config, counts_features, folds, labels, texts, test_texts) -> dict:
    """saga (tol 1e-3) on fold 0, cold vs started from fold 1's model (which saw fold 0's labels)."""
    x_train0, x_held0, _ = counts_features
    train0 = np.flatnonzero(folds != 0)
    train1 = np.flatnonzero(folds != 1)
    counts = tfidf.count_ngrams(config, texts)
    x_train1, _ = tfidf.fold_features(config, counts, train1, [])
    # fold 1's features have another vocabulary: map its model onto fold 0's columns by n-gram
    prior, _ = fit("saga-1e-3", config, x_train1, labels[train1])
    cold, cold_s = fit("saga-1e-3", config, x_train0, labels[train0])
    cold_cpu = CPU_SECONDS[-1]
    vocab0 = _vocabulary(config, counts, train0)
    vocab1 = _vocabulary(config, counts, train1)
    position = {term: i for i, term in enumerate(vocab1)}
    coef = np.zeros_like(cold.coef_)
    for j, term in enumerate(vocab0):
        i = position.get(term)
        if i is not None:
            coef[:, j] = prior.coef_[:, i]
    prior.coef_ = coef
    warm, warm_s = fit("saga-1e-3", config, x_train0, labels[train0], init=prior)
    warm_cpu = CPU_SECONDS[-1]
    held = np.flatnonzero(folds == 0)
    return {
        "cold_s": round(cold_s, 2),
        "cold_cpu_s": round(cold_cpu, 2),
        "warm_cpu_s": round(warm_cpu, 2),
        "cold_iterations": int(cold.n_iter_.max()),
        "cold_held_out": scores(labels[held], tfidf.predict_proba(cold, x_held0, K)),
        "warm_s": round(warm_s, 2),
        "warm_iterations": int(warm.n_iter_.max()),
        "warm_held_out": scores(labels[held], tfidf.predict_proba(warm, x_held0, K)),
        "note": "the start model was trained on fold 0's held-out rows: their labels leak; not usable for OOF",
    }


def _vocabulary(config, counts, rows) -> np.ndarray:
    """Column ids (into the shared counts) that fold_features keeps for these training rows."""
    marker = counts[rows]
    df = np.bincount(marker.indices, minlength=counts.shape[1])
    keep = df >= config.min_df
    if config.max_features is not None and keep.sum() > config.max_features:
        totals = np.asarray(marker.sum(axis=0)).ravel()
        chosen = (-totals[keep]).argsort()[: config.max_features]
        limited = np.zeros_like(keep)
        limited[np.flatnonzero(keep)[chosen]] = True
        keep = limited
    return np.flatnonzero(keep)


def processes(train, test, config: TfidfConfig, n_folds: int, n_proc: int) -> dict:
    out: dict = {"folds": n_folds, "rows": train.height}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_oof_levers_") as tmp:
        for p in (1, n_proc):
            start, cpu = perf_counter(), os.times()
            results[p] = run_oof(
                train,
                test,
                config=OofConfig(n_folds=n_folds, tfidf=config),
                k=K,
                class_names=list("0123"),
                parts_dir=Path(tmp) / f"p{p}",
                processes=p,
            )
            out[f"processes_{p}_s"] = round(perf_counter() - start, 2)
            end = os.times()
            out[f"processes_{p}_cpu_s"] = round(
                end.user
                + end.system
                + end.children_user
                + end.children_system
                - (cpu.user + cpu.system + cpu.children_user + cpu.children_system),
                2,
            )
            out[f"processes_{p}_load"] = load_average()
            print(f"  {p} process(es): {out[f'processes_{p}_s']} s", flush=True)
    one, many = results[1], results[n_proc]
    out["identical"] = bool(
        one.oof.equals(many.oof) and one.test.equals(many.test) and one.metrics["oof"] == many.metrics["oof"]
    )
    out["oof_accuracy"] = round(one.metrics["oof"]["accuracy"], 4)
    out["peak_rss_children_gib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)
    return out


def markdown(r: dict) -> str:
    p = r["params"]
    lines = [
        f"TF-IDF OOF levers, {r['date']}: {r['data']['train_rows']:,} nsmc4 training rows (fold 0 of 10: "
        f"{r['data']['fold_train_rows']:,} fitted, {r['data']['held_out_rows']:,} held out) and "
        f"{r['data']['test_rows']:,} test rows; {r['machine']['cpu']}, one thread per fit; load average "
        f"{r['load_before']} before / {r['load_after']} after (a shared machine: read ratios within this run, "
        "re-measure on a quiet machine before quoting seconds). "
        f"Python {r['versions']['python']}, scikit-learn {r['versions']['scikit-learn']}, numpy "
        f"{r['versions']['numpy']}, scipy {r['versions']['scipy']}.",
        "",
    ]
    v = r.get("vectorize")
    if v:
        per, count, select = (statistics.median(v[k]) for k in ("per_fold_s", "count_once_s", "select_per_fold_s"))
        cpu = {k: min(c[k] for c in v["cpu_s"]) for k in ("per_fold", "count_once", "select")}
        lines += [
            "**Vectorizing** (median of the repeats):",
            "",
            "| how | wall s, one fold | wall s, 10 folds | CPU s, one fold | CPU s, 10 folds |",
            "|---|---|---|---|---|",
            f"| today: TfidfVectorizer fitted per fold | {per:.1f} | {10 * per:.0f} | {cpu['per_fold']:.1f} | "
            f"{10 * cpu['per_fold']:.0f} |",
            f"| shared: count once + select per fold | {count:.1f} + {select:.1f} | {count + 10 * select:.0f} | "
            f"{cpu['count_once']:.1f} + {cpu['select']:.1f} | {cpu['count_once'] + 10 * cpu['select']:.0f} |",
            "",
            f"Same entries as today's matrices: {v['identical_entries']} ({v['features']:,} features).",
            "",
        ]
    if r.get("solvers"):
        lines += [
            "**Logistic regression** on the fold's features:",
            "",
            "| variant | solver | tol | max_iter | float64 | wall s (median) | CPU s (min) | iterations | "
            "held-out acc | held-out macro-F1 | test acc | test macro-F1 | predictions differing from today |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in r["solvers"]:
            lines.append(
                f"| {s['variant']} | {s['solver']} | {s['tol']:g} | {s['max_iter']} | {s['float64']} | "
                f"{s['median_s']:.1f} | {s['min_cpu_s']:.1f} | {s['iterations']} | {s['held_out']['accuracy']:.4f} | "
                f"{s['held_out']['macro_f1']:.4f} | {s['test']['accuracy']:.4f} | {s['test']['macro_f1']:.4f} | "
                f"{s['held_out_pred_differs_from_today']:.2%} |"
            )
        lines.append("")
    w = r.get("warm_start")
    if w:
        lines += [
            f"**Warm start** (saga, tol 1e-3): cold {w['cold_s']} s wall, {w.get('cold_cpu_s')} s CPU / "
            f"{w['cold_iterations']} epochs, held-out accuracy {w['cold_held_out']['accuracy']}; started from fold "
            f"1's model {w['warm_s']} s wall, {w.get('warm_cpu_s')} s CPU / "
            f"{w['warm_iterations']} epochs, {w['warm_held_out']['accuracy']}. {w['note']}.",
            "",
        ]
    pr = r.get("processes")
    if pr:
        n = p["processes"]
        lines += [
            f"**Folds in processes** (`run_oof`, {pr['folds']} folds of {pr['rows']:,} rows, {p['variant']}): "
            f"1 process {pr['processes_1_s']} s wall ({pr.get('processes_1_cpu_s')} s CPU), {n} processes "
            f"{pr[f'processes_{n}_s']} s wall ({pr.get(f'processes_{n}_cpu_s')} s CPU); outputs identical: "
            f"{pr['identical']}; OOF accuracy {pr['oof_accuracy']}; peak RSS of one worker "
            f"{pr['peak_rss_children_gib']} GiB.",
            "",
        ]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="20,000 rows, 1 repeat, three variants: checks the script")
    p.add_argument("--rows", type=int, default=100_000, help="training rows sampled (0 = all; default 100000)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats of each fit (default 2)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--variant", default="saga-1e-3", choices=list(VARIANTS), help="for the processes run")
    p.add_argument("--processes", type=int, default=2, help="processes to compare with one (default 2)")
    p.add_argument("--skip", nargs="*", default=[], choices=["vectorize", "solvers", "warm_start", "processes"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=Path, default=data_file("train.csv"))
    p.add_argument("--test", type=Path, default=data_file("test.csv"))
    p.add_argument("--name", default=None, help="results file name (default oof_levers[_quick])")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.variants = 20_000, 1, ["lbfgs-1e-4", "saga-1e-3", "saga-1e-2"]
    if TODAY not in args.variants:
        args.variants = [TODAY, *args.variants]
    args.variants = [TODAY, *[v for v in args.variants if v != TODAY]]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    config = TfidfConfig()
    train, test = load(args.train, args.test, args.rows, args.seed)
    labels, test_labels = train["label"].to_numpy(), test["label"].to_numpy()
    texts, test_texts = train["text"].to_list(), test["text"].to_list()
    folds = assign_folds(labels, 10, 42)
    train_rows, held_rows = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    r: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": describe(),
        "versions": versions("scikit-learn", "numpy", "scipy", "polars"),
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {
            "train_rows": train.height,
            "fold_train_rows": len(train_rows),
            "held_out_rows": len(held_rows),
            "test_rows": test.height,
        },
        "load_before": load_average(),
    }
    print(f"{train.height} rows; vectorizing", flush=True)
    with threadpool_limits(limits=1):
        vec, features = vectorize(config, texts, test_texts, train_rows, held_rows, 1 if args.quick else args.repeats)
    if "vectorize" not in args.skip:
        r["vectorize"] = vec
        print(f"  {json.dumps({k: v for k, v in vec.items()})}", flush=True)
    if "solvers" not in args.skip:
        print("solvers", flush=True)
        r["solvers"] = solver_rows(
            args.variants, config, features, (labels[train_rows], labels[held_rows]), test_labels, args.repeats
        )
    if "warm_start" not in args.skip:
        print("warm start", flush=True)
        r["warm_start"] = warm_start(config, features, folds, labels, texts, test_texts)
    if "processes" not in args.skip:
        print("processes", flush=True)
        solver, tol, max_iter, _ = VARIANTS[args.variant]
        chosen = TfidfConfig(solver=solver, tol=tol, max_iter=max_iter)
        r["processes"] = processes(train, test, chosen, 10, args.processes)
    r["load_after"] = load_average()
    r["total_seconds"] = round(time.time() - started, 1)

    name = args.name or ("oof_levers_quick" if args.quick else "oof_levers")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    table = markdown(r)
    (args.out / f"{name}.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
