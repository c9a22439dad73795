"""The README's multi-node recipe for real: a head and a worker node started with the `ray` CLI (two raylets
on this machine, each with its own CPUs and session folder, so a real 2-node cluster), then `hardaug ... --ray
HEAD` as a user runs it, in a process of its own.

What is checked: the actors run on both nodes and the output is the single-process output; a worker node lost
mid-job (its raylet and every process under it SIGKILLed) costs no source and duplicates none, whether Ray
finishes the job on the head or the job stops and the same command finishes it without redoing saved shards;
no process of either node outlives the module.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("ray")
pytest.importorskip("ctranslate2")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "engine" / "data" / "sample"
RAY_CLI = shutil.which("ray", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
pytestmark = pytest.mark.skipif(RAY_CLI is None, reason="the `ray` command is not installed")

# Every process shares one token (Ray's default token authentication, as on a real cluster), kept out of
# ~/.ray; the workers import this checkout's `engine`, as nodes where hardaug is installed would
TOKEN = secrets.token_hex(16)
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_TOKEN": TOKEN}
ENV.pop("RAY_ADDRESS", None)
ENV.pop("RAY_AUTH_MODE", None)  # the driver sets it itself when a token is at hand (engine.cluster.session)
# The head notices a lost node within about 3 s (Ray's default: about 15 s)
HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
          "RAY_health_check_failure_threshold": "3"}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    """The ports a node binds by default, each free: a second raylet on this machine (or another test's
    cluster) would collide with the first on Ray's fixed defaults."""
    return ["--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
            "--runtime-env-agent-port", str(_free_port()), "--metrics-export-port", str(_free_port())]  # fmt: skip


def _node_processes(*marks: str) -> list[psutil.Process]:
    """Every process of a node: those that name one of `marks` on their command line (its session folder:
    GCS, raylet, agents, log monitor; its node id or the GCS address: Ray Client's proxy, which names neither
    folder) and everything below them (workers and actors, renamed ray::...)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        marked = any(mark in arg for arg in proc.info["cmdline"] or [] for mark in marks)
        if marked and proc.pid != os.getpid():
            found[proc.pid] = proc
            with contextlib.suppress(psutil.NoSuchProcess):
                found.update({child.pid: child for child in proc.children(recursive=True)})
    return list(found.values())


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


def _node_id(temp_dir: Path) -> str:
    """The Ray node id of the raylet under `temp_dir` (its --node_id argument)."""
    for proc in _node_processes(str(temp_dir)):
        for arg in proc.cmdline():
            if arg.startswith("--node_id="):
                return arg.removeprefix("--node_id=")
    raise AssertionError(f"no raylet under {temp_dir}")


def _ray_start(args: list[str], env: dict) -> None:
    done = subprocess.run([RAY_CLI, "start", "--disable-usage-stats", *args, *_ports()], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def two_nodes():
    """`ray start --head` (2 CPUs: one replica and a slot for Ray Data) and `ray start --address=HEAD` (1 CPU:
    one replica), as the README tells a user; yields the head's address and both nodes' folders. Every process
    of both nodes is SIGKILLed after, found by its session folder, and none may be left."""
    head, worker = (Path(tempfile.mkdtemp(prefix=f"hardaug-{name}-", dir="/tmp")) for name in ("head", "node"))
    address, ids = f"127.0.0.1:{_free_port()}", []
    try:
        _ray_start(["--head", "--node-ip-address", "127.0.0.1", "--port", address.split(":")[1], "--num-cpus", "2",
                    "--temp-dir", str(head), "--include-dashboard", "false", "--dashboard-port", str(_free_port()),
                    "--ray-client-server-port", str(_free_port())], {**ENV, **HEALTH})  # fmt: skip
        _ray_start(["--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir",
                    str(worker)], {**ENV, "RAY_AUTH_MODE": "token"})  # fmt: skip
        ids.extend(_node_id(folder) for folder in (head, worker))
        yield address, head, worker
    finally:
        marks = [str(head), str(worker), f"={address}", *ids]
        _kill(_node_processes(*marks))
        left = _node_processes(*marks)
        shutil.rmtree(head, ignore_errors=True)
        shutil.rmtree(worker, ignore_errors=True)
    assert not left, f"Ray processes left behind: {[(p.pid, p.name()) for p in left]}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """120 real reviews of the bundled sample (a few too short to back-translate)."""
    texts = pl.read_csv(SAMPLE / "test.csv", infer_schema_length=None)["text"].drop_nulls().head(120).to_list()
    path = tmp_path_factory.mktemp("sources") / "hard.parquet"
    pl.DataFrame({"id": [f"s{i:03d}" for i in range(120)], "text": texts, "label": [i % 4 for i in range(120)]}
                 ).write_parquet(path)  # fmt: skip
    return path


def _hardaug(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env={**ENV, **(env or {})},
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def _run(args: list[str], cwd: Path, env: dict | None = None) -> str:
    proc = _hardaug(args, cwd, env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    return out


def _shards_per_node(out: str) -> dict[str, int]:
    """The CLI's "ray: 12 shards on 2 nodes (8a108640fd83: 7, d1659ab0d952: 5)" line, as {node prefix: shards}."""
    (line,) = re.findall(r"^ray: \d+ shards? on \d+ nodes? \((.*)\)$", out, flags=re.M)
    return {node: int(count) for node, count in (item.split(": ") for item in line.split(", "))}


