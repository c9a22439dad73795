"""`hardaug mine`: hardness scores, selection, analysis report."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from engine.cli.common import class_ids, comma_list, fraction, positive_int

log = logging.getLogger("engine")


class _AddStep(argparse.Action):
    """Selection flags append to one ordered list: steps apply in the order given on the command line."""

    def __init__(self, *args, make, **kwargs):
        self.make = make
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        steps = list(getattr(namespace, "steps", None) or [])
        try:
            made = self.make(values)
        except ValueError as exc:  # a step that checks its own values: show it as a usage error
            parser.error(f"{option_string}: {exc}")
        steps.extend(made if isinstance(made, list) else [made])
        namespace.steps = steps


def register(sub: argparse._SubParsersAction) -> None:
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
        type=comma_list,
        default=None,
        help="probability columns in class order, comma-separated (default: prob_0.. or class_0_prob..)",
    )
    p.add_argument(
        "--class-names",
        type=comma_list,
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
        type=fraction,
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
        type=class_ids,
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
        type=positive_int,
        action=_AddStep,
        dest="steps",
        metavar="N",
        make=m.Limit,
        help="keep the N hardest of the current rows",
    )
    sel.add_argument(
        "--data-map",
        type=comma_list,
        action=_AddStep,
        dest="steps",
        metavar="REGIONS",
        make=lambda regions: m.DataMapRegions(tuple(regions)),
        help="keep rows in these data-map regions, e.g. hard-to-learn,ambiguous (needs dyn_confidence and "
        "dyn_variability: hardaug oof --backend transformers --dynamics)",
    )
    sel.add_argument(
        "--per-class",
        action="store_true",
        help="compute every --top-quantile within each class instead of over all rows",
    )
    rep = p.add_argument_group("report")
    rep.add_argument("--report", type=Path, default=None, help="HTML report path (default: OUT_DIR/report.html)")
    rep.add_argument(
        "--no-report",
        action="store_true",
        help="skip the HTML report and its term analysis (summary.json is still written, without terms)",
    )
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
    m.check_steps(steps, k, names, dynamics=m.has_dynamics(frame))
    started = time.perf_counter()
    scored = m.score(frame, k, label_issues=not args.no_label_issues)
    mined, trace = m.select(scored, steps)
    log.info("scored and selected %d rows in %.2f s", mined.height, time.perf_counter() - started)

    from engine.analyze import analyze

    # the distinctive terms (Kiwi) are only shown in the report: without one, summary.json goes without them
    analysis = analyze(
        mined, names, trace=trace, config=analysis_config, source=str(args.input), terms=not args.no_report
    )
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
