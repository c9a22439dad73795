"""Training size as an axis: `[data] sizes = [2000, 10000, "all"]` runs the whole pipeline once per size on a
stratified subsample of the training rows (oof and mining on the subsample, as a person with that much data
would run them), with the same test set, and gathers every arm's gain against its control and against
baseline by size into OUT/results/by_size.md, .json and .svg.

Each (size, subsample seed) is a pipeline of its own in OUT/size-<N>-seed-<S> (OUT/size-all for the whole
set, which no seed changes), with its own stage cache; the subsample is a cached stage there. `[data]
size-seeds = [0, 1, 2]` draws several subsamples per size (default: [0]).

Subsampling: every class gets its share of the size (largest remainders; ties to the larger class), rows
drawn uniformly within the class with the seed, in file order. A size larger than the training set, or
one that leaves a class with fewer rows than [oof] folds, is refused at load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from engine.errors import InputError
from engine.io import read_table, write_json, write_parquet, write_text
from engine.jobs import locked
from engine.labels import saved_classes

if TYPE_CHECKING:
    from engine.pipeline_data import Classes
    from engine.pipeline_load import PipelineConfig

log = logging.getLogger(__name__)

ALL = "all"
METRICS = ("macro_f1", "accuracy")


# ---------------------------------------------------------------------------------------------- checking
def parse_sizes(path: Path, sizes: Any, seeds: Any) -> tuple[tuple[int | str, ...], tuple[int, ...]]:
    """[data] sizes and size-seeds as given in the TOML: sizes a non-empty list of whole numbers >= 1 and
    "all", seeds a non-empty list of whole numbers >= 0 (default [0])."""
    if sizes is None:
        if seeds is not None:
            raise InputError(f'{path}: [data] size-seeds without sizes; add sizes = [2000, "all"] or remove it.')
        return (), (0,)
    example = 'e.g. sizes = [2000, 10000, "all"]'
    if not isinstance(sizes, list) or not sizes:
        raise InputError(f'{path}: [data] sizes = {sizes!r}: expected a list of row counts and "all", {example}.')
    for size in sizes:
        if size != ALL and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InputError(f'{path}: [data] sizes: {size!r} is neither a whole number >= 1 nor "all"; {example}.')
    if len(set(sizes)) != len(sizes):
        raise InputError(f"{path}: [data] sizes = {sizes!r}: a size is given twice; give each once.")
    seeds = [0] if seeds is None else seeds if isinstance(seeds, list) else [seeds]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise InputError(f"{path}: [data] size-seeds = {seeds!r}: expected whole numbers >= 0, e.g. [0, 1, 2].")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{path}: [data] size-seeds = {seeds!r}: a seed is given twice; give each once.")
    order = sorted((s for s in sizes if s != ALL), key=int) + ([ALL] if ALL in sizes else [])
    return tuple(order), tuple(seeds)


def allocate(size: int, counts: Sequence[int]) -> list[int]:
    """Rows of each class in a stratified subsample of `size` rows: each class's share, rounded down, and the
    rows left over to the largest remainders (ties to the larger class, then the lower id)."""
    total = sum(counts)
    exact = [size * c / total for c in counts]
    out = [int(x) for x in exact]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - out[i]), -counts[i], i))
    for i in order[: size - sum(out)]:
        out[i] += 1
    return out


def check_sizes(path: Path, sizes: Sequence[int | str], classes: Classes, *, folds: int, train: Path) -> None:
    """Refuse a size the training set cannot give: larger than it, or leaving a class fewer rows than folds."""
    total = sum(classes.counts)
    for size in sizes:
        if size == ALL:
            continue
        if size > total:
            raise InputError(
                f"{path}: [data] sizes: {size} is larger than the training set ({total} rows in {train}); use at "
                f'most {total}, or "all".'
            )
        short = [(name, n) for name, n in zip(classes.names, allocate(size, classes.counts), strict=True) if n < folds]
        if short:
            least = next(s for s in range(size, total + 1) if min(allocate(s, classes.counts)) >= folds)
            name, n = short[0]
            raise InputError(
                f"{path}: [data] sizes: {size} rows leave class {name!r} {n} rows in a stratified subsample, fewer "
                f"than the {folds} folds of [oof] folds; use a size of at least {least}, or fewer folds."
            )


# ----------------------------------------------------------------------------------------------- running
def subsample(frame: pl.DataFrame, labels: np.ndarray, size: int, seed: int) -> pl.DataFrame:
    """A stratified subsample of `size` rows of `frame` (see `allocate`), in file order; `labels` are the
    rows' class ids (or any values that name the classes)."""
    values, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(values))
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(codes == c), size=n, replace=False)
        for c, n in enumerate(allocate(size, counts.tolist()))
    ]
    return frame[np.sort(np.concatenate(keep))]


