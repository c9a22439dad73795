"""`hardaug mine`: hardness scores, selection, analysis report."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.config import REPORT, AnalysisConfig
from engine.errors import InputError
from engine.options import add_options, comma_list, config_from_args
from engine.weights import SCHEMES


class _AddStep(argparse.Action):
    """Selection flags append to one ordered list: steps apply in the order given on the command line."""

    def __init__(self, *args, make, **kwargs):
        self.make = make
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        steps = list(getattr(namespace, "steps", None) or [])
        try:
            made = self.make(values)
        except InputError as exc:  # a step that checks its own values: show it as a usage error
            parser.error(f"{option_string}: {exc}")
        steps.extend(made if isinstance(made, list) else [made])
        namespace.steps = steps
        if option_string == "--preset":  # checked against the data once it is read (m.check_preset)
            namespace.presets = [*(getattr(namespace, "presets", None) or []), values]


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
        help="names of classes 0..K-1 in the order of the probability columns, comma-separated; needed when the "
        "labels are names and no label map from hardaug oof (label_map.json) is beside the file",
    )
    p.add_argument(
        "--renormalize",
        action="store_true",
        help="divide each row's probabilities by their sum instead of refusing rows that do not sum to 1",
    )
    p.add_argument("--no-label-issues", action="store_true", help="skip the confident-learning label check")
    p.add_argument(
        "--weights",
        choices=SCHEMES,
        default=None,
        help="also write OUT_DIR/weights.parquet (id, weight): per-row training weights of this scheme, mean 1: "
        "hardness = 1 + hardness; clean-hardness = the same, but suspected label errors get 1 - hardness "
        "(down-weighted); class-balanced = inverse class frequency (the control that separates targeting from "
        "class balancing)",
    )
    sel = p.add_argument_group(m.SELECTION)
    sel.add_argument(
        "--preset",
        choices=sorted(m.PRESETS),
        action=_AddStep,
        dest="steps",
        make=lambda v: list(m.PRESETS[v]),
        help="; ".join(f"{name} = {text}" for name, text in m.PRESET_HELP.items()),
    )
    for step in m.STEP_FLAGS:
        takes = {"nargs": 0} if step.type is None else {"type": step.type, "metavar": step.metavar}
        sel.add_argument(step.flag, action=_AddStep, dest="steps", make=step.make, help=step.help, **takes)
    sel.add_argument(
        "--per-class",
        action="store_true",
        help="compute every --top-quantile within each class instead of over all rows",
    )
    p.add_argument(
        "--test",
        type=Path,
        default=None,
        help="test texts (CSV/Parquet with the --text-col column) to check for overlap with the training texts: "
        "exact and near-duplicate test texts are counted in summary.json and the report (default: "
        "test_probs.parquet beside --input, when hardaug oof wrote one)",
    )
    p.add_argument(
        "--no-test-overlap",
        action="store_true",
        help="skip the train/test overlap check (274k train x 27.5k test texts: 37 s on 2 busy cores)",
    )
    rep = p.add_argument_group(REPORT)
    rep.add_argument("--report", type=Path, default=None, help="HTML report path (default: OUT_DIR/report.html)")
    rep.add_argument(
        "--no-report",
        action="store_true",
        help="skip the HTML report and its term analysis (summary.json is still written, without terms)",
    )
    add_options(p, AnalysisConfig, {REPORT: rep}, fields=("tokenizer", "n_examples"))
    p.set_defaults(func=run_mine_command, steps=None, presets=None)


def build_config(args: argparse.Namespace) -> AnalysisConfig:
    """The report's config from the flags (the selection steps check their values as they are parsed)."""
    return config_from_args(AnalysisConfig, args)


def run_mine_command(args: argparse.Namespace) -> int:
    from engine import mine as m
    from engine.mining import PredictionsFile, mine_files

    done = mine_files(
        PredictionsFile(
            args.input,
            text_col=args.text_col,
            label_col=args.label_col,
            id_col=args.id_col,
            prob_cols=tuple(args.prob_cols) if args.prob_cols else None,
            class_names=tuple(args.class_names) if args.class_names else None,
            renormalize=args.renormalize,
        ),
        args.out_dir,
        steps=m.steps_from_flags(args.steps, per_class=args.per_class),
        config=build_config(args),
        presets=args.presets or (),
        label_issues=not args.no_label_issues,
        test=args.test,
        test_overlap=not args.no_test_overlap,
        report=args.report,
        write_report=not args.no_report,
        weights=args.weights,
    )
    print(_format_mine_summary(done.trace, m.per_class_table(done.mined, done.names)))
    print(f"\nwrote {done.out_dir / 'hard.parquet'} ({done.trace[-1]['rows']} rows), {done.out_dir / 'scores.parquet'}")
    if done.weights:
        print(f"weights ({args.weights}): {done.weights}")
    if done.report:
        print(f"report: {done.report}")
    return 0


def _format_mine_summary(trace: list[dict], per_class) -> str:
    width = max(len(t["step"]) for t in trace)
    lines = ["selection" + " " * (width - 5) + "rows"]
    lines += [f"  {t['step']:<{width}}  {t['rows']:>8,}" for t in trace]
    lines.append("")
    rows = list(per_class.iter_rows(named=True))
    names = [f"{r['label']} {r['class']}" if r["class"] != str(r["label"]) else str(r["label"]) for r in rows]
    name_width = max(21, *(len(n) for n in names)) + 1  # long class names are shown whole, never cut
    lines.append(f"{'class':<{name_width}}{'rows':>8}{'wrong':>8}{'label?':>8}{'selected':>10}{'hardness':>10}")
    for name, r in zip(names, rows, strict=True):
        lines.append(
            f"{name:<{name_width}}{r['rows']:>8,}{r['misclassified']:>8,}{r['label_issues']:>8,}"
            f"{r['selected']:>10,}{r['mean_hardness']:>10.3f}"
        )
    lines.append("(wrong = misclassified out of fold; label? = suspected label errors; hardness = mean)")
    return "\n".join(lines)
