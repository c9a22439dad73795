"""Replicas on the GPUs of one node through Ray: throughput per GPU and scaling efficiency (goal >= 90%).

For each engine, the same job twice on a local Ray cluster holding every GPU of the node: 1 replica, then
one replica per GPU (`augment_file` on `OnRay`, the code `--ray` runs), each replica on its own GPU:
- paraphrase: the Qwen2-7B shape (spow12/Ko-Qwen2-7B-Instruct's architecture) with random weights
  (vLLM load_format="dummy", no download), free text, every answer exactly `--tokens` tokens (EOS ignored),
  one engine seed per replica (the GPU fast path);
- backtranslate: the mbart-large-50 shape with random weights (built on the GPU by tools/make_random_model.py,
  CTranslate2 int8_float16), greedy, every leg exactly `--bt-tokens` tokens.
The work grows with the replicas (`--prompts-per-gpu`, `--sentences-per-gpu`), so each replica has the
same amount to do. Rate = sources done after every replica delivered its first shard, over the time
after that (engine start left out: vLLM's start is minutes, and it is paid once per replica); efficiency
= rate(N replicas) / (N x rate(1 replica)).

    bash benchmarks/gpu_ray.sh      # the one command; results in $OUT or benchmarks/results/ray_gpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' model and data helpers

from bench_backtranslate import ensure_model, load_texts, machine  # noqa: E402
from machine import data_file  # noqa: E402


def write_sources(texts: list[str], path: Path) -> Path:
    import polars as pl

    pl.DataFrame({"id": [f"r{i:06d}" for i in range(len(texts))], "text": texts, "label": 0}).write_parquet(path)
    return path


def timed_job(sources: Path, out: Path, job, replicas: int, n: int) -> dict:
    """One job on `replicas` GPUs; the steady rate counts only after every replica answered once."""
    from engine.augment.common import augment_file
    from engine.cluster.executor import OnRay
    from engine.cluster.session import ClusterOptions

    events: list[tuple[float, int, int, int]] = []  # (time, worker pid, sources, output tokens)
    started = time.perf_counter()

    def on_shard(shard) -> None:  # engine.progress.Progress: a start report, then one per saved shard
        if shard.step:
            d = shard.detail
            events.append((time.perf_counter() - started, d["worker_pid"], shard.step, d["output_tokens"]))

    options = ClusterOptions(replicas=replicas, gpus_per_replica=1, max_retries=1)
    executor = OnRay(options, max(1, n // (replicas * 8)))
    augment_file(job, sources, out, executor, restart=True, on_progress=on_shard)
    wall = time.perf_counter() - started
    first = {}
    for t, pid, _, _ in events:
        first.setdefault(pid, t)
    all_up = max(first.values())
    after = [(t, s, k) for t, _, s, k in events if t > all_up]
    span = (after[-1][0] - all_up) if after else float("nan")
    rate = sum(s for _, s, _ in after) / span if after else float("nan")
    tokens = sum(k for _, _, k in after) / span if after else float("nan")
    return {"replicas": replicas, "replicas_seen": len(first), "wall_s": round(wall, 1),
            "all_replicas_up_s": round(all_up, 1), "sources": n, "steady_sources_per_s": round(rate, 2),
            "steady_output_tokens_per_s": round(tokens, 0),
            "per_gpu_sources_per_s": round(rate / replicas, 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--gpus", type=int, default=None, help="replicas of the scaled run (default: every GPU)")
    p.add_argument("--engines", default="paraphrase,backtranslate")
    p.add_argument("--prompts-per-gpu", type=int, default=6000)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--sentences-per-gpu", type=int, default=6000)
    p.add_argument("--bt-tokens", type=int, default=32)
    # the training set: 274,275 reviews, enough for thousands per GPU on a large node (the test set has 27,500)
    p.add_argument("--data", type=Path, default=data_file("train.csv"), help="default: nsmc4, else the sample")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="ray_gpu")
    args = p.parse_args(argv)

    import ray
    import torch

    gpus = args.gpus or torch.cuda.device_count()
    if gpus < 1:
        raise SystemExit("no CUDA GPU visible: this benchmark is for a GPU node (bench_ray.py is the CPU one)")
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "gpus": gpus, "machine": machine(),
              "versions": {d: _version(d) for d in ("ray", "vllm", "ctranslate2", "torch")}, "engines": {}}  # fmt: skip
    work = Path(tempfile.mkdtemp(dir=ROOT / ".cache"))
    # No runtime_env (as engine.cluster.session.connect): the workers of a local cluster inherit the raylet's
    # environment, and a runtime_env would keep the actors off the workers Ray prestarts (a process each).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ray.init(num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    try:
        for engine in args.engines.split(","):
            job, per_gpu = _job(engine, args, work)
            rows = []
            for replicas in sorted({1, gpus}):
                n = per_gpu * replicas
                sources = write_sources(load_texts(args.data, n, seed=0), work / f"{engine}_{n}.parquet")
                print(f"{engine}: {replicas} replica(s), {n} sources ...", flush=True)
                rows.append(timed_job(sources, work / f"{engine}_{replicas}.parquet", job, replicas, n))
                print(f"  {rows[-1]}", flush=True)
            one, many = rows[0]["steady_sources_per_s"], rows[-1]["steady_sources_per_s"]
            efficiency = many / (gpus * one) if gpus > 1 else 1.0
            result["engines"][engine] = {"rows": rows, "scaling_efficiency": round(efficiency, 3),
                                         "goal_90_percent_met": efficiency >= 0.9}  # fmt: skip
            _write(result, args)
    finally:
        ray.shutdown()
    _write(result, args)
    return 0


def _job(engine: str, args: argparse.Namespace, work: Path):
    if engine == "paraphrase":
        from engine.augment.paraphrase import ParaphraseConfig, ParaphraseJob
        from engine.random_models import qwen2

        folder = qwen2.write_shape_config(work / "qwen2-7b", "qwen2-7b")
        config = ParaphraseConfig(model=str(folder), load_format="dummy", n=2, max_tokens=args.tokens,
                                  ignore_eos=True, guided=False, seed_per_source=False, max_model_len=1024,
                                  gpu_memory_utilization=0.85)  # fmt: skip
        return ParaphraseJob(config), args.prompts_per_gpu
    from engine.augment.backtranslate import BacktranslateConfig, BacktranslateJob

    model_args = argparse.Namespace(model_dir=None, shape="large", quantization="int8_float16", hf_dtype="float16",
                                    device="cuda")  # fmt: skip
    model = Path(ensure_model(model_args)["ct2"])
    tokens = args.bt_tokens
    config = BacktranslateConfig(model, device="cuda", beam_size=1, max_input_tokens=128, max_output_tokens=tokens,
                                 min_output_tokens=tokens, min_chars=0)  # fmt: skip
    return BacktranslateJob(config), args.sentences_per_gpu


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _write(result: dict, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Replicas through Ray on {result['gpus']} GPU(s), {result['date']}: {result['machine'].get('gpu')}.",
             f"Versions: {result['versions']}.", "",
             "| engine | replicas | sources | wall s | all up s | steady sources/s | per GPU | output tokens/s |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for engine, r in result["engines"].items():
        for row in r["rows"]:
            lines.append(f"| {engine} | {row['replicas']} | {row['sources']} | {row['wall_s']} | "
                         f"{row['all_replicas_up_s']} | {row['steady_sources_per_s']} | "
                         f"{row['per_gpu_sources_per_s']} | {row['steady_output_tokens_per_s']} |")  # fmt: skip
    lines.append("")
    for engine, r in result["engines"].items():
        lines.append(f"- {engine}: scaling efficiency {r['scaling_efficiency']:.0%} of linear (goal >= 90%: "
                     f"{'met' if r['goal_90_percent_met'] else 'NOT met'}).")  # fmt: skip
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
