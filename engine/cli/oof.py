"""`hardaug oof`: out-of-fold predictions."""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from engine.cli.common import SAMPLE_DIR

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
            "Each fold is saved when done (OUT_DIR/.parts); a killed run resumes at the next unfinished fold."
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
    p.add_argument(
        "--backend",
        choices=["tfidf"],
        default="tfidf",
        help="classifier: tfidf = character n-gram TF-IDF + logistic regression (CPU)",
    )
    p.add_argument("--folds", type=int, default=10, help="number of stratified folds (default: 10)")
    p.add_argument("--seed", type=int, default=42, help="fold shuffling seed (default: 42)")
    p.add_argument("--text-col", default="text", help="column with the texts (default: text)")
    p.add_argument("--label-col", default="label", help="column with the labels: ids 0..K-1 or names")
    p.add_argument("--id-col", default="id", help="column with unique row ids (default: id; row numbers if absent)")
    p.add_argument("--ngram-max", type=int, default=3, help="tfidf: longest character n-gram (default: 3)")
    p.add_argument("--max-features", type=int, default=300_000, help="tfidf: vocabulary size (default: 300000)")
    p.add_argument("--C", type=float, default=2.0, dest="C", help="tfidf: inverse regularization (default: 2.0)")
    p.add_argument("--restart", action="store_true", help="discard saved folds of an earlier run and start over")
    p.set_defaults(func=run_oof_command)


def run_oof_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.config import OofConfig, TfidfConfig
    from engine.io import check_output_dir, read_table, write_json, write_parquet
    from engine.oof import run_oof
    from engine.oof.kfold import fingerprint
    from engine.validate import prepare_dataset

    train_path = args.train or Path(str(SAMPLE_DIR / "train.csv"))
    out_dir = check_output_dir(args.out_dir)
    config = OofConfig(
        n_folds=args.folds,
        seed=args.seed,
        backend=args.backend,
        tfidf=TfidfConfig(ngram_max=args.ngram_max, max_features=args.max_features, C=args.C),
    )
    train, names = prepare_dataset(
        read_table(train_path),
        source=str(train_path),
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
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
            label_names=names if names != [str(i) for i in range(len(names))] else None,
            num_classes=len(names),
        )
    k = len(names)
    log.info("train %s: %d rows, %d classes; %d folds", train_path, train.height, k, config.n_folds)
    done = _finished_oof(out_dir, fingerprint(config, k, train, test), with_test=test is not None)
    if done is not None and not args.restart:
        print(_format_oof_metrics(done))
        print(f"\n{out_dir / 'oof.parquet'} is up to date (same data and options); --restart recomputes it")
        return 0

    started = time.perf_counter()
    with tqdm(total=config.n_folds, desc="folds", unit="fold") as bar:

        def on_fold_done(fold: int, metrics: dict) -> None:
            bar.set_postfix(acc=f"{metrics['accuracy']:.4f}")
            bar.update()

        result = run_oof(
            train,
            test,
            config=config,
            k=k,
            class_names=names,
            parts_dir=out_dir / ".parts",
            restart=args.restart,
            on_fold_done=on_fold_done,
        )
    result.metrics["seconds"] = round(time.perf_counter() - started, 2)
    result.metrics["train"] = str(train_path)
    result.metrics["classes"] = names

    write_parquet(result.oof, out_dir / "oof.parquet")
    if result.test is not None:
        write_parquet(result.test, out_dir / "test_probs.parquet")
        write_parquet(result.test_folds, out_dir / "test_fold_probs.parquet")
    write_json({"classes": names}, out_dir / "label_map.json")
    write_json(result.metrics, out_dir / "metrics.json")  # last: its presence marks a finished run
    shutil.rmtree(out_dir / ".parts", ignore_errors=True)

    print(_format_oof_metrics(result.metrics))
    print(f"\nwrote {out_dir / 'oof.parquet'}" + (f" and {out_dir / 'test_probs.parquet'}" if test is not None else ""))
    return 0


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
    lines = ["fold  rows    accuracy  macro-F1"]
    for m in metrics["folds"]:
        lines.append(f"{m['fold']:>4}  {m['n']:>6}  {m['accuracy']:.4f}    {m['macro_f1']:.4f}")
    o = metrics["oof"]
    lines.append(f" all  {o['n']:>6}  {o['accuracy']:.4f}    {o['macro_f1']:.4f}   (out-of-fold)")
    if "test" in metrics:
        t = metrics["test"]
        lines.append(f"test  {t['n']:>6}  {t['accuracy']:.4f}    {t['macro_f1']:.4f}   (fold-averaged ensemble)")
    return "\n".join(lines)
