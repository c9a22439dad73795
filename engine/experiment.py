"""Does targeted augmentation help? Retrain on each arm, evaluate on held-out test data, compare honestly.

Arms (each trained with the same classifier and options):
- `baseline`: the original training data;
- `targeted`: original + the kept augmentations of the selected hard samples;
- `random`: original + the same number of kept augmentations, per method, drawn from augmentations of
  randomly chosen samples: the control that separates "targeting helps" from "more data helps";
- `all` (optional): original + augmentations of every sample, to compare cost and gain.

Seeds vary which random-arm augmentations are drawn (and the classifier's own randomness where it has
any; TF-IDF + logistic regression has none, so arms whose training rows do not depend on the seed are
trained once and reused). Differences between arms come with paired bootstrap 95% intervals over the
test rows, pooled over seeds: each resample draws test rows with replacement and averages the per-seed
differences, so the interval reflects both test-set sampling and seed variation.

Each (arm, seed) cell is saved when done (test predictions + metrics) and skipped on a rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import accuracy_score, f1_score

from engine.bootstrap import paired_difference, resample_scores
from engine.config import TfidfConfig
from engine.errors import InputError
from engine.io import write_json, write_parquet
from engine.oof.tfidf import FIT, fit_model, predict_proba
from engine.schema import prob_columns

log = logging.getLogger(__name__)

ARMS = ("baseline", "targeted", "random", "all")


@dataclass(frozen=True)
class CompareConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    bootstrap: int = 1000
    confident_threshold: float = 0.9  # "confidently wrong": wrong with top probability >= this
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("need at least one seed")
        if self.bootstrap < 100:
            raise ValueError(f"bootstrap must be >= 100 resamples, got {self.bootstrap}")
        if not 0 < self.confident_threshold <= 1:
            raise ValueError(f"confident_threshold must be in (0, 1], got {self.confident_threshold}")


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
    return augmented.select(pl.col("text").cast(pl.String), pl.col("label").cast(pl.Int64), pl.col("method"))


def match_counts(targeted: pl.DataFrame, pool: pl.DataFrame, seed: int, source: str) -> pl.DataFrame:
    """Draw from `pool` exactly as many rows per method as `targeted` has."""
    need = dict(targeted.group_by("method").len().iter_rows())
    have = dict(pool.group_by("method").len().iter_rows())
    short = {m: (n, have.get(m, 0)) for m, n in need.items() if have.get(m, 0) < n}
    if short:
        detail = ", ".join(f"{m}: need {n}, have {h}" for m, (n, h) in short.items())
        raise InputError(
            f"{source}: too few random-arm augmentations to match the targeted arm ({detail}). Augment more "
            "random samples (the random arm must get as many added rows as the targeted arm)."
        )
    parts = [
        pool.filter(pl.col("method") == m).sample(n=n, seed=seed + i, shuffle=True)
        for i, (m, n) in enumerate(sorted(need.items()))
    ]
    return pl.concat(parts) if parts else pool.head(0)


def arm_training_sets(
    train: pl.DataFrame,
    *,
    targeted: pl.DataFrame,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    seed: int,
    random_source: str = "random-arm augmentations",
) -> dict[str, pl.DataFrame]:
    """Training frames (text, label) of each arm for one seed; `random` has as many added rows per
    method as `targeted`."""
    base = train.select("text", "label")
    sets = {"baseline": base, "targeted": pl.concat([base, targeted.select("text", "label")])}
    if random_pool is not None:
        drawn = match_counts(targeted, random_pool, seed, random_source)
        sets["random"] = pl.concat([base, drawn.select("text", "label")])
    if all_pool is not None:
        sets["all"] = pl.concat([base, all_pool.select("text", "label")])
    return sets


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
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict]:
    """Paired bootstrap differences `a - b` of every pair of arms, for accuracy, macro-F1 and per-class F1.
    `probs[arm]` holds the arm's test probabilities, one array per seed. Every arm's metrics are computed
    once on one shared set of resamples (see engine.bootstrap)."""
    used = sorted({arm for pair in pairs for arm in pair})
    flat = [(arm, i) for arm in used for i in range(len(probs[arm]))]
    scores = resample_scores(
        labels,
        [probs[arm][i].argmax(axis=1) for arm, i in flat],
        k,
        resamples=resamples,
        seed=BOOTSTRAP_SEED,
        progress=progress,
    )
    by_arm: dict[str, list[dict]] = {}
    for (arm, _), s in zip(flat, scores, strict=True):
        by_arm.setdefault(arm, []).append(s)
    return {
        f"{a}_vs_{b}": {
            metric: paired_difference([s[metric] for s in by_arm[a]], [s[metric] for s in by_arm[b]])
            for metric in ("accuracy", "macro_f1", "per_class_f1")
        }
        for a, b in pairs
    }


# ------------------------------------------------------------------------------------------------ runner
def _cell_key(config: CompareConfig, train_set: pl.DataFrame, test: pl.DataFrame) -> str:
    # TF-IDF + logistic regression (lbfgs) has no randomness: the model depends only on its training rows,
    # so the key leaves the arm and seed out and identical training sets are trained once.
    digest = hashlib.sha256(json.dumps({**asdict(config.tfidf), "fit": FIT}, sort_keys=True).encode())
    for frame in (train_set, test.select("text", "label")):
        digest.update(frame.hash_rows(seed=3).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def run_cell(
    train_set: pl.DataFrame,
    test: pl.DataFrame,
    *,
    k: int,
    config: CompareConfig,
    path: Path,
    key: str,
    memo: dict[str, np.ndarray],
) -> np.ndarray:
    """Train on `train_set`, predict `test`; reuse the saved cell when its key matches, or the result of an
    identical training set in this run (`memo`)."""
    if path.exists():
        saved = pl.read_parquet(path)
        if saved.height == test.height and saved["key"][0] == key:
            log.info("reusing %s", path.name)
            memo[key] = saved.select(prob_columns(k)).to_numpy()
            return memo[key]
    if key in memo:
        probs = memo[key]
    else:
        model = fit_model(config.tfidf, train_set["text"].to_list(), train_set["label"].to_numpy())
        probs = memo[key] = predict_proba(model, test["text"].to_list(), k)
    write_parquet(pl.DataFrame(probs, schema=prob_columns(k)).with_columns(pl.lit(key).alias("key")), path)
    return probs


def compare(
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    k: int,
    class_names: list[str],
    targeted: pl.DataFrame,
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    config: CompareConfig,
    cells_dir: Path,
    on_cell_done: Callable[[str, int], None] | None = None,
    on_bootstrap: Callable[[int, int], None] | None = None,
) -> dict:
    """Run every (arm, seed) cell and return the results (JSON-ready). `on_bootstrap(done, total)` reports
    the resamples of the bootstrap."""
    labels = test["label"].to_numpy()
    probs: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, dict] = {}
    memo: dict[str, np.ndarray] = {}
    for seed in config.seeds:
        sets = arm_training_sets(train, targeted=targeted, random_pool=random_pool, all_pool=all_pool, seed=seed)
        for arm, train_set in sets.items():
            key = _cell_key(config, train_set, test)
            path = cells_dir / f"{arm}_seed{seed}.parquet"
            probs.setdefault(arm, []).append(
                run_cell(train_set, test, k=k, config=config, path=path, key=key, memo=memo)
            )
            sizes[arm] = {"train_rows": train_set.height, "added_rows": train_set.height - train.height}
            if on_cell_done is not None:
                on_cell_done(arm, seed)

    arms = {}
    for arm, runs in probs.items():
        per_seed = [metrics(labels, p, k, config.confident_threshold) for p in runs]
        arms[arm] = {
            **sizes[arm],
            "per_seed": per_seed,
            "mean": {
                m: float(np.mean([r[m] for r in per_seed])) for m in ("accuracy", "macro_f1", "confidently_wrong")
            },
            "std": {m: float(np.std([r[m] for r in per_seed])) for m in ("accuracy", "macro_f1", "confidently_wrong")},
            "per_class_f1": np.mean([r["per_class_f1"] for r in per_seed], axis=0).tolist(),
        }

    pairs = [
        (a, b)
        for a, b in (("targeted", "baseline"), ("targeted", "random"), ("random", "baseline"), ("all", "baseline"))
        if a in probs and b in probs
    ]
    comparisons = compare_pairs(labels, probs, pairs, k=k, resamples=config.bootstrap, progress=on_bootstrap)
    return {
        "classes": class_names,
        "test_rows": test.height,
        "train_rows": train.height,
        "seeds": list(config.seeds),
        "classifier": {"backend": "tfidf", **asdict(config.tfidf)},
        "arms": arms,
        "comparisons": comparisons,
    }


# ----------------------------------------------------------------------------------------------- output
def results_markdown(results: dict) -> str:
    names = results["classes"]
    lines = [
        f"# Targeted augmentation: {results['train_rows']:,} training rows, {results['test_rows']:,} test rows, "
        f"seeds {results['seeds']}",
        "",
        "| arm | added rows | accuracy | macro-F1 | " + " | ".join(f"F1 {n}" for n in names) + " | confidently wrong |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for arm in ARMS:
        if arm not in results["arms"]:
            continue
        r = results["arms"][arm]
        lines.append(
            f"| {arm} | {r['added_rows']:,} | {r['mean']['accuracy']:.4f} ± {r['std']['accuracy']:.4f} | "
            f"{r['mean']['macro_f1']:.4f} ± {r['std']['macro_f1']:.4f} | "
            + " | ".join(f"{f:.4f}" for f in r["per_class_f1"])
            + f" | {r['mean']['confidently_wrong']:.1f} |"
        )
    lines += ["", "| comparison | metric | difference | 95% CI (paired bootstrap) |", "|---|---|---|---|"]
    for name, by_metric in results["comparisons"].items():
        for metric_name in ("accuracy", "macro_f1"):
            c = by_metric[metric_name]
            lines.append(
                f"| {name.replace('_vs_', ' vs ')} | {metric_name} | {c['diff']:+.4f} | "
                f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] |"
            )
    lines.append("")
    lines.append("± is the standard deviation over seeds. An interval that contains 0 is no evidence of a difference.")
    return "\n".join(lines) + "\n"


def plot_results(results: dict) -> str:
    """Accuracy and macro-F1 difference vs baseline per arm, with 95% intervals, as SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    rows = list(results["comparisons"].items())
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.6 + 0.5 * max(len(rows), 1)), sharey=True)
    for ax, metric_name in zip(axes, ("accuracy", "macro_f1"), strict=True):
        for i, (_, c) in enumerate(rows):
            m = c[metric_name]
            ax.errorbar(m["diff"], i, xerr=[[m["diff"] - m["ci_low"]], [m["ci_high"] - m["diff"]]], fmt="o", capsize=3)
        ax.axvline(0, color="#999", lw=0.8, ls="--")
        ax.set_title(f"{metric_name} difference")
        ax.set_yticks(range(len(rows)), [n.replace("_vs_", " vs ") for n, _ in rows])
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def write_results(results: dict, out_dir: Path) -> None:
    from engine.io import write_text

    write_text(plot_results(results), out_dir / "results.svg")
    write_text(results_markdown(results), out_dir / "results.md")
    write_json(results, out_dir / "results.json")
