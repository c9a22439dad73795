"""Does targeted augmentation help, and does it beat cleaning the labels? Retrain on each arm, evaluate on
held-out test data, compare honestly.

Arms (each trained with the same classifier and options; see engine.arms for how each is built):
- `baseline`: the original training data;
- one or more strategies (`targeted` when there is one): original + the kept augmentations of the hard
  samples that strategy selected; each with its own random control (`random`, or `NAME-random`): original
  + the same number of kept augmentations per method, of randomly chosen samples, which separates
  "targeting helps" from "more data helps";
- `all` (optional): original + augmentations of every sample, to compare cost and gain;
- with mined scores, the arms that add no text: `drop-label-issues` (control `drop-random`), `relabel`,
  `reweight` (control `reweight-shuffled`).

Seeds vary the random draws (controls, and which rows `drop-random` / `reweight-shuffled` touch) and the
classifier's own randomness where it has any; TF-IDF + logistic regression has none, so arms whose training
rows do not depend on the seed are trained once and reused. Differences come with paired bootstrap 95%
intervals over the test rows, pooled over seeds: each resample draws test rows with replacement and averages
the per-seed differences, so the interval reflects both test-set sampling and seed variation. Every arm is
compared with baseline and, where it has one, with its control; each gets a one-line verdict.

Each cell's test predictions are saved when done as a part of a job folder (engine.jobs), named by its cell
key (the classifier's options, its training rows and the test set), so a rerun, or a run with more seeds or
arms into the same folder, trains only what it has not saved; `run_compare` writes results.json, .md and
.svg and the done marker, and answers "up to date" when the same inputs and options finished there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import accuracy_score, f1_score

from engine.arms import (
    CLEANING_ARMS,
    CLEANING_CONTROLS,
    augmentation_sets,
    changed_rows,
    cleaning_sets,
    combined_name,
    combined_set,
    control_name,
    match_counts,
    weight_sets,
)
from engine.bootstrap import ALPHA, adjust, difference_samples, paired_difference, resample_scores
from engine.config import CompareConfig  # defined with the other stage configs; exported here (__all__)
from engine.errors import InputError
from engine.experiment_cells import Cells, CellSelection, cells_key, check_classifier
from engine.experiment_on_ray import run_cells_on_ray
from engine.io import write_json, write_text
from engine.jobs import Job
from engine.jobs import fingerprint as job_fingerprint
from engine.progress import OnProgress
from engine.tfidf import FIT
from engine.weights import SCHEMES, SHUFFLED

__all__ = ["CompareConfig", "arm_training_sets", "compare", "compare_pairs", "kept_rows", "match_counts"]

log = logging.getLogger(__name__)

ARMS = ("baseline", "targeted", "random", "all")


# ------------------------------------------------------------------------------------------------- arms
def kept_rows(augmented: pl.DataFrame, source: str) -> pl.DataFrame:
    """The usable augmentations of a file: `kept` rows when it went through `hardaug filter`."""
    for column in ("text", "label", "method"):
        if column not in augmented.columns:
            raise InputError(
                f"{source}: no column {column!r}; expected augmented rows from hardaug backtranslate / "
                f"paraphrase / eda (or filter), the file has {augmented.columns}."
            )
    if "kept" in augmented.columns:
        augmented = augmented.filter(pl.col("kept"))
    # source_id and hardness, when present, serve the hardness-proportional budget (engine.arms.budget_sets)
    extra = [pl.col("source_id").cast(pl.String)] if "source_id" in augmented.columns else []
    extra += [pl.col("hardness").cast(pl.Float64)] if "hardness" in augmented.columns else []
    return augmented.select(pl.col("text").cast(pl.String), pl.col("label").cast(pl.Int64), pl.col("method"), *extra)


def arm_training_sets(
    train: pl.DataFrame,
    *,
    targeted: pl.DataFrame | None = None,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    seed: int,
    strategies: dict[str, pl.DataFrame] | None = None,
    flagged: pl.DataFrame | None = None,
    cleaning: tuple[str, ...] = CLEANING_ARMS,
    relabel_confidence: float = 0.7,
    random_source: str = "random-arm augmentations",
    weights: tuple[str, ...] = (),
    combine: Sequence[tuple[str, str]] = (),
) -> dict[str, pl.DataFrame]:
    """Training frames (text, label[, weight]) of every arm for one seed, baseline first.

    `targeted` is the single strategy `targeted` (its control: `random`); `strategies` names several.
    `flagged`: the training rows with their mined scores (engine.arms.align_scores): adds the `cleaning`
    arms, an arm per weight scheme of `weights` and the (strategy, scheme) arms of `combine`. Controls add
    as many rows per method as their strategy."""
    named = {"targeted": targeted} if targeted is not None else {}
    named.update(strategies or {})
    sets = {"baseline": train.select("text", "label")}
    sets.update(
        augmentation_sets(
            train, strategies=named, random_pool=random_pool, all_pool=all_pool, seed=seed, random_source=random_source
        )
    )
    if flagged is not None and cleaning:
        sets.update(cleaning_sets(flagged, cleaning, seed=seed, relabel_confidence=relabel_confidence))
    if flagged is not None:
        sets.update(weight_sets(flagged, weights, seed=seed))
        for name, scheme in combine:
            sets[combined_name(name, scheme)] = combined_set(flagged, named[name], scheme, source=f"strategy {name!r}")
    return sets


def arm_plan(sets: dict[str, pl.DataFrame], strategies: Sequence[str]) -> dict[str, dict]:
    """Kind and control of each arm: baseline, strategy, control, all, cleaning, cleaning-control, weights,
    weights-control, combined; `also`: the other arms it is compared with (beside baseline and its control)."""
    controls = {control_name(s): s for s in strategies} | {c: a for a, c in CLEANING_CONTROLS.items()}
    plan = {}
    for arm in sets:
        if arm == "baseline":
            plan[arm] = {"kind": "baseline", "control": None}
        elif arm in strategies:
            plan[arm] = {"kind": "strategy", "control": control_name(arm) if control_name(arm) in sets else None}
        elif arm in controls:
            kind = "cleaning-control" if arm in CLEANING_CONTROLS.values() else "control"
            plan[arm] = {"kind": kind, "control": None, "control_of": controls[arm]}
        elif arm in CLEANING_ARMS:
            control = CLEANING_CONTROLS.get(arm)
            plan[arm] = {"kind": "cleaning", "control": control if control in sets else None}
        elif arm in SCHEMES:
            also = ["class-balanced"] if arm != "class-balanced" and "class-balanced" in sets else []
            plan[arm] = {"kind": "weights", "control": SHUFFLED.get(arm), "also": also}
        elif arm in SHUFFLED.values():
            plan[arm] = {"kind": "weights-control", "control": None, "control_of": arm.removesuffix("-shuffled")}
        elif "+" in arm:
            name, scheme = arm.rsplit("+", 1)
            plan[arm] = {"kind": "combined", "control": None, "also": [name] + ([scheme] if scheme in sets else [])}
        else:
            plan[arm] = {"kind": "all", "control": None}
    return plan


VERDICT_KINDS = ("strategy", "all", "cleaning", "weights", "combined")  # the arms that get a verdict line


# ---------------------------------------------------------------------------------------------- metrics
def metrics(labels: np.ndarray, probs: np.ndarray, k: int, confident_threshold: float) -> dict:
    pred = probs.argmax(axis=1)
    wrong = pred != labels
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "per_class_f1": f1_score(labels, pred, average=None, labels=list(range(k)), zero_division=0).tolist(),
        "confidently_wrong": int((wrong & (probs.max(axis=1) >= confident_threshold)).sum()),
    }


BOOTSTRAP_SEED = 17  # the resamples are the same for every comparison: intervals are paired across arms too


def compare_pairs(
    labels: np.ndarray,
    probs: dict[str, list[np.ndarray]],
    pairs: Sequence[tuple[str, str]],
    *,
    k: int,
    resamples: int,
    on_progress: OnProgress | None = None,
) -> dict[str, dict]:
    """Paired bootstrap differences `a - b` of every pair of arms, for accuracy, macro-F1 and per-class F1.
    `probs[arm]` holds the arm's test probabilities, one array per seed. Every arm's metrics are computed
    once on one shared set of resamples (see engine.bootstrap). Accuracy and macro-F1 also get Holm-adjusted
    p-values and intervals (`p_holm`, `ci_low_adj`, `ci_high_adj`; engine.bootstrap.holm), each metric one
    family of len(pairs) comparisons."""
    used = sorted({arm for pair in pairs for arm in pair})
    flat = [(arm, i) for arm in used for i in range(len(probs[arm]))]
    scores = resample_scores(
        labels,
        [probs[arm][i].argmax(axis=1) for arm, i in flat],
        k,
        resamples=resamples,
        seed=BOOTSTRAP_SEED,
        on_progress=on_progress,
    )
    by_arm: dict[str, list[dict]] = {}
    for (arm, _), s in zip(flat, scores, strict=True):
        by_arm.setdefault(arm, []).append(s)
    comparisons, samples = {}, {}
    for a, b in pairs:
        name = f"{a}_vs_{b}"
        comparisons[name] = {
            metric: paired_difference([s[metric] for s in by_arm[a]], [s[metric] for s in by_arm[b]])
            for metric in ("accuracy", "macro_f1", "per_class_f1")
        }
        samples[name] = {
            metric: difference_samples([s[metric] for s in by_arm[a]], [s[metric] for s in by_arm[b]])[1]
            for metric in ADJUSTED
        }
    adjust(comparisons, samples, ADJUSTED)
    return comparisons


ADJUSTED = ("accuracy", "macro_f1")  # the metrics verdicts read; per-class F1 is shown unadjusted


def adjustment(comparisons: dict) -> dict:
    """How the run's intervals and p-values were adjusted (results.json `adjustment`)."""
    return {
        "method": "holm",
        "comparisons": len(comparisons),
        "metrics": list(ADJUSTED),
        "alpha": ALPHA,
        "note": "each metric is one family of every comparison of the run; per-class F1 is not adjusted",
    }


