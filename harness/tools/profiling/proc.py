"""Run a tool as a child process with a time limit; on timeout, end its whole process group (the tool
and the target it launched), never anything else."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class ProcResult:
    returncode: int | None  # None when it timed out
    output: str  # stdout and stderr, interleaved as written
    timed_out: bool = False


def run(cmd: Sequence[str], timeout_s: float, env: dict[str, str] | None = None) -> ProcResult:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", env=full_env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return ProcResult(proc.returncode, out)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call created: the tool and its target
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        return ProcResult(None, out or "", timed_out=True)
