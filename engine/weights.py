"""Per-row training weights from mined scores: hardness-weighted training as a strategy of its own.

Schemes (every one scaled to mean 1 over the training rows, so the loss keeps its size and a weighted arm
differs from baseline only in which rows count more):
- `hardness`: 1 + hardness. Hard rows count up to twice as much as easy ones (the `reweight` arm of
  `hardaug compare`).
- `clean-hardness`: 1 + hardness, except that a suspected label error (`label_issue`) gets p_true =
  1 - hardness: the rows confident learning distrusts are down-weighted instead of up-weighted, the more
  the surer the model is that the label is wrong. A flagged row never weighs more than an unflagged one.
- `class-balanced`: inverse class frequency, n / (K * n_c) for a row of class c, K the classes that have
  rows (scikit-learn's "balanced"; its mean is exactly 1). It ignores hardness: it is the control that
  separates "hard rows count more" from "minority classes count more" (on imbalanced data hard rows are
  mostly minority rows).

`hardaug mine --weights SCHEME` writes them as weights.parquet (id, weight); `hardaug compare --weights`
trains an arm on each (see engine.arms.weight_sets), with a shuffled control for the hardness schemes.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from engine.errors import InputError

SCHEMES = ("hardness", "clean-hardness", "class-balanced")
# The shuffled control (same weights on random rows) asks "do these rows matter, or any uneven weighting?";
# shuffling class-balanced weights would just be noise, its comparison is baseline (and it is the control
# of the hardness schemes).
SHUFFLED = {"hardness": "hardness-shuffled", "clean-hardness": "clean-hardness-shuffled"}
NEEDS = {"hardness": ("hardness",), "clean-hardness": ("hardness", "label_issue"), "class-balanced": ("label",)}


def check_schemes(schemes: tuple[str, ...] | list[str], where: str = "--weights") -> tuple[str, ...]:
    """The schemes, or an InputError naming the unknown ones and the valid choices."""
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise InputError(f"{where} {','.join(schemes)}: unknown weight scheme(s) {unknown}; expected {list(SCHEMES)}.")
    if len(set(schemes)) != len(schemes):
        raise InputError(f"{where} {','.join(schemes)}: a scheme is named twice.")
    return tuple(schemes)


def scheme_list(value: str) -> tuple[str, ...]:
    """`--weights hardness,class-balanced` (argparse type): the schemes, or a usage error naming the choices."""
    schemes = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown or not schemes or len(set(schemes)) != len(schemes):
        raise argparse.ArgumentTypeError(
            f"expected distinct weight schemes of {', '.join(SCHEMES)}, comma-separated; got {value!r}"
        )
    return tuple(schemes)


def scheme_weights(scheme: str, scored: pl.DataFrame) -> np.ndarray:
    """The weight of every row of `scored` (columns `label`, `hardness`, `label_issue` as `hardaug mine`
    writes them) under `scheme`, mean 1."""
    check_schemes([scheme])
    if scheme == "class-balanced":
        labels = scored["label"].to_numpy()
        classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
        weights = len(labels) / (len(classes) * counts[index].astype(np.float64))
    else:
        hardness = scored["hardness"].to_numpy().astype(np.float64)
        weights = 1.0 + hardness
        if scheme == "clean-hardness":
            weights = np.where(scored["label_issue"].to_numpy(), 1.0 - hardness, weights)
    total = weights.sum()
    # every row a confidently wrong label error (p_true 0): nothing to scale; equal weights instead of 0/0
    return weights / weights.mean() if total > 0 else np.ones(len(weights))


def weights_frame(scheme: str, scored: pl.DataFrame) -> pl.DataFrame:
    """`id`, `weight` of every scored row, in the scores' order (what `hardaug mine --weights` writes)."""
    return pl.DataFrame({"id": scored["id"], "weight": scheme_weights(scheme, scored)})