def _sign(c: dict) -> int:
    """+1: the whole adjusted 95% interval is above 0; -1: below; 0: it contains 0 (Holm does not reject)."""
    return 1 if c["ci_low_adj"] > 0 else -1 if c["ci_high_adj"] < 0 else 0


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def verdict(arm: str, plan: dict, comparisons: dict) -> str:
    """One plain line per arm: against baseline, then any other named arm, then its control, by macro-F1
    (accuracy in brackets), on intervals and p-values adjusted (Holm) for every comparison of the run."""

    def phrase(other: str, words: tuple[str, str, str]) -> str:
        c = comparisons[f"{arm}_vs_{other}"]
        f1, acc = c["macro_f1"], c["accuracy"]
        word = words[{1: 0, -1: 1, 0: 2}[_sign(f1)]]
        return (
            f"{word} (macro-F1 {f1['diff']:+.4f} [{f1['ci_low_adj']:+.4f}, {f1['ci_high_adj']:+.4f}] "
            f"{_p(f1['p_holm'])}, accuracy {acc['diff']:+.4f} [{acc['ci_low_adj']:+.4f}, {acc['ci_high_adj']:+.4f}])"
        )

    line = f"{arm}: " + phrase("baseline", ("better than baseline", "worse than baseline", "no clear change"))
    for other in plan[arm].get("also", ()):
        line += f"; vs {other}: " + phrase(other, (f"better than {other}", f"worse than {other}", "no clear change"))
    control = plan[arm]["control"]
    if control is not None:
        line += (
            "; vs its control "
            + control
            + ": "
            + phrase(
                control, ("better: the selection itself helps", "worse than its control", "no better than its control")
            )
        )
    return line + f" (Holm-adjusted for {len(comparisons)} comparisons)"


