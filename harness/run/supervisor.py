"""The supervisor: walks the plan, hands each cell to a worker process as a typed job
(``harness.run.jobs``), turns the typed report it gets back (``harness.records.report``) into statistics
and a verdict, and stores every result the moment it exists.

A cell that crashes, hangs past its time limit, runs out of memory or hits a CUDA error is recorded as
``failed`` with the reason; the worker is replaced and the run goes on.

With several worker slots (``flashcore run --gpus``, or Ray actors: ``harness.run.executors``) the plan
is cut into problems (``harness.run.shards``), handed out longest first from one queue to whichever
worker is free; this process still stores every result, and alone. A worker that can no longer run on
its GPU is lost: its problem goes to the others (``_Sweep``).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import secrets
import signal
import socket
import sqlite3
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.analysis import verdict
from harness.records.report import CellReport
from harness.records.result import Result
from harness.run.executors import Attempt
from harness.run.jobs import CellJob, EnvJob, Job, PeakJob
from harness.run.plan import Cell
from harness.run.replies import EnvReply, GpuStamp, PeakReply, Ready, Reply, WorkerFailure, ends_worker
from harness.run.shards import Slot, Unit, units
from harness.spec.suite import Suite
from harness.store.database import Heartbeat, RunInfo, Store, now


class WorkerError(RuntimeError):
    pass


#: a fresh worker (spawn, import torch, CUDA context) must say it is ready within this; its start-up
#: time is not charged to the cell it was started for
START_TIMEOUT_S = 300.0


class Worker:
    """One supervised worker process and its pipe."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None, name: str = "worker") -> None:
        self.log_dir = log_dir
        self.env = dict(env or {})  # set in the worker before it imports torch (the GPU pinning)
        self.name = name
        self.proc: Any = None
        self.conn: Any = None
        self.log_path = ""
        self.started = 0
        self.ready: Ready | None = None  # the last worker's ready message: pid, host, device, GPU stamp

    def start(self) -> Ready:
        """Start a fresh worker process; its ready message."""
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.started += 1
        self.log_path = str(self.log_dir / f"{self.name}-{os.getpid()}-{self.started}.log")
        from harness.run import worker
        self.proc = ctx.Process(target=worker.main, args=(child, self.log_path, self.env), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        try:
            ready = self.conn.recv() if self.conn.poll(START_TIMEOUT_S) else None
        except (EOFError, OSError):
            ready = None
        if not isinstance(ready, Ready):
            self.proc.join(1)
            code = self.proc.exitcode
            self.kill()
            raise WorkerError(f"worker did not start within {START_TIMEOUT_S:g}s (exit code {code})\n"
                              f"{self.log_tail(600)}")
        self.ready = ready
        return ready

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

    def request(self, job: Job, timeout_s: float) -> Reply:
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
        if ends_worker(reply):  # it exits after this reply
            self.proc.join(10)
            self.kill()
        return reply


@dataclass
class RunOptions:
    resume: bool = False  # continue a run: measure the cells it has no result for
    retry_failed: bool = False  # measure again the cells of a run whose result is failed (earlier rows kept)
    remeasure: bool = False  # measure again every cell of a run (earlier rows kept), e.g. on another GPU
    run_id: str | None = None
    argv: str = ""
    log_dir: Path | None = None
    on_result: Callable[[Result, int, int], None] | None = None
    on_start: Callable[[int, int], None] | None = None
    extra_env: dict[str, Any] = field(default_factory=dict)
    #: where the workers run (harness.run.executors); None: worker processes on this machine
    executor: Any = None
    #: one worker per slot (``--gpus``), problems longest first; None: the one worker of old, plan order
    slots: list[Slot] | None = None
    on_event: Callable[[str], None] | None = None  # a worker lost and its problem handed over, for people


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class Shard:
    """One worker slot of a run, as the supervisor sees it: the GPU its worker is pinned to, what that
    worker said it runs on, the peaks measured there, and the problem (unit) it is measuring."""

    n: int
    slot: Slot
    host: Any
    device: str = ""  # what its first worker came up on: cuda or cpu
    gpu: GpuStamp = field(default_factory=GpuStamp)  # what its worker said it runs on
    host_name: str = ""
    peaks: dict[str, float] | None = None
    unit: Unit | None = None
    pos: int = 0  # the next cell of the unit
    unit_measured: set[tuple[str, str, str]] = field(default_factory=set)  # cells of the unit stored from here
    unit_failed: set[tuple[str, str, str]] = field(default_factory=set)  # and those of them that failed
    lost: str = ""

    def adopt(self, ready: Ready) -> None:
        self.device = self.device or ready.device
        self.gpu = ready.gpu
        self.host_name = ready.host

    @property
    def gpu_index(self) -> int | None:
        """The index as the user gave it; a Ray actor's GPU as Ray pinned it; 0 for the one unpinned
        worker on a GPU; None on the CPU."""
        visible = str(self.gpu.visible or "").strip()
        if self.slot.index is not None:
            return self.slot.index
        if visible.isdigit():
            return int(visible)
        return 0 if self.device == "cuda" else None

    def stamp(self, result: Result, sharded: bool) -> None:
        result.gpu_index, result.gpu_uuid, result.gpu_name = self.gpu_index, self.gpu.uuid, self.gpu.name
        if sharded:  # which of the run's workers, for runs of several on one GPU (--gpus 0,0)
            result.extra["worker"] = {"shard": self.n, "host": self.host_name}

    def describe(self) -> dict[str, Any]:
        """This worker's entry in the run's ``env["gpus"]``."""
        return {"shard": self.n, "index": self.gpu_index, "visible": self.gpu.visible,
                "uuid": self.gpu.uuid, "name": self.gpu.name, "host": self.host_name,
                "device": self.device, "peaks": self.peaks, **({"lost": self.lost} if self.lost else {})}


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:500]


