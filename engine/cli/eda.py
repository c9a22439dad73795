"""`hardaug eda`: rule-based augmentation (random deletion, swap, insertion of whole words) on CPU, for Korean
and English texts."""

from __future__ import annotations

import argparse
import logging
import textwrap
import time

from engine.augment.eda import EdaConfig
from engine.cli.cluster import add_cluster_options, augment_on_ray
from engine.cli.common import add_source_options, check_source_paths, positive_int
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
    from tqdm import tqdm

    from engine.augment.eda import run_eda

    check_source_paths(args)
    config = build_config(args)
    started = time.perf_counter()
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=0, desc="eda", unit="source")
        bar.update(done - bar.n)

    try:
        if args.ray is not None:
            from engine.cluster.augment import EdaJob

            threads = args.threads or 1  # per replica: replicas, not Kiwi threads, spread EDA over a cluster
            _, counts = augment_on_ray(
                args, EdaJob(config, threads), device="cpu", threads=threads, most_per_shard=args.chunk_size,
                on_shard=lambda shard: progress(shard.done, shard.total),
            )  # fmt: skip
        else:
            _, counts = run_eda(
                args.input,
                args.out,
                config=config,
                chunk_size=args.chunk_size,
                restart=args.restart,
                threads=args.threads,
                text_col=args.text_col,
                label_col=args.label_col,
                id_col=args.id_col,
                progress=progress,
            )
    finally:
        if bar is not None:
            bar.close()
    drops = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k not in ("generated", "kept")) or "none"
    print(
        f"eda: {counts['generated']:,} variants generated, {counts['kept']:,} kept (dropped: {drops}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    print(f"output: {args.out}")
    return 0