# ------------------------------------------------------------------------------------------------ runner
# The cells (keys, fitting, who runs which, resuming) are engine.experiment_cells.


def compare(
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    k: int,
    class_names: list[str],
    targeted: pl.DataFrame | None = None,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    config: CompareConfig,
    cells_dir: Path,
    strategies: dict[str, pl.DataFrame] | None = None,
    flagged: pl.DataFrame | None = None,
    cleaning: tuple[str, ...] = CLEANING_ARMS,
    extra_pairs: Sequence[tuple[str, str]] = (),
    on_progress: OnProgress | None = None,
) -> dict:
    """Run every (arm, seed) cell and return the results (JSON-ready). `targeted` / `strategies`: kept
    augmentations of each selection; `flagged`: training rows with mined scores for the `cleaning` arms
    (see `arm_training_sets`); `extra_pairs`: more (arm, other) comparisons, named in the arm's verdict
    (e.g. a proportional budget vs the uniform one). The cells are saved in the job folder `cells_dir`.
    `on_progress` hears of each cell ("cells", unit "cell", detail: arm, seed), then of the bootstrap
    resamples ("bootstrap", unit "resample")."""
    texts = _texts(train, test, targeted, random_pool, all_pool, strategies)
    backend = check_classifier(config, k=k, class_names=class_names, frames=texts)
    with Job(cells_dir, cells_key(config, test, k), stale="discard", what="compare job") as job:
        results, _ = _compare(
            job, train, test, k=k, class_names=class_names, targeted=targeted, random_pool=random_pool,
            all_pool=all_pool, config=config, strategies=strategies, flagged=flagged, cleaning=cleaning,
            extra_pairs=extra_pairs, on_progress=on_progress, backend=backend,
        )  # fmt: skip
    return results


