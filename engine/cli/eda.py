"""`hardaug eda`: rule-based augmentation (random deletion, swap, insertion of whole words) on CPU, for Korean
and English texts."""

from __future__ import annotations

import argparse
import logging
import textwrap
import time

from engine.augment.eda import EdaConfig
from engine.cli.cluster import add_cluster_options, run_augmenter
from engine.cli.common import ChunkProgress, add_source_options, check_source_paths, positive_int
from engine.options import add_options, config_from_args

log = logging.getLogger("engine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eda",
        help="rule-based augmentation: random deletion, swap, insertion of whole words (Korean, English), CPU only",
        description=textwrap.fill(
            "Easy Data Augmentation for Korean and English. Each Korean source text is cut into word units "
            "with kiwipiepy: a content "
            "morpheme with the particles, endings and punctuation that follow it (the space-separated word in "
            "spaced text; Kiwi's boundaries in text written without spaces), so particles stay on their words. "
            "Variant V applies one operation, cycling delete -> swap -> insert over the enabled ones: delete drops "
            "each movable unit with probability --p-delete (at least one); swap exchanges two movable units "
            "max(1, round(--p-swap x words)) times; insert puts a noun or adverb of the same text before a random "
            "unit max(1, round(--p-insert x words)) times. Units that end a sentence, the last word and "
            "(unless --move-negations) units with a negation (안, 못, 없다, 않다) never move or disappear, "
            "so no output is empty. Deterministic: each source has its own random generator seeded from --seed "
            "and its id. Writes the augmented schema (method=eda, model=kiwipiepy version, params with the rates, "
            "variant = V.op, extra with the edit); variants identical to the source or to an earlier variant are "
            "dropped and counted in OUT with the suffix .drops.json. Finished chunks are saved: rerunning the same "
            "command resumes. No synonym replacement: no Korean synonym resource with a clear license is "
            "installable from PyPI. English (texts in Latin script): the units are the space-separated words "
            "with their punctuation, the same three operations apply, negations (not, no, never, without, "
            "nobody, ...n't) are protected the same way, and insertion repeats a content word of the text (3+ "
            "letters, not a scikit-learn English stop word). Texts in another script get no variants (counted "
            "as other_script in the drops file); a file that is mostly another language is refused before "
            "anything is written.",
            width=100,
        ),
        epilog=(
            "examples:\n"
            "  hardaug eda --input runs/mine/hard.parquet --n 4 --out runs/eda/augmented.parquet\n"
            "  hardaug eda --p-delete 0.2 --p-swap 0 --p-insert 0.1 --seed 7   # deletion and insertion only"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(p, "eda")
    add_options(p, EdaConfig)
    p.add_argument("--threads", type=positive_int, default=None, help="Kiwi threads (default: the usable cores)")
    p.add_argument("--chunk-size", type=positive_int, default=5000, help="sources per saved chunk (default: 5000)")
    p.add_argument("--restart", action="store_true", help="discard finished chunks of an earlier run and start over")
    add_cluster_options(p, gpus=False)
    p.set_defaults(func=run_eda_command)


def build_config(args: argparse.Namespace) -> EdaConfig:
    return config_from_args(EdaConfig, args)


def run_eda_command(args: argparse.Namespace) -> int:
    from engine.augment.eda import EdaJob

    check_source_paths(args)
    config = build_config(args)
    started = time.perf_counter()
    progress = ChunkProgress("eda", unit="source")
    try:
        ray_threads = args.threads or 1  # per replica: replicas, not Kiwi threads, spread EDA over a cluster
        _, counts = run_augmenter(
            args,
            EdaJob(config, args.threads if args.ray is None else ray_threads),
            replica_device="cpu",
            replica_threads=ray_threads,
            most_per_shard=args.chunk_size,
            chunk_size=args.chunk_size,
            on_progress=progress,
        )
    finally:
        progress.close()
    drops = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k not in ("generated", "kept")) or "none"
    print(
        f"eda: {counts['generated']:,} variants generated, {counts['kept']:,} kept (dropped: {drops}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    print(f"output: {args.out}")
    return 0
