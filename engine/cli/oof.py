"""`hardaug oof`: out-of-fold predictions."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

from engine.cli.cluster import add_cluster_options
from engine.cli.common import SAMPLE_DIR, comma_list, positive_int
from engine.config import OofConfig, TfidfConfig, TransformerConfig
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
            "Each fold is saved when done (OUT_DIR/.parts); a killed run resumes at the next unfinished fold. "
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
    return min(len(os.sched_getaffinity(0)), n_folds) if rows >= PARALLEL_FROM_ROWS else 1


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

    from engine.io import check_output_dir, read_table, refuse_overwrite, write_json, write_parquet
    from engine.oof import run_oof
    from engine.oof.kfold import fingerprint, run_folds
    from engine.validate import prepare_dataset

    train_path = args.train or Path(str(SAMPLE_DIR / "train.csv"))
    out_dir = check_output_dir(args.out_dir)
    refuse_overwrite(
        [("--out-dir", out_dir / n) for n in (*OOF_OUTPUTS, "label_map.json")],
        {"--train": train_path, "--test": args.test},
    )
    transformers = args.backend == "transformers"
    if args.only_folds is not None and args.ray is not None:
        raise ValueError("--only-folds and --ray exclude each other: with --ray, Ray spreads the folds")
    if args.only_folds is not None and args.restart:
        raise ValueError("--only-folds cannot be combined with --restart (it would delete the other processes' folds)")
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
    done = _finished_oof(out_dir, fingerprint(config, k, train, test), with_test=test is not None)
    if done is not None and not args.restart:
        print(_format_oof_metrics(done))
        print(f"\n{out_dir / 'oof.parquet'} is up to date (same data and options); --restart recomputes it")
        return 0

    started = time.perf_counter()
    n_run = len(set(args.only_folds)) if args.only_folds is not None else config.n_folds
    with (
        tqdm(total=n_run, desc="folds", unit="fold") as bar,
        tqdm(desc="steps", unit="step", leave=False, disable=not transformers) as steps,
    ):

        def on_fold_done(fold: int, metrics: dict) -> None:
            bar.set_postfix(acc=f"{metrics['accuracy']:.4f}")
            bar.update()

        def on_step(fold: int, done: int, total: int) -> None:
            if done == 1:
                steps.reset(total=total)
                steps.set_description(f"fold {fold} steps")
            steps.update()

        common = {
            "config": config,
            "k": k,
            "class_names": names,
            "parts_dir": out_dir / ".parts",
            "on_fold_done": on_fold_done,
            "checkpoint_dir": out_dir / "checkpoints",
            "on_step": on_step,
            "processes": args.processes or _auto_processes(train.height, config.n_folds),
        }
        if args.only_folds is not None:
            saved = run_folds(train, test, folds=args.only_folds, **common)
            print(_format_oof_metrics({"folds": saved}))
            print(
                f"\nsaved folds {','.join(str(m['fold']) for m in saved)} in {out_dir / '.parts'}; when every fold "
                "is saved, run the same command without --only-folds to write oof.parquet"
            )
            return 0
        restart = args.restart
        if args.ray is not None:  # every fold a Ray task (one GPU each with --device cuda); run_oof assembles
            from engine.cli.cluster import cluster_options
            from engine.cluster.folds import run_folds_on_ray

            if restart:
                shutil.rmtree(out_dir / ".parts", ignore_errors=True)
            run_folds_on_ray(
                train, test, options=cluster_options(args, device="cpu", threads=1),
                **{key: value for key, value in common.items() if key not in ("on_step", "processes")},
            )  # fmt: skip
            common["on_fold_done"], restart = None, False
        result = run_oof(train, test, restart=restart, **common)
    result.metrics["seconds"] = round(time.perf_counter() - started, 2)
    result.metrics["train"] = str(train_path)
    result.metrics["classes"] = names

    write_parquet(result.oof, out_dir / "oof.parquet", classes=names)
    if result.test is not None:
        write_parquet(result.test, out_dir / "test_probs.parquet", classes=names)
        write_parquet(result.test_folds, out_dir / "test_fold_probs.parquet", classes=names)
    write_json({"classes": names}, out_dir / "label_map.json")
    write_json(result.metrics, out_dir / "metrics.json")  # last: its presence marks a finished run
    shutil.rmtree(out_dir / ".parts", ignore_errors=True)

    print(_format_oof_metrics(result.metrics))
    print(f"\nwrote {out_dir / 'oof.parquet'}" + (f" and {out_dir / 'test_probs.parquet'}" if test is not None else ""))
    return 0


OOF_OUTPUTS = ("oof.parquet", "metrics.json", "test_probs.parquet", "test_fold_probs.parquet")


def _finished_oof(out_dir: Path, key: str, *, with_test: bool) -> dict | None:
    """The metrics of a finished run of the same job in `out_dir`, or None. metrics.json is written
    last, so its fingerprint vouches for the other files."""
    import json

    names = ["oof.parquet", "metrics.json"] + (["test_probs.parquet", "test_fold_probs.parquet"] if with_test else [])
    if not all((out_dir / n).is_file() for n in names):
        return None
    metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    return metrics if metrics.get("fingerprint") == key else None


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
