"""`hardaug backtranslate` (ko -> pivot -> ko with mBART-50 on CTranslate2) and `hardaug convert-mbart`."""

from __future__ import annotations

import argparse
import logging
import textwrap
import time
from pathlib import Path

from engine.augment.backtranslate import BacktranslateConfig
from engine.augment.convert_mbart import QUANTIZATIONS
from engine.cli.cluster import add_cluster_options, run_augmenter
from engine.cli.common import ChunkProgress, add_source_options, check_source_paths, positive_int
from engine.errors import InputError
from engine.options import add_options, config_from_args

log = logging.getLogger("engine")


def register(sub: argparse._SubParsersAction) -> None:
    _register_backtranslate(sub)
    _register_convert(sub)


def _register_backtranslate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backtranslate",
        help="back-translate the hard samples ko -> pivot -> ko with mBART-50 on CTranslate2",
        description=textwrap.fill(
            "Translate every source text into each pivot language and back with a CTranslate2 mBART-50 model "
            "(convert one with `hardaug convert-mbart`), and write one row per kept back-translation with the "
            "augmented schema (id, source_id, text, label, method=backtranslate, model, params with the "
            "pivot and decoding options, variant = PIVOT.K, round, hardness, extra with the pivot text). Per "
            "source and pivot, variant 0 is beam search and variants 1..N-1 are samples, so --pivot en_XX "
            "--pivot ja_XX --variants 3 gives up to 6 rows per source. Sources shorter than --min-chars are "
            "skipped (too_short); empty outputs, outputs identical to the source and variants whose pivot "
            "came out empty are dropped; the counts go to OUT with the suffix .drops.json. Each leg is one "
            "engine call per chunk: CTranslate2 sorts the inputs by length, cuts batches of at most "
            "--max-batch-tokens source tokens, spreads them over the devices and returns them in input "
            "order. Finished chunks are saved: rerunning the same command after a crash or kill resumes.",
            width=100,
        ),
        epilog=(
            "examples:\n"
            "  hardaug convert-mbart facebook/mbart-large-50-many-to-many-mmt models/mbart50-int8\n"
            "  hardaug backtranslate --input runs/mine/hard.parquet --model models/mbart50-int8\n"
            "  hardaug backtranslate --model models/mbart50-f16 --device cuda --device-index 0,1 \\\n"
            "      --pivot en_XX --pivot ja_XX --variants 2 --out runs/bt/augmented.parquet"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(p, "backtranslate")
    groups = add_options(p, BacktranslateConfig)
    groups["engine"].add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="sources per saved chunk; a rerun skips finished chunks (default: 256 on CPU, 8192 on CUDA)",
    )
    groups["engine"].add_argument(
        "--restart", action="store_true", help="discard finished chunks of an earlier run and start over"
    )
    add_cluster_options(p)
    p.set_defaults(func=run_backtranslate_command)


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-mbart",
        help="convert a Hugging Face mBART-50 model to a CTranslate2 folder for backtranslate",
        description=textwrap.fill(
            "Check the source config (refusing the ones CTranslate2 converts silently wrong: a missing "
            "tokenizer_class or normalize_before, a decoder start token other than </s>, a tokenizer that does "
            "not match the vocabulary), convert with CTranslate2's Transformers converter, write the tokenizer "
            "(tokenizer.json, sentencepiece.bpe.model) and conversion.json beside the model, and translate one "
            "sentence on CPU to check that the target language code comes out first.",
            width=100,
        ),
        epilog=(
            "examples:\n"
            "  hardaug convert-mbart facebook/mbart-large-50-many-to-many-mmt models/mbart50-int8\n"
            "  hardaug convert-mbart ./my-finetuned-mbart models/mbart50-f16 --quantization int8_float16"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="Hugging Face model folder, or a hub id (needs hub access)")
    p.add_argument("out", type=Path, help="output folder (created; must not exist unless --force)")
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="int8",
        help="stored weight type: int8 for CPU, int8_float16 or float16 for GPU (default: int8)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-verify", action="store_true", help="skip the one-sentence translation check")
    p.set_defaults(func=run_convert_command)


def build_config(args: argparse.Namespace) -> BacktranslateConfig:
    return config_from_args(BacktranslateConfig, args)


def run_backtranslate_command(args: argparse.Namespace) -> int:
    from engine.augment.backtranslate import DEFAULT_CHUNK_SIZE, BacktranslateJob

    check_source_paths(args)
    config = build_config(args)
    if args.ray is not None and len(config.device_index) > 1:
        raise InputError("with --ray each replica has its own GPUs: use --gpus-per-replica, not --device-index")
    started = time.perf_counter()
    progress = ChunkProgress(
        "backtranslate",
        lambda p: f"{p.detail['output_tokens'] / max(p.detail['seconds'], 1e-9):,.0f} output tokens/s",
    )
    try:
        kept, counts = run_augmenter(
            args,
            BacktranslateJob(config),
            replica_device=config.device,
            replica_threads=config.threads,
            most_per_shard=args.chunk_size or DEFAULT_CHUNK_SIZE[config.device],
            chunk_size=args.chunk_size,
            on_progress=progress,
        )
    finally:
        progress.close()
    print(progress.summary(counts, time.perf_counter() - started, _translated))
    print(f"\noutput: {args.out} ({kept.height} rows) and {Path(args.out).with_suffix('.drops.json')}")
    return 0


def _translated(p: ChunkProgress) -> str:
    return (
        f"translation: {p.outputs:,} round trips, {p.tokens:,} output tokens in {p.seconds:.1f} s "
        f"({p.outputs / p.seconds:.1f} round trips/s)"
    )


def run_convert_command(args: argparse.Namespace) -> int:
    from engine.augment.convert_mbart import convert_mbart

    started = time.perf_counter()
    out = convert_mbart(
        args.source, args.out, quantization=args.quantization, force=args.force, verify=not args.no_verify
    )
    print(f"wrote {out} ({args.quantization}) in {time.perf_counter() - started:.1f} s")
    print(f"use it with: hardaug backtranslate --model {out}")
    return 0