def write_subsample(folder: Path, inputs: list[Path], *, size: int, seed: int, label_col: str) -> None:
    """The subsample stage: train.parquet, the training file's rows and columns, and its label map if any."""
    train = inputs[0]
    frame = read_table(train)
    labels = frame[label_col].cast(pl.String).fill_null("").to_numpy()
    saved = saved_classes(train)
    write_parquet(subsample(frame, labels, size, seed), folder / "train.parquet", classes=saved and saved[0])


def cells(config: PipelineConfig) -> list[tuple[int | str, int | None, Path]]:
    """(size, seed, its pipeline's folder) of every run, smallest size first; "all" once, without a seed."""
    out: list[tuple[int | str, int | None, Path]] = []
    for size in config.sizes:
        if size == ALL:
            out.append((size, None, config.out / "size-all"))
        else:
            out += [(size, seed, config.out / f"size-{size}-seed-{seed}") for seed in config.size_seeds]
    return out


def run_sizes(config: PipelineConfig, run_command: Callable[[list[str]], Any], *, dry_run: bool = False) -> dict:
    """One pipeline per (size, seed), then the by-size table and plot. With `dry_run`, the plans of all."""
    # engine.pipeline_load imports this module (parse_sizes, check_sizes) and run_sizes drives pipelines: a
    # cycle until run_sizes moves beside the pipeline's runner (issue 25 item 4).
    from engine.pipeline_plan import Stage
    from engine.pipeline_run import Runner, run_pipeline

    def runs() -> list[tuple[int | str, int | None, dict]]:
        done = []
        for size, seed, out in cells(config):
            train = config.train
            if size != ALL:
                stage = Stage(
                    "subsample",
                    task=partial(
                        write_subsample, size=size, seed=seed, label_col=config.parsed["oof"].get("label_col")
                    ),
                    inputs=(config.train,),
                    options={"size": size, "seed": seed, "label_col": config.parsed["oof"].get("label_col")},
                    outputs=(("", "train.parquet"),),
                    about=f"draw a stratified subsample of {size} training rows (seed {seed})",
                )
                runner = Runner(out, run_command, dry_run=dry_run)
                folder = runner.run(stage)
                train = folder / "train.parquet"
                if dry_run:
                    done.append((size, seed, {"plan": runner.plan_lines}))
            log.info("training size %s%s: %s", size, "" if seed is None else f" (seed {seed})", out)
            sub = replace(config, out=out, train=train, sizes=())
            done.append((size, seed, run_pipeline(sub, run_command, dry_run=dry_run)))
        return done

    if dry_run:
        lines = []
        for size, seed, result in runs():
            where = f"size-{size}" + ("" if seed is None else f"-seed-{seed}")
            lines += [{**line, "stage": f"{where}/{line['stage']}"} for line in result["plan"]]
        return {"plan": lines}
    with locked(config.out / ".run", config.out):
        summaries = runs()
        rows = by_size_rows(
            [(size, seed, Path(s["results"]), s.get("not_compared", {})) for size, seed, s in summaries],
            full=sum(config.classes.counts),
        )
        results = config.out / "results"
        written = write_by_size(rows, results)
    summary = {
        "config": str(config.path),
        "results": str(results),
        "by_size": {name: str(path) for name, path in written.items()},
        "runs": [
            {"size": size, "seed": seed, "pipeline": str(Path(s["results"]).parent / "pipeline.json")}
            for size, seed, s in summaries
        ],
    }

    write_json(summary, config.out / "pipeline.json")
    return summary


