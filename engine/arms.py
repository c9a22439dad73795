"""The training sets of the comparison's arms: augmentation strategies with their random controls, and the
arms that add no text (drop, relabel or reweight the suspected label errors / hard rows).

Every arm is the original training rows, changed in one way:
- a strategy (`targeted`, or any name given to `compare --strategy NAME=FILE`): + the kept augmentations of
  the samples that strategy selected;
- its control (`random` for `targeted`, `NAME-random` otherwise): + as many kept augmentations per method,
  drawn from the augmentations of randomly chosen samples. It separates "this selection helps" from "more
  data helps"; every strategy gets its own draw, of its own size;
- `all`: + augmentations of every sample;
- `drop-label-issues`: without the rows confident learning flags as mislabeled (`label_issue` of
  `hardaug mine`); its control `drop-random` drops as many rows chosen at random;
- `relabel`: a flagged row whose out-of-fold prediction is confident (top probability >= the threshold)
  gets that prediction as its label, as confident learning proposes; other rows keep theirs;
- `NAME-uniform` / `NAME-proportional` (a hardness-proportional budget, `compare --budget NAME`): the same
  total of NAME's kept augmentations, the same number per source or more for harder sources (quotas in
  proportion to the hardness rank within the selection); each is a
  strategy with its own control, and proportional is also compared with uniform;
- `reweight`: every row weighted by 1 + hardness (scaled to mean 1), so hard rows count up to twice as
  much in the loss; its control `reweight-shuffled` gives the same weights to random rows;
- one arm per weight scheme of `compare --weights` (engine.weights: `hardness`, the same weights as
  `reweight`; `clean-hardness`; `class-balanced`), the hardness schemes with a shuffled control
  (`hardness-shuffled`, `clean-hardness-shuffled`); `hardness` and `clean-hardness` are also compared with
  `class-balanced` when it runs;
- `NAME+SCHEME` (`compare --combine NAME=SCHEME`): strategy NAME's kept augmentations with the training rows
  weighted by SCHEME, each augmentation weighing what its source weighs; compared with NAME and SCHEME.

Frames have `text`, `label` and, for weighted arms, `weight`.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.weights import SCHEMES, SHUFFLED, scheme_weights

CLEANING_ARMS = ("drop-label-issues", "relabel", "reweight")
CLEANING_CONTROLS = {"drop-label-issues": "drop-random", "reweight": "reweight-shuffled"}
RESERVED = frozenset(
    {"baseline", "random", "all", *CLEANING_ARMS, *CLEANING_CONTROLS.values(), *SCHEMES, *SHUFFLED.values()}
)
_SHUFFLE_SEED_STEP = 104_729  # scheme i shuffles with (seed, step + i): never the draws of reweight-shuffled
SCORE_COLUMNS = ("id", "label", "label_issue", "oof_pred", "oof_confidence", "hardness")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CONTROL_SEED_STEP = 7919  # strategy i draws its control with seed + i * step: two strategies never share draws


def control_name(strategy: str) -> str:
    """The random control of a strategy: `random` for the single `targeted` strategy (the original name)."""
    return "random" if strategy == "targeted" else f"{strategy}-random"


def check_strategy_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith("-random") or name in RESERVED:
        raise InputError(
            f"strategy name {name!r}: use letters, digits, '.', '_' or '-' (not ending in '-random'), and none "
            f"of the arm names {sorted(RESERVED)}."
        )
    return name


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


def augmentation_sets(
    train: pl.DataFrame,
    *,
    strategies: dict[str, pl.DataFrame],
    random_pool: pl.DataFrame | None,
    all_pool: pl.DataFrame | None,
    seed: int,
    random_source: str = "random-arm augmentations",
) -> dict[str, pl.DataFrame]:
    """Each strategy's arm and (with a random pool) its control, then `all`. Controls add as many rows per
    method as their strategy; strategy i draws with seed + i * 7919 (strategy 0 with `seed`)."""
    base = train.select("text", "label")
    sets = {}
    for i, (name, kept) in enumerate(strategies.items()):
        sets[name] = pl.concat([base, kept.select("text", "label")])
        if random_pool is not None:
            source = random_source if len(strategies) == 1 else f"{random_source} (for strategy {name!r})"
            drawn = match_counts(kept, random_pool, seed + i * _CONTROL_SEED_STEP, source)
            sets[control_name(name)] = pl.concat([base, drawn.select("text", "label")])
    if all_pool is not None:
        sets["all"] = pl.concat([base, all_pool.select("text", "label")])
    return sets


# -------------------------------------------------------------------------------------------------- budget
def allocate(weights: np.ndarray, caps: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas proportional to `weights`, each at most its cap, summing to `total` (or to the caps'
    sum if smaller): D'Hondt, one unit at a time to the source with the largest weight / (quota + 1), ties
    to the first source. Equal weights give equal quotas (differing by at most one)."""
    import heapq

    quotas = np.zeros(len(weights), dtype=np.int64)
    heap = [(-float(w), i) for i, (w, c) in enumerate(zip(weights, caps, strict=True)) if c > 0]
    heapq.heapify(heap)
    for _ in range(min(total, int(caps.sum()))):
        _, i = heapq.heappop(heap)
        quotas[i] += 1
        if quotas[i] < caps[i]:
            heapq.heappush(heap, (-float(weights[i]) / (quotas[i] + 1), i))
    return quotas