def _error(reply: Reply | None) -> str | None:
    """What a reply that is not the one asked for says went wrong."""
    return reply.error if isinstance(reply, WorkerFailure) else None if reply is None else type(reply).__name__


def _gather(executor: Any, jobs: list[tuple[Shard, Job]], timeout_s: float) -> list[Attempt]:
    """Run one job on each of several shards at once; each one's outcome."""
    futs = [executor.submit(sh.host, job, timeout_s) for sh, job in jobs]
    return [_outcome(sh, fut, ran=False) for (sh, _), fut in zip(jobs, futs)]


def _outcome(sh: Shard, fut: Future, ran: bool) -> Attempt:
    """The Attempt a job's future holds, the shard adopting a fresh worker's Ready; a future that raises is
    the host itself gone (a Ray node lost), with the job under way where ``ran``."""
    try:
        out = fut.result()
    except Exception as exc:  # noqa: BLE001 - reported as the host lost, the run goes on
        out = Attempt(lost=_first_line(f"{type(exc).__name__}: {exc}"), ran=ran)
    if out.ready is not None:
        sh.adopt(out.ready)
    return out


def run_suite(suite: Suite, plan: list[Cell], store: Store, opts: RunOptions) -> str:
    from harness.run.executors.local import LocalExecutor

    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="flashcore-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    executor = opts.executor or LocalExecutor()
    sharded = opts.slots is not None
    slots = opts.slots or [Slot(None, None)]
    shards: list[Shard] = []
    store.mark_interrupted()  # runs whose supervisor died are stored as what they are
    failed: set[tuple[str, str]] = set()
    if opts.resume or opts.retry_failed or opts.remeasure:
        flag = "--resume" if opts.resume else "--retry-failed" if opts.retry_failed else "--remeasure"
        run_id = opts.run_id or store.latest_run_id(suite.name)
        if run_id is None:
            raise WorkerError(f"{flag}: no earlier run of suite {suite.name!r} in {store.path}")
        was = store.get_run(run_id).status
        info = store.claim_run(run_id)  # refuses a run whose supervisor is still alive
        beat = Heartbeat(store.path, run_id)
        beat.start()  # from the takeover on: starting a worker can take minutes
        recorded = store.done_cells(run_id)
        failed = recorded if opts.remeasure else store.failed_cells(run_id) if opts.retry_failed else set()
        # resume: the cells without a row; retry: the failed ones (both flags: both); remeasure: every
        # recorded one, each earlier row kept as superseded
        done = recorded - failed
        if not opts.resume:  # retry alone measures no cell the run never reached
            done |= {(c.backend, c.problem.key()) for c in plan} - failed
    else:
        run_id, info, done, was = opts.run_id or new_run_id(), None, set(), ""
        beat = Heartbeat(store.path, run_id)
    sweep: _Sweep | None = None
    clean = False
    try:
        shards += [Shard(n, slot, host) for n, (slot, host) in enumerate(zip(slots, executor.hosts(slots, str(log_dir))))]
        env, peaks = _start_workers(executor, shards, info, opts, sharded)
        if info is None:
            store.create_run(RunInfo(run_id=run_id, suite=suite.name, created_at=now(),
                                     git_commit=env.get("git_commit", ""), argv=opts.argv, env=env,
                                     peak_tflops=peaks and peaks["matmul_tflops"],
                                     peak_gbs=peaks and peaks["copy_gbs"],
                                     pid=os.getpid(), host=socket.gethostname(), heartbeat_at=now()))
            beat.start()
        else:
            fields: dict[str, Any] = {"env": {**(info.env or {}), "gpus": env["gpus"]}} if sharded else {}
            store.update_run(run_id, status="running", peak_tflops=peaks and peaks["matmul_tflops"],
                             peak_gbs=peaks and peaks["copy_gbs"], **fields)
        # --resume also runs a recorded cell's missing timing mode, and the visits of the rotation after
        # those its row pools
        visits = store.done_visits(run_id) if opts.resume else {}
        todo = [c for c in plan if (c.backend, c.problem.key()) not in done
                or (opts.resume and verdict.visit_todo(c, visits))]
        if opts.on_start:
            opts.on_start(len(todo), len(plan))
        sweep = _Sweep(suite, store, run_id, executor, shards, failed, opts, sharded, plan)
        with beat:  # the lease stays fresh through a cell of many minutes
            sweep.run(units(todo, longest_first=sharded), len(todo))
        if sharded:  # which workers were lost, and why
            info_now = store.get_run(run_id)
            store.update_run(run_id, env={**(info_now.env or {}), "gpus": [sh.describe() for sh in shards]})
        recorded_modes = store.done_visits(run_id)
        missing = any(c.key not in recorded_modes for c in plan)
        store.update_run(run_id, status="interrupted" if missing else "complete", finished_at=now())
        clean = True
    except BaseException:
        # the run ends here: interrupted (--resume continues it), or, for an earlier run in which
        # nothing was measured yet, as it was
        try:
            if info is not None and not (sweep and sweep.measured):
                store.update_run(run_id, status=was)
            else:
                store.update_run(run_id, status="interrupted", finished_at=now())
        except sqlite3.Error:
            pass
        raise
    finally:
        beat.stop()
        for sh in shards:
            (executor.retire if clean else executor.kill)(sh.host)
        executor.shutdown()
    return run_id


