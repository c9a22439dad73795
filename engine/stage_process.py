"""One `hardaug run` stage in child processes that never outlive the `run` that started them.

`run_stage(argv)` starts `python -m engine.stage_process <parent pid> python -m engine.cli ARGV`: a small
supervisor that leads its own process group and runs the stage in that group. The supervisor asks the kernel
for SIGTERM when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), and on SIGTERM kills its whole group: the
stage and whatever the stage started (vLLM's engine processes, joblib workers). So a `run` killed with
`kill -9` takes its stage with it, and a rerun never meets a half-alive stage still writing or holding memory.
The supervisor, not the stage, handles the signal because it waits in a system call and reacts at once; a
stage busy in a long C call (a model fit) would run a Python signal handler only when that call returns.
When `run` itself ends early (Ctrl-C, an error), it kills the group before returning.

The supervisor reaps the stage, so `run`'s wait on the supervisor reports the peak resident memory of the
largest process of the stage (`ru_maxrss` of the supervisor and every process it and the stage waited for).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class StageExit:
    code: int
    peak_mb: float | None = None  # peak resident memory of the stage's largest process, MiB


def run_stage(argv: list[str]) -> StageExit:
    """Run `hardaug ARGV` as a supervised stage; returns its exit code and peak memory."""
    command = [sys.executable, "-m", "engine.stage_process", str(os.getpid()), sys.executable, "-m", "engine.cli"]
    proc = subprocess.Popen([*command, *argv], process_group=0)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:  # interrupted (Ctrl-C, SystemExit): the stage goes with us
            _kill_group(proc.pid)
            proc.wait()
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return StageExit(code, round(peak, 1))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the parent dies; if it died before this call, now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        _kill_group(os.getpgrp())


def _supervise(parent: int, command: list[str]) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: _kill_group(os.getpgrp()))
    _die_with_parent(parent)
    child = subprocess.Popen(command)  # in this process group
    _, status, _ = os.wait4(child.pid, 0)
    child.returncode = code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(_supervise(int(sys.argv[1]), sys.argv[2:]))