def _texts(train, test, targeted, random_pool, all_pool, strategies) -> dict[str, pl.DataFrame | None]:
    """Every table whose texts a cell may train on or predict, named for a message."""
    return {"training data": train, "test data": test, "--targeted": targeted, "--random": random_pool,
            "--all": all_pool, **{f"--strategy {name}": rows for name, rows in (strategies or {}).items()}}  # fmt: skip


RESULTS = ("results.json", "results.md", "results.svg")


def run_compare(
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    out_dir: Path,
    k: int,
    class_names: list[str],
    targeted: pl.DataFrame | None = None,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    config: CompareConfig,
    strategies: dict[str, pl.DataFrame] | None = None,
    flagged: pl.DataFrame | None = None,
    cleaning: tuple[str, ...] = CLEANING_ARMS,
    extra_pairs: Sequence[tuple[str, str]] = (),
    extra: Mapping[str, object] | None = None,
    on_progress: OnProgress | None = None,
    only_cells: CellSelection | None = None,
    ray: Any = None,
) -> tuple[dict, bool]:
    """`compare` into `out_dir` (what `hardaug compare` does after parsing): the cells are parts of the job
    folder `out_dir/.job` (locked while it runs: a second compare into the folder is refused), `extra` is
    added to the results, and results.json, .md and .svg are written, then the done marker. Returns the
    results and whether they were already there: the same inputs and options finished in `out_dir` and its
    files are what that run wrote ("up to date": nothing is run).

    `only_cells` (engine.experiment_cells.only_cells): fit and save only those cells, in a job shared with
    other processes on other cells, and stop; returns {"cells": [what was fitted]} and False. `ray`
    (engine.cluster.session.ClusterOptions): every unsaved cell as a Ray task (one GPU each on CUDA), then
    the tables here. The classifier is checked first (model, device, texts): nothing is written on bad input."""
    if only_cells is not None and ray is not None:
        raise ValueError("--only-cells and --ray exclude each other: with --ray, Ray spreads the cells")
    named = {"targeted": targeted} if targeted is not None else {}
    named.update(strategies or {})
    result_key = job_fingerprint(
        "compare",
        {"config": config.job(), "fit": FIT, "k": k, "classes": class_names, "cleaning": list(cleaning),
         "extra_pairs": [list(p) for p in extra_pairs], "extra": dict(extra or {}), "strategies": list(named)},
        {"train": train, "test": test, "random": random_pool, "all": all_pool, "flagged": flagged,
         **{f"strategy {name}": rows for name, rows in named.items()}},
    )  # fmt: skip
    outputs = [out_dir / name for name in RESULTS]
    key = cells_key(config, test, k)
    job_args = {"stale": "discard", "outputs": outputs, "result_key": result_key, "what": "compare job"}
    backend = None
    if Job(out_dir / ".job", key, **job_args).finished() is not None:  # a look without the lock; checked below
        if only_cells is not None:
            return {"cells": []}, True
    else:  # before anything is written
        texts = _texts(train, test, targeted, random_pool, all_pool, strategies)
        backend = check_classifier(config, k=k, class_names=class_names, frames=texts)
    arms = {"targeted": targeted, "random_pool": random_pool, "all_pool": all_pool, "config": config,
            "strategies": strategies, "flagged": flagged, "cleaning": cleaning}  # fmt: skip
    if only_cells is not None or ray is not None:
        with Job(out_dir / ".job", key, shared=True, **job_args) as job:
            cells = Cells(
                job, test, k, config, backend, only=only_cells, defer=ray is not None, on_progress=on_progress
            )
            _run_cells(cells, train, **arms)
            if only_cells is not None:
                return {"cells": cells.ran}, False
            if cells.pending:
                run_cells_on_ray(cells.pending, test, job=job, config=config, k=k, class_names=class_names,
                                 options=ray, on_progress=on_progress)  # fmt: skip
        if on_progress is not None:  # the cells were reported as they landed; assembling reuses them all
            hear = on_progress
            on_progress = lambda p: p.unit == "cell" or hear(p)  # noqa: E731
    with Job(out_dir / ".job", key, **job_args) as job:
        if job.finished() is not None:
            return json.loads((out_dir / "results.json").read_text(encoding="utf-8")), True
        results, used = _compare(
            job, train, test, k=k, class_names=class_names, extra_pairs=extra_pairs, on_progress=on_progress,
            backend=backend, **arms,
        )  # fmt: skip
        results.update(extra or {})
        write_results(results, out_dir)
        job.finish({"arms": list(results["arms"])}, keep=used)  # the cells stay: more seeds or arms reuse them
    return results, False


