"""Paired bootstrap of classification metrics, vectorized over resamples.

A resample draws the test rows with replacement; every metric `compare` reports (accuracy, macro-F1,
per-class F1) is a function of the confusion counts of the drawn rows. So instead of calling sklearn on
each resample, the draws are turned into a count matrix W (resamples x rows: how often each row was
drawn) and all confusion counts of every prediction vector come from one matrix product W @ indicators.
The draws are the same as the per-resample loop's (`rng.integers(0, n, size=n)` once per resample, one
generator seeded with `seed`), and the formulas are sklearn's (F1 = 2 tp / (true + predicted), 0 when
both are 0; macro = the mean over classes), so the intervals equal those of the loop.

Counts are exact: W and the indicators are small integers, and float32 sums integers exactly below 2**24
(a test set of up to 16 million rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.progress import OnProgress, report

CHUNK = 100  # resamples per matrix product: W is CHUNK x rows float32 (11 MB for 27,500 test rows)


@dataclass(frozen=True)
class Scores:
    """A metric of one prediction vector: on all test rows (`point`) and on every resample (`samples`).
    For per-class F1, `point` has shape (k,) and `samples` (resamples, k)."""

    point: np.ndarray | float
    samples: np.ndarray


def _f1_from_counts(tp: np.ndarray, true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    denom = true + predicted
    return np.divide(2.0 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def resample_scores(
    labels: np.ndarray,
    preds: Sequence[np.ndarray],
    k: int,
    *,
    resamples: int,
    seed: int,
    on_progress: OnProgress | None = None,
) -> list[dict[str, Scores]]:
    """Accuracy, macro-F1 and per-class F1 of each prediction vector in `preds`, on all rows and on the
    same `resamples` bootstrap resamples of the test rows. `on_progress` ("bootstrap", unit "resample")
    after each chunk."""
    labels = np.asarray(labels)
    n, m = len(labels), len(preds)
    # Indicator columns: true class c (k), then per prediction vector tp of class c (k) and predicted c (k).
    classes = np.arange(k)
    is_true = labels[:, None] == classes
    columns = [is_true]
    for p in preds:
        is_pred = np.asarray(p)[:, None] == classes
        columns += [is_true & is_pred, is_pred]
    indicators = np.concatenate(columns, axis=1).astype(np.float32)

    def metrics_of(counts: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        counts = counts.astype(np.float64)
        true = counts[:, :k]
        out = []
        for j in range(m):
            tp = counts[:, k + 2 * j * k : k + (2 * j + 1) * k]
            predicted = counts[:, k + (2 * j + 1) * k : k + (2 * j + 2) * k]
            per_class = _f1_from_counts(tp, true, predicted)
            out.append((tp.sum(axis=1) / n, per_class.mean(axis=1), per_class))
        return out

    full = metrics_of(indicators.sum(axis=0, dtype=np.float64)[None, :])
    rng = np.random.default_rng(seed)
    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        weights = np.empty((size, n), dtype=np.float32)
        for r in range(size):  # one draw per resample, exactly as a per-resample loop makes them
            weights[r] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        parts.append(metrics_of(weights @ indicators))
        report(on_progress, "bootstrap", "resample", start + size, resamples, step=size)
    out = []
    for j in range(m):
        acc, macro, per_class = (np.concatenate([part[j][i] for part in parts]) for i in range(3))
        out.append(
            {
                "accuracy": Scores(float(full[j][0][0]), acc),
                "macro_f1": Scores(float(full[j][1][0]), macro),
                "per_class_f1": Scores(full[j][2][0], per_class),
            }
        )
    return out


ALPHA = 0.05  # 95% intervals; the family-wise error rate Holm keeps


def difference_samples(a: Sequence[Scores], b: Sequence[Scores]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of metric(a) - metric(b): on all rows, and on every resample."""
    point = np.mean([np.asarray(x.point) - np.asarray(y.point) for x, y in zip(a, b, strict=True)], axis=0)
    samples = np.mean([x.samples - y.samples for x, y in zip(a, b, strict=True)], axis=0)
    return point, samples


