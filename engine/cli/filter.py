"""`hardaug filter`: keep augmented texts that are faithful, label-consistent and new."""

from __future__ import annotations

import argparse
import logging
import time
from contextlib import ExitStack
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
            "near_duplicate_train, low_similarity, label_mismatch, near_duplicate_augmented. Writes OUT (the kept "
            "rows, ready to train on, with the columns length_ratio, hangul_share, repeat_share, duplicate_of, "
            "duplicate_similarity, similarity, label_prob, label_consistent, kept, reject_reason), the rejected "
            "rows with the same columns and their source text (--rejected) and a summary JSON (counts per filter "
            "per method, similarity distribution). The three files appear together when every filter has run, "
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
        help="save the trained TF-IDF model as .npz (vocabulary, idf and coefficients as arrays; no code)",
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
    from engine.augment.common import check_output
    from engine.errors import InputError
    from engine.filters import format_summary
    from engine.filters.label import label_model_kind
    from engine.io import check_writable, refuse_overwrite
    from engine.jobs import Job

    config = build_config(args)
    out = check_output(args.out)
    summary_path = args.summary or out.with_suffix(".summary.json")
    rejected_path = check_output(args.rejected or out.with_suffix(".rejected.parquet"))
    if args.save_label_model is not None and (not config.label_check or config.label_model != "tfidf"):
        raise InputError("--save-label-model saves the TF-IDF model trained here; use it with --label-model tfidf.")
    if args.save_label_model is not None and args.save_label_model.suffix.lower() != ".npz":
        raise InputError(f"--save-label-model {args.save_label_model}: the model is saved as arrays; use a .npz name.")
    if config.label_check:
        label_model_kind(config.label_model)  # a missing file or folder fails now, before any work

    train_path = args.train or Path(str(SAMPLE_DIR / "train.csv"))
    outputs = {
        "--out": out,
        "--rejected": rejected_path,
        "--summary": summary_path,
        "--save-label-model": args.save_label_model,
    }
    inputs = {"--input": args.input, "--train": train_path, "--sources": args.sources}
    if config.label_check and config.label_model != "tfidf":
        inputs["--label-model"] = config.label_model
    refuse_overwrite(outputs, inputs)
    named = [(option, path) for option, path in outputs.items() if path is not None]
    for i, (option, path) in enumerate(named):  # two outputs on one path: the second would replace the first
        refuse_overwrite(named[i + 1 :], {option: path})
    for option, path in named:
        check_writable(Path(path).parent, option=option)  # now, not after minutes of filtering
    rows, train, names = _load(args, train_path)
    options = None  # on Ray: the models load on the actors (their hosts may have GPUs this one lacks)
    if args.ray is not None:
        from engine.cluster.session import preflight

        options = cluster_options(args, device="cpu" if config.device == "cpu" else "cuda", threads=1)
        preflight(options)  # Ray installed and the cluster reachable, before any work
    if config.similarity:
        from engine.models import resolve_model

        resolve_model(  # a wrong folder stops the run now, before the job folder is made
            config.embed_model,
            option="--embed-model",
            needs=(("modules.json", "config.json"),),
            what="sentence-transformers",
            skip_hint="--no-similarity",
        )
    label_model = None
    if config.label_check and args.ray is None and label_model_kind(config.label_model) == "saved":
        from engine.filters.label import LabelModel

        label_model = LabelModel.load(config.label_model, len(names))  # arrays: quick, and a bad file stops here
    # One job folder beside --out: a second filter into the same --out is refused while this one runs, and
    # the same job run again finds its outputs ("up to date") instead of embedding every text again.
    with Job(
        out.with_name(f".{out.name}.job"),
        filter_fingerprint(args, config, train_path, outputs),
        restart=args.restart,
        outputs=[Path(path) for _, path in named],
        what="filter job",
    ) as job:
        if (done := job.finished()) is not None:
            print(format_summary(done["summary"]))
            print(f"\n{out} is up to date: this filter job already ran on these inputs (--restart runs it again)")
            return 0
        paths = {"train": train_path, "out": out, "rejected": rejected_path, "summary": summary_path}
        summary = _filter(args, config, rows, train, names, label_model, options, paths)
        job.finish({"summary": summary})
    return 0


def filter_fingerprint(args: argparse.Namespace, config: FilterConfig, train: Path, outputs: dict) -> str:
    """The filter job's identity: its input files and local model folders by content, every option, and
    where its outputs go (a job that writes elsewhere is another job)."""
    from dataclasses import asdict

    from engine.jobs import fingerprint

    models = {"--embed-model": config.embed_model if config.similarity else None}
    models["--label-model"] = config.label_model if config.label_check and config.label_model != "tfidf" else None
    options = {
        "config": asdict(config),
        "columns": [args.text_col, args.label_col, args.id_col],
        "outputs": {option: str(path) for option, path in outputs.items() if path is not None},
    }
    inputs = {"--input": args.input, "--train": train, "--sources": args.sources}
    # a local model folder by content; a hub id only by its name (in the options)
    inputs |= {option: Path(m) if m is not None and Path(m).exists() else None for option, m in models.items()}
    return fingerprint("filter", options, inputs)


