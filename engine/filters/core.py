"""Run every enabled filter over augmented rows, decide `kept` and the first `reject_reason`, summarize.

Input rows: the augmented schema (`engine.augment.common`; at least `id`, `source_id`, `text`, `label`,
optionally `method`) plus `source_text`, the text each row was generated from (`attach_sources`).

Output columns added to every row (input order kept):
- `length_ratio`, `hangul_share`, `repeat_share`: the cheap measures (`engine.filters.cheap`);
- `source_cosine`: char n-gram TF-IDF cosine to the row's own source (`near_copy_of_source` at or above
  `--source-dup-threshold`; null without --dedup-train);
- `duplicate_of`: id of another original training row (checked first; never the source's text) or of the
  earlier kept augmented row that this text near-duplicates, null if none; `duplicate_similarity`: that
  char n-gram TF-IDF cosine;
- `similarity`: sentence-embedding cosine to the source (null when the filter is off);
- `label_prob`: p(row's label | text), `source_label_prob`: p(label | source text), both from the model
  that judges the row (`label_fold`: the fold model that held its source out, null for a whole-train
  model); `label_consistent`: the `--label-policy` verdict (null when the policy is off; all three null
  without the label check);
- `kept`, and `reject_reason`: the first failing filter in `REASONS` order (null when kept).
Every enabled filter runs on every row, so the summary can count both the first reason and every failure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.filters import cheap
from engine.filters.config import REASONS, FilterConfig
from engine.filters.dedup import at_least, find_near_duplicates, keep_first
from engine.filters.judge import Judge, WholeJudge, judge_labels
from engine.filters.label import LabelModel
from engine.filters.semantic import Embedder
from engine.io import read_table
from engine.progress import OnProgress
from engine.validate import prepare_dataset, show_rows

log = logging.getLogger(__name__)

FILTER_COLUMNS = {
    "length_ratio": pl.Float64,
    "hangul_share": pl.Float64,
    "repeat_share": pl.Float64,
    "source_cosine": pl.Float64,
    "duplicate_of": pl.String,
    "duplicate_similarity": pl.Float64,
    "similarity": pl.Float64,
    "label_prob": pl.Float64,
    "source_label_prob": pl.Float64,
    "label_fold": pl.Int64,
    "label_consistent": pl.Boolean,
    "kept": pl.Boolean,
    "reject_reason": pl.String,
}
_HIST_EDGES = np.round(np.linspace(0.0, 1.0, 21), 2)


# ----------------------------------------------------------------------------------------------- inputs
def load_augmented(path: str | Path) -> pl.DataFrame:
    """Read augmented rows and check them: unique non-empty `id`, non-null `source_id` and integer `label`.

    Ids become String (sources are looked up by id as text); null texts become "" (rejected as empty).
    """
    source = str(path)
    frame = read_table(path)
    missing = [c for c in ("id", "source_id", "text", "label") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: no column(s) {missing}; the file has {frame.columns}. Augmented rows need id, source_id "
            "(the id of the row each text was generated from), text and label, as hardaug eda / backtranslate / "
            "paraphrase write them; rename the columns of an outside file to these names."
        )
    frame = frame.with_columns(pl.col("id").cast(pl.String), pl.col("source_id").cast(pl.String))
    for column in ("id", "source_id"):
        empty = pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")
        if frame.select(empty.any()).item():
            raise InputError(
                f"{source}: column {column!r} is empty at {show_rows(frame, empty, ['id', 'source_id', 'text'])}. "
                "Every augmented row needs its own id and the id of the row it was generated from."
            )
    dup = pl.col("id").is_duplicated()
    if frame.select(dup.any()).item():
        raise InputError(
            f"{source}: {frame.select(dup.sum()).item()} rows share an id, first at "
            f"{show_rows(frame, dup, ['id', 'text'])}. Augmented ids must be unique "
            "(the augmenters write source_id:method:variant)."
        )
    if frame.schema["text"] not in (pl.String, pl.Null):
        raise InputError(f"{source}: column 'text' holds {frame.schema['text']}, not text.")
    if not frame.schema["label"].is_integer() or frame.select(pl.col("label").is_null().any()).item():
        raise InputError(
            f"{source}: column 'label' must hold integer class ids with no gaps (found {frame.schema['label']}, "
            f"{frame.select(pl.col('label').is_null().sum()).item()} missing)."
        )
    method = pl.col("method").cast(pl.String).fill_null("(none)") if "method" in frame.columns else pl.lit("(none)")
    return frame.with_columns(
        pl.col("text").cast(pl.String).fill_null(""), pl.col("label").cast(pl.Int64), method.alias("method")
    )


def load_dataset(
    path: str | Path,
    *,
    text_col: str = "text",
    label_col: str | None = "label",
    id_col: str = "id",
    complete: bool = False,
) -> tuple[pl.DataFrame, list[str]]:
    """A dataset (the original training set, or the sources) with String ids, via `prepare_dataset`."""
    frame, names = prepare_dataset(
        read_table(path), source=str(path), text_col=text_col, label_col=label_col, id_col=id_col, complete=complete
    )
    return frame.with_columns(pl.col("id").cast(pl.String)), names


def attach_sources(augmented: pl.DataFrame, sources: pl.DataFrame, *, where: str) -> pl.DataFrame:
    """Add `source_text` by looking up each `source_id` among the `id`s of `sources` (read from `where`)."""
    lookup = sources.select(pl.col("id").cast(pl.String).alias("source_id"), pl.col("text").alias("source_text"))
    out = augmented.join(lookup, on="source_id", how="left", maintain_order="left")
    missing = out.filter(pl.col("source_text").is_null())["source_id"].unique(maintain_order=True)
    if missing.len():
        raise InputError(
            f"{missing.len()} source ids of the augmented rows are not ids of {where} (first: "
            f"{missing.head(5).to_list()}). Pass the file the augmented rows were generated from with --sources "
            "(e.g. hard.parquet), or the training set the ids come from with --train."
        )
    return out


def check_labels(augmented: pl.DataFrame, k: int, *, where: str) -> None:
    bad = (pl.col("label") < 0) | (pl.col("label") >= k)
    if augmented.select(bad.any()).item():
        raise InputError(
            f"augmented labels outside 0..{k - 1} (the classes of {where}) at "
            f"{show_rows(augmented, bad, ['id', 'label'])}. Filter against the training set the rows were made from."
        )


# ------------------------------------------------------------------------------------------------ filter
@dataclass
class FilterResult:
    rows: pl.DataFrame  # every input row + FILTER_COLUMNS, input order
    summary: dict


def filter_augmented(
    augmented: pl.DataFrame,
    train: pl.DataFrame | None = None,
    *,
    config: FilterConfig | None = None,
    embedder: Embedder | None = None,
    label_model: LabelModel | Judge | None = None,
    on_progress: OnProgress | None = None,
) -> FilterResult:
    """Apply the enabled filters (see the module docstring) to `augmented` (with `source_text`).

    `train` (`id`, `text`, `label`) is the original training set: the near-duplicate reference and the
    TF-IDF label model's training data. `label_model`: a judge (`engine.filters.judge`: whole-train or
    out-of-fold) or a model, which judges every row. Models not passed in are built from `config`. Progress
    (engine.progress): stages "dedup vs train", "dedup within", "embeddings", "label model".
    """
    config = config or FilterConfig()
    if "source_text" not in augmented.columns:
        raise ValueError("augmented rows need `source_text`; see attach_sources")
    if train is None and (config.dedup_train or (config.label_check and label_model is None)):
        raise ValueError("the original training set is needed for --dedup-train and the TF-IDF label model")
    if "method" not in augmented.columns:
        augmented = augmented.with_columns(pl.lit("(none)").alias("method"))
    seconds: dict[str, float] = {}
    n = augmented.height
    texts = augmented["text"].to_list()

    started = time.perf_counter()
    frame = cheap.measure(augmented)
    fails = {r: frame.select(e).to_series().to_numpy() for r, e in cheap.failures(frame, config).items()}
    seconds["cheap"] = time.perf_counter() - started

    duplicate_of: list[str | None] = [None] * n
    duplicate_sim = np.full(n, np.nan)
    source_cosine = np.full(n, np.nan)
    near = None
    if config.dedup_train or config.dedup_augmented:
        started = time.perf_counter()
        near = find_near_duplicates(
            texts,
            train["text"].to_list() if config.dedup_train else None,
            threshold=config.dup_threshold,
            ngram_max=config.dup_ngram_max,
            within=config.dedup_augmented,
            sources=frame["source_text"].to_list() if config.dedup_train else None,
            on_progress=on_progress,
        )
        if config.dedup_train:
            source_cosine = near.source_cosine
            # a near copy of its own source is not a duplicate of "the training set": its own reason
            fails["near_copy_of_source"] = at_least(source_cosine, config.source_dup_threshold)
            hit = near.train_index >= 0
            ids = train["id"].to_list()
            for i in np.flatnonzero(hit):
                duplicate_of[i] = ids[near.train_index[i]]
            duplicate_sim[hit] = near.train_cosine[hit]
            fails["near_duplicate_train"] = hit
        seconds["dedup"] = time.perf_counter() - started

    similarity = np.full(n, np.nan)
    if config.similarity:
        started = time.perf_counter()
        embedder = embedder or Embedder(config.embed_model, device=config.device, batch_size=config.batch_size)
        similarity = embedder.similarity(texts, frame["source_text"].to_list(), on_progress=on_progress)
        fails["low_similarity"] = similarity < config.min_similarity
        seconds["similarity"] = time.perf_counter() - started

    label_prob, source_prob = np.full(n, np.nan), np.full(n, np.nan)
    label_fold = None
    consistent = None
    if config.label_check:
        started = time.perf_counter()
        if label_model is None:
            k = int(train["label"].max()) + 1
            if config.label_model == "tfidf":
                label_model = LabelModel.train_tfidf(
                    train["text"].to_list(), train["label"].to_numpy(), k, config.tfidf
                )
            else:
                label_model = LabelModel.load(
                    config.label_model,
                    k,
                    device=config.device,
                    batch_size=config.batch_size,
                    max_length=config.max_length,
                )
        judge = label_model if hasattr(label_model, "probabilities") else WholeJudge(label_model)
        check_labels(augmented, judge.k, where="the label model")
        source_ids = augmented["source_id"].to_list()
        probs = judge.probabilities(texts, source_ids, on_progress=on_progress)
        # each source once, by the same model that judged its augmentations
        unique = frame.select("source_id", "source_text").unique("source_id", maintain_order=True)
        at = {s: i for i, s in enumerate(unique["source_id"].to_list())}
        unique_probs = judge.probabilities(unique["source_text"].to_list(), unique["source_id"].to_list())
        source_probs = unique_probs[[at[s] for s in source_ids]]
        folds = judge.folds(source_ids)
        label_fold = None if folds is None else folds.tolist()
        label_prob, source_prob, consistent = judge_labels(
            probs,
            source_probs,
            augmented["label"].to_numpy(),
            policy=config.label_policy,
            margin=config.label_margin,
            min_prob=config.min_label_prob,
        )
        if consistent is not None:
            fails["label_mismatch"] = ~consistent
        seconds["label"] = time.perf_counter() - started

    if near is not None and near.within is not None:
        started = time.perf_counter()
        eligible = ~np.any(list(fails.values()), axis=0)
        index, cosine = keep_first(near.within, n, eligible)
        ids = augmented["id"].to_list()
        is_dup = index >= 0
        for i in np.flatnonzero(is_dup & np.isnan(duplicate_sim)):  # a training-set match is reported first
            duplicate_of[i] = ids[index[i]]
            duplicate_sim[i] = cosine[i]
        # Rows rejected by another filter may repeat a kept row too: counted as failing, never reported first.
        fails["near_duplicate_augmented"] = is_dup
        seconds["dedup"] = seconds.get("dedup", 0.0) + time.perf_counter() - started

    order = [r for r in REASONS if r in fails]
    reason = np.full(n, None, dtype=object)
    for r in reversed(order):  # the first failing reason in REASONS order wins
        reason[fails[r]] = r
    rows = frame.select(augmented.columns).with_columns(
        frame["length_ratio"],
        frame["hangul_share"],
        frame["repeat_share"],
        pl.Series("source_cosine", source_cosine).fill_nan(None),
        pl.Series("duplicate_of", duplicate_of, dtype=pl.String),
        pl.Series("duplicate_similarity", duplicate_sim).fill_nan(None),
        pl.Series("similarity", similarity).fill_nan(None),
        pl.Series("label_prob", label_prob).fill_nan(None),
        pl.Series("source_label_prob", source_prob).fill_nan(None),
        pl.Series("label_fold", label_fold, dtype=pl.Int64)
        if label_fold is not None
        else pl.lit(None, dtype=pl.Int64).alias("label_fold"),
        pl.Series("label_consistent", consistent, dtype=pl.Boolean)
        if consistent is not None
        else pl.lit(None, dtype=pl.Boolean).alias("label_consistent"),
        pl.Series("kept", [r is None for r in reason], dtype=pl.Boolean),
        pl.Series("reject_reason", reason.tolist(), dtype=pl.String),
    )
    summary = summarize(rows, fails, config)
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return FilterResult(rows, summary)


# ----------------------------------------------------------------------------------------------- summary
def summarize(rows: pl.DataFrame, fails: dict[str, np.ndarray], config: FilterConfig) -> dict:
    """Counts per filter per method (first reason and every failure) and the similarity distribution."""
    order = [r for r in REASONS if r in fails]
    methods = ["all", *sorted(rows["method"].unique().to_list())]
    method = rows["method"].to_numpy()
    reason = rows["reject_reason"].to_numpy()
    kept = rows["kept"].to_numpy()
    similarity = rows["similarity"].to_numpy().astype(np.float64)
    groups = {}
    for m in methods:
        mask = np.ones(rows.height, dtype=bool) if m == "all" else method == m
        groups[m] = {
            "rows": int(mask.sum()),
            "kept": int((mask & kept).sum()),
            "first_reason": {r: int((mask & (reason == r)).sum()) for r in order},
            "failed": {r: int((mask & fails[r]).sum()) for r in order},
            "similarity": _distribution(similarity[mask]) if config.similarity else None,
        }
    return {
        "rows": rows.height,
        "kept": groups["all"]["kept"],
        "order": order,
        "methods": groups,
        "config": _config_dict(config),
    }


def _distribution(values: np.ndarray) -> dict | None:
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    q = np.quantile(values, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=_HIST_EDGES)
    return {
        "mean": round(float(values.mean()), 4),
        **{k: round(float(v), 4) for k, v in zip(("min", "p05", "p25", "p50", "p75", "p95", "max"), q, strict=True)},
        "histogram": {
            "edges": _HIST_EDGES.tolist(),
            "counts": counts.tolist(),
            "note": "values below 0 count in the first bin",
        },
    }


def _config_dict(config: FilterConfig) -> dict:
    from dataclasses import asdict

    return asdict(config)


def format_summary(summary: dict) -> str:
    """The summary as a text table: per filter (rows in order) and method, 'first (failed)'."""
    methods = [m for m in summary["methods"] if m != "all"] + ["all"]
    groups = summary["methods"]
    width = max([len(r) for r in summary["order"]] + [12])
    cells = {
        m: [f"{groups[m]['first_reason'][r]:,} ({groups[m]['failed'][r]:,})" for r in summary["order"]] for m in methods
    }
    col = {m: max(len(m), *(len(c) for c in cells[m]), len(f"{groups[m]['rows']:,}")) + 2 for m in methods}
    lines = ["rejected by (first failing filter, in order; in brackets: all rows failing it)"]
    lines.append(" " * (width + 2) + "".join(f"{m:>{col[m]}}" for m in methods))
    lines.append(f"  {'rows':<{width}}" + "".join(f"{groups[m]['rows']:>{col[m]},}" for m in methods))
    for i, r in enumerate(summary["order"]):
        lines.append(f"  {r:<{width}}" + "".join(f"{cells[m][i]:>{col[m]}}" for m in methods))
    lines.append(f"  {'kept':<{width}}" + "".join(f"{groups[m]['kept']:>{col[m]},}" for m in methods))
    if groups["all"].get("similarity"):
        lines.append("")
        lines.append("similarity to the source   min    p05    p25    p50    p75    p95    max   mean")
        for m in methods:
            d = groups[m]["similarity"]
            if d:
                lines.append(
                    f"  {m:<24}"
                    + "".join(f"{d[k]:>7.3f}" for k in ("min", "p05", "p25", "p50", "p75", "p95", "max", "mean"))
                )
    return "\n".join(lines)
