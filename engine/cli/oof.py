"""`hardaug oof`: out-of-fold predictions."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.cli.cluster import add_cluster_options
from engine.cli.common import SAMPLE_DIR, comma_list, positive_int
from engine.config import OofConfig, TfidfConfig, TransformerConfig
from engine.cores import usable_cores
from engine.errors import InputError
from engine.options import add_options, config_from_args

log = logging.getLogger("engine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "oof",
        help="out-of-fold class probabilities by stratified K-fold",
        description=(
            "Train K models, each on all folds but one, and predict the held-out fold, so every training row "
            "gets probabilities from a model that never saw it. Writes OUT_DIR/oof.parquet (dataset columns + "
            "fold, oof_pred, oof_confidence, prob_0..prob_{K-1}), OUT_DIR/metrics.json, and with --test "
            "OUT_DIR/test_probs.parquet (fold-averaged) and OUT_DIR/test_fold_probs.parquet (per fold). "
            "Each fold is saved when done (OUT_DIR/.job); a killed run resumes at the next unfinished fold. "
            "--backend transformers fine-tunes a model per fold (defaults: the motivating notebook's recipe); "
            "with --dynamics it adds dyn_confidence and dyn_variability (training dynamics for the data map)."
        ),
        epilog=(
            "example: hardaug oof --backend transformers --model kykim/bert-kor-base --device cuda --dynamics "
            "--train data/train.csv --test data/test.csv --out-dir runs/oof_bert"
        ),
    )
    p.add_argument(
        "--train",
        type=Path,
        default=None,
        help="training CSV/Parquet with id, text, label columns (default: the bundled nsmc4 sample)",
    )
    p.add_argument(
        "--test",
        type=Path,
        default=None,
        help="optional test CSV/Parquet: predicted by every fold model; labels optional",
    )
    p.add_argument("--out-dir", type=Path, default=Path("runs/oof"), help="output folder (default: runs/oof)")
    add_options(p, OofConfig, fields=("backend", "n_folds", "seed"))  # --backend first, as before
    p.add_argument("--text-col", default="text", help="column with the texts (default: text)")
    p.add_argument("--label-col", default="label", help="column with the labels: ids 0..K-1 or names")
    p.add_argument("--id-col", default="id", help="column with unique row ids (default: id; row numbers if absent)")
    add_options(p, TfidfConfig)
    p.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help="tfidf: folds fitted at once, one process and one thread each (default: the usable cores from "
        f"{PARALLEL_FROM_ROWS:,} training rows on, else 1); the results are the same for any number",
    )
    p.add_argument("--restart", action="store_true", help="discard saved folds of an earlier run and start over")
    p.add_argument(
        "--only-folds",
        type=fold_ids,
        default=None,
        metavar="IDS",
        help="run only these folds (e.g. 0,4,8), save them and stop: one process per GPU on disjoint folds "
        "(CUDA_VISIBLE_DEVICES=i), then the same command without --only-folds assembles the result",
    )
    add_options(p, TransformerConfig)
    add_cluster_options(p, gpus=False, replicas=False)
    p.set_defaults(func=run_oof_command)


# A worker process costs about 2-3 s to start (imports); below this many rows a fold takes less than that.
PARALLEL_FROM_ROWS = 10_000


def _auto_processes(rows: int, n_folds: int) -> int:
    return min(usable_cores(), n_folds) if rows >= PARALLEL_FROM_ROWS else 1


def fold_ids(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in comma_list(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fold ids like 0,4,8, got {value!r}") from None


def build_config(args: argparse.Namespace) -> OofConfig:
    """The job's config from the flags (also what `hardaug run` checks an [oof] table with)."""
    tfidf, transformer = config_from_args(TfidfConfig, args), config_from_args(TransformerConfig, args)
    return config_from_args(OofConfig, args, tfidf=tfidf, transformer=transformer)


