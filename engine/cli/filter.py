"""`hardaug filter`: keep augmented texts that are faithful, label-consistent and new."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.cli.cluster import add_cluster_options, cluster_options
from engine.cli.common import SAMPLE_DIR
from engine.filters.config import LABEL, FilterConfig
from engine.options import add_options, config_from_args

log = logging.getLogger("engine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "filter",
        help="quality filters for augmented text: similarity, label consistency, near-duplicates, cheap checks",
        description=(
            "Check every augmented row (hardaug backtranslate/paraphrase/eda output, or any file with id, "
            "source_id, text, label) with every enabled filter, mark it kept or rejected with the FIRST failing "
            "filter in this order: empty, identical_to_source, length_ratio, low_hangul, repetition, "
            "near_copy_of_source, near_duplicate_train, low_similarity, label_mismatch, near_duplicate_augmented. "
            "With --oof, each row's label is judged by the fold model that held its source out (comparable with "
            "the source's out-of-fold probability). Writes OUT (the kept rows, ready to train on, with the columns "
            "length_ratio, hangul_share, repeat_share, source_cosine, duplicate_of, duplicate_similarity, "
            "similarity, label_prob, source_label_prob, label_fold, label_consistent, kept, reject_reason), the "
            "rejected rows with the same columns and their source text (--rejected) and a summary JSON (counts per "
            "filter per method, similarity distribution). The three files appear together when every filter has run, "
            "or not at all."
        ),
        epilog=(
            "example: hardaug filter --input runs/augmented.parquet --train data/train.csv --out runs/kept.parquet "
            "--rejected runs/rejected.parquet --embed-model models/ko-sroberta-multitask --device cuda"
        ),
    )
    io = p.add_argument_group("files")
    io.add_argument(
        "--input", type=Path, required=True, help="augmented rows (Parquet/CSV): id, source_id, text, label"
    )
    io.add_argument(
        "--train",
        type=Path,
        default=None,
        help="the original training set (id, text, label): near-duplicate reference, TF-IDF label model data, and "
        "where source texts are looked up (default: the bundled nsmc4 sample)",
    )
    io.add_argument(
        "--sources",
        type=Path,
        default=None,
        help="file with the source rows (id, text), e.g. hard.parquet, when their ids are not --train ids "
        "(default: --train)",
    )
    io.add_argument(
        "--oof",
        type=Path,
        default=None,
        help="oof.parquet of --train (hardaug oof): judge each augmentation with the fold model that held its source "
        "out: TF-IDF fold models refitted here (--label-model tfidf), saved ones (an .npz from --save-label-model "
        "with --oof), or the transformers fold checkpoints of oof --keep-checkpoints (--label-model "
        "OUT_DIR/checkpoints)",
    )
    io.add_argument("--out", type=Path, default=Path("runs/filter/kept.parquet"), help="kept rows (Parquet)")
    io.add_argument(
        "--rejected",
        type=Path,
        default=None,
        help="the rejected rows with reject_reason and source_text (default: OUT with .rejected.parquet)",
    )
    io.add_argument("--summary", type=Path, default=None, help="summary JSON (default: OUT with .summary.json)")
    io.add_argument("--text-col", default="text", help="text column of --train/--sources (default: text)")
    io.add_argument("--label-col", default="label", help="label column of --train (default: label)")
    io.add_argument("--id-col", default="id", help="id column of --train/--sources (default: id)")

    groups = add_options(p, FilterConfig)
    groups[LABEL].add_argument(
        "--save-label-model",
        type=Path,
        default=None,
        help="save the trained TF-IDF model (with --oof: the K fold models) as .npz (vocabulary, idf and "
        "coefficients as arrays; no code)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="filter again even if this very job (same inputs, options and outputs) already finished here",
    )
    add_cluster_options(p)
    p.set_defaults(func=run_filter_command)


def build_config(args: argparse.Namespace) -> FilterConfig:
    return config_from_args(FilterConfig, args)


def run_filter_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.filters import format_summary
    from engine.filters.job import TRAINING, FilterFiles, filter_files
    from engine.progress import Progress

    config = build_config(args)
    files = FilterFiles(
        input=args.input,
        train=args.train or Path(str(SAMPLE_DIR / "train.csv")),
        out=args.out,
        rejected=args.rejected,
        summary=args.summary,
        sources=args.sources,
        save_label_model=args.save_label_model,
        oof=args.oof,
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
    )
    cluster = None
    if args.ray is not None:
        cluster = cluster_options(args, device="cpu" if config.device == "cpu" else "cuda", threads=1)
    bars: dict[str, tqdm] = {}

    def progress(p: Progress) -> None:
        if p.stage == TRAINING:
            what = "fold label models" if args.oof is not None else "label model"
            print(f"training the TF-IDF {what} on {p.total:,} texts ...", flush=True)
            return
        bar = bars.get(p.stage)
        if bar is None:
            bar = bars[p.stage] = tqdm(total=p.total, desc=p.stage, unit="row")
        bar.update(p.done - bar.n)
        if p.done >= p.total:
            bar.close()

    try:
        done = filter_files(files, config, cluster=cluster, restart=args.restart, on_progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    outputs = files.outputs()
    print(format_summary(done.summary))
    if done.up_to_date:
        print(f"\n{files.out} is up to date: this filter job already ran on these inputs (--restart runs it again)")
        return 0
    rows, kept = done.summary["methods"]["all"]["rows"], done.summary["kept"]
    print(f"\nkept {kept:,} of {rows:,} rows: {files.out}; summary: {outputs['--summary']}")
    print(f"rejected rows with their source text: {outputs['--rejected']}")
    return 0
