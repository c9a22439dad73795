"""`--ray`, `--replicas`, `--gpus-per-replica`: the same options on every stage that can run on Ray."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from engine.cli.common import positive_int
from engine.progress import OnProgress, Progress

SHARDS = "Work goes out in shards; finished shards are saved, so the same command resumes"
FOLDS = "Every unfinished fold runs as a Ray task (one GPU each with --device cuda); saved folds are kept"


def add_cluster_options(p: argparse.ArgumentParser, *, gpus: bool = True, replicas: bool = True) -> None:
    g = p.add_argument_group("cluster (Ray; needs the ray extra)")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="local|auto|ADDRESS",
        help="run on Ray: `local` (the default of a bare --ray) starts Ray on this machine for the job; `auto` joins "
        "the cluster this machine is a node of (started with `ray start`; RAY_ADDRESS if set); HOST:PORT joins "
        f"that cluster from one of its nodes (ray:// is not supported). {SHARDS if replicas else FOLDS}",
    )
    if not replicas:  # tasks (the OOF folds) take what the cluster has
        p.set_defaults(replicas=None)
        return
    g.add_argument(
        "--replicas",
        type=positive_int,
        default=None,
        metavar="N",
        help="model copies (Ray actors); default: one per GPU of the cluster, all nodes (per --gpus-per-replica "
        "GPUs), or one per free CPU slot of --threads on CPU, one slot left for Ray",
    )
    if gpus:
        g.add_argument(
            "--gpus-per-replica",
            type=positive_int,
            default=1,
            metavar="G",
            help="GPUs per replica with --device cuda (vLLM: tensor parallelism inside the replica; default: 1)",
        )


def cluster_options(args: argparse.Namespace, *, device: str, threads: int):
    """ClusterOptions from the parsed options; `threads` = CPU slots per replica, `device` the engine's."""
    from engine.cluster.session import ClusterOptions

    gpu = device != "cpu"
    return ClusterOptions(
        address=args.ray,
        replicas=args.replicas,
        gpus_per_replica=getattr(args, "gpus_per_replica", 1) if gpu else 0,
        cpus_per_replica=max(threads, 1),
    )  # Ray's session folder: $RAY_TMPDIR/ray, else /tmp/ray (Ray's own rule)


def run_augmenter(
    args: argparse.Namespace,
    job: Any,
    *,
    replica_device: str,
    replica_threads: int,
    most_per_shard: int,
    chunk_size: int | None,
    on_progress: OnProgress,
) -> tuple:
    """One augmenter's job (a ChunkJob of engine.stage) with the source options every augmenter shares
    (`add_source_options`, --restart), through `augment.common.augment_file` on the executor the options
    name: Ray with --ray (each replica gets `replica_threads` CPU slots, and GPUs unless `replica_device` is
    cpu; shards of at most `most_per_shard` sources), else this process (chunks of `chunk_size`, None: the
    job's default). Both write and resume the same job folder."""
    from engine.augment.common import augment_file
    from engine.stage import InProcess

    shared = {"restart": args.restart, "text_col": args.text_col, "label_col": args.label_col, "id_col": args.id_col}
    if args.ray is None:
        return augment_file(job, args.input, args.out, InProcess(chunk_size), **shared, on_progress=on_progress)
    from engine.cluster.executor import OnRay

    options = cluster_options(args, device=replica_device, threads=replica_threads)
    nodes: Counter[str] = Counter()

    def count_nodes(progress: Progress) -> None:
        if progress.step and "node" in progress.detail:
            nodes[progress.detail["node"]] += 1
        on_progress(progress)

    result = augment_file(job, args.input, args.out, OnRay(options, most_per_shard), **shared, on_progress=count_nodes)
    if nodes:
        print(shards_per_node(nodes))
    return result


def shards_per_node(nodes: Counter[str]) -> str:
    """Where this run's shards were done: "ray: 6 shards on 2 nodes (8a108640fd83: 3, d1659ab0d952: 3)", the
    node ids as `ray status` and `ray list nodes` show them (shortened), so a user sees every node worked."""
    where = ", ".join(f"{node[:12]}: {count}" for node, count in nodes.most_common())
    return f"ray: {sum(nodes.values())} shards on {len(nodes)} node{'s' * (len(nodes) != 1)} ({where})"