def _compare(
    job: Job,
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    k: int,
    class_names: list[str],
    targeted: pl.DataFrame | None,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    config: CompareConfig,
    strategies: dict[str, pl.DataFrame] | None,
    flagged: pl.DataFrame | None,
    cleaning: tuple[str, ...],
    extra_pairs: Sequence[tuple[str, str]],
    on_progress: OnProgress | None,
    backend: object = None,
) -> tuple[dict, set[str]]:
    """The results and the keys of the cells they used."""
    names = (["targeted"] if targeted is not None else []) + list(strategies or {})
    labels = test["label"].to_numpy()
    cells = Cells(job, test, k, config, backend, on_progress=on_progress)
    probs, sizes, sets = _run_cells(
        cells, train, targeted=targeted, random_pool=random_pool, all_pool=all_pool, config=config,
        strategies=strategies, flagged=flagged, cleaning=cleaning,
    )  # fmt: skip
    results = _tables(
        probs, sizes, sets, train, test, labels=labels, k=k, class_names=class_names, names=names, config=config,
        extra_pairs=extra_pairs, on_progress=on_progress,
    )  # fmt: skip
    return results, cells.used()


def _run_cells(
    cells: Cells,
    train: pl.DataFrame,
    *,
    targeted: pl.DataFrame | None,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    config: CompareConfig,
    strategies: dict[str, pl.DataFrame] | None,
    flagged: pl.DataFrame | None,
    cleaning: tuple[str, ...],
) -> tuple[dict[str, list], dict[str, dict], dict[str, pl.DataFrame]]:
    """Every (arm, seed) cell through `cells`, in compare's order (seeds, then arms): each arm's test
    probabilities per seed (None for a cell `cells` did not run here), its sizes, and the last seed's sets."""
    probs: dict[str, list] = {}
    sizes: dict[str, dict] = {}
    sets: dict[str, pl.DataFrame] = {}
    for seed in config.seeds:
        sets = arm_training_sets(
            train,
            targeted=targeted,
            strategies=strategies,
            random_pool=random_pool,
            all_pool=all_pool,
            seed=seed,
            flagged=flagged,
            cleaning=cleaning,
            relabel_confidence=config.relabel_confidence,
            weights=config.weights,
            combine=config.combined(),
        )
        cells.total = cells.total or len(sets) * len(config.seeds)
        for arm, train_set in sets.items():
            probs.setdefault(arm, []).append(cells.cell(arm, seed, train_set))
            sizes[arm] = {"train_rows": train_set.height, "added_rows": train_set.height - train.height}
            if arm in CLEANING_ARMS or arm in CLEANING_CONTROLS.values() or arm in SCHEMES or arm in SHUFFLED.values():
                sizes[arm]["changed_rows"] = changed_rows(arm, flagged, train_set, train.height)
    return probs, sizes, sets