@pytest.mark.slow
def test_eda_runs_on_both_nodes_and_writes_what_one_process_writes(two_nodes, sources, tmp_path):
    address, head, worker = two_nodes
    common = ["eda", "--input", str(sources), "--n", "3", "--threads", "1", "--chunk-size", "10"]
    _run([*common, "--out", "one.parquet"], tmp_path)
    out = _run([*common, "--out", "ray.parquet", "--ray", address], tmp_path)  # relative --out: the driver's folder
    per_node = _shards_per_node(out)
    assert set(per_node) == {_node_id(head)[:12], _node_id(worker)[:12]}, out[-2000:]
    assert sum(per_node.values()) == 12  # 120 sources in shards of 10
    assert pl.read_parquet(tmp_path / "ray.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))


@pytest.fixture(scope="module")
def ct2_model(tmp_path_factory) -> Path:
    from engine.augment.convert_mbart import convert_mbart
    from engine.random_models.mbart import build_random_mbart

    root = tmp_path_factory.mktemp("mbart")
    return convert_mbart(build_random_mbart(root / "hf", "tiny"), root / "ct2", quantization="int8")


@pytest.mark.slow
def test_a_lost_worker_node_costs_no_source(two_nodes, sources, ct2_model, tmp_path):
    """SIGKILL the worker node (its raylet and everything under it) once the job has saved shards: the job ends
    with every source once, as one process writes it, either at once (Ray restarts the lost actor on the head)
    or after the same command is run again, which sends only the shards not saved."""
    address, _, worker = two_nodes
    worker_id = _node_id(worker)[:12]
    # a relative --model, as a user types it: the actors on a `ray start` node run in Ray's folder, not the driver's
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ct2").symlink_to(ct2_model, target_is_directory=True)
    bt = ["backtranslate", "--input", str(sources), "--model", "models/ct2", "--threads", "1", "--chunk-size", "4",
          "--max-output-tokens", "12", "--beam-size", "2", "--max-batch-tokens", "256"]  # fmt: skip
    _run([*bt, "--out", "one.parquet"], tmp_path)
    # 30 shards of 4 over 2 replicas; `--ray auto` joins the cluster RAY_ADDRESS names (else the one `ray start
    # --head` started here: another test's cluster could be that one)
    command, env = [*bt, "--out", "ray.parquet", "--ray", "auto"], {"RAY_ADDRESS": address}
    parts = tmp_path / ".ray.parquet.job" / "parts"
    driver = _hardaug(command, tmp_path, env)
    try:
        deadline = time.monotonic() + 180
        while len(list(parts.glob("chunk_*.parquet"))) < 3:
            assert driver.poll() is None, f"the job ended before the node was lost: {driver.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "no shard saved in 3 minutes"
            time.sleep(0.05)
        lost = _node_processes(str(worker), _node_id(worker))
        assert any(p.name() == "raylet" for p in lost)
        _kill(lost)
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert not [p for p in lost if p.is_running()]
    if driver.returncode != 0:  # the job stopped: one clear message, then the same command does the rest
        assert "Traceback" not in out and "run the same command again" in out, out[-3000:]
        print("STOPPED:", out.strip().splitlines()[-1])
        saved = len(list(parts.glob("chunk_*.parquet")))
        out = _run(command, tmp_path, env)
        per_node = _shards_per_node(out)
        assert (
            sum(per_node.values()) == 30 - saved and worker_id not in per_node
        )  # only the missing shards, on the head
    else:
        print(f"the job finished without a rerun: {out[-400:]}")
    single, on_ray = pl.read_parquet(tmp_path / "one.parquet"), pl.read_parquet(tmp_path / "ray.parquet")
    assert on_ray["source_id"].is_unique().all() and on_ray.equals(single)


def test_ray_client_and_a_cluster_that_is_not_there_get_one_clear_message(sources, tmp_path, monkeypatch, capsys):
    from engine.cli import main

    out = tmp_path / "eda.parquet"
    assert main(["eda", "--input", str(sources), "--out", str(out), "--ray", "ray://127.0.0.1:10001"]) == 2
    assert "Ray Client (ray://) addresses are not supported" in capsys.readouterr().err
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_free_port()}")  # what --ray auto joins: nothing listens
    assert main(["eda", "--input", str(sources), "--out", str(out), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "no Ray cluster answers at" in err and "ray start --head" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # neither the output nor its job folder
