"""Child processes die with the command that started them.

vLLM runs its engine in separate processes (`VLLM::EngineCore`, `VLLM::Worker`, a multiprocessing resource
tracker), and `--ray local` a whole cluster (GCS, raylet, its agents, workers). When the command is killed
with SIGKILL (the OOM killer, `kill -9`, a cluster scheduler), nothing in it runs anymore to stop them: they
keep their memory (gigabytes for vLLM's worker, about 200 MB for Ray's agents, which outlived the driver by
45-90 s) and a rerun finds a half-alive engine beside it. A parent-death signal (`prctl(PR_SET_PDEATHSIG)`)
would have to be set inside each child, which vLLM and Ray start themselves (and the worker is a
grandchild); a new process group would take the command out of the terminal's foreground group, so Ctrl-C
would no longer reach it.

So a small watchdog process watches instead: every `interval` seconds it notes this process's descendants,
and once this process is gone (however it ended) it kills the descendants it saw that still run. It asks
psutil rather than waiting for a pipe to close: a child forked without exec would hold the pipe open. psutil
knows a process by pid and start time, so a pid reused by an unrelated process is never killed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)

# Runs in the watchdog: argv = parent pid, interval. Ends when the parent is gone (or a zombie).
_WATCHDOG = r"""
import sys, time, psutil
parent = psutil.Process(int(sys.argv[1]))
interval = float(sys.argv[2])
me = psutil.Process()
seen = {}
def gone():
    try:
        return not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
while not gone():
    try:
        for child in parent.children(recursive=True):
            if child.pid != me.pid:
                seen.setdefault(child.pid, child)
    except psutil.Error:
        pass
    time.sleep(interval)
alive = [p for p in seen.values() if p.is_running()]
for p in alive:
    try:
        p.kill()
    except psutil.Error:
        pass
psutil.wait_procs(alive, timeout=10)
"""

_watchdog: subprocess.Popen | None = None


def children_die_with_this_process(interval: float = 0.5) -> None:
    """Start the watchdog once per process (later calls do nothing). Needs psutil (vLLM depends on it)."""
    global _watchdog
    if _watchdog is not None and _watchdog.poll() is None:
        return
    try:
        import psutil  # noqa: F401  (checked here, so a missing psutil is a warning, not a dead watchdog)
    except ImportError:
        log.warning("psutil is not installed: engine processes may outlive a killed command")
        return
    _watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(interval)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # its own session: Ctrl-C in the terminal stops the command, then the watchdog cleans up after it
        start_new_session=True,
    )
    log.debug("watchdog %d will stop the engine processes if this process dies", _watchdog.pid)


def watchdog_pid() -> int | None:
    """The pid of this process's running watchdog, if one was started (it is a child of this process too)."""
    return _watchdog.pid if _watchdog is not None and _watchdog.poll() is None else None