def budget_sets(kept: pl.DataFrame, *, share: float, source: str) -> dict[str, pl.DataFrame]:
    """Two subsets of one strategy's kept augmentations with the same total (`share` of its rows):
    `uniform`, the same number of variants from every source, and `proportional`, variants per source in
    proportion to the source's hardness rank within the selection (the hardest source weighs S times the
    easiest of S), both capped by what a source has. Ranks, not raw hardness: a selection of hard samples
    spans a narrow band (the notebook's: about 0.85-1.0), where quotas proportional to hardness itself come
    out uniform. Rows are taken in file order within a source. Needs `source_id` and `hardness` (the
    augmented schema)."""
    if "source_id" not in kept.columns or "hardness" not in kept.columns or kept["hardness"].null_count():
        raise InputError(
            f"{source}: a hardness-proportional budget needs each augmentation's source_id and hardness; augment "
            "the hard.parquet of hardaug mine (its rows carry hardness) and filter it, then compare again."
        )
    sources = kept.group_by("source_id", maintain_order=True).agg(pl.len().alias("n"), pl.col("hardness").first())
    total = round(share * kept.height)
    caps = sources["n"].to_numpy()
    ranks = sources["hardness"].rank("ordinal").to_numpy().astype(float)  # 1 = the easiest source
    out = {}
    for name, weights in (("uniform", np.ones(len(caps))), ("proportional", ranks)):
        quota = pl.DataFrame({"source_id": sources["source_id"], "_quota": allocate(weights, caps, total)})
        out[name] = (
            kept.with_columns(pl.int_range(pl.len()).over("source_id").alias("_nth"))
            .join(quota, on="source_id", how="left", maintain_order="left")
            .filter(pl.col("_nth") < pl.col("_quota"))
            .drop("_nth", "_quota")
        )
    return out


