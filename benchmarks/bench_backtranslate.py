"""Back-translation speed: the motivating notebook's two loops vs this engine, side by side in one run.

All rows run the same random-weight mBART-50 (built locally, no downloads) on the same real Korean
reviews (nsmc4 test set, a seeded random sample kept in file order), ko -> en_XX -> ko, with the same
decoding (beam size, `--beam`) and output lengths forced equal: every leg generates exactly
`--out-tokens` tokens, language code included (CTranslate2 min_decoding_length = max_decoding_length;
transformers min_new_tokens = max_new_tokens with forced_eos_token_id=None), so every engine does the
same decoding work. Tokenization and decoding are inside the timings.

Rows:
- naive: the notebook's first loop, one sentence per `generate` (forced_bos_token_id), decode, and the
  same back; run on an evenly spaced subset (`--naive-sentences`) because it is slow; it handles one
  sentence at a time, so its rate does not depend on how many sentences there are.
- dataloader: the notebook's second loop: a torch DataLoader in dataset order, batches of
  `--dataloader-batch` (128), padded `generate`, decode, then the same for the pivots.
- engine: `BackTranslator.backtranslate(texts)`: each leg one `translate_batch` over all sentences,
  CTranslate2 sorting by length and cutting batches of `--max-batch-tokens` (one row per budget given).
- engine_plan: the same translator, batches planned by engine/batching.py (`plan_batches` under the same
  token budget, one `translate_batch` per batch, `restore_order`): the alternative to CTranslate2's own
  sorting, measured to choose between them.
- engine_file: `augment_file(BacktranslateJob...)` end to end (read Parquet, chunked resumable output, write Parquet)
  on an open translator: the job's overhead over the bare engine call.

Each row runs in its own process (`--worker`), so memory and threads do not leak between rows: load the
model, one untimed warm-up on 8 sentences, reset the peak-memory mark (/proc/self/clear_refs), then
`--repeats` timed runs (perf_counter around the call only). Reported: medians and minimums, sentences
(round trips) per second, output tokens per second, the ratios, peak RSS during the timed runs (model
included) and, on CUDA, peak device memory in use (nvidia-smi, minus what was in use before loading).

    .venv/bin/python benchmarks/bench_backtranslate.py                 # CPU, d512 6+6, ~20-25 min on 2 cores
    .venv/bin/python benchmarks/bench_backtranslate.py --quick         # tiny model, 1 repeat: checks the script
    benchmarks/gpu_backtranslate.sh                                    # H200: the real mbart-large-50 shape
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from time import perf_counter
from typing import Any

from machine import SAMPLE_TRAIN, data_file, describe, load_average, run_record

from engine.cores import threads_for

ROOT = Path(__file__).resolve().parents[1]
# nsmc4 test.csv where ../shared has it, else the bundled sample's training reviews (more sentences than its test)
DATA = data_file("test.csv", fallback=SAMPLE_TRAIN)
PIVOT = "en_XX"
SOURCE = "ko_KR"


# ------------------------------------------------------------------------------------------------ model
def ensure_model(args: argparse.Namespace) -> dict:
    """Build (or reuse) the random model folder: MODEL_DIR/hf (transformers) and MODEL_DIR/ct2."""
    model_dir = args.model_dir or ROOT / ".cache" / "bench_models" / f"mbart-{args.shape}-{args.quantization}"
    record_path = model_dir / "random_model.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        same = (record.get("shape"), record.get("quantization"), record.get("dtype"))
        if same == (args.shape, args.quantization, args.hf_dtype):
            print(f"model: reusing {model_dir}", flush=True)
            return record
    print(f"model: building {args.shape} in {model_dir} ...", flush=True)
    command = [sys.executable, str(ROOT / "tools" / "make_random_model.py"), "mbart", args.shape, str(model_dir)]
    command += ["--quantization", args.quantization, "--dtype", args.hf_dtype, "--force"]
    if args.device == "cuda":
        command += ["--device", "cuda"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(record_path.read_text())


def load_texts(path: Path, n: int, seed: int) -> list[str]:
    """`n` reviews drawn without replacement (seeded), in file order: the notebook's dataset order. A file with
    fewer texts (the bundled sample on a node without ../shared) is repeated, each copy numbered ("2. text")
    so that no two prompts are equal (vLLM's prefix cache would skip the prefill of a repeated one)."""
    import numpy as np
    import polars as pl

    texts = pl.read_csv(path, infer_schema_length=None)["text"].drop_nulls()
    texts = texts.filter(texts.str.strip_chars().str.len_chars() > 0)
    if n > texts.len():
        copies = -(-n // texts.len())
        print(f"data: {path} has {texts.len():,} texts; {n:,} asked: {copies} numbered copies", flush=True)
        texts = pl.concat([texts if k == 0 else f"{k + 1}. " + texts for k in range(copies)])
    pick = np.sort(np.random.default_rng(seed).choice(texts.len(), size=n, replace=False))
    return texts.gather(pick).to_list()


def spaced_subset(texts: list[str], k: int) -> list[str]:
    """`k` evenly spaced texts: the same length mix as the whole list."""
    if k >= len(texts):
        return list(texts)
    return [texts[int(i * len(texts) / k)] for i in range(k)]


# --------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


class GpuMemory:
    """Peak device memory in use (MiB), sampled with nvidia-smi every 50 ms while running."""

    def __init__(self, index: int) -> None:
        self.index, self.peak, self._stop = index, 0, threading.Event()
        self.available = shutil.which("nvidia-smi") is not None
        self.baseline = self.read() if self.available else 0

    def read(self) -> int:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", str(self.index)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return int(out) if out.isdigit() else 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.read())
            self._stop.wait(0.05)

    def __enter__(self) -> GpuMemory:
        if self.available:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()


# -------------------------------------------------------------------------------------------- engines
def hf_setup(spec: dict):
    import torch
    from transformers import AutoTokenizer, MBartForConditionalGeneration

    torch.set_num_threads(spec["threads"])
    dtype = torch.float32 if spec["device"] == "cpu" else torch.float16  # the notebook: fp16 on GPU
    model = (
        MBartForConditionalGeneration.from_pretrained(spec["hf"], dtype=dtype, trust_remote_code=False)
        .to(spec["device"])
        .eval()
    )
    # the random model stores equal encoder/decoder embeddings apart (transformers 5 unties them with the
    # output layer); the real checkpoint shares one: share it here too, so memory compares fairly
    model.set_input_embeddings(model.model.shared)
    if spec.get("compile"):
        model = torch.compile(model)
    tokenizer = AutoTokenizer.from_pretrained(spec["hf"], src_lang=SOURCE, trust_remote_code=False)
    return model, tokenizer


def hf_generate(model, tokenizer, texts: list[str], src: str, tgt: str, spec: dict) -> tuple[list[str], int, int]:
    """One padded `generate` call like the notebook's; returns texts, output tokens, input tokens."""
    import torch

    tokenizer.src_lang = src
    batch = tokenizer(
        texts, return_tensors="pt", padding=True, truncation=True, max_length=spec["max_input_tokens"]
    ).to(spec["device"])
    with torch.inference_mode():
        out = model.generate(
            **batch,
            forced_bos_token_id=tokenizer.convert_tokens_to_ids(tgt),
            num_beams=spec["beam"],
            do_sample=False,
            min_new_tokens=spec["out_tokens"],
            max_new_tokens=spec["out_tokens"],
            forced_eos_token_id=None,
        )
    # every row has the decoder start token + out_tokens new tokens (the language code first)
    return (
        tokenizer.batch_decode(out, skip_special_tokens=True),
        (out.shape[1] - 1) * len(texts),
        int(batch["attention_mask"].sum()),
    )


def run_naive(spec: dict, texts: list[str]) -> dict:
    model, tokenizer = spec["_hf"]
    tokens = leg2_inputs = 0
    outputs = []
    for text in texts:
        pivot, n1, _ = hf_generate(model, tokenizer, [text], SOURCE, PIVOT, spec)
        back, n2, m = hf_generate(model, tokenizer, pivot, PIVOT, SOURCE, spec)
        tokens += n1 + n2
        leg2_inputs += m
        outputs.append(back[0])
    return {"output_tokens": tokens, "leg2_input_tokens": leg2_inputs, "outputs": len(outputs)}


def run_dataloader(spec: dict, texts: list[str]) -> dict:
    from torch.utils.data import DataLoader

    model, tokenizer = spec["_hf"]
    batch = spec["dataloader_batch"]
    tokens = leg2_inputs = 0
    pivots: list[str] = []
    for chunk in DataLoader(texts, batch_size=batch, shuffle=False, collate_fn=list):
        out, n, _ = hf_generate(model, tokenizer, chunk, SOURCE, PIVOT, spec)
        pivots += out
        tokens += n
    backs: list[str] = []
    for chunk in DataLoader(pivots, batch_size=batch, shuffle=False, collate_fn=list):
        out, n, m = hf_generate(model, tokenizer, chunk, PIVOT, SOURCE, spec)
        backs += out
        tokens += n
        leg2_inputs += m
    return {"output_tokens": tokens, "leg2_input_tokens": leg2_inputs, "outputs": len(backs)}


def engine_setup(spec: dict):
    from engine.augment.backtranslate import BacktranslateConfig, BackTranslator

    config = BacktranslateConfig(
        spec["ct2"],
        source_lang=SOURCE,
        pivots=(PIVOT,),
        beam_size=spec["beam"],
        max_input_tokens=spec["max_input_tokens"],
        max_output_tokens=spec["out_tokens"],
        min_output_tokens=spec["out_tokens"],
        min_chars=0,
        device=spec["device"],
        compute_type=spec["compute_type"],
        threads=spec["threads"],
        max_batch_tokens=spec["max_batch_tokens"],
    )
    return BackTranslator(config)


def _leg2_tokens(translator, pivots: list[str]) -> int:
    return sum(len(p) + 2 for p in translator.tokenizer.encode(pivots, translator.config.max_input_tokens - 2))


def run_engine(spec: dict, texts: list[str]) -> dict:
    translator = spec["_engine"]
    results = translator.backtranslate(texts)
    spec["_last"] = [r[0].pivot_text for r in results]
    return {"output_tokens": sum(r[0].output_tokens for r in results), "outputs": len(results)}


def run_engine_plan(spec: dict, texts: list[str]) -> dict:
    from engine.batching import plan_batches, restore_order

    translator = spec["_engine"]
    config = translator.config

    def leg(items: list[str], src: str, tgt: str) -> tuple[list[list[str]], list[str]]:
        tokens = [[src, *p, "</s>"] for p in translator.tokenizer.encode(items, config.max_input_tokens - 2)]
        batches = plan_batches([len(t) for t in tokens], max_tokens=config.max_batch_tokens)
        results = []
        for batch in batches:
            rows = translator.translator.translate_batch(
                [tokens[i] for i in batch.tolist()],
                target_prefix=[[tgt]] * len(batch),
                beam_size=config.beam_size,
                max_input_length=config.max_input_tokens,
                max_decoding_length=config.max_output_tokens,
                min_decoding_length=config.min_output_tokens,
            )
            results.append([r.hypotheses[0] for r in rows])
        hypotheses = restore_order(batches, results)
        return hypotheses, translator.tokenizer.decode(hypotheses)

    forward, pivots = leg(texts, SOURCE, PIVOT)
    backward, _ = leg(pivots, PIVOT, SOURCE)
    spec["_last"] = pivots
    return {"output_tokens": sum(map(len, forward)) + sum(map(len, backward)), "outputs": len(backward)}


def run_engine_file(spec: dict, texts: list[str]) -> dict:
    import polars as pl

    from engine.augment.backtranslate import BacktranslateJob
    from engine.augment.common import augment_file
    from engine.stage import InProcess

    source = Path(spec["_tmp"]) / f"hard_{len(texts)}.parquet"
    if not source.exists():  # the warm-up writes the small file, the first timed run the full one (~ms)
        pl.DataFrame({"id": range(len(texts)), "text": texts, "label": [0] * len(texts)}).write_parquet(source)
    kept, counts = augment_file(
        BacktranslateJob.using(spec["_engine"]),
        source,
        Path(spec["_tmp"]) / "augmented.parquet",
        InProcess(len(texts)),
        restart=True,
    )
    spec["_last"] = [json.loads(e)["pivot_text"] for e in kept["extra"]]
    return {"output_tokens": spec["out_tokens"] * 2 * counts["generated"], "outputs": counts["generated"]}


RUNNERS = {
    "naive": ("hf", run_naive),
    "dataloader": ("hf", run_dataloader),
    "engine": ("engine", run_engine),
    "engine_plan": ("engine", run_engine_plan),
    "engine_file": ("engine", run_engine_file),
}


def worker(spec_path: Path) -> int:
    """Run one row in this process and print its measurements as JSON on the last line."""
    spec = json.loads(spec_path.read_text())
    texts = spec["texts"]
    kind, run = RUNNERS[spec["runner"]]
    gpu = GpuMemory(spec["device_index"]) if spec["device"] == "cuda" else None
    started = perf_counter()
    if kind == "hf":
        spec["_hf"] = hf_setup(spec)
    else:
        spec["_engine"] = engine_setup(spec)
    load_s = perf_counter() - started
    rss_loaded = _status_kib("VmRSS")
    with tempfile.TemporaryDirectory(prefix="bench_bt_") as tmp:
        spec["_tmp"] = tmp
        run(spec, texts[:8])  # warm-up: one-off allocations, kernel selection, lazy imports
        peak_reset = reset_peak_rss()
        times, measured = [], {}
        with gpu if gpu is not None else _null():
            for _ in range(spec["repeats"]):
                start = perf_counter()
                measured = run(spec, texts)
                times.append(perf_counter() - start)
        if kind == "engine":
            measured["leg2_input_tokens"] = _leg2_tokens(spec["_engine"], spec["_last"])
    result = {
        "times_s": [round(t, 4) for t in times],
        "load_s": round(load_s, 2),
        "rss_after_load_mib": round(rss_loaded / 1024),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024) if peak_reset else None,
        "peak_gpu_mib": (gpu.peak - gpu.baseline) if gpu is not None and gpu.available else None,
        **measured,
    }
    print(json.dumps(result))
    return 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


# ------------------------------------------------------------------------------------------- parent
def run_row(name: str, what: str, runner: str, texts: list[str], spec: dict, timeout: float | None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({**spec, "runner": runner, "texts": texts}, f, ensure_ascii=False)
    print(f"{what}: {len(texts)} sentences x {spec['repeats']} repeats ...", flush=True)
    row: dict[str, Any] = {"name": name, "what": what, "sentences": len(texts), "repeats": spec["repeats"]}
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", f.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        row["status"] = f"timed out after {timeout:.0f} s"
        print(f"  {row['status']}", flush=True)
        return row
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        row["status"] = "failed: " + done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else "failed"
        print(done.stderr[-3000:], file=sys.stderr)
        return row
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    median = statistics.median(measured["times_s"])
    row.update(measured)
    row.update(
        status="ok",
        median_s=round(median, 4),
        min_s=round(min(measured["times_s"]), 4),
        sentences_per_s=round(len(texts) / median, 3),
        output_tokens_per_s=round(measured["output_tokens"] / median, 1),
        output_tokens_per_sentence=round(measured["output_tokens"] / len(texts), 2),
        leg2_input_tokens_per_sentence=round(measured["leg2_input_tokens"] / len(texts), 2),
    )
    print(
        f"  median {median:.2f} s, {row['sentences_per_s']:.2f} sentences/s, "
        f"{row['output_tokens_per_s']:.0f} output tokens/s, peak RSS {row['peak_rss_mib']} MiB",
        flush=True,
    )
    return row


def machine() -> dict:
    gpu = None
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return describe() | {"gpu": gpu}


VERSIONS = ("ctranslate2", "transformers", "torch", "tokenizers", "sentencepiece", "polars", "hardaug")


def summarize(results: dict) -> None:
    rows = {r["name"]: r for r in results["rows"] if r.get("status") == "ok"}
    ratios = {}
    for base in ("naive", "dataloader"):
        if base in rows:
            for name, row in rows.items():
                ratios[f"{name}_vs_{base}"] = round(row["sentences_per_s"] / rows[base]["sentences_per_s"], 2)
    results["ratios"] = ratios
    engines = [r for n, r in rows.items() if n.startswith("engine") and n not in ("engine_plan", "engine_file")]
    best = max(engines, key=lambda r: r["sentences_per_s"]) if engines else None
    model, settings = results["model"], results["settings"]
    goal: dict[str, Any] = {}
    if best is not None:
        goal["engine_row"] = best["name"]
        if "naive" in rows and "dataloader" in rows:
            vs_naive = best["sentences_per_s"] / rows["naive"]["sentences_per_s"]
            vs_loader = best["sentences_per_s"] / rows["dataloader"]["sentences_per_s"]
            goal.update(vs_naive=round(vs_naive, 1), vs_dataloader=round(vs_loader, 1))
            if settings["device"] == "cpu":
                big_enough = model["d_model"] >= 512 and min(model["encoder_layers"], model["decoder_layers"]) >= 6
                met = vs_naive >= 10 and vs_loader >= 3
                goal["cpu_goal"] = (
                    ("met" if met else "NOT met") + f": {vs_naive:.1f}x the naive loop (goal >= 10x), "
                    f"{vs_loader:.1f}x the DataLoader loop (goal >= 3x)"
                    + ("" if big_enough else " [model smaller than the goal's d512 6+6: not a goal run]")
                )
        seconds_16k = 16_000 / best["sentences_per_s"]
        goal["seconds_for_16000"] = round(seconds_16k, 1)
        goal["seconds_for_16000_measured"] = best["sentences"] >= 16_000
        if settings["device"] == "cuda":
            goal["gpu_goal"] = ("met" if seconds_16k < 60 else "NOT met") + (
                f": 16,000 round trips in {seconds_16k:.1f} s (goal < 60 s)"
                + ("" if best["sentences"] >= 16_000 else f", extrapolated from {best['sentences']:,} sentences")
            )
    results["goal"] = goal
    for name in ("naive", "dataloader"):
        if name in rows:
            rows[name]["seconds_for_16000_extrapolated"] = round(16_000 / rows[name]["sentences_per_s"], 1)


def markdown(results: dict) -> str:
    mach, ver, model, s = results["machine"], results["versions"], results["model"], results["settings"]
    device = f"GPU {mach['gpu']}" if s["device"] == "cuda" else f"{mach['cpu']}, {mach['usable_cpus']} usable cores"
    lines = [
        f"Back-translation ko -> {PIVOT} -> ko, {results['date']}. {device}, {s['threads']} threads; load average "
        f"{results['load_before']} before / {results['load_after']} after.",
        f"Model: random-weight mBART-50, shape `{model['shape']}` (d_model {model['d_model']}, "
        f"{model['encoder_layers']}+{model['decoder_layers']} layers, vocab {model['vocab_size']:,}), "
        f"transformers {model['hf_dtype']} on {s['device']}, CTranslate2 {s['compute_type']} "
        f"(stored {model['quantization']}). Beam {s['beam']}, every leg exactly {s['out_tokens']} output tokens "
        f"(language code included), inputs cut at {s['max_input_tokens']} tokens.",
        f"Data: {s['sentences']:,} real nsmc4 test reviews (seeded sample, file order; mean "
        f"{results['data']['mean_chars']} characters). Python {ver['python']}, ctranslate2 {ver['ctranslate2']}, "
        f"transformers {ver['transformers']}, torch {ver['torch']}.",
        "",
        "| row | sentences | repeats | median s | min s | sentences/s | output tokens/s | vs naive | vs DataLoader "
        "| leg-2 input tokens/sentence | peak RSS MiB | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = results["ratios"]
    for row in results["rows"]:
        if row.get("status") != "ok":
            lines.append(
                f"| {row['what']} | {row['sentences']:,} | {row['repeats']} | {row['status']} " + "| " * 8 + "|"
            )
            continue
        lines.append(
            f"| {row['what']} | {row['sentences']:,} | {row['repeats']} | {row['median_s']:.2f} | {row['min_s']:.2f} "
            f"| {row['sentences_per_s']:,.2f} | {row['output_tokens_per_s']:,.0f} "
            f"| {_ratio(ratios.get(row['name'] + '_vs_naive'))} | {_ratio(ratios.get(row['name'] + '_vs_dataloader'))} "
            f"| {row['leg2_input_tokens_per_sentence']} | {row['peak_rss_mib']} | {row['peak_gpu_mib'] or '-'} |"
        )
    goal = results["goal"]
    lines.append("")
    if "cpu_goal" in goal:
        lines.append(f"CPU goal: {goal['cpu_goal']}.")
    if "gpu_goal" in goal:
        lines.append(f"GPU goal: {goal['gpu_goal']}.")
    if "seconds_for_16000" in goal:
        lines.append(
            f"16,000 round trips with `{goal['engine_row']}`: {goal['seconds_for_16000']} s"
            + ("" if goal["seconds_for_16000_measured"] else " (extrapolated from the measured rate)")
            + "; the notebook took about 6 hours on its GPU."
        )
    for row in results["rows"]:
        if "seconds_for_16000_extrapolated" in row:
            lines.append(
                f"{row['what']}: 16,000 round trips would take {row['seconds_for_16000_extrapolated']:,.0f} s "
                "(extrapolated from the measured rate)."
            )
    notes = []
    if any(r["name"] == "naive" for r in results["rows"]):
        notes.append(
            f"The naive loop runs on {s['naive_sentences']} evenly spaced sentences of the same set (one sentence "
            "per call, so its rate does not depend on the set size)."
        )
    notes.append(
        "Leg-2 input tokens differ a little between rows because each engine's pivot text is gibberish of its "
        f"own (random weights; {s['compute_type']} vs {model['hf_dtype']}). Peak RSS is measured during the timed "
        "runs, model included; peak GPU memory is the device's memory in use (nvidia-smi) above its level "
        "before the model was loaded."
    )
    lines += ["", " ".join(notes)]
    return "\n".join(lines) + "\n"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="tiny model, 24 sentences, 1 repeat: checks the script")
    p.add_argument("--shape", choices=["tiny", "base", "large"], default=None, help="default: base (quick: tiny)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--device-index", type=int, default=0)
    p.add_argument("--sentences", type=int, default=None, help="default: 256 (quick: 24)")
    p.add_argument("--naive-sentences", type=int, default=None, help="default: 24 (quick: 6)")
    p.add_argument("--dataloader-sentences", type=int, default=None, help="default: all --sentences")
    p.add_argument("--dataloader-batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=None, help="default: 3 (quick: 1)")
    p.add_argument("--naive-repeats", type=int, default=None, help="default: --repeats")
    p.add_argument("--out-tokens", type=int, default=32, help="tokens generated per leg (default: 32)")
    p.add_argument("--max-input-tokens", type=int, default=128)
    p.add_argument("--beam", type=int, default=1, help="beam size of every engine (default: 1 = greedy)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per engine (default: usable cores)")
    p.add_argument(
        "--max-batch-tokens",
        default=None,
        help="engine batch budgets, comma-separated: one engine row each (default: 2048 CPU, 16384 CUDA)",
    )
    p.add_argument("--compute-type", default=None, help="CTranslate2 compute type (default: int8 / int8_float16)")
    p.add_argument("--quantization", default=None, help="stored CTranslate2 type (default: int8 / int8_float16)")
    p.add_argument("--hf-dtype", choices=["float32", "float16"], default=None, help="stored HF weights")
    p.add_argument(
        "--rows",
        default="naive,dataloader,engine,engine_plan,engine_file",
        help="rows to run, in this order, comma-separated: naive, dataloader, dataloader_compiled, engine, "
        "engine_plan, engine_file; engine:N pins the batch budget N",
    )
    p.add_argument("--row-timeout", type=float, default=None, help="seconds before a row is abandoned")
    p.add_argument(
        "--time-budget", type=float, default=None, help="seconds for all rows; rows that do not fit are skipped"
    )
    p.add_argument("--model-dir", type=Path, default=None, help="model folder (default: .cache/bench_models/...)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--name", default="backtranslate", help="results file stem (default: backtranslate)")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.shape = args.shape or ("tiny" if quick else "large" if args.device == "cuda" else "base")
    args.sentences = args.sentences or (24 if quick else 256)
    args.naive_sentences = args.naive_sentences or (6 if quick else 24)
    args.dataloader_sentences = args.dataloader_sentences or args.sentences
    args.repeats = args.repeats or (1 if quick else 3)
    args.naive_repeats = args.naive_repeats or args.repeats
    args.threads = threads_for(args.threads)
    gpu = args.device == "cuda"
    args.quantization = args.quantization or ("int8_float16" if gpu else "int8")
    args.compute_type = args.compute_type or ("int8_float16" if gpu else "int8")
    args.hf_dtype = args.hf_dtype or ("float16" if gpu else "float32")
    budgets = args.max_batch_tokens or ("16384" if gpu else "2048")
    args.max_batch_tokens = [int(b) for b in str(budgets).split(",")]
    if quick and args.out == ROOT / "benchmarks" / "results" and args.name == "backtranslate":
        args.name = "backtranslate_quick"  # a check run never overwrites the real results
    return args


def build_plan(args: argparse.Namespace, texts: list[str]) -> list[tuple[str, str, str, list[str], dict]]:
    """Rows in the order of --rows; `engine:N` / `engine_plan:N` pin a batch budget, plain names take every
    --max-batch-tokens value."""
    plan = []
    loader_texts = texts[: args.dataloader_sentences]
    for item in args.rows.split(","):
        name, _, pinned = item.strip().partition(":")
        if name == "naive":
            what = "naive HF loop (1 sentence per generate)"
            subset = spaced_subset(texts, args.naive_sentences)
            plan.append(("naive", what, "naive", subset, {"repeats": args.naive_repeats}))
        elif name in ("dataloader", "dataloader_compiled"):
            compiled = name == "dataloader_compiled"
            what = f"HF DataLoader loop (batch {args.dataloader_batch}, dataset order)"
            what = what.replace(" (", " + torch.compile (") if compiled else what
            plan.append((name, what, "dataloader", loader_texts, {"compile": compiled}))
        elif name in ("engine", "engine_plan"):
            budgets = [int(pinned)] if pinned else args.max_batch_tokens
            for budget in budgets:
                suffix = "" if len(args.max_batch_tokens) == 1 and not pinned else f"_{budget}"
                what = (
                    f"engine: CTranslate2 {args.compute_type}, own length sorting, {budget} tokens/batch"
                    if name == "engine"
                    else f"engine, batches from engine/batching.py ({budget} tokens/batch)"
                )
                plan.append((f"{name}{suffix}", what, name, texts, {"max_batch_tokens": budget}))
        elif name == "engine_file":
            what = "engine job end to end (Parquet in, resumable chunks, Parquet out)"
            plan.append(("engine_file", what, "engine_file", texts, {}))
        else:
            raise SystemExit(f"unknown row {item!r} in --rows")
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    record = ensure_model(args)
    texts = load_texts(args.data, args.sentences, args.seed)
    spec = {
        "hf": record["hf"],
        "ct2": record["ct2"],
        "device": args.device,
        "device_index": args.device_index,
        "threads": args.threads,
        "beam": args.beam,
        "out_tokens": args.out_tokens,
        "max_input_tokens": args.max_input_tokens,
        "compute_type": args.compute_type,
        "dataloader_batch": args.dataloader_batch,
        "repeats": args.repeats,
        "max_batch_tokens": args.max_batch_tokens[0],
    }
    results: dict[str, Any] = {
        **run_record(*VERSIONS, machine=machine()),
        "model": {
            **{
                k: record[k]
                for k in (
                    "shape",
                    "d_model",
                    "encoder_layers",
                    "decoder_layers",
                    "attention_heads",
                    "ffn_dim",
                    "vocab_size",
                    "parameters",
                    "quantization",
                )
            },
            "hf_dtype": args.hf_dtype,
        },
        "settings": {
            **{k: v for k, v in spec.items() if k not in ("hf", "ct2")},
            "sentences": args.sentences,
            "naive_sentences": args.naive_sentences,
            "max_batch_tokens": args.max_batch_tokens,
        },
        "data": {
            "source": str(args.data),
            "seed": args.seed,
            "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
        },
        "rows": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(args, texts)
    started = time.monotonic()
    for name, what, runner, row_texts, overrides in plan:
        timeout = args.row_timeout
        left = None if args.time_budget is None else args.time_budget - (time.monotonic() - started)
        if left is not None and left < 20:
            skipped = {"name": name, "what": what, "sentences": len(row_texts), "repeats": args.repeats}
            results["rows"].append({**skipped, "status": "skipped: --time-budget spent"})
        else:
            timeout = left if timeout is None else timeout if left is None else min(timeout, left)
            results["rows"].append(run_row(name, what, runner, row_texts, {**spec, **overrides}, timeout))
        results["load_after"] = load_average()
        summarize(results)
        # written after every row: a run cut short still leaves what it measured
        (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        (args.out / f"{args.name}.md").write_text(markdown(results))
    print()
    print((args.out / f"{args.name}.md").read_text())
    return 0 if all(r.get("status") == "ok" for r in results["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
