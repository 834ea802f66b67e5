"""The supervisor: walks the plan, hands each cell to a worker process, turns raw observations into
statistics and a verdict, and stores every result the moment it exists.

A cell that crashes, hangs past its time limit, runs out of memory or hits a CUDA error is recorded as
``failed`` with the reason; the worker is replaced and the run goes on.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import verdict
from harness.plan import Cell
from harness.result import Result
from harness.store import RunInfo, Store, now
from harness.suite import Suite


class WorkerError(RuntimeError):
    pass


#: a fresh worker (spawn, import torch, CUDA context) must say it is ready within this; its start-up
#: time is not charged to the cell it was started for
START_TIMEOUT_S = 300.0


class Worker:
    """One supervised worker process and its pipe."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: Any = None
        self.conn: Any = None
        self.log_path = ""
        self.started = 0

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.started += 1
        self.log_path = str(self.log_dir / f"worker-{os.getpid()}-{self.started}.log")
        from harness import worker

        self.proc = ctx.Process(target=worker.main, args=(child, self.log_path), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        try:
            ready = self.conn.recv() if self.conn.poll(START_TIMEOUT_S) else None
        except (EOFError, OSError):
            ready = None
        if not (isinstance(ready, dict) and ready.get("ready")):
            self.proc.join(1)
            code = self.proc.exitcode
            self.kill()
            raise WorkerError(f"worker did not start within {START_TIMEOUT_S:g}s (exit code {code})\n"
                              f"{self.log_tail(600)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def log_tail(self, n: int = 1500) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None

    def stop(self) -> None:
        if self.alive():
            try:
                self.conn.send(None)
                self.proc.join(10)
            except (BrokenPipeError, OSError):
                pass
        self.kill()

    def request(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if not self.alive():
            self.start()
        try:
            self.conn.send(job)
        except (BrokenPipeError, OSError) as exc:
            self.kill()
            raise WorkerError(f"worker unreachable: {exc}") from None
        if not self.conn.poll(timeout_s):
            self.kill()
            raise WorkerError(f"timed out after {timeout_s:g}s (worker killed)\n{self.log_tail()}")
        try:
            reply = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.kill()
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            tail = self.log_tail(20000)
            at = tail.rfind("Fatal Python error")  # faulthandler's report of the crash, with the Python stack
            raise WorkerError(f"worker crashed ({how})\n{tail[at:][:3500] if at >= 0 else tail[-3500:]}") from None
        if reply.get("restart") or (not reply.get("ok") and reply.get("fatal")):
            self.proc.join(10)
            self.kill()
        return reply


@dataclass
class RunOptions:
    resume: bool = False
    run_id: str | None = None
    argv: str = ""
    log_dir: Path | None = None
    on_result: Callable[[Result, int, int], None] | None = None
    on_start: Callable[[int, int], None] | None = None
    extra_env: dict[str, Any] = field(default_factory=dict)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_suite(suite: Suite, plan: list[Cell], store: Store, opts: RunOptions) -> str:
    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="flashcore-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(log_dir)
    if opts.resume:
        run_id = opts.run_id or store.latest_run_id(suite.name)
        if run_id is None:
            raise WorkerError(f"--resume: no earlier run of suite {suite.name!r} in {store.path}")
        info = store.get_run(run_id)
        done = store.done_cells(run_id)
    else:
        run_id, info, done = opts.run_id or new_run_id(), None, set()
    try:
        env_reply = worker.request({"kind": "env"}, 300)
        if not env_reply["ok"]:
            raise WorkerError(f"worker could not describe the environment: {env_reply['error']}")
        env = {**env_reply["env"], **opts.extra_env, "device": env_reply["device"]}
        peaks = info and info.peak_tflops and {"matmul_tflops": info.peak_tflops, "copy_gbs": info.peak_gbs}
        if not peaks:
            reply = worker.request({"kind": "peak"}, 300)
            peaks = reply.get("peak") if reply.get("ok") else None
            if not reply.get("ok"):
                env["peak_error"] = reply.get("error")
            elif peaks:
                env["peaks"] = peaks
        if info is None:
            store.create_run(RunInfo(run_id=run_id, suite=suite.name, created_at=now(),
                                     git_commit=env.get("git_commit", ""), argv=opts.argv, env=env,
                                     peak_tflops=peaks and peaks["matmul_tflops"],
                                     peak_gbs=peaks and peaks["copy_gbs"]))
        else:
            store.update_run(run_id, status="running", peak_tflops=peaks and peaks["matmul_tflops"],
                             peak_gbs=peaks and peaks["copy_gbs"])
        todo = [c for c in plan if (c.backend, c.problem.key()) not in done]
        if opts.on_start:
            opts.on_start(len(todo), len(plan))
        checks = suite.checks.__dict__ | {"distributions": list(suite.checks.distributions)}
        for n, cell in enumerate(todo, 1):
            job = {"kind": "cell", "backend": cell.backend, "problem": cell.problem.as_dict(),
                   "checks": checks, "timing": dict(suite.timing.__dict__)}
            t0 = time.perf_counter()
            try:
                reply = worker.request(job, suite.timing.cell_timeout_s)
            except WorkerError as exc:
                reply = {"ok": False, "error": str(exc), "crashed": True}
            result = verdict.to_result(run_id, suite.name, cell, reply, peaks, time.perf_counter() - t0)
            store.add_result(result)
            if opts.on_result:
                opts.on_result(result, n, len(todo))
        store.update_run(run_id, status="complete", finished_at=now())
    except KeyboardInterrupt:
        store.update_run(run_id, status="interrupted", finished_at=now())
        raise
    finally:
        worker.stop()
    return run_id
