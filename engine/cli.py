"""`hardaug` command line: parse options, build configs, call the library, show progress.

Nothing heavy is imported at module load, so `hardaug --help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from engine.errors import InputError

log = logging.getLogger("engine")

SAMPLE_DIR = resources.files("engine") / "data" / "sample"


def _comma_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty value")
    return items


def _class_ids(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _comma_list(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like 1,3, got {value!r}") from None


def _fraction(value: str) -> float:
    q = float(value)
    if not 0 < q <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return q


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return n


# ---------------------------------------------------------------------------------------------------- oof
def add_oof_parser(sub: argparse._SubParsersAction) -> None:
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


# --------------------------------------------------------------------------------------------------- mine
class _AddStep(argparse.Action):
    """Selection flags append to one ordered list: steps apply in the order given on the command line."""

    def __init__(self, *args, make, **kwargs):
        self.make = make
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        steps = list(getattr(namespace, "steps", None) or [])
        made = self.make(values)
        steps.extend(made if isinstance(made, list) else [made])
        namespace.steps = steps


def add_mine_parser(sub: argparse._SubParsersAction) -> None:
    from engine import mine as m

    p = sub.add_parser(
        "mine",
        help="score hardness, select hard samples, write the analysis report",
        description=(
            "Read out-of-fold predictions (our oof.parquet, or any CSV/Parquet with a label column, a text "
            "column and one probability column per class such as class_0_prob..class_3_prob), add the scores "
            "p_true, hardness (= 1 - p_true), oof_confidence, is_correct, margin, entropy and label_issue "
            "(confident learning via cleanlab), apply the selection steps IN THE ORDER GIVEN (each step sees "
            "only the rows the previous ones kept), and write OUT_DIR/hard.parquet (selected rows, hardest "
            "first), OUT_DIR/scores.parquet (every row with its scores and `selected`), OUT_DIR/summary.json "
            "and the HTML report."
        ),
        epilog="example: hardaug mine --input runs/oof/oof.parquet --preset notebook --limit 5000",
    )
    p.add_argument(
        "--input",
        type=Path,
        default=Path("runs/oof/oof.parquet"),
        help="predictions file (default: runs/oof/oof.parquet)",
    )
    p.add_argument("--out-dir", type=Path, default=Path("runs/mine"), help="output folder (default: runs/mine)")
    p.add_argument("--text-col", default="text", help="text column (the notebook's file: review_normalized)")
    p.add_argument("--label-col", default="label", help="label column (default: label)")
    p.add_argument("--id-col", default="id", help="unique id column (default: id; row numbers if absent)")
    p.add_argument(
        "--prob-cols",
        type=_comma_list,
        default=None,
        help="probability columns in class order, comma-separated (default: prob_0.. or class_0_prob..)",
    )
    p.add_argument(
        "--class-names",
        type=_comma_list,
        default=None,
        help="names of classes 0..K-1 for the report, comma-separated",
    )
    p.add_argument(
        "--renormalize",
        action="store_true",
        help="divide each row's probabilities by their sum instead of refusing rows that do not sum to 1",
    )
    p.add_argument("--no-label-issues", action="store_true", help="skip the confident-learning label check")
    sel = p.add_argument_group("selection steps (applied in the order given; default: --only-misclassified)")
    sel.add_argument(
        "--preset",
        choices=sorted(m.PRESETS),
        action=_AddStep,
        dest="steps",
        make=lambda v: list(m.PRESETS[v]),
        help="notebook = top 20%% hardness, then >= 10 chars, confidence <= 0.7, classes 1,3, "
        "then top 30%% hardness (the motivating notebook's chain)",
    )
    sel.add_argument(
        "--only-misclassified",
        nargs=0,
        action=_AddStep,
        dest="steps",
        make=lambda _: m.OnlyMisclassified(),
        help="keep rows the out-of-fold model got wrong",
    )
    sel.add_argument(
        "--top-quantile",
        type=_fraction,
        action=_AddStep,
        dest="steps",
        metavar="Q",
        make=lambda q: ("quantile", q),
        help="keep the hardest Q share (e.g. 0.2) of the current rows",
    )
    sel.add_argument(
        "--min-hardness",
        type=float,
        action=_AddStep,
        dest="steps",
        metavar="H",
        make=m.MinHardness,
        help="keep rows with hardness >= H",
    )
    sel.add_argument(
        "--max-confidence",
        type=float,
        action=_AddStep,
        dest="steps",
        metavar="C",
        make=m.MaxConfidence,
        help="keep rows whose top predicted probability is <= C",
    )
    sel.add_argument(
        "--classes",
        type=_class_ids,
        action=_AddStep,
        dest="steps",
        metavar="IDS",
        make=m.Classes,
        help="keep rows whose label is one of these class ids, e.g. 1,3",
    )
    sel.add_argument(
        "--min-chars",
        type=int,
        action=_AddStep,
        dest="steps",
        metavar="N",
        make=m.MinChars,
        help="keep texts of at least N characters",
    )
    sel.add_argument(
        "--exclude-label-issues",
        nargs=0,
        action=_AddStep,
        dest="steps",
        make=lambda _: m.ExcludeLabelIssues(),
        help="drop rows flagged as likely mislabeled",
    )
    sel.add_argument(
        "--limit",
        type=_positive_int,
        action=_AddStep,
        dest="steps",
        metavar="N",
        make=m.Limit,
        help="keep the N hardest of the current rows",
    )
    sel.add_argument(
        "--per-class",
        action="store_true",
        help="compute every --top-quantile within each class instead of over all rows",
    )
    rep = p.add_argument_group("report")
    rep.add_argument("--report", type=Path, default=None, help="HTML report path (default: OUT_DIR/report.html)")
    rep.add_argument("--no-report", action="store_true", help="skip the HTML report (summary.json is still written)")
    rep.add_argument(
        "--tokenizer",
        choices=["auto", "kiwi", "whitespace"],
        default="auto",
        help="terms for the report: kiwi = Korean morphemes, whitespace = words; auto picks by script",
    )
    rep.add_argument("--examples", type=int, default=25, help="example rows per table in the report (default: 25)")
    p.set_defaults(func=run_mine_command, steps=None)


def _build_steps(raw: list | None, per_class: bool) -> list:
    from engine import mine as m

    if not raw:
        return [m.OnlyMisclassified()]
    # --top-quantile is parsed before --per-class may appear, so it stays a marker until here; presets
    # keep their own quantile steps unchanged.
    return [m.TopQuantile(s[1], per_class=per_class) if isinstance(s, tuple) else s for s in raw]


def run_mine_command(args: argparse.Namespace) -> int:
    import polars as pl

    from engine import mine as m
    from engine.config import AnalysisConfig
    from engine.io import check_output_dir, write_json, write_parquet

    out_dir = check_output_dir(args.out_dir)
    steps = _build_steps(args.steps, args.per_class)
    analysis_config = AnalysisConfig(tokenizer=args.tokenizer, n_examples=args.examples)
    frame, names = m.load_predictions(
        args.input,
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
        prob_cols=args.prob_cols,
        class_names=args.class_names,
        renormalize=args.renormalize,
    )
    k = len(names)
    m.check_steps(steps, k, names)
    started = time.perf_counter()
    scored = m.score(frame, k, label_issues=not args.no_label_issues)
    mined, trace = m.select(scored, steps)
    log.info("scored and selected %d rows in %.2f s", mined.height, time.perf_counter() - started)

    from engine.analyze import analyze

    analysis = analyze(mined, names, trace=trace, config=analysis_config, source=str(args.input))
    write_parquet(mined, out_dir / "scores.parquet")
    write_parquet(
        mined.filter(pl.col("selected")).sort("hardness", descending=True, maintain_order=True),
        out_dir / "hard.parquet",
    )
    write_json(analysis.summary, out_dir / "summary.json")
    report_path = None
    if not args.no_report:
        from engine.io import write_text
        from engine.report import render_report

        report_path = args.report or out_dir / "report.html"
        write_text(render_report(analysis), report_path)

    print(_format_mine_summary(trace, m.per_class_table(mined, names)))
    print(f"\nwrote {out_dir / 'hard.parquet'} ({trace[-1]['rows']} rows), {out_dir / 'scores.parquet'}")
    if report_path:
        print(f"report: {report_path}")
    return 0


def _format_mine_summary(trace: list[dict], per_class) -> str:
    width = max(len(t["step"]) for t in trace)
    lines = ["selection" + " " * (width - 5) + "rows"]
    lines += [f"  {t['step']:<{width}}  {t['rows']:>8,}" for t in trace]
    lines.append("")
    lines.append(f"{'class':<22}{'rows':>8}{'wrong':>8}{'label?':>8}{'selected':>10}{'hardness':>10}")
    for r in per_class.iter_rows(named=True):
        name = f"{r['label']} {r['class']}" if r["class"] != str(r["label"]) else str(r["label"])
        lines.append(
            f"{name[:21]:<22}{r['rows']:>8,}{r['misclassified']:>8,}{r['label_issues']:>8,}"
            f"{r['selected']:>10,}{r['mean_hardness']:>10.3f}"
        )
    lines.append("(wrong = misclassified out of fold; label? = suspected label errors; hardness = mean)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardaug",
        description="Targeted data augmentation: find the samples a classifier gets wrong, understand them, "
        "augment only those, and measure whether it helped.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_oof_parser(sub)
    add_mine_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except InputError as exc:
        print(f"hardaug {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # config dataclasses reject bad option values
        print(f"hardaug {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