def run_oof_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.io import check_output_dir, read_table, refuse_overwrite
    from engine.oof.job import JOB, OUTPUTS, run_oof_job
    from engine.progress import Progress
    from engine.validate import prepare_dataset

    train_path = args.train or Path(str(SAMPLE_DIR / "train.csv"))
    out_dir = check_output_dir(args.out_dir)
    refuse_overwrite(
        [("--out-dir", out_dir / n) for n in OUTPUTS],
        {"--train": train_path, "--test": args.test},
    )
    transformers = args.backend == "transformers"
    if args.only_folds is not None and args.ray is not None:
        raise InputError("--only-folds and --ray exclude each other: with --ray, Ray spreads the folds")
    if args.only_folds is not None and args.restart:
        raise InputError("--only-folds cannot be combined with --restart (it would delete the other processes' folds)")
    config = build_config(args)
    if transformers and args.dynamics and args.epochs < 2:
        log.warning("--dynamics with 1 epoch: variability is 0 for every row; the data map needs >= 2 epochs")
    train, names = prepare_dataset(
        read_table(train_path),
        source=str(train_path),
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
        complete=True,
    )
    test = None
    if args.test is not None:
        raw = read_table(args.test)
        has_labels = args.label_col in raw.columns
        test, _ = prepare_dataset(
            raw,
            source=str(args.test),
            text_col=args.text_col,
            label_col=args.label_col if has_labels else None,
            id_col=args.id_col,
            # the training set's map, never a new one: test names mapped on their own would be renumbered
            label_names=names,
            num_classes=len(names),
            map_source=f"--train {train_path}",
        )
    k = len(names)
    log.info("train %s: %d rows, %d classes; %d folds", train_path, train.height, k, config.n_folds)
    ray = None
    if args.ray is not None:
        from engine.cli.cluster import cluster_options

        ray = cluster_options(args, device="cpu", threads=1)
    n_run = len(set(args.only_folds)) if args.only_folds is not None else config.n_folds
    bars: dict = {}  # opened at the first report: an "up to date" answer shows none

    def on_progress(p: Progress) -> None:
        if not bars:
            bars["folds"] = tqdm(total=n_run, desc="folds", unit="fold")
            bars["steps"] = tqdm(desc="steps", unit="step", leave=False, disable=not transformers)
        if p.unit == "fold":
            bars["folds"].set_postfix(acc=f"{p.detail['metrics']['accuracy']:.4f}")
            bars["folds"].update(p.step)
        elif p.unit == "step":
            if p.done == 1:
                bars["steps"].reset(total=p.total)
                bars["steps"].set_description(p.stage)
            bars["steps"].update(p.step)

    try:
        run = run_oof_job(
            train, test, config=config, k=k, class_names=names, out_dir=out_dir, restart=args.restart,
            only_folds=args.only_folds, processes=args.processes or _auto_processes(train.height, config.n_folds),
            ray=ray, on_progress=on_progress, extra_metrics={"train": str(train_path)},
        )  # fmt: skip
    finally:
        for bar in reversed(bars.values()):
            bar.close()
    print(_format_oof_metrics(run.metrics))
    if run.up_to_date:
        print(f"\n{out_dir / 'oof.parquet'} is up to date (same data and options); --restart recomputes it")
    elif not run.complete:
        print(
            f"\nsaved folds {','.join(str(m['fold']) for m in run.metrics['folds'])} in {out_dir / JOB}; when every "
            "fold is saved, run the same command without --only-folds to write oof.parquet"
        )
    else:
        print(
            f"\nwrote {out_dir / 'oof.parquet'}"
            + (f" and {out_dir / 'test_probs.parquet'}" if test is not None else "")
        )
    return 0


def _format_oof_metrics(metrics: dict) -> str:
    folds = metrics["folds"]
    with_test = any("test_accuracy" in m for m in folds)
    with_epoch = any("best_epoch" in m for m in folds)
    header = "fold  rows    accuracy  macro-F1"
    header += "  test acc" * with_test + "  epoch" * with_epoch
    lines = [header]
    for m in folds:
        line = f"{m['fold']:>4}  {m['n']:>6}  {m['accuracy']:.4f}    {m['macro_f1']:.4f}"
        if with_test:
            line += f"    {m['test_accuracy']:.4f}"
        if with_epoch:
            line += f"  {m['best_epoch']:>5}"
        lines.append(line)
    if "oof" in metrics:
        o = metrics["oof"]
        lines.append(f" all  {o['n']:>6}  {o['accuracy']:.4f}    {o['macro_f1']:.4f}   (out-of-fold)")
    if with_test:
        mean = sum(m["test_accuracy"] for m in folds) / len(folds)
        lines.append(f"test  {'':>6}  {mean:.4f}              (mean of the single fold models)")
    if "test" in metrics:
        t = metrics["test"]
        lines.append(f"test  {t['n']:>6}  {t['accuracy']:.4f}    {t['macro_f1']:.4f}   (fold-averaged ensemble)")
    return "\n".join(lines)
