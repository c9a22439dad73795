"""`hardaug compare`: baseline vs strategy arms (augmented selections, each with its random control) vs the arms
that add no text (drop, relabel, reweight), retrained and tested."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.cluster import add_cluster_options
from engine.cli.common import SAMPLE_DIR, comma_list
from engine.config import COMPARE_TRANSFORMER, CompareConfig, TransformerConfig
from engine.errors import InputError
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
    add_options(p, CompareConfig, fields=("seeds", "bootstrap", "confident_threshold", "backend"))
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
    p.add_argument(
        "--only-cells",
        type=only_cells,
        default=None,
        metavar="IDS|i/N",
        help="fit only these (arm, seed) cells (indices 0,3,5, or i/N: every N-th from i), save them and stop: "
        "one process per GPU (CUDA_VISIBLE_DEVICES=i --only-cells i/N), then the same command without "
        "--only-cells writes the tables",
    )
    add_options(p, TransformerConfig, fields=TRANSFORMER_FLAGS)
    add_cluster_options(p, gpus=False)
    p.set_defaults(func=run)


# the oof recipe's flags that compare's transformers cells use (max_grad_norm has no flag)
TRANSFORMER_FLAGS = tuple(name for name in COMPARE_TRANSFORMER if name != "max_grad_norm")


def only_cells(value: str):
    from engine.experiment_cells import only_cells as parse

    return parse(value)


def build_config(args: argparse.Namespace) -> CompareConfig:
    """The experiment's config from the options (also what `hardaug run` checks a [compare] table with)."""
    transformer = TransformerConfig(**{name: getattr(args, name) for name in TRANSFORMER_FLAGS})
    return config_from_args(CompareConfig, args, tfidf=CompareConfig().tfidf, transformer=transformer)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.compare import compare_files
    from engine.progress import Progress

    if args.only_cells is not None and args.ray is not None:
        raise InputError("--only-cells and --ray exclude each other: with --ray, Ray spreads the cells.")
    config = build_config(args)
    bars: dict = {}  # opened at the first report: an "up to date" answer shows none
    cell: dict = {}  # the transformers cell training now: its stage name, epoch and last loss
    ray = None
    if args.ray is not None:
        from engine.cli.cluster import cluster_options

        ray = cluster_options(args, device="cpu", threads=1)  # a cell task asks for its GPU itself

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
        elif p.unit in ("step", "epoch"):  # a transformers cell: its steps, its epoch, the last epoch's loss
            bar = bars.setdefault("steps", tqdm(unit="step", leave=False))
            if p.unit == "epoch":
                cell["loss"] = f"{p.detail['loss']:.4f}"
            else:
                if p.stage != cell.get("stage"):  # a new cell (a resumed one starts at its saved epochs' steps)
                    cell.update(stage=p.stage, loss="-")
                    bar.reset(total=p.total)
                    bar.set_description(p.stage)
                bar.update(p.done - bar.n)
                cell["epoch"] = f"{p.detail['epoch']}/{config.transformer.epochs}"
            bar.set_postfix(epoch=cell.get("epoch"), loss=cell["loss"], refresh=False)

    out_dir = args.out_dir
    try:
        results, up_to_date = compare_files(
            train=args.train or Path(str(SAMPLE_DIR / "train.csv")),
            test=args.test or Path(str(SAMPLE_DIR / "test.csv")),
            out_dir=out_dir,
            config=config,
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
            only_cells=args.only_cells,
            ray=ray,
        )
    finally:
        for bar in bars.values():
            bar.close()
    if args.only_cells is not None:
        done = ", ".join(f"{c['cell']} ({c['arm']}, seed {c['seed']}, {c['seconds']:.1f} s)" for c in results["cells"])
        print(
            f"saved cells {done or '(none: all were saved or finished)'} in {out_dir / '.job'}; when every cell is "
            "saved, run the same command without --only-cells to write the tables"
        )
        return 0
    print((out_dir / "results.md").read_text(encoding="utf-8"))
    if up_to_date:
        print(f"{out_dir / 'results.json'} is up to date (same inputs and options): nothing was run")
    else:
        print(f"wrote {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'results.svg'}")
    return 0
