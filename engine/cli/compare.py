"""`hardaug compare`: baseline vs strategy arms (augmented selections, each with its random control) vs the arms
that add no text (drop, relabel, reweight), retrained and tested."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.common import SAMPLE_DIR, comma_list
from engine.config import CompareConfig
from engine.options import add_options, config_from_args


def _strategy(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, e.g. notebook=runs/kept_nb.parquet; got {value!r}")
    return name.strip(), Path(path.strip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="retrain on baseline / strategy / random-control / cleaning arms and compare on the test set",
        description=(
            "Train the classifier on each arm and evaluate on held-out test data: baseline (original data); "
            "each strategy (+ the kept augmentations of the samples it selected: --targeted, or several named "
            "--strategy NAME=FILE), each with its own random control (+ the same number of kept augmentations "
            "per method, drawn from --random: augmentations of randomly chosen samples); optionally all "
            "(+ augmentations of every sample); and with --scores (mine's scores.parquet of this training set) "
            "the arms that add no text: drop-label-issues (train without suspected label errors; control: "
            "drop-random, as many random rows dropped), relabel (suspected errors get their confident "
            "out-of-fold prediction as label) and reweight (sample weights 1 + hardness, mean 1; control: "
            "reweight-shuffled); with --weights an arm per weight scheme, with --combine a strategy's "
            "augmentations with a scheme's weights. Several seeds; accuracy, macro-F1, per-class F1, confidently "
            "wrong test predictions; every arm's gain over baseline and over its control with paired bootstrap "
            "95% intervals pooled over seeds, raw and adjusted for the number of comparisons of the run (Holm), "
            "and a one-line verdict per arm on the adjusted ones. Each (arm, seed) cell is saved in "
            "OUT_DIR/.job and skipped on a rerun. Writes OUT_DIR/results.json, results.md and results.svg."
        ),
        epilog=(
            "example: hardaug compare --strategy notebook=runs/kept_nb.parquet --strategy "
            "misclassified=runs/kept_mis.parquet --random runs/kept_random.parquet --scores "
            "runs/mine/scores.parquet"
        ),
    )
    p.add_argument("--train", type=Path, default=None, help="original training data (default: bundled sample)")
    p.add_argument("--test", type=Path, default=None, help="labeled test data (default: bundled sample)")
    p.add_argument(
        "--targeted",
        type=Path,
        default=None,
        help="augmentations of the hard samples (Parquet): the strategy 'targeted', control 'random'",
    )
    p.add_argument(
        "--strategy",
        type=_strategy,
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="augmentations of one named selection (repeat for several); its control is NAME-random",
    )
    p.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="NAME",
        help="a hardness-proportional budget for strategy NAME (repeatable): arms NAME-uniform (the same number "
        "of NAME's kept augmentations per source) and NAME-proportional (more for harder sources), the same "
        "total (--budget-share of NAME's rows), each with its own control, proportional also vs uniform",
    )
    add_options(p, CompareConfig, fields=("budget_share",))
    p.add_argument(
        "--random",
        type=Path,
        default=None,
        dest="random_",
        help="augmentations of randomly chosen samples, same method(s): every strategy's control is drawn here",
    )
    p.add_argument("--all", type=Path, default=None, dest="all_", help="optional: augmentations of every sample")
    p.add_argument(
        "--scores",
        type=Path,
        default=None,
        help="scores.parquet of hardaug mine on this training set: adds the arms that add no text",
    )
    p.add_argument(
        "--cleaning",
        type=comma_list,
        default=None,
        metavar="ARMS",
        help="with --scores: which of drop-label-issues,relabel,reweight, or none (default: all three)",
    )
    add_options(p, CompareConfig, fields=("relabel_confidence", "weights", "combine"))
    p.add_argument("--out-dir", type=Path, default=Path("runs/compare"), help="output folder (default: runs/compare)")
    add_options(p, CompareConfig, fields=("seeds", "bootstrap", "confident_threshold"))
    p.add_argument(
        "--class-names",
        type=comma_list,
        default=None,
        help="names of classes 0..K-1 for the tables and plot, comma-separated, as given to hardaug mine "
        "(string labels name themselves)",
    )
    p.add_argument(
        "--drop-test-overlap",
        action="store_true",
        help="evaluate without the test rows whose text is also in the training set, word for word or nearly "
        "(they are always counted in results.json)",
    )
    p.add_argument("--text-col", default="text", help="text column of train/test (default: text)")
    p.add_argument("--label-col", default="label", help="label column of train/test (default: label)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> CompareConfig:
    """The experiment's config from the options (also what `hardaug run` checks a [compare] table with)."""
    return config_from_args(CompareConfig, args)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.compare import compare_files
    from engine.progress import Progress

    bars: dict = {}  # opened at the first report: an "up to date" answer shows none

    def on_progress(p: Progress) -> None:
        if p.unit == "cell":
            bars.setdefault("cells", tqdm(total=p.total, desc="cells", unit="cell")).update(p.step)
        elif p.unit == "resample":
            # The bootstrap runs after the last cell: its own line, so the wait after the cells bar is visible.
            if "bootstrap" not in bars:
                if "cells" in bars:
                    bars["cells"].close()
                bars["bootstrap"] = tqdm(total=p.total, desc="bootstrap", unit="resample")
            bars["bootstrap"].update(p.done - bars["bootstrap"].n)

    out_dir = args.out_dir
    try:
        _, up_to_date = compare_files(
            train=args.train or Path(str(SAMPLE_DIR / "train.csv")),
            test=args.test or Path(str(SAMPLE_DIR / "test.csv")),
            out_dir=out_dir,
            config=build_config(args),
            strategies=([("targeted", args.targeted)] if args.targeted else []) + args.strategy,
            random=args.random_,
            all_=args.all_,
            scores=args.scores,
            cleaning=args.cleaning,
            budget=args.budget,
            class_names=args.class_names,
            drop_test_overlap=args.drop_test_overlap,
            text_col=args.text_col,
            label_col=args.label_col,
            on_progress=on_progress,
        )
    finally:
        for bar in bars.values():
            bar.close()
    print((out_dir / "results.md").read_text(encoding="utf-8"))
    if up_to_date:
        print(f"{out_dir / 'results.json'} is up to date (same inputs and options): nothing was run")
    else:
        print(f"wrote {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'results.svg'}")
    return 0