def _tables(probs, sizes, sets, train, test, *, labels, k, class_names, names, config, extra_pairs, on_progress):
    """The results (JSON-ready) from every cell's test probabilities, one array per arm and seed."""
    plan = arm_plan(sets, names)
    arms = {}
    for arm, runs in probs.items():
        per_seed = [metrics(labels, p, k, config.confident_threshold) for p in runs]
        arms[arm] = {
            **plan[arm],
            **sizes[arm],
            "per_seed": per_seed,
            "mean": {
                m: float(np.mean([r[m] for r in per_seed])) for m in ("accuracy", "macro_f1", "confidently_wrong")
            },
            "std": {m: float(np.std([r[m] for r in per_seed])) for m in ("accuracy", "macro_f1", "confidently_wrong")},
            "per_class_f1": np.mean([r["per_class_f1"] for r in per_seed], axis=0).tolist(),
        }

    pairs = [(arm, "baseline") for arm in probs if arm != "baseline"]
    pairs += [(arm, p["control"]) for arm, p in plan.items() if p["control"] is not None]
    pairs += [(arm, other) for arm, p in plan.items() for other in p.get("also", ())]
    pairs += [pair for pair in extra_pairs if pair not in pairs]
    for arm, other in extra_pairs:
        plan[arm] = {**plan[arm], "also": [*plan[arm].get("also", ()), other]}
    comparisons = compare_pairs(labels, probs, pairs, k=k, resamples=config.bootstrap, on_progress=on_progress)
    verdicts = {arm: verdict(arm, plan, comparisons) for arm, p in plan.items() if p["kind"] in VERDICT_KINDS}
    results = {
        "classes": class_names,
        "test_rows": test.height,
        "train_rows": train.height,
        "seeds": list(config.seeds),
        "classifier": config.classifier(),
        "relabel_confidence": config.relabel_confidence,
        "arms": arms,
        "comparisons": comparisons,
        "adjustment": adjustment(comparisons),
        "verdicts": verdicts,
    }
    return results


