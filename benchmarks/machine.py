"""What the benchmarks record about the machine they ran on (imported by the bench_*.py scripts, which run
with this folder on sys.path): CPU, cores, memory, load average and package versions, read one way for all."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from engine.cores import usable_cores

ROOT = Path(__file__).resolve().parents[1]
SHARED_NSMC4 = ROOT.parent / "shared" / "data" / "nsmc4"  # beside this project's own checkout only
SAMPLE = ROOT / "engine" / "data" / "sample"  # bundled: 20,001 training and 5,000 test nsmc4 reviews
SAMPLE_TRAIN = SAMPLE / "train.csv"


def data_file(name: str, fallback: Path | None = None) -> Path:
    """The reviews a benchmark reads by default: `name` (train.csv, test.csv) from $HARDAUG_BENCH_DATA if set,
    else from ../shared/data/nsmc4 beside this checkout, else `fallback` (default: the bundled sample's file
    of that name), which every install has (a user's machine has no ../shared). A flag still picks any file."""
    folder = os.environ.get("HARDAUG_BENCH_DATA")
    for candidate in ([Path(folder) / name] if folder else []) + [SHARED_NSMC4 / name]:
        if candidate.is_file():
            return candidate
    return fallback if fallback is not None else SAMPLE / name


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def memory_gib() -> float | None:
    """Total memory from /proc/meminfo, in GiB (None where there is no /proc)."""
    try:
        found = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(encoding="utf-8"))
    except OSError:
        return None
    return round(int(found.group(1)) / 2**20, 1) if found else None


def describe() -> dict:
    """CPU, the logical CPUs and the cores this process may use (engine.cores' rule, as the engines count
    them), memory and the platform."""
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cores(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on a shared machine shows here."""
    return [round(x, 2) for x in os.getloadavg()]


def versions(*dists: str) -> dict:
    """Python's version and each distribution's (None where it is not installed)."""
    out: dict = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def run_record(*dists: str, machine: dict | None = None) -> dict:
    """What every benchmark's JSON starts with: when, the command line, the machine (`describe()` unless the
    benchmark adds to it), the versions of `dists`, and the load average before the first measurement."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": describe() if machine is None else machine,
        "versions": versions(*dists),
        "load_before": load_average(),
    }