# ------------------------------------------------------------------------------------------------ cleaning
def align_scores(train: pl.DataFrame, scores: pl.DataFrame, source: str) -> pl.DataFrame:
    """The training rows with their mined scores (`hardaug mine`'s scores.parquet), matched by id.

    Returns train's `text`, `label` plus `label_issue`, `oof_pred`, `oof_confidence`, `hardness`, in
    train's row order. Every training row must be scored, with the same label."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise InputError(
            f"{source}: no column(s) {missing}; expected scores.parquet of `hardaug mine` (it has "
            f"{', '.join(SCORE_COLUMNS)})."
        )
    scored = scores.select(
        pl.col("id").cast(pl.String),
        pl.col("label").cast(pl.Int64).alias("_scored_label"),
        pl.col("label_issue").cast(pl.Boolean),
        pl.col("oof_pred").cast(pl.Int64),
        pl.col("oof_confidence").cast(pl.Float64),
        pl.col("hardness").cast(pl.Float64),
    )
    joined = train.select(pl.col("id").cast(pl.String), "text", "label").join(
        scored, on="id", how="left", maintain_order="left"
    )
    unscored = joined.filter(pl.col("_scored_label").is_null())
    if unscored.height:
        raise InputError(
            f"{source}: {unscored.height:,} of {train.height:,} training rows have no scores (first ids: "
            f"{unscored['id'].head(5).to_list()}). Give the scores.parquet that `hardaug mine` wrote for "
            "predictions on this training set."
        )
    differ = joined.filter(pl.col("_scored_label") != pl.col("label"))
    if differ.height:
        raise InputError(
            f"{source}: {differ.height:,} training rows have another label in the scores (first ids: "
            f"{differ['id'].head(5).to_list()}). The scores must come from the same training set and label map."
        )
    return joined.drop("_scored_label")


def hardness_weights(hardness: np.ndarray) -> np.ndarray:
    """1 + hardness, scaled to mean 1: the loss keeps its size, hard rows count up to twice easy ones."""
    weights = 1.0 + hardness
    return weights / weights.mean()


def cleaning_sets(
    flagged: pl.DataFrame, arms: tuple[str, ...], *, seed: int, relabel_confidence: float
) -> dict[str, pl.DataFrame]:
    """The non-augmenting arms (and their controls) of `arms` from aligned scores (see `align_scores`)."""
    issue = flagged["label_issue"].to_numpy()
    rng = np.random.default_rng(seed)
    base = flagged.select("text", "label")
    sets: dict[str, pl.DataFrame] = {}
    for arm in arms:
        if arm == "drop-label-issues":
            sets[arm] = base.filter(~pl.Series(issue))
            dropped = np.zeros(flagged.height, dtype=bool)
            dropped[rng.choice(flagged.height, size=int(issue.sum()), replace=False)] = True
            sets["drop-random"] = base.filter(~pl.Series(dropped))
        elif arm == "relabel":
            sets[arm] = flagged.select(
                "text",
                pl.when(pl.col("label_issue") & (pl.col("oof_confidence") >= relabel_confidence))
                .then(pl.col("oof_pred"))
                .otherwise(pl.col("label"))
                .alias("label"),
            )
        elif arm == "reweight":
            weights = hardness_weights(flagged["hardness"].to_numpy())
            sets[arm] = base.with_columns(pl.Series("weight", weights))
            sets["reweight-shuffled"] = base.with_columns(pl.Series("weight", rng.permutation(weights)))
        else:
            raise ValueError(f"unknown non-augmenting arm {arm!r}; expected one of {list(CLEANING_ARMS)}")
    return sets


def weight_sets(flagged: pl.DataFrame, schemes: tuple[str, ...], *, seed: int) -> dict[str, pl.DataFrame]:
    """An arm per weight scheme (engine.weights) from aligned scores (see `align_scores`), and the shuffled
    control of each hardness scheme: the same weights given to rows drawn at random with `seed`."""
    base = flagged.select("text", "label")
    sets: dict[str, pl.DataFrame] = {}
    for i, scheme in enumerate(schemes):
        weights = scheme_weights(scheme, flagged)
        sets[scheme] = base.with_columns(pl.Series("weight", weights))
        if scheme in SHUFFLED:
            rng = np.random.default_rng([seed, _SHUFFLE_SEED_STEP + i])
            sets[SHUFFLED[scheme]] = base.with_columns(pl.Series("weight", rng.permutation(weights)))
    return sets


def combined_name(strategy: str, scheme: str) -> str:
    return f"{strategy}+{scheme}"


def combined_set(flagged: pl.DataFrame, kept: pl.DataFrame, scheme: str, *, source: str) -> pl.DataFrame:
    """The training rows weighted by `scheme` plus a strategy's kept augmentations, each weighted as its
    source row (matched by `source_id`): an augmentation counts as much as the text it was made from."""
    if "source_id" not in kept.columns or kept["source_id"].null_count():
        raise InputError(
            f"{source}: combining augmentations with weights needs each augmentation's source_id (the augmented "
            "schema of hardaug backtranslate / paraphrase / eda); augment the rows of hardaug mine and filter them."
        )
    weights = pl.DataFrame({"source_id": flagged["id"], "weight": scheme_weights(scheme, flagged)})
    added = kept.select("source_id", "text", "label").join(weights, on="source_id", how="left", maintain_order="left")
    orphans = added.filter(pl.col("weight").is_null())
    if orphans.height:
        raise InputError(
            f"{source}: {orphans.height:,} augmentations have a source_id that is not a training row (first: "
            f"{orphans['source_id'].head(5).to_list()}); combine augmentations of this training set only."
        )
    base = flagged.select("text", "label", weight=weights["weight"])
    return pl.concat([base, added.select("text", "label", "weight")])


def changed_rows(arm: str, flagged: pl.DataFrame | None, train_set: pl.DataFrame, train_rows: int) -> int:
    """Rows an arm adds, drops, relabels or reweights, relative to the original training set."""
    if arm == "relabel" and flagged is not None:
        return int((train_set["label"] != flagged["label"]).sum())
    if arm.startswith("reweight") or "weight" in train_set.columns:
        return train_set.height
    return abs(train_set.height - train_rows)
