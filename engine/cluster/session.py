"""Where a job runs on Ray: which cluster to join (or start), how many replicas, and their resources.

`--ray local` (the value of a bare `--ray`) starts a private Ray on this machine for the job and stops it
after; `--ray auto` joins the cluster started on this machine with `ray start --head` (or named by
RAY_ADDRESS); `--ray HOST:PORT` joins that cluster. Ray Client addresses (`ray://`) are refused: its server
failed to start on a `ray start --head` cluster here. A driver joining by address must run on a node of the
cluster (one that ran `ray start`): Ray finds that node's raylet. A driver that finds Ray already
initialized in its process (a notebook, the tests) uses that one and leaves it running.

Pitfalls seen with ray 2.60.0 on a local `ray.init(num_cpus=2)` while the Ray path was built, and what
this module does about them:
- actors whose `num_cpus` add up to every logical CPU starve Ray Data's own read tasks and the job hangs
  without a word: the default replica count leaves one CPU free, and a local cluster gets one logical CPU
  more than its replicas ask for;
- retries are unlimited by default, so a crash that repeats loops forever: `max_restarts` and
  `max_task_retries` are bounded (`ClusterOptions.max_retries`; README, "Beyond one process: Ray", Failures);
- a local cluster outlives a driver killed with SIGKILL: GCS, raylet and the workers end within a few
  seconds, but the raylet's agents (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`, about 200 MB together)
  ran on for 45-90 s, reparented to init. Every process of a local cluster descends from the driver, so the
  watchdog of `engine.lifetime` (the one `paraphrase` starts for vLLM's processes) kills them when it dies.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.cores import usable_cores
from engine.errors import InputError
from engine.lifetime import children_die_with_this_process

log = logging.getLogger(__name__)

LOCAL = "local"
AUTO = "auto"
INSTALL_HINT = "pip install -e '.[ray]' in a checkout (or pip install 'hardaug[ray]')"


class ClusterError(InputError):
    """A job that failed on the cluster: the message names the shard and the worker's first error. Shown
    like bad input (no traceback): the cause is in the data, the model or the cluster, not in hardaug."""


@dataclass(frozen=True)
class ClusterOptions:
    """`address`: local | auto | HOST:PORT (the GCS address `ray start --head` prints). `replicas`: model
    copies (actors); None = one per `gpus_per_replica` GPUs of the cluster (all its nodes) on GPU, one per free
    `cpus_per_replica` CPUs on CPU.
    `gpus_per_replica`: GPUs per actor (0 on CPU; vLLM tensor parallelism inside a replica when > 1).
    `cpus_per_replica`: CPU slots per actor (the engine's threads on CPU). `max_retries`: how often a task
    of a killed actor is retried on a fresh one (and how often an actor is restarted) before the job fails.
    `temp_dir`: Ray's session folder for a local cluster (None = Ray's default, /tmp/ray); keep it short,
    Unix socket paths under it must stay below ~107 characters."""

    address: str = LOCAL
    replicas: int | None = None
    gpus_per_replica: float = 0
    cpus_per_replica: float = 1
    max_retries: int = 3
    temp_dir: Path | None = None

    def __post_init__(self) -> None:
        if not str(self.address).strip():
            raise InputError("the Ray address must be local, auto or HOST:PORT, got an empty value")
        if self.replicas is not None and self.replicas < 1:
            raise InputError(f"replicas must be at least 1, got {self.replicas}")
        if self.gpus_per_replica < 0 or self.cpus_per_replica <= 0:
            raise InputError(
                f"gpus_per_replica must be >= 0 and cpus_per_replica > 0, got {self.gpus_per_replica} and "
                f"{self.cpus_per_replica}"
            )
        if self.max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {self.max_retries}")

    @property
    def remote_args(self) -> dict:
        """Resources and retry bounds of one actor: GPUs for a GPU replica (Ray Data calls asking for CPUs and
        GPUs at once experimental), CPU slots otherwise."""
        resources = (
            {"num_gpus": self.gpus_per_replica} if self.gpus_per_replica else {"num_cpus": self.cpus_per_replica}
        )
        return {**resources, "max_restarts": self.max_retries, "max_task_retries": self.max_retries}


def import_ray():
    """`ray` itself, or the one clear message of how to install it."""
    _use_auth_token()  # read by Ray when it loads
    try:
        import ray
        import ray.data  # the extra must include Ray Data, not only the core
    except ImportError as exc:
        raise InputError(
            f"--ray needs Ray with Ray Data, which is not installed here ({exc}): {INSTALL_HINT}."
        ) from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail at once on an address nothing listens on: `ray.init` would retry it for a minute or more."""
    if address.startswith("ray://"):
        raise InputError(
            f"--ray {address!r}: Ray Client (ray://) addresses are not supported. Run hardaug on a node of the "
            "cluster: on the head with --ray auto, or on a node that ran `ray start --address=HEAD_IP:6379` with "
            "--ray auto or --ray HEAD_IP:6379."
        )
    parsed = _host_port(address)
    if parsed is None:
        raise InputError(
            f"--ray {address!r} is not a cluster address: use local, auto, HOST:PORT (the address `ray start "
            "--head` printed, port 6379 by default)."
        )
    try:
        with socket.create_connection(parsed, timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(
            f"no Ray cluster answers at {address} ({exc}). Start one with `ray start --head` on the head node and "
            "pass the address it prints, or use --ray local for a cluster on this machine only."
        ) from None


def preflight(options: ClusterOptions) -> None:
    """The checks `connect` makes that cost nothing: Ray importable, a named cluster listening, and for `auto`
    a cluster to join (RAY_ADDRESS, else the one `ray start` started on this machine): all before the job's
    output folder is made."""
    import_ray()
    if options.address == AUTO:
        if address := find_auto_address():
            check_reachable(address)
    elif options.address != LOCAL:
        check_reachable(options.address)


def find_auto_address() -> str:
    """The address `ray.init(address="auto")` would join (RAY_ADDRESS, else the cluster `ray start` started on
    this machine), or the one clear message that there is none. Ray's own lookup (a private function: where
    it moves, `connect` still fails with Ray's message, only later)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:
        return os.environ.get("RAY_ADDRESS") or ""
    try:
        return canonicalize_bootstrap_address_or_die(AUTO)
    except ConnectionError:
        raise InputError(
            "--ray auto found no Ray cluster on this machine (none started with `ray start`, and RAY_ADDRESS is "
            "not set). Start one with `ray start --head` (workers: `ray start --address=HEAD_IP:6379`), or use "
            "--ray local for a cluster of this machine only, started and stopped by the job."
        ) from None


@contextmanager
def connect(options: ClusterOptions) -> Iterator[object]:
    """Ray initialized for the job (yields the `ray` module); shut down after, unless it was running before."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    address = options.address
    if address == LOCAL:
        children_die_with_this_process()  # before init: the cluster's processes are this one's descendants
        kwargs["address"] = "local"  # a new cluster even where RAY_ADDRESS names another
        kwargs["num_cpus"] = _local_cpus(options)
        if options.temp_dir is not None:
            kwargs["_temp_dir"] = str(Path(options.temp_dir).resolve())
        # No runtime_env: a local cluster's workers are children of the raylet this process starts, so they
        # inherit its environment (PYTHONPATH: this checkout's `engine`, HF_HOME, ...), and Ray puts the
        # driver's folder on their path. Any runtime_env, even env_vars alone, keeps the actors off the
        # workers Ray prestarts at init (one per logical CPU): each actor would start a process of its own.
    else:
        if address != AUTO:
            check_reachable(address)
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise InputError(
            f"--ray {address}: {exc} Start a cluster with `ray start --head` (workers: `ray start "
            "--address=HEAD:6379`), or use --ray local. A cluster with token authentication (Ray's default) "
            "also needs its token here: ~/.ray/auth_token or RAY_AUTH_TOKEN."
        ) from None
    log.info("Ray %s: %s", address, ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()


def _use_auth_token() -> None:
    """Ray 2.60 clusters require a token by default (`ray start` and `ray.init` write ~/.ray/auth_token), but a
    driver joining by address sends it only when RAY_AUTH_MODE=token: set it when a token is at hand. Not once
    Ray is loaded (a notebook, a script that imported it first): Ray reads the mode when it loads, so the driver
    would keep it off while the local cluster it starts would ask for a token, and never answer it."""
    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _local_cpus(options: ClusterOptions) -> int:
    """Logical CPUs of a local cluster: the cores this process may use, and at least what the replicas ask for
    plus one free slot for Ray Data's own tasks (logical slots: the replicas' engine threads use the cores)."""
    cores = usable_cores()
    wanted = (options.replicas or 1) * options.cpus_per_replica if options.gpus_per_replica == 0 else 0
    return max(cores, math.ceil(wanted) + 1)


def work_in(folder: str | None) -> None:
    """Called first in every actor and task with the driver's working folder (`os.getcwd()` there): relative
    paths of a job (`--model models/ct2`) then mean on every node what they mean to the driver. Workers of a
    `ray start` cluster run in Ray's own folder, where such a path named nothing and the engine failed to load.
    A node without that folder (no shared storage) stays where it is: absolute paths still work there."""
    if folder is not None:
        with contextlib.suppress(OSError):
            os.chdir(folder)


def replica_count(ray, options: ClusterOptions) -> int:
    """Replicas asked for, or as many as the cluster holds (one CPU always left free for Ray Data)."""
    resources = ray.cluster_resources()
    if options.gpus_per_replica > 0:
        gpus = resources.get("GPU", 0)
        if gpus < options.gpus_per_replica:
            raise InputError(
                f"the Ray cluster has {gpus:g} GPUs but each replica asks for {options.gpus_per_replica:g}; "
                "use --device cpu, fewer --gpus-per-replica, or add GPU nodes (ray start --address=...)."
            )
        fits = int(gpus // options.gpus_per_replica)
    else:
        fits = int((resources.get("CPU", 1) - 1) // options.cpus_per_replica)
    fits = max(fits, 1)
    if options.replicas is None:
        return fits
    if options.replicas > fits:
        # a fixed actor pool larger than the cluster waits for resources that never come
        log.warning(
            "%d replicas asked for, the cluster holds %d (%s): using %d", options.replicas, fits, resources, fits
        )
    return min(options.replicas, fits)
