"""What the benchmarks record about the machine they ran on (imported by the bench_*.py scripts, which run
with this folder on sys.path)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def describe() -> dict:
    """CPU, the cores this process may use, and the platform."""
    return {"cpu": cpu_name(), "usable_cpus": len(os.sched_getaffinity(0)), "platform": platform.platform()}