def _start_workers(executor: Any, shards: list[Shard], info: RunInfo | None, opts: RunOptions,
                   sharded: bool) -> tuple[dict[str, Any], dict[str, float] | None]:
    """Start every worker (at once) and learn what it runs on; measure the peaks (once per GPU, unless the
    run being continued has them). The run's environment (the first worker's) and its peaks (the first
    GPU's; each cell's % of peak uses the peaks of the GPU it ran on)."""
    outs = _gather(executor, [(sh, EnvJob()) for sh in shards], 300)
    live: list[tuple[Shard, EnvReply]] = []
    for sh, out in zip(shards, outs):
        reply = out.reply
        if out.lost is not None or not isinstance(reply, EnvReply):
            sh.lost = out.lost or f"could not describe the environment: {_error(reply)}"
            executor.kill(sh.host)
            if opts.on_event and sharded:
                opts.on_event(f"{sh.host.label} not used: {_first_line(sh.lost)}")
        else:
            live.append((sh, reply))
    if not live:
        first = shards[0].lost
        raise WorkerError(f"worker could not describe the environment: {first.split(': ', 1)[-1]}"
                          if first.startswith("could not describe") else f"no worker started: {first}")
    sh0, reply0 = live[0]
    env = {**reply0.env, **opts.extra_env, "device": reply0.device}
    stored = {g.get("uuid"): g.get("peaks") for g in (info.env or {}).get("gpus", [])} if info else {}
    if not sharded and info and info.peak_tflops:
        sh0.peaks = {"matmul_tflops": info.peak_tflops, "copy_gbs": info.peak_gbs}
    by_gpu: dict[str, list[Shard]] = {}  # shards that share a GPU share one measurement of its peaks
    for sh, _ in live:
        uuid = sh.gpu.uuid
        if sharded and uuid and stored.get(uuid):
            sh.peaks = stored[uuid]
        elif sh.peaks is None:
            by_gpu.setdefault(uuid or f"shard-{sh.n}", []).append(sh)
    groups = list(by_gpu.values())
    for group, out in zip(groups, _gather(executor, [(g[0], PeakJob()) for g in groups], 300)):
        peak = out.reply
        if not isinstance(peak, PeakReply):
            env.setdefault("peak_error", _error(peak) if peak is not None else out.lost)
        for sh in group:
            sh.peaks = peak.peak if isinstance(peak, PeakReply) else None
    if sh0.peaks and not (info and info.peak_tflops and not sharded):
        env["peaks"] = sh0.peaks
    if sharded:
        env["gpus"] = [sh.describe() for sh in shards]
        env["executor"] = getattr(executor, "name", "local")
    return env, sh0.peaks