def interval(samples: np.ndarray, level: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval that leaves `level` / 2 of the resamples out on each side (level 0.05: the
    95% interval)."""
    lo, hi = np.percentile(samples, [50 * level, 100 - 50 * level], axis=0)
    return lo, hi


def p_value(samples: np.ndarray) -> np.ndarray | float:
    """Two-sided bootstrap p-value of "no difference": twice the smaller share of resampled differences on
    either side of 0 (at most 1). Its resolution is 2 / resamples."""
    return np.minimum(1.0, 2 * np.minimum((samples <= 0).mean(axis=0), (samples >= 0).mean(axis=0)))


def paired_difference(a: Sequence[Scores], b: Sequence[Scores]) -> dict:
    """Mean over seeds of metric(a) - metric(b), with a percentile 95% interval over the resamples (not
    adjusted for other comparisons: see `adjust`).

    `a[i]` and `b[i]` are the scores of seed i of two arms, computed on the same resamples. For per-class
    F1 each value is a list over classes."""
    point, samples = difference_samples(a, b)
    lo, hi = interval(samples)
    p_le_0 = (samples <= 0).mean(axis=0)
    if np.ndim(point) == 0:
        return {"diff": float(point), "ci_low": float(lo), "ci_high": float(hi), "p_le_0": float(p_le_0)}
    return {"diff": point.tolist(), "ci_low": lo.tolist(), "ci_high": hi.tolist(), "p_le_0": p_le_0.tolist()}


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment of m p-values: the adjusted p-values (reject where <= alpha: the chance of
    any false "better"/"worse" among the m stays <= alpha), and the level at which each comparison's interval
    is read so that it excludes 0 exactly where Holm rejects.

    Sorted ascending, the r-th p-value is tested at alpha / (m - r + 1) while every smaller one was
    rejected; from the first that is not, all the rest are read at that same level (their p-values are at
    least as large, so their intervals contain 0). One comparison: its own p-value and alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    factors = m - np.arange(m)  # m, m-1, ..., 1
    adjusted, levels = np.empty(m), np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * factors))
    step = alpha / factors
    accepted = np.flatnonzero(p[order] > step)
    if accepted.size:
        step[accepted[0] :] = step[accepted[0]]
    levels[order] = step
    return adjusted, levels


def adjust(comparisons: dict[str, dict], samples: dict[str, dict[str, np.ndarray]], metrics: Sequence[str]) -> None:
    """Add the raw p-value (`p`), Holm-adjusted p-values (`p_holm`) and intervals (`ci_low_adj`,
    `ci_high_adj`) of each of `metrics` to `comparisons` (name -> metric -> paired_difference), in place.
    Each metric is one family of len(comparisons) comparisons; `samples[name][metric]` are the resampled
    differences of that comparison."""
    names = list(comparisons)
    for metric in metrics:
        for name in names:
            comparisons[name][metric]["p"] = float(p_value(samples[name][metric]))
        adjusted, levels = holm([comparisons[n][metric]["p"] for n in names])
        for name, p_adj, level in zip(names, adjusted, levels, strict=True):
            lo, hi = interval(samples[name][metric], level)
            comparisons[name][metric].update(p_holm=float(p_adj), ci_low_adj=float(lo), ci_high_adj=float(hi))


def paired_bootstrap(
    labels: np.ndarray,
    preds_a: Sequence[np.ndarray],
    preds_b: Sequence[np.ndarray],
    metric: str,
    k: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """One paired comparison (`metric`: accuracy, macro_f1 or per_class_f1) of two arms' per-seed
    predictions on the same test rows; `resample_scores` + `paired_difference` for many at once."""
    scores = resample_scores(labels, [*preds_a, *preds_b], k, resamples=resamples, seed=seed)
    s = len(preds_a)
    return paired_difference([x[metric] for x in scores[:s]], [x[metric] for x in scores[s:]])
