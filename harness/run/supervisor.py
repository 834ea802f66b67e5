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
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.analysis import verdict
from harness.records.result import Result
from harness.run.plan import Cell
from harness.spec.suite import Suite
from harness.store.database import Heartbeat, RunInfo, Store, now


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
        from harness.run import worker
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
    resume: bool = False  # continue a run: measure the cells it has no result for
    retry_failed: bool = False  # measure again the cells of a run whose result is failed (earlier rows kept)
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
    store.mark_interrupted()  # runs whose supervisor died are stored as what they are
    failed: set[tuple[str, str]] = set()
    if opts.resume or opts.retry_failed:
        flag = "--resume" if opts.resume else "--retry-failed"
        run_id = opts.run_id or store.latest_run_id(suite.name)
        if run_id is None:
            raise WorkerError(f"{flag}: no earlier run of suite {suite.name!r} in {store.path}")
        was = store.get_run(run_id).status
        info = store.claim_run(run_id)  # refuses a run whose supervisor is still alive
        beat = Heartbeat(store.path, run_id)
        beat.start()  # from the takeover on: starting a worker can take minutes
        recorded = store.done_cells(run_id)
        failed = store.failed_cells(run_id) if opts.retry_failed else set()
        # resume: the cells without a row; retry: the failed ones (both flags: both)
        done = recorded - failed
        if not opts.resume:  # retry alone measures no cell the run never reached
            done |= {(c.backend, c.problem.key()) for c in plan} - failed
    else:
        run_id, info, done, was = opts.run_id or new_run_id(), None, set(), ""
        beat = Heartbeat(store.path, run_id)
    measured = 0
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
                                     peak_gbs=peaks and peaks["copy_gbs"],
                                     pid=os.getpid(), host=socket.gethostname(), heartbeat_at=now()))
            beat.start()
        else:
            store.update_run(run_id, status="running", peak_tflops=peaks and peaks["matmul_tflops"],
                             peak_gbs=peaks and peaks["copy_gbs"])
        # --resume also runs a recorded cell's missing timing mode, and the visits of the rotation after
        # those its row pools
        visits = store.done_visits(run_id) if opts.resume else {}
        todo = [c for c in plan if (c.backend, c.problem.key()) not in done
                or (opts.resume and verdict.visit_todo(c, visits))]
        if opts.on_start:
            opts.on_start(len(todo), len(plan))
        checks = suite.checks.__dict__ | {"distributions": list(suite.checks.distributions)}
        with beat:  # the lease stays fresh through a cell of many minutes
            for n, cell in enumerate(todo, 1):
                # a later visit of the rotation pools into the cell's row, and is not made for a cell that
                # failed, was rejected or skipped so far (its row stays as it is)
                prev = store.get_result(run_id, cell.backend, cell.problem.key(), cell.mode) if cell.round else None
                result = prev
                if not cell.round or (prev is not None and prev.status == "ok"):
                    job = {"kind": "cell", "backend": cell.backend, "problem": cell.problem.as_dict(),
                           "checks": checks, "timing": dict(suite.timing.__dict__), "timing_mode": cell.mode}
                    t0 = time.perf_counter()
                    try:
                        reply = worker.request(job, suite.timing.cell_timeout_s)
                    except WorkerError as exc:
                        reply = {"ok": False, "error": str(exc), "crashed": True}
                    result = verdict.to_result(run_id, suite.name, cell, reply, peaks, time.perf_counter() - t0)
                    if prev is not None:
                        result = verdict.pool(prev, result)
                    # a retried cell's failed row is moved to superseded_results, never overwritten
                    store.add_result(result, keep_previous=not cell.round and (cell.backend, cell.problem.key()) in failed)
                    measured += 1
                store.heartbeat(run_id)
                last = n == len(todo) or (todo[n].problem, todo[n].mode) != (cell.problem, cell.mode)
                if last and suite.timing.baseline:  # this problem's visits in this mode are done
                    verdict.attach_ratios(store, run_id, cell.problem.key(), cell.mode, suite.timing.baseline)
                if opts.on_result and result is not None:
                    opts.on_result(result, n, len(todo))
        recorded_modes = store.done_visits(run_id)
        missing = any(c.key not in recorded_modes for c in plan)
        store.update_run(run_id, status="interrupted" if missing else "complete", finished_at=now())
    except BaseException:
        # the run ends here: interrupted (--resume continues it), or, for an earlier run in which
        # nothing was measured yet, as it was
        try:
            if info is not None and not measured:
                store.update_run(run_id, status=was)
            else:
                store.update_run(run_id, status="interrupted", finished_at=now())
        except sqlite3.Error:
            pass
        raise
    finally:
        beat.stop()
        worker.stop()
    return run_id