# ----------------------------------------------------------------------------------------------- output
def _ci(c: dict, i: int | None = None, *, adjusted: bool = False) -> str:
    keys = ("diff", "ci_low_adj", "ci_high_adj") if adjusted else ("diff", "ci_low", "ci_high")
    d, lo, hi = (c[key] if i is None else c[key][i] for key in keys)
    return f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def _main_arms(results: dict) -> list[str]:
    return [arm for arm, r in results["arms"].items() if r.get("kind", "strategy") in VERDICT_KINDS]


def results_markdown(results: dict) -> str:
    names = results["classes"]
    arms = results["arms"]
    lines = [
        f"# Targeted augmentation: {results['train_rows']:,} training rows, {results['test_rows']:,} test rows, "
        f"seeds {results['seeds']}",
        "",
        "| arm | added rows | accuracy | macro-F1 | " + " | ".join(f"F1 {n}" for n in names) + " | confidently wrong |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for arm, r in arms.items():
        added = (
            f"{r['added_rows']:,}"
            if "changed_rows" not in r
            else f"{r['added_rows']:,} ({r['changed_rows']:,} changed)"
        )
        lines.append(
            f"| {arm} | {added} | {r['mean']['accuracy']:.4f} ± {r['std']['accuracy']:.4f} | "
            f"{r['mean']['macro_f1']:.4f} ± {r['std']['macro_f1']:.4f} | "
            + " | ".join(f"{f:.4f}" for f in r["per_class_f1"])
            + f" | {r['mean']['confidently_wrong']:.1f} |"
        )
    comparisons = results["comparisons"]
    m = len(comparisons)
    lines += [
        "",
        "## Gain of each arm over baseline and over its control (paired bootstrap 95% CI, pooled over seeds, "
        f"Holm-adjusted for the {m} comparisons of the run)",
        "",
        "| arm | accuracy vs baseline | macro-F1 vs baseline | control | accuracy vs control | macro-F1 vs control |",
        "|---|---|---|---|---|---|",
    ]
    main = _main_arms(results)
    for arm in main:
        base = comparisons[f"{arm}_vs_baseline"]
        control = arms[arm].get("control")
        vs = comparisons.get(f"{arm}_vs_{control}") if control else None
        acc, f1 = (_ci(base[metric], adjusted=True) for metric in ("accuracy", "macro_f1"))
        vs_acc, vs_f1 = (_ci(vs[metric], adjusted=True) if vs else "-" for metric in ("accuracy", "macro_f1"))
        lines.append(f"| {arm} | {acc} | {f1} | {control or '-'} | {vs_acc} | {vs_f1} |")
    lines += [
        "",
        "## Per-class F1 gain over baseline (95% CI, not adjusted)",
        "",
        "| arm | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for arm in main:
        c = comparisons[f"{arm}_vs_baseline"]["per_class_f1"]
        lines.append(f"| {arm} | " + " | ".join(_ci(c, i) for i in range(len(names))) + " |")
    if results.get("verdicts"):
        lines += [
            "",
            "## Verdicts (macro-F1 decides; an adjusted interval that contains 0 is no evidence of a change)",
            "",
        ]
        lines += [f"- {line}" for line in results["verdicts"].values()]
    lines += [
        "",
        f"## Every comparison (raw, and adjusted by Holm's method for {m} comparisons per metric)",
        "",
        "| comparison | metric | difference | 95% CI (paired bootstrap) | p | adjusted 95% CI | adjusted p |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_metric in comparisons.items():
        for metric_name in ("accuracy", "macro_f1"):
            c = by_metric[metric_name]
            lines.append(
                f"| {name.replace('_vs_', ' vs ')} | {metric_name} | {c['diff']:+.4f} | "
                f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p']:.3f} | "
                f"[{c['ci_low_adj']:+.4f}, {c['ci_high_adj']:+.4f}] | {c['p_holm']:.3f} |"
            )
    overlap = results.get("test_overlap")
    if overlap:
        kept = "left out (--drop-test-overlap)" if overlap["dropped"] else "kept (--drop-test-overlap leaves them out)"
        lines += [
            "",
            f"Train/test overlap: {overlap['exact']:,} of {overlap['test_rows']:,} test texts are in the training set "
            f"word for word and {overlap['near']:,} nearly (cosine >= {overlap['near_threshold']:g}); {kept}.",
        ]
    lines.append("")
    lines.append(
        "± is the standard deviation over seeds. added rows: rows added to the training set (negative: dropped); "
        "changed: rows dropped, relabeled or reweighted. An interval that contains 0 is no evidence of a difference. "
        "p: two-sided bootstrap p-value (resolution 2 / resamples); adjusted: Holm's step-down method over every "
        "comparison of the run, per metric (the chance of any false verdict stays <= 5%); each adjusted interval "
        "is read at the level Holm tests its comparison at, so it excludes 0 exactly where Holm rejects."
    )
    return "\n".join(lines) + "\n"


def plot_results(results: dict) -> str:
    """Every arm's gain over baseline (filled) and over its control (open), accuracy and macro-F1, and its
    per-class F1 gain over baseline, with 95% intervals (Holm-adjusted; per-class raw), as SVG (text kept as
    text: class names searchable)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    comparisons = results["comparisons"]
    main = _main_arms(results)
    names = results["classes"]
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "hardaug"}):
        fig, axes = plt.subplots(1, 3, figsize=(12, 0.9 + 0.55 * max(len(main), 1)), sharey=True)
        for ax, metric_name in zip(axes[:2], ("accuracy", "macro_f1"), strict=True):
            for i, arm in enumerate(main):
                control = results["arms"][arm].get("control")
                for other, marker, offset in (("baseline", "o", -0.12), (control, "s", 0.12)):
                    if other is None:
                        continue
                    m = comparisons[f"{arm}_vs_{other}"][metric_name]
                    ax.errorbar(  # the adjusted interval: the one the verdict reads
                        m["diff"],
                        i + offset,
                        xerr=[[m["diff"] - m["ci_low_adj"]], [m["ci_high_adj"] - m["diff"]]],
                        fmt=marker,
                        mfc="#4c72b0" if other == "baseline" else "white",
                        color="#4c72b0",
                        capsize=3,
                        label=("vs baseline" if other == "baseline" else "vs its control") if i == 0 else None,
                    )
            ax.axvline(0, color="#999", lw=0.8, ls="--")
            ax.set_title({"accuracy": "accuracy gain", "macro_f1": "macro-F1 gain"}[metric_name])
            ax.xaxis.set_major_locator(MaxNLocator(5))
        axes[0].legend(frameon=False, fontsize=8, loc="best")
        ax = axes[2]
        width = 0.8 / max(len(names), 1)
        for c, name in enumerate(names):
            for i, arm in enumerate(main):
                m = comparisons[f"{arm}_vs_baseline"]["per_class_f1"]
                y = i - 0.4 + width * (c + 0.5)
                ax.errorbar(
                    m["diff"][c],
                    y,
                    xerr=[[m["diff"][c] - m["ci_low"][c]], [m["ci_high"][c] - m["diff"][c]]],
                    fmt="o",
                    ms=3,
                    color=colors[c % len(colors)],
                    capsize=2,
                    label=name if i == 0 else None,
                )
        ax.axvline(0, color="#999", lw=0.8, ls="--")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_title("per-class F1 gain vs baseline")
        ax.legend(frameon=False, fontsize=8, loc="best")
        axes[0].set_yticks(range(len(main)), main)
        axes[0].invert_yaxis()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
    return buf.getvalue()


def write_results(results: dict, out_dir: Path) -> None:
    write_text(plot_results(results), out_dir / "results.svg")
    write_text(results_markdown(results), out_dir / "results.md")
    write_json(results, out_dir / "results.json")