def _load(args: argparse.Namespace, train_path: Path):
    """The augmented rows with their source texts, the training set and its class names, all checked."""
    from engine.filters import attach_sources, load_augmented
    from engine.filters.core import check_labels, load_dataset
    from engine.labels import check_same_classes, saved_classes

    augmented = load_augmented(args.input)
    train, names = load_dataset(
        train_path, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col, complete=True
    )
    if (saved := saved_classes(args.input)) is not None:  # the map the augmented rows were made with
        check_same_classes(saved[0], saved[1], names, f"--train {train_path}")
    if args.sources is not None:
        sources, _ = load_dataset(args.sources, text_col=args.text_col, label_col=None, id_col=args.id_col)
        rows = attach_sources(augmented, sources, where=f"--sources {args.sources}")
    else:
        rows = attach_sources(augmented, train, where=f"--train {train_path}")
    check_labels(augmented, len(names), where=f"--train {train_path}")
    log.info("%d augmented rows, %d training rows, %d classes", rows.height, train.height, len(names))
    return rows, train, names


def _filter(args, config, rows, train, names, label_model, options, paths: dict[str, Path]) -> dict:
    """Check every row and write the three outputs together (the models on Ray when `options`); returns the
    summary."""
    from tqdm import tqdm

    from engine.filters import filter_augmented, format_summary
    from engine.filters.label import LabelModel
    from engine.filters.semantic import Embedder
    from engine.io import json_text, output_group
    from engine.labels import metadata
    from engine.progress import Progress

    k = len(names)
    on_ray = options is not None
    train_path, out, rejected_path, summary_path = paths["train"], paths["out"], paths["rejected"], paths["summary"]
    # Load the models before any work, so a wrong folder stops the run in seconds.
    embedder = None
    if config.similarity and not on_ray:
        embedder = Embedder(config.embed_model, device=config.device, batch_size=config.batch_size)
    if label_model is None and config.label_check and config.label_model != "tfidf" and not on_ray:
        label_model = LabelModel.load(
            config.label_model, k, device=config.device, batch_size=config.batch_size, max_length=config.max_length
        )

    started = time.perf_counter()
    if config.label_check and label_model is None:
        print(f"training the TF-IDF label model on {train.height:,} texts ...", flush=True)
        label_model = LabelModel.train_tfidf(train["text"].to_list(), train["label"].to_numpy(), k, config.tfidf)
    bars: dict[str, tqdm] = {}

    def progress(p: Progress) -> None:
        bar = bars.get(p.stage)
        if bar is None:
            bar = bars[p.stage] = tqdm(total=p.total, desc=p.stage, unit="row")
        bar.update(p.done - bar.n)
        if p.done >= p.total:
            bar.close()

    with ExitStack() as stack:
        models = (embedder, label_model)
        if on_ray:  # embeddings and label probabilities on actors; near-duplicates and decisions here
            from engine.cluster.filter import filter_models_on_ray

            models = stack.enter_context(filter_models_on_ray(config, k, options, fitted_label_model=label_model))
        result = filter_augmented(
            rows, train, config=config, embedder=models[0], label_model=models[1], on_progress=progress
        )
    for bar in bars.values():
        bar.close()
    summary = result.summary
    summary.update(
        {
            "input": str(args.input),
            "train": str(train_path),
            "sources": str(args.sources or train_path),
            "classes": names,
            "total_seconds": round(time.perf_counter() - started, 2),
        }
    )

    kept = result.rows.filter("kept").drop("source_text")
    # All or nothing: a full disk or a failing write leaves none of them, not a kept file without its summary.
    with output_group() as group:
        carried = metadata(names)  # the label map travels on to compare
        kept.write_parquet(group.path(out), compression="zstd", statistics=True, metadata=carried)
        rejected = result.rows.filter(~result.rows["kept"])
        rejected.write_parquet(group.path(rejected_path), compression="zstd", metadata=carried)
        if args.save_label_model is not None:
            label_model.save_to(group.path(args.save_label_model))
        group.path(summary_path).write_text(json_text(summary), encoding="utf-8")

    print(format_summary(summary))
    print(f"\nkept {kept.height:,} of {result.rows.height:,} rows: {out}; summary: {summary_path}")
    print(f"rejected rows with their source text: {rejected_path}")
    return summary
