"""`hardaug compare`: baseline vs targeted vs random (vs all) augmentation, retrained and tested."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.cli.common import SAMPLE_DIR, comma_list

log = logging.getLogger("engine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="retrain on baseline / targeted / random arms and compare on the test set",
        description=(
            "Train the classifier on each arm and evaluate on held-out test data: baseline (original data), "
            "targeted (+ kept augmentations of the hard samples), random (+ the same number of kept "
            "augmentations per method, of randomly chosen samples: the control) and optionally all "
            "(+ augmentations of every sample). Several seeds; accuracy, macro-F1, per-class F1, confidently "
            "wrong test predictions; differences with paired bootstrap 95% intervals. Each (arm, seed) cell "
            "is saved in OUT_DIR/cells and skipped on a rerun. Writes OUT_DIR/results.json, results.md and "
            "results.svg."
        ),
    )
    p.add_argument("--train", type=Path, default=None, help="original training data (default: bundled sample)")
    p.add_argument("--test", type=Path, default=None, help="labeled test data (default: bundled sample)")
    p.add_argument("--targeted", type=Path, required=True, help="augmentations of the hard samples (Parquet)")
    p.add_argument(
        "--random",
        type=Path,
        default=None,
        dest="random_",
        help="augmentations of randomly chosen samples, same method(s): the control arm",
    )
    p.add_argument("--all", type=Path, default=None, dest="all_", help="optional: augmentations of every sample")
    p.add_argument("--out-dir", type=Path, default=Path("runs/compare"), help="output folder (default: runs/compare)")
    p.add_argument("--seeds", type=comma_list, default=["0", "1", "2"], help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument(
        "--confident",
        type=float,
        default=0.9,
        help="a wrong prediction with top probability >= this counts as confidently wrong (default 0.9)",
    )
    p.add_argument("--text-col", default="text", help="text column of train/test (default: text)")
    p.add_argument("--label-col", default="label", help="label column of train/test (default: label)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.experiment import CompareConfig, compare, kept_rows, write_results
    from engine.io import check_output_dir, read_table
    from engine.validate import prepare_dataset

    config = CompareConfig(
        seeds=tuple(int(s) for s in args.seeds), bootstrap=args.bootstrap, confident_threshold=args.confident
    )
    out_dir = check_output_dir(args.out_dir)
    train_path = args.train or Path(str(SAMPLE_DIR / "train.csv"))
    test_path = args.test or Path(str(SAMPLE_DIR / "test.csv"))
    train, names = prepare_dataset(
        read_table(train_path), source=str(train_path), text_col=args.text_col, label_col=args.label_col
    )
    k = len(names)
    named = names != [str(i) for i in range(k)]
    test, _ = prepare_dataset(
        read_table(test_path),
        source=str(test_path),
        text_col=args.text_col,
        label_col=args.label_col,
        label_names=names if named else None,
        num_classes=k,
    )
    pools = {}
    for name, path in (("targeted", args.targeted), ("random", args.random_), ("all", args.all_)):
        if path is None:
            continue
        rows = kept_rows(read_table(path), str(path))
        bad = rows.filter((rows["label"] < 0) | (rows["label"] >= k))
        if bad.height:
            raise ValueError(f"{path}: {bad.height} augmented rows have labels outside 0..{k - 1} of {train_path}.")
        pools[name] = rows
    if args.random_ is None:
        log.warning("no --random augmentations: without the random control, a gain cannot be credited to targeting")

    n_cells = len(config.seeds) * len(pools) + len(config.seeds)
    bars = {"cells": tqdm(total=n_cells, desc="cells", unit="cell")}

    def on_bootstrap(done: int, total: int) -> None:
        # The bootstrap runs after the last cell: its own line, so the wait after the cells bar is visible.
        if "bootstrap" not in bars:
            bars["cells"].close()
            bars["bootstrap"] = tqdm(total=total, desc="bootstrap", unit="resample")
        bars["bootstrap"].update(done - bars["bootstrap"].n)

    try:
        results = compare(
            train,
            test,
            k=k,
            class_names=names,
            targeted=pools["targeted"],
            random_pool=pools.get("random"),
            all_pool=pools.get("all"),
            config=config,
            cells_dir=out_dir / "cells",
            on_cell_done=lambda arm, seed: bars["cells"].update(),
            on_bootstrap=on_bootstrap,
        )
    finally:
        for bar in bars.values():
            bar.close()
    write_results(results, out_dir)
    print((out_dir / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'results.svg'}")
    return 0
