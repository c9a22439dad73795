"""Training throughput of the transformers OOF backend: length-grouped dynamic padding vs fixed padding.

Same model (a random BERT of a fixed shape, same initial weights every run), same real nsmc4 reviews,
same batch size and number of optimizer steps; only the batching differs:

- `grouped`: the engine's default: shuffled, cut into mega-batches of 50 batches, each sorted by length,
  every batch padded to its own longest row (`engine.oof.transformer.train_batches`);
- `shuffled`: plain shuffled batches, each padded to its own longest row (HF's DataCollatorWithPadding);
- `fixed`: plain shuffled batches, every row padded to `--max-length` (`tokenizer(padding="max_length")`).

`shuffled` separates the two effects: dynamic padding alone (fixed -> shuffled) and length grouping on top
(shuffled -> grouped). Only `train_epoch` is timed (perf_counter, CUDA synchronized); building the
model, tokenizing and loading the weights are not. Every mode runs 3 batches untimed first (allocator and
kernel warm-up), then `--repeats` timed epochs, modes interleaved so machine noise hits all alike.
Reported: median and best samples/s, and the padded positions each mode computes.

    .venv/bin/python benchmarks/bench_oof.py                      # CPU, small BERT: about 6-10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_oof.py --quick              # a few seconds of work: checks the script
    python benchmarks/bench_oof.py --shape base --device cuda --precision bf16 fp32 --rows 16384 --batch-size 128
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter

import numpy as np
import polars as pl
from machine import data_file, describe, load_average, run_record

ROOT = Path(__file__).resolve().parents[1]
MODES = ("grouped", "shuffled", "fixed")
K = 4


def load_rows(path: Path, rows: int, seed: int) -> tuple[list[str], np.ndarray]:
    frame = pl.read_csv(path, infer_schema_length=None).filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
    frame = frame.sample(n=min(rows, frame.height), seed=seed, shuffle=True)
    return frame["text"].to_list(), frame["label"].to_numpy()


def build_model(folder: Path, shape: str, tokenizer_texts: list[str], vocab_size: int) -> Path:
    from engine.random_models.bert import build_random_bert

    return build_random_bert(folder, shape, texts=tokenizer_texts, vocab_size=vocab_size, num_labels=K)


def run_epoch(
    folder: Path, encoded, labels: np.ndarray, mode: str, args, device, precision: str, seed: int, limit=None
):
    """One timed epoch of `mode` on a freshly loaded model (only its first `limit` batches if given);
    returns seconds and the batch plan."""
    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from engine.config import TransformerConfig
    from engine.oof.transformer import _quiet_transformers, make_optimizer, train_batches, train_epoch

    torch.manual_seed(seed)
    with _quiet_transformers():
        model = (
            AutoModelForSequenceClassification.from_pretrained(folder, num_labels=K, trust_remote_code=False)
            .float()
            .to(device)
        )
    config = TransformerConfig(model=str(folder), train_batch_size=args.batch_size, max_length=args.max_length)
    rows = np.arange(len(encoded))
    batches = train_batches(
        encoded.lengths, args.batch_size, np.random.default_rng(seed), group_by_length=mode == "grouped"
    )
    batches = batches[:limit]
    optimizer = make_optimizer(model, config, device)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = perf_counter()
    train_epoch(
        model,
        encoded,
        rows,
        labels,
        batches,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        grad_accum=1,
        max_grad_norm=1.0,
        pad_id=args.pad_id,
        device=device,
        precision=precision,
        pad_to=args.max_length if mode == "fixed" else None,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = perf_counter() - start
    del model, optimizer
    return elapsed, batches


def positions(lengths: np.ndarray, batches: list[np.ndarray], pad_to: int | None) -> int:
    return sum(len(b) * (pad_to or int(lengths[b].max())) for b in batches)


# ---------------------------------------------------------------------------------------------- report
def machine(device) -> dict:
    out = describe()
    if device.type == "cuda":
        import torch

        out["gpu"] = torch.cuda.get_device_name(device)
    return out


VERSIONS = ("torch", "transformers", "tokenizers", "numpy", "polars")


def markdown(results: dict) -> str:
    p, mach, ver = results["params"], results["machine"], results["versions"]
    where = mach.get("gpu") or f"{mach['cpu']}, {p['threads']} torch thread(s)"
    lines = [
        f"Training throughput, one epoch of {p['rows']:,} nsmc4 reviews, BERT shape `{p['shape']}` "
        f"({results['model']['parameters'] / 1e6:.1f}M parameters), batch {p['batch_size']}, max length "
        f"{p['max_length']}, {results['date']}. {where}; load average {results['load_before']} before / "
        f"{results['load_after']} after.",
        f"Python {ver['python']}, torch {ver['torch']}, transformers {ver['transformers']}. Tokens per review: "
        f"median {results['data']['median_tokens']}, max {results['data']['max_tokens']}.",
        "",
        "| precision | batching | padded positions | real / padded | repeats | median samples/s | best samples/s "
        "| vs fixed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['precision']} | {r['mode']} | {r['positions']:,} | {r['padding_efficiency']:.2f} | "
            f"{len(r['seconds'])} | {r['median_samples_per_s']:,.0f} | {r['best_samples_per_s']:,.0f} | "
            f"{r['speedup_vs_fixed']:.2f}x |"
        )
    lines += [
        "",
        "grouped = length-grouped mega-batches + dynamic padding (the engine); shuffled = dynamic padding only; "
        "fixed = every row padded to the max length. Only the training epoch is timed.",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="tiny model, 256 rows, 1 repeat: checks the script runs")
    p.add_argument("--shape", choices=["tiny", "small", "base"], default="small", help="BERT shape (default small)")
    p.add_argument("--model", type=Path, default=None, help="use this classifier folder instead of building one")
    p.add_argument("--rows", type=int, default=2048, help="reviews in the timed epoch (default 2048)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (default 32)")
    p.add_argument("--max-length", type=int, default=128, help="truncation and fixed padding length (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per mode (default 3)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "fp16"], default=["fp32"])
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine a thread competing for a busy core made timings "
        "erratic, 6 instead of 50 samples/s)",
    )
    p.add_argument("--vocab-size", type=int, default=8000, help="WordPiece size of the built model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=data_file("train.csv"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for oof.json / oof.md")
    args = p.parse_args(argv)
    if args.quick:
        args.shape, args.rows, args.repeats, args.vocab_size = "tiny", 256, 1, 2000
    if not args.data.exists():
        args.data = ROOT / "engine" / "data" / "sample" / "train.csv"
    return args


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from engine.oof.transformer import encode, resolve_device

    args = parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    started = time.time()
    texts, labels = load_rows(args.data, args.rows, args.seed)
    results: dict = {
        **run_record(*VERSIONS, machine=machine(device)),
    }
    with tempfile.TemporaryDirectory(prefix="bench_oof_") as tmp:
        folder = args.model
        if folder is None:
            tokenizer_texts, _ = load_rows(args.data, 20_000, args.seed + 1)
            folder = build_model(Path(tmp) / "bert", args.shape, tokenizer_texts, args.vocab_size)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        encoded = encode(tokenizer, texts, args.max_length)
        lengths = encoded.lengths
        model_config = AutoConfig.from_pretrained(folder, num_labels=K, trust_remote_code=False)
        n_params = sum(p.numel() for p in AutoModelForSequenceClassification.from_config(model_config).parameters())
        args.pad_id = tokenizer.pad_token_id
        results["params"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        results["model"] = {"folder": str(args.model) if args.model else "built", "parameters": n_params}
        results["data"] = {
            "source": str(args.data),
            "rows": len(texts),
            "median_tokens": float(np.median(lengths)),
            "max_tokens": int(lengths.max()),
        }
        print(f"{len(texts)} rows, {n_params / 1e6:.1f}M parameters, {device}, {args.threads} threads", flush=True)

        timings: dict[tuple[str, str], list[float]] = {}
        plans = {}
        for precision in args.precision:
            for mode in MODES:  # untimed warm-up of every mode: a few batches
                run_epoch(folder, encoded, labels, mode, args, device, precision, args.seed, limit=3)
            for r in range(args.repeats):
                order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]  # rotate: no mode always runs first
                for mode in order:
                    seconds, plans[mode] = run_epoch(folder, encoded, labels, mode, args, device, precision, args.seed)
                    timings.setdefault((precision, mode), []).append(seconds)
                    print(f"{precision} {mode}: {len(texts) / seconds:,.0f} samples/s ({seconds:.2f} s)", flush=True)

    rows = []
    for (precision, mode), seconds in timings.items():
        pad_to = args.max_length if mode == "fixed" else None
        padded = positions(lengths, plans[mode], pad_to)
        median = statistics.median(seconds)
        rows.append(
            {
                "precision": precision,
                "mode": mode,
                "seconds": [round(s, 4) for s in seconds],
                "median_s": round(median, 4),
                "median_samples_per_s": round(len(texts) / median, 1),
                "best_samples_per_s": round(len(texts) / min(seconds), 1),
                "positions": padded,
                "padding_efficiency": round(float(lengths.sum()) / padded, 4),
            }
        )
    for row in rows:
        fixed = next(r for r in rows if r["precision"] == row["precision"] and r["mode"] == "fixed")
        row["speedup_vs_fixed"] = round(row["median_samples_per_s"] / fixed["median_samples_per_s"], 3)
    results["rows"] = rows
    results["load_after"] = load_average()
    results["total_seconds"] = round(time.time() - started, 1)

    name = "oof_quick" if args.quick else "oof"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = markdown(results)
    (args.out / f"{name}.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    print(f"wrote {args.out / f'{name}.json'} and {args.out / f'{name}.md'} in {results['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
