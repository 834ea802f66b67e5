"""The worker process: imports torch, owns the GPU context, and executes jobs sent by the supervisor.

A worker is disposable. A sticky CUDA error (illegal address, launch failure, misaligned address)
poisons the process, so the worker reports it and exits; the supervisor starts a fresh one. Output the
measured code prints goes to the worker's log file, never into the supervisor's terminal.
"""
from __future__ import annotations

import os
import sys
import traceback
from dataclasses import asdict
from typing import Any

_STICKY = ("illegal memory access", "illegal address", "launch failure", "misaligned address",
           "unspecified launch failure", "an illegal instruction", "device-side assert",
           "CUDA error: unknown error", "hardware stack error", "uncorrectable ECC")


def is_sticky_cuda_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(s.lower() in text.lower() for s in _STICKY)


def _redirect_output(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def _handle(job: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    import torch

    from harness import envinfo, peak
    from harness.measure import measure_cell
    from harness.problem import Problem
    from harness.suite import Checks, Timing

    kind = job["kind"]
    if kind == "env":
        return {"env": envinfo.collect(), "device": state["device"]}
    if kind == "peak":
        return {"peak": asdict(peak.measure())} if state["device"] == "cuda" else {"peak": None}
    if kind == "cell":
        checks = Checks(**{**job["checks"], "distributions": tuple(job["checks"]["distributions"])})
        raw = measure_cell(job["backend"], Problem.from_dict(job["problem"]), checks, Timing(**job["timing"]),
                           state["device"], state["cache"], state["flusher"])
        return {"raw": raw}
    raise ValueError(f"unknown job kind {kind!r}")


def main(conn: Any, log_path: str) -> None:
    _redirect_output(log_path)
    import torch

    from harness.measure import ProblemCache
    from harness.timing.l2 import L2Flusher

    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = {"device": device, "cache": ProblemCache(), "flusher": L2Flusher() if device == "cuda" else None}
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            reply = {"ok": True, **_handle(job, state)}
        except BaseException as exc:  # noqa: BLE001 - everything is reported, nothing escapes
            oom = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
            fatal = is_sticky_cuda_error(exc)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
                     "traceback": traceback.format_exc()[-4000:], "oom": oom, "fatal": fatal}
            traceback.print_exc()
            if oom:
                state["cache"] = ProblemCache()
                torch.cuda.empty_cache()
        conn.send(reply)
        if not reply["ok"] and reply["fatal"]:
            sys.stderr.flush()
            os._exit(3)  # the CUDA context is unusable: let the supervisor start a fresh worker
