"""Ray vs one process, side by side in one run: back-translation (base-shape random mBART) and EDA.

Rows, each on the same real reviews (nsmc4 test set, seeded sample in file order) and writing the same
output file through the same job code:
- single, 1 thread / 2 threads: `augment_file` in this process (`InProcess`), the model already open
  (its load time is reported apart);
- ray, 1 actor / 2 actors: `augment_file` on `engine.cluster.executor.OnRay` on a local cluster started once, the
  way `hardaug ... --ray` starts it (`engine.cluster.session.connect`: Ray and Ray Data imported, then
  `ray.init`; timed apart as the cluster start), one CTranslate2 (Kiwi) thread per actor. Its wall time
  includes starting the actors and loading the model in each; `actor start` is estimated as the time to the
  first saved shard minus that shard's own work, and `steady rows/s` leaves it out. Fixed overhead =
  cluster start + the slower actor start of the two Ray rows;
- ray, 2 actors, cold (last, after that cluster is stopped): the same job in a fresh Python process with
  no cluster running, so it imports Ray and starts its own cluster as `hardaug ... --ray` does; its start
  (the call to the first shard's start: input checks, Ray imports, cluster start, actors' start) is the
  fixed overhead a user waits for, with nothing started or imported before.
Back-translation: ko -> en_XX -> ko, greedy, every leg exactly `--out-tokens` tokens (min = max), no source
skipped as too short, so every row does the same work; every row cuts the input into the same 8 chunks
(shards), so every row also gets the same batches and writes the same file (checked). The scaling
efficiency is rows/s of 2 actors over 2 x rows/s of 1 actor. The load average is recorded before and
after every row: the machine is shared, so only ratios within one run mean anything, and the numbers are
to be measured again on a quiet machine.

    .venv/bin/python benchmarks/bench_ray.py            # base mBART, 1,000 reviews (6-18 min on 2 shared cores)
    .venv/bin/python benchmarks/bench_ray.py --quick    # tiny model, 120 reviews: checks the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY_TMP = ROOT / ".cache" / "ray"  # Ray's session folder: Unix socket paths under it stay short
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's model and data helpers

from bench_backtranslate import DATA, ensure_model, load_texts, machine  # noqa: E402
from machine import load_average  # noqa: E402


def load() -> list[float]:
    return load_average()


def chunk(args: argparse.Namespace) -> int:
    """Every row cuts the input into the same 8 chunks (the shards of 1 and of 2 actors): CTranslate2 then
    sees the same batches in every row, so the outputs can be compared for equality."""
    return -(-args.sentences // 8)


def write_sources(texts: list[str], path: Path) -> Path:
    import polars as pl

    pl.DataFrame({"id": [f"r{i:05d}" for i in range(len(texts))], "text": texts, "label": 0}).write_parquet(path)
    return path


def bt_config(model: Path, threads: int, args: argparse.Namespace):
    from engine.augment.backtranslate import BacktranslateConfig

    return BacktranslateConfig(
        model,
        threads=threads,
        beam_size=1,
        max_input_tokens=args.max_input_tokens,
        max_output_tokens=args.out_tokens,
        min_output_tokens=args.out_tokens,
        min_chars=0,
    )


def single_row(stage: str, threads: int, sources: Path, out: Path, model: Path, args) -> dict:
    from engine.augment.backtranslate import BacktranslateJob, BackTranslator
    from engine.augment.common import augment_file
    from engine.augment.eda import EdaConfig, EdaJob
    from engine.stage import InProcess

    before = load()
    started = time.perf_counter()
    if stage == "backtranslate":
        with BackTranslator(bt_config(model, threads, args)) as translator:
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            job = BacktranslateJob.using(translator)
            kept, _ = augment_file(job, sources, out, InProcess(chunk(args)), restart=True)
            wall = time.perf_counter() - started
    else:
        loaded = 0.0  # Kiwi loads inside the first chunk: part of the job, as on a Ray actor
        job = EdaJob(EdaConfig(), threads)
        kept, _ = augment_file(job, sources, out, InProcess(chunk(args)), restart=True)
        wall = time.perf_counter() - started
    n = args.sentences
    rate = round(n / wall, 2)
    return {"row": f"single, {threads} thread{'s' * (threads > 1)}", "stage": stage, "kind": "single",
            "workers": threads, "load_s": round(loaded, 2), "wall_s": round(wall, 2), "rows_per_s": rate,
            "steady_rows_per_s": rate, "kept": kept.height, "load_before": before, "load_after": load()}  # fmt: skip


def ray_row(stage: str, actors: int, sources: Path, out: Path, model: Path, args, *, cold: bool = False) -> dict:
    """On the cluster this process holds; `cold`: none is running, the job starts its own as `--ray` does."""
    from engine.augment.backtranslate import BacktranslateJob
    from engine.augment.common import augment_file
    from engine.augment.eda import EdaConfig, EdaJob
    from engine.cluster.executor import OnRay
    from engine.cluster.session import ClusterOptions

    job = BacktranslateJob(bt_config(model, 1, args)) if stage == "backtranslate" else EdaJob(EdaConfig(), 1)
    first: list[tuple[float, float]] = []
    before = load()
    started = time.perf_counter()

    def on_shard(shard) -> None:  # engine.progress.Progress: a start report, then one per saved shard
        if not first and shard.step:
            first.append((time.perf_counter() - started, shard.detail["seconds"]))

    executor = OnRay(ClusterOptions(replicas=actors, temp_dir=RAY_TMP), chunk(args))
    kept, _ = augment_file(job, sources, out, executor, restart=True, on_progress=on_shard)
    wall = time.perf_counter() - started
    actor_start = max(first[0][0] - first[0][1], 0.0)
    n = args.sentences
    name = f"ray, {actors} actor{'s' * (actors > 1)} x 1 thread" + (", cold: own cluster" if cold else "")
    return {"row": name, "stage": stage, "kind": "ray_cold" if cold else "ray",
            "workers": actors, "actor_start_s": round(actor_start, 2), "wall_s": round(wall, 2),
            "rows_per_s": round(n / wall, 2), "steady_rows_per_s": round(n / max(wall - actor_start, 1e-9), 2),
            "kept": kept.height, "load_before": before, "load_after": load()}  # fmt: skip


def cold_row(stage: str, sources: Path, out: Path, args) -> dict:
    """`ray_row(cold=True)` in a fresh Python process: Ray not imported, no cluster running."""
    command = [sys.executable, __file__, "--cold-row", stage, str(sources), str(out), "--sentences",
               str(args.sentences), "--shape", args.shape, "--out-tokens", str(args.out_tokens),
               "--max-input-tokens", str(args.max_input_tokens)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    rows = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode or not rows:
        raise SystemExit(f"the cold {stage} row failed:\n{done.stderr[-3000:]}")
    return json.loads(rows[-1].removeprefix("ROW "))


def same_output(a: Path, b: Path) -> bool:
    import polars as pl

    return pl.read_parquet(a).equals(pl.read_parquet(b))


def verdicts(rows: list[dict], ray_init: float) -> dict:
    def rate(stage, kind, workers, key="steady_rows_per_s"):
        return next(r[key] for r in rows if (r["stage"], r["kind"], r["workers"]) == (stage, kind, workers))

    out = {"ray_init_s": round(ray_init, 2)}
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    for stage in stages:
        one, two, single = rate(stage, "ray", 1), rate(stage, "ray", 2), rate(stage, "single", 1)
        start = max(r["actor_start_s"] for r in rows if r["stage"] == stage and r["kind"] == "ray")
        out[stage] = {
            "two_actors_over_one_single_thread": round(two / single, 2),
            "two_actors_over_one_single_thread_end_to_end": round(
                rate(stage, "ray", 2, "rows_per_s") / rate(stage, "single", 1, "rows_per_s"), 2
            ),
            "scaling_efficiency_2_over_1_actor": round(two / (2 * one), 2),
            "two_threads_over_one_single_process": round(rate(stage, "single", 2) / single, 2),
            "fixed_overhead_s": round(ray_init + start, 2),
        }
        cold = [r["actor_start_s"] for r in rows if r["stage"] == stage and r["kind"] == "ray_cold"]
        if cold:
            out[stage]["cold_start_s"] = cold[0]
    bt = out.get("backtranslate", {})
    out["goals"] = {
        "backtranslate_2_actors_ge_1.6x_one_process": bt.get("two_actors_over_one_single_thread", 0) >= 1.6,
        "fixed_overhead_lt_10s": max(out[s].get(k, 0) for s in stages for k in ("fixed_overhead_s", "cold_start_s"))
        < 10,
    }
    return out


def markdown(result: dict) -> str:
    m, v = result["machine"], result["verdicts"]
    lines = [
        f"Ray vs one process, {result['date']}. {m['cpu']}, {m['usable_cpus']} usable cores, shared with other "
        f"work: load average {result['load_start']} at the start, {result['load_end']} at the end (per row below). "
        "Only the ratios within this run mean anything; re-measure on a quiet machine.",
        f"Data: {result['sentences']} real nsmc4 test reviews. Back-translation: random mBART-50 `{result['shape']}`, "
        f"CTranslate2 int8, greedy, every leg exactly {result['out_tokens']} tokens. EDA: 4 variants per review. "
        f"ray {result['versions']['ray']}, ctranslate2 {result['versions']['ctranslate2']}, kiwipiepy "
        f"{result['versions']['kiwipiepy']}.",
        "",
        "| stage | row | wall s | rows/s | steady rows/s | model load s (single) / actor start s (ray) | same output "
        "as single, 1 thread | load before -> after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        start = r.get("load_s", r.get("actor_start_s"))
        lines.append(
            f"| {r['stage']} | {r['row']} | {r['wall_s']} | {r['rows_per_s']} | {r['steady_rows_per_s']} | {start} | "
            f"{r.get('same_output', '-')} | {r['load_before'][0]} -> {r['load_after'][0]} |"
        )
    lines += ["", f"Cluster start (Ray and Ray Data imported, `ray.init` of a local cluster of 3 logical CPUs, as "
              f"`--ray` does it): {v['ray_init_s']} s.", ""]  # fmt: skip
    for stage in (s for s in ("backtranslate", "eda") if s in v):
        s = v[stage]
        lines.append(
            f"- {stage}: 2 actors / one single-thread process = {s['two_actors_over_one_single_thread']}x steady "
            f"({s['two_actors_over_one_single_thread_end_to_end']}x end to end); scaling efficiency of 2 actors "
            f"over 1: {s['scaling_efficiency_2_over_1_actor']:.0%}; 2 threads / 1 thread in one process: "
            f"{s['two_threads_over_one_single_process']}x; fixed overhead (ray.init + actor start): "
            f"{s['fixed_overhead_s']} s"
            + (f"; cold start, 2 actors: {s['cold_start_s']} s." if "cold_start_s" in s else ".")
        )
    goals = v["goals"]
    lines += [
        "",
        "Goals: 2 actors >= 1.6x one single-thread process on back-translation: "
        f"{'met' if goals['backtranslate_2_actors_ge_1.6x_one_process'] else 'NOT met'}; fixed overhead < 10 s: "
        f"{'met' if goals['fixed_overhead_lt_10s'] else 'NOT met'}.",
        "",
        "Steady rows/s leaves out the actors' start (process, imports, model load: estimated as the time to the "
        "first saved shard minus that shard's own work); end-to-end rows/s includes it. Single-process rows "
        "time the job with the model already loaded (its load time is in its own column). The cold rows are a "
        "`--ray` job in a fresh Python process with no cluster running (run last): their start is everything "
        "from the call to the first shard's start (input checks, Ray imports, cluster start, actors' start).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="tiny model, 120 reviews: checks the script")
    p.add_argument("--sentences", type=int, default=None, help="default: 1000 (quick: 120)")
    p.add_argument("--shape", choices=["tiny", "base"], default=None, help="default: base (quick: tiny)")
    p.add_argument("--out-tokens", type=int, default=16, help="tokens generated per leg (default: 16)")
    p.add_argument("--max-input-tokens", type=int, default=128)
    p.add_argument("--stages", default="backtranslate,eda")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--name", default=None, help="results file stem (default: ray; quick: ray_quick)")
    p.add_argument("--cold-row", nargs=3, metavar=("STAGE", "SOURCES", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sentences = args.sentences or (120 if args.quick else 1000)
    args.shape = args.shape or ("tiny" if args.quick else "base")
    args.name = args.name or ("ray_quick" if args.quick else "ray")
    model_args = argparse.Namespace(model_dir=None, shape=args.shape, quantization="int8", hf_dtype="float32",
                                    device="cpu")  # fmt: skip
    model = Path(ensure_model(model_args)["ct2"])  # built once under .cache/bench_models, then reused
    if args.cold_row:  # the child process of `cold_row`
        stage, sources, out = args.cold_row
        print("ROW " + json.dumps(ray_row(stage, 2, Path(sources), Path(out), model, args, cold=True)), flush=True)
        return 0

    from engine.cluster.session import ClusterOptions, connect

    texts = load_texts(args.data, args.sentences, seed=0)
    rows: list[dict] = []
    load_start = load()
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        tmp = Path(tmp)
        sources = write_sources(texts, tmp / "sources.parquet")
        started = time.perf_counter()
        # as `hardaug ... --ray` starts a local cluster: room for 2 single-thread replicas and Ray Data's tasks
        with connect(ClusterOptions(replicas=2, temp_dir=RAY_TMP)):
            ray_init = time.perf_counter() - started
            for stage in args.stages.split(","):
                reference = tmp / f"{stage}_single1.parquet"
                plan = [("single", 1, reference), ("single", 2, tmp / f"{stage}_single2.parquet"),
                        ("ray", 1, tmp / f"{stage}_ray1.parquet"),
                        ("ray", 2, tmp / f"{stage}_ray2.parquet")]  # fmt: skip
                for kind, workers, out in plan:
                    print(f"{stage}: {kind} x {workers} ...", flush=True)
                    runner = single_row if kind == "single" else ray_row
                    row = runner(stage, workers, sources, out, model, args)
                    row["same_output"] = same_output(out, reference)
                    rows.append(row)
                    print(f"  {row}", flush=True)
        for stage in args.stages.split(","):  # no cluster running now: each job starts and stops its own
            print(f"{stage}: ray x 2, cold ...", flush=True)
            row = cold_row(stage, sources, tmp / f"{stage}_cold.parquet", args)
            row["same_output"] = same_output(tmp / f"{stage}_cold.parquet", tmp / f"{stage}_single1.parquet")
            rows.append(row)
            print(f"  {row}", flush=True)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "sentences": args.sentences,
        "shape": args.shape,
        "out_tokens": args.out_tokens,
        "machine": machine(),
        "versions": {d: metadata.version(d) for d in ("ray", "ctranslate2", "kiwipiepy", "polars")},
        "load_start": load_start,
        "load_end": load(),
        "rows": rows,
        "verdicts": verdicts(rows, ray_init),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