class _Sweep:
    """Hands the units out from one queue to the shards as they come free, and stores every reply as it
    arrives (this thread is the only one that touches the database). A shard that loses its worker for
    good gives its unit back: the cell in flight is failed, the rest of the problem is measured again
    elsewhere from its first cell (what was stored from the lost GPU kept as superseded), so a problem's
    backends still share one GPU."""

    def __init__(self, suite: Suite, store: Store, run_id: str, executor: Any, shards: list[Shard],
                 failed: set[tuple[str, str]], opts: RunOptions, sharded: bool, plan: list[Cell]) -> None:
        self.plan: dict[str, list[Cell]] = {}  # every cell of the plan, per problem, in the plan's order
        for c in plan:
            self.plan.setdefault(c.problem.key(), []).append(c)
        self.suite, self.store, self.run_id, self.executor = suite, store, run_id, executor
        self.shards, self.failed, self.opts, self.sharded = shards, failed, opts, sharded
        self.queue: deque[Unit] = deque()
        self.pending: dict[Future, tuple[Shard, Cell, Result | None]] = {}
        self.measured = 0
        self._last: Result | None = None  # the result _store made last
        self.n = 0
        self.total = 0

    def run(self, work: list[Unit], total: int) -> None:
        self.queue.extend(work)
        self.total = total
        while True:
            busy = {sh.n for sh, _, _ in self.pending.values()}
            for sh in self.shards:
                if not sh.lost and sh.n not in busy:
                    self._feed(sh)
            if not self.pending:
                break
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
            for fut in done:
                self._finish(fut)
        if self.queue:
            why = "; ".join(f"{sh.host.label}: {_first_line(sh.lost)}" for sh in self.shards if sh.lost)
            raise WorkerError(f"every worker was lost, {len(self.queue)} problem(s) not measured ({why})")

    def _feed(self, sh: Shard) -> None:
        """Give the shard its next cell to measure: the next of its unit, or the first of the next unit."""
        while True:
            if sh.unit is None:
                if not self.queue:
                    return
                sh.unit, sh.pos, sh.unit_measured, sh.unit_failed = self._whole(sh, self.queue.popleft()), 0, set(), set()
            cells = sh.unit.cells
            while sh.pos < len(cells):
                cell = cells[sh.pos]
                # a later visit of the rotation pools into the cell's row, and is not made for a cell that
                # failed, was rejected or skipped so far (its row stays as it is)
                prev = (self.store.get_result(self.run_id, cell.backend, cell.problem.key(), cell.mode)
                        if cell.round else None)
                if not cell.round or (prev is not None and prev.status == "ok"):
                    job = CellJob(backend=cell.backend, problem=cell.problem, checks=self.suite.checks,
                                  timing=self.suite.timing, timing_mode=cell.mode)
                    fut = self.executor.submit(sh.host, job, self.suite.timing.cell_timeout_s)
                    self.pending[fut] = (sh, cell, prev)
                    return
                self._next(sh, cell, prev)
            sh.unit = None

    def _whole(self, sh: Shard, unit: Unit) -> Unit:
        """The unit as this shard must measure it: where the run holds rows of its problem from another GPU
        (a run resumed with its problem half done, on other GPUs), the problem is measured again whole
        here, those rows kept as superseded, so its backends' ratios never mix GPUs. Failed rows stay."""
        if not self.sharded:
            return unit
        mine = (sh.gpu_index, sh.gpu.uuid)
        stored = {(r.backend, r.problem_key, r.timing_mode): r
                  for r in self.store.iter_results(self.run_id, problem_key=unit.problem_key)}
        again = {k for k, r in stored.items() if r.status != "failed" and k not in unit.supersede}
        if not any((stored[k].gpu_index, stored[k].gpu_uuid or "") != mine for k in again):
            return unit
        keys = {c.key for c in unit.cells} | again
        cells = [c for c in self.plan.get(unit.problem_key, []) if c.key in keys]
        self.total += len(cells) - len(unit.cells)
        return Unit(cells, supersede=frozenset(unit.supersede | again))

    def _next(self, sh: Shard, cell: Cell, result: Result | None) -> None:
        """The shard is done with the cell at its position (measured, or a visit not made)."""
        assert sh.unit is not None
        cells = sh.unit.cells
        self.n += 1
        self.store.heartbeat(self.run_id)
        last = sh.pos + 1 == len(cells) or cells[sh.pos + 1].mode != cell.mode
        if last and self.suite.timing.baseline:  # this problem's visits in this mode are done
            verdict.attach_ratios(self.store, self.run_id, cell.problem.key(), cell.mode, self.suite.timing.baseline)
        if self.opts.on_result and result is not None:
            self.opts.on_result(result, self.n, self.total)
        sh.pos += 1

    def _finish(self, fut: Future) -> None:
        sh, cell, prev = self.pending.pop(fut)
        out = _outcome(sh, fut, ran=True)
        if out.lost is not None:
            self._lose(sh, cell, prev, out)
            return
        assert isinstance(out.reply, (CellReport, WorkerFailure)), out.reply
        self._store(sh, cell, prev, out.reply, out.elapsed_s)
        self._next(sh, cell, self._last)

    def _store(self, sh: Shard, cell: Cell, prev: Result | None, reply: CellReport | WorkerFailure,
               elapsed_s: float) -> None:
        assert sh.unit is not None
        result = verdict.to_result(self.run_id, self.suite.name, cell, reply, sh.peaks, elapsed_s,
                                   gpu_shared_by=self._sharing(sh))
        if prev is not None:
            result = verdict.pool(prev, result)
        sh.stamp(result, self.sharded)
        # a retried cell's failed row, and a row from a GPU lost before its problem was done, is moved to
        # superseded_results, never overwritten
        again = (cell.backend, cell.problem.key()) in self.failed or cell.key in sh.unit.supersede
        self.store.add_result(result, keep_previous=not cell.round and again)
        sh.unit_measured.add(cell.key)
        if result.status == "failed":
            sh.unit_failed.add(cell.key)
        self.measured += 1
        self._last = result

    def _sharing(self, sh: Shard) -> int:
        """How many workers of this run run on ``sh``'s GPU (``--gpus 0,0``: 2); 1 on the CPU."""
        if sh.device != "cuda":
            return 1

        def gpu(o: Shard) -> str:
            return o.gpu.uuid or o.slot.visible or ""

        return max(1, sum(1 for o in self.shards if o.device == "cuda" and gpu(o) == gpu(sh)))

    def _lose(self, sh: Shard, cell: Cell, prev: Result | None, out: Attempt) -> None:
        """The shard's worker is gone for good: fail the cell in flight, give the problem back."""
        assert sh.unit is not None
        sh.lost = out.lost
        self.executor.kill(sh.host)
        unit = sh.unit
        if out.ran:
            self._store(sh, cell, prev, WorkerFailure(error=f"worker lost: {sh.lost}", crashed=True), 0.0)
            self.n += 1
            if self.opts.on_result:
                self.opts.on_result(self._last, self.n, self.total)
        skip = set(sh.unit_failed)  # not tried again elsewhere: a failed cell may be what took the GPU down
        again = [c for c in unit.cells if c.key not in skip]
        self.total += sum(1 for c in unit.cells[:sh.pos] if c.key not in skip)  # visited again elsewhere
        if again:
            self.queue.appendleft(Unit(again, supersede=frozenset(unit.supersede | (sh.unit_measured - skip))))
        sh.unit = None
        if self.opts.on_event:
            self.opts.on_event(f"{sh.host.label} lost ({_first_line(sh.lost)}); problem {unit.problem_key} "
                               "goes to the other workers")
