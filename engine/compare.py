"""`compare_files`: the comparison from files, as `hardaug compare` and the pipeline run it.

Reads and checks every input before anything is written (the training set and its label map, the test set
mapped through it, each strategy's and the random / all pools' kept augmentations, mined scores aligned to
the training rows), counts and optionally drops test rows that overlap the training texts, builds the budget
arms, then runs `engine.experiment.run_compare` into `out_dir`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from engine.arms import CLEANING_ARMS, align_scores, budget_sets, check_strategy_name
from engine.config import CompareConfig
from engine.errors import InputError
from engine.experiment import kept_rows, run_compare
from engine.experiment_cells import CellSelection
from engine.io import check_output_dir, read_table, refuse_overwrite
from engine.labels import check_same_classes, saved_classes
from engine.overlap import find_overlap
from engine.progress import OnProgress
from engine.validate import check_augmented_pool, prepare_dataset

log = logging.getLogger(__name__)

NO_CLEANING = "none"  # `--cleaning none`: scores for the weight arms only


def compare_files(
    *,
    train: Path,
    test: Path,
    out_dir: Path,
    config: CompareConfig,
    strategies: Sequence[tuple[str, Path]] = (),
    random: Path | None = None,
    all_: Path | None = None,
    scores: Path | None = None,
    cleaning: Sequence[str] | None = None,
    budget: Sequence[str] = (),
    class_names: Sequence[str] | None = None,
    drop_test_overlap: bool = False,
    text_col: str = "text",
    label_col: str = "label",
    on_progress: OnProgress | None = None,
    only_cells: CellSelection | None = None,
    ray: Any = None,  # engine.cluster's ClusterOptions: Ray spreads the cells
) -> tuple[dict, bool]:
    """Compare baseline, each strategy (name, kept augmentations file; `targeted` is the single strategy of
    `--targeted`) with its control drawn from `random`, `all`, and with `scores` (mine's scores.parquet of
    this training set) the `cleaning` arms (default: all three; `["none"]`: none) and the weight arms of
    `config.weights` / `config.combine`; `budget` names the strategies that get the two budget arms.
    `only_cells` fits only those cells and `ray` spreads the cells over a Ray cluster (see `run_compare`).
    Returns the results and whether `out_dir` already held them (see `run_compare`)."""
    cleaning = _check_arms(strategies, scores, cleaning, budget, config)
    out_dir = check_output_dir(out_dir)
    refuse_overwrite(
        [("--out-dir", out_dir / n) for n in ("results.json", "results.md", "results.svg")],
        {
            "--train": train,
            "--test": test,
            **{("--targeted" if name == "targeted" else f"--strategy {name}"): path for name, path in strategies},
            "--random": random,
            "--all": all_,
            "--scores": scores,
        },
    )
    train_rows, names = prepare_dataset(
        read_table(train),
        source=str(train),
        text_col=text_col,
        label_col=label_col,
        complete=True,
        label_names=list(class_names) if class_names else None,
        num_classes=len(class_names) if class_names else None,
    )
    k = len(names)
    test_rows, _ = prepare_dataset(
        read_table(test),
        source=str(test),
        text_col=text_col,
        label_col=label_col,
        label_names=names,  # the training set's map: the test set's names are never renumbered on their own
        num_classes=k,
        map_source=f"--train {train}",
    )
    pools = {}
    for name, path in [*strategies, ("random", random), ("all", all_)]:
        if path is not None:
            pools[name] = _pool(path, names, train, k)
    overlap = find_overlap(train_rows["text"].to_list(), test_rows["text"].to_list())
    test_overlap = {
        **{key: value for key, value in overlap.summary([], [], n_examples=0).items() if key != "examples"},
        "dropped": int(overlap.any.sum()) if drop_test_overlap else 0,
    }
    if drop_test_overlap:
        test_rows = test_rows.filter(~pl.Series(overlap.any))
        if test_rows.height == 0:
            raise InputError(f"{test}: every test text is also in {train}; nothing is left to evaluate.")
        log.info("dropped %d test rows that overlap the training texts", test_overlap["dropped"])
    flagged = align_scores(train_rows, read_table(scores), str(scores)) if scores else None
    if strategies and random is None:
        log.warning("no --random augmentations: without the random control, a gain cannot be credited to targeting")
    arms = {name: pools[name] for name, _ in strategies}
    extra_pairs = []
    for name in budget:
        made = budget_sets(arms[name], share=config.budget_share, source=str(dict(strategies)[name]))
        arms.update({f"{name}-{kind}": rows for kind, rows in made.items()})
        extra_pairs.append((f"{name}-proportional", f"{name}-uniform"))
    return run_compare(
        train_rows,
        test_rows,
        out_dir=out_dir,
        k=k,
        class_names=names,
        strategies=arms,
        random_pool=pools.get("random"),
        all_pool=pools.get("all"),
        flagged=flagged,
        cleaning=cleaning,
        extra_pairs=extra_pairs,
        config=config,
        extra={"test_overlap": test_overlap},
        on_progress=on_progress,
        only_cells=only_cells,
        ray=ray,
    )


def _check_arms(
    strategies: Sequence[tuple[str, Path]],
    scores: Path | None,
    cleaning: Sequence[str] | None,
    budget: Sequence[str],
    config: CompareConfig,
) -> tuple[str, ...]:
    """The cleaning arms to run, after refusing arms that cannot be built (before anything is read)."""
    if not strategies and scores is None:
        raise InputError(
            "nothing to compare with baseline: give --targeted FILE, --strategy NAME=FILE (repeatable) "
            "or --scores runs/mine/scores.parquet."
        )
    seen: set[str] = set()
    for name, _ in strategies:
        if name in seen:
            raise InputError(f"strategy {name!r} is given twice; every --strategy needs its own name.")
        seen.add(name)
        if name != "targeted":
            check_strategy_name(name)
    cleaning = tuple(cleaning) if cleaning else CLEANING_ARMS
    if cleaning == (NO_CLEANING,):
        cleaning = ()
    unknown = [c for c in cleaning if c not in CLEANING_ARMS]
    if unknown:
        raise InputError(
            f"--cleaning {','.join(cleaning)}: unknown arms {unknown}; expected {list(CLEANING_ARMS)} or none."
        )
    for name in budget:
        if name not in seen:
            raise InputError(f"--budget {name}: no such strategy; the strategies are {sorted(seen)}.")
    if (config.weights or config.combine) and scores is None:
        raise InputError(
            "--weights and --combine weight the training rows by their mined scores: give --scores "
            "runs/mine/scores.parquet (hardaug mine of this training set)."
        )
    for name, scheme in config.combined():
        if name not in seen:
            raise InputError(f"--combine {name}={scheme}: no such strategy; the strategies are {sorted(seen)}.")
    return cleaning


def _pool(path: Path, names: list[str], train: Path, k: int) -> pl.DataFrame:
    """The kept augmentations of one file, with the training set's classes."""
    if (saved := saved_classes(path)) is not None:
        check_same_classes(saved[0], saved[1], names, f"--train {train}")
    rows = kept_rows(check_augmented_pool(read_table(path), str(path)), str(path))
    bad = rows.filter((rows["label"] < 0) | (rows["label"] >= k))
    if bad.height:
        raise InputError(f"{path}: {bad.height} augmented rows have labels outside 0..{k - 1} of {train}.")
    return rows