# -------------------------------------------------------------------------------------- table and plot
def by_size_rows(runs: Sequence[tuple[int | str, int | None, Path, dict]], *, full: int) -> list[dict]:
    """One row per (size, seed, arm that is compared with baseline): its gain on each metric against its
    control and against baseline (diff and 95% interval as compare reports them), or "0 kept, not
    compared" for a strategy that kept no rows. `full` is the row count of "all"."""
    rows = []
    for size, seed, results_dir, skipped in runs:
        path = results_dir / "comparison.json"
        results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        comparisons = results.get("comparisons", {})
        n = full if size == ALL else size
        for arm, about in results.get("arms", {}).items():
            if f"{arm}_vs_baseline" not in comparisons or about.get("kind") in CONTROL_KINDS:
                continue
            control = about.get("control")
            row: dict[str, Any] = {"size": size, "rows": n, "seed": seed, "arm": arm, "control": control}
            row["added_rows"] = about.get("added_rows")
            for metric in METRICS:
                for other, key in ((control, "vs_control"), ("baseline", "vs_baseline")):
                    found = comparisons.get(f"{arm}_vs_{other}", {}).get(metric) if other else None
                    # Holm-adjusted intervals where compare gives them (the verdicts' intervals), else raw
                    row[f"{metric}_{key}"] = (
                        None
                        if found is None
                        else {
                            "diff": found["diff"],
                            "ci_low": found.get("ci_low_adj", found["ci_low"]),
                            "ci_high": found.get("ci_high_adj", found["ci_high"]),
                            "adjusted": "ci_low_adj" in found,
                        }
                    )
            rows.append(row)
        for arm, stages in skipped.items():
            rows.append(
                {"size": size, "rows": n, "seed": seed, "arm": arm, "control": None, "added_rows": 0,
                 "not_compared": f"0 kept, not compared (emptied by {', '.join(stages)})"}
            )  # fmt: skip
    return rows


def _cell(value: dict | None) -> str:
    if value is None:
        return "-"
    return f"{value['diff']:+.4f} [{value['ci_low']:+.4f}, {value['ci_high']:+.4f}]"


# arms that are another arm's yardstick, not an arm of their own: baseline, random controls, shuffled weights,
# the cleaning arms' controls
CONTROL_KINDS = ("baseline", "control", "weights-control", "cleaning-control")


def by_size_markdown(rows: Sequence[dict]) -> str:
    head = ["size", "seed", "arm", "added rows"]
    head += [f"{m} vs {o}" for m in ("macro-F1", "accuracy") for o in ("control", "baseline")]
    lines = [
        "Each arm's gain by training size: against its control (the same number of random rows) and against "
        "baseline, with compare's 95% intervals, Holm-adjusted for the comparisons of each run.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r["size"]), "-" if r["seed"] is None else str(r["seed"]), r["arm"], str(r["added_rows"] or 0)]
        if "not_compared" in r:
            cells += [r["not_compared"], "", "", ""]
        else:
            cells += [_cell(r[f"{m}_{o}"]) for m in METRICS for o in ("vs_control", "vs_baseline")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_by_size(rows: Sequence[dict]) -> str:
    """Gain against control (top) and baseline (bottom) by training size (log scale), macro-F1 and accuracy,
    one line per arm (its mean over seeds; every seed a dot), as SVG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = [r for r in rows if "not_compared" not in r]
    arms = list(dict.fromkeys(r["arm"] for r in compared))
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "hardaug"}):
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
        for col, metric in enumerate(METRICS):
            for row, (key, title) in enumerate((("vs_control", "its control"), ("vs_baseline", "baseline"))):
                ax = axes[row][col]
                for i, arm in enumerate(arms):
                    points = [(r["rows"], r[f"{metric}_{key}"]["diff"]) for r in compared
                              if r["arm"] == arm and r[f"{metric}_{key}"] is not None]  # fmt: skip
                    if not points:
                        continue
                    color = f"C{i % 10}"
                    xs = sorted({x for x, _ in points})
                    means = [float(np.mean([d for x, d in points if x == v])) for v in xs]
                    ax.plot(xs, means, "-", color=color, label=arm)
                    ax.plot([x for x, _ in points], [d for _, d in points], "o", color=color, ms=3)
                ax.axhline(0, color="#888", lw=0.8)
                ax.set_xscale("log")
                ax.set_title(f"{metric.replace('_', '-')} gain over {title}", fontsize=10)
                if row == 1:
                    ax.set_xlabel("training rows")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="center right", fontsize=8)
            fig.subplots_adjust(right=0.8)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return buffer.getvalue()


def write_by_size(rows: Sequence[dict], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"md": folder / "by_size.md", "json": folder / "by_size.json", "svg": folder / "by_size.svg"}
    write_text(by_size_markdown(rows), paths["md"])
    write_json({"rows": list(rows)}, paths["json"])
    write_text(plot_by_size(rows), paths["svg"])
    return paths
