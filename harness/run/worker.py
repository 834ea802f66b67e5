"""The worker process: imports torch, owns the GPU context, and executes jobs sent by the supervisor.

A worker is disposable. A sticky CUDA error (illegal address, launch failure, misaligned address)
poisons the process, so the worker reports it and exits; the supervisor starts a fresh one. Output the
measured code prints goes to the worker's log file, never into the supervisor's terminal.
"""
from __future__ import annotations

import os
import sys
import traceback
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from harness.records.report import CellReport, TamperCheck
from harness.run.jobs import CellJob, EnvJob, Job, PeakJob
from harness.run.replies import EnvReply, GpuStamp, PeakReply, Ready, Reply, WorkerFailure, ends_worker

if TYPE_CHECKING:  # torch is imported in the worker process only
    from harness.measure.cell import ProblemCache
    from harness.measure.timing.l2 import L2Flusher

_STICKY = ("illegal memory access", "illegal address", "launch failure", "misaligned address",
           "unspecified launch failure", "an illegal instruction", "device-side assert",
           "CUDA error: unknown error", "hardware stack error", "uncorrectable ECC")


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """Sticky errors, and any other CUDA runtime error too: a fresh worker is cheap, a poisoned one is not."""
    text = f"{type(exc).__name__}: {exc}"
    return (type(exc).__name__ == "AcceleratorError" or "CUDA error:" in text
            or any(s.lower() in text.lower() for s in _STICKY))


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (type(exc).__name__ in ("OutOfMemoryError", "MemoryError") or "out of memory" in text
            or "can't allocate memory" in text)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the supervisor dies (kill -9 of the run leaves no orphan on the GPU)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the prctl
        os._exit(1)


def _redirect_output(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


@dataclass
class WorkerState:
    """What a worker keeps from one job to the next."""
    device: str  # "cuda" or "cpu"
    cache: ProblemCache  # inputs and references of recent problems
    flusher: L2Flusher | None  # None on the CPU
    pristine: dict[str, int]  # tamper.snapshot() as the worker started
    tampered: list[str] = field(default_factory=list)  # what the current job replaced (tamper.replaced)


def _handle(job: Job, state: WorkerState) -> Reply:
    from harness.measure import environment, peak

    if isinstance(job, EnvJob):
        return EnvReply(env=environment.collect(), device=state.device)
    if isinstance(job, PeakJob):
        return PeakReply(peak=asdict(peak.measure()) if state.device == "cuda" else None)
    if isinstance(job, CellJob):
        return _measure(job, state)
    raise TypeError(f"not a job: {type(job).__name__}")


def _measure(job: CellJob, state: WorkerState) -> CellReport:
    from harness.measure.cell import measure_cell
    from harness.run import tamper

    # as the worker started (a patch made between cells, e.g. by a thread left running, counts too), plus
    # what was imported since
    before = {**tamper.snapshot(), **state.pristine}
    try:
        report = measure_cell(job.backend, job.problem, job.checks, job.timing, state.device, state.cache,
                              state.flusher, timing_mode=job.timing_mode)
    finally:
        state.tampered = tamper.replaced(before)
    if state.tampered:  # the measurement itself cannot be trusted, whatever it says
        check = TamperCheck(replaced=state.tampered, status_before=report.status, reason_before=report.reason)
        report = report.model_copy(update={"status": "rejected", "reason": tamper.describe(state.tampered),
                                           "tamper": check})
    return report


def _failure(exc: BaseException, tampered: bool) -> WorkerFailure:
    return WorkerFailure(error=f"{type(exc).__name__}: {exc}".strip()[:2000], traceback=traceback.format_exc()[-4000:],
                         oom=is_oom(exc), fatal=is_sticky_cuda_error(exc), restart=tampered)


def gpu_stamp(device: str) -> GpuStamp:
    """Which GPU this worker measures on: its name and UUID (as nvidia-smi spells it) and the
    CUDA_VISIBLE_DEVICES it was pinned with; on the CPU, the name says cpu."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device != "cuda":
        return GpuStamp(visible=visible)
    props = torch.cuda.get_device_properties(0)
    uuid = str(getattr(props, "uuid", "") or "")
    return GpuStamp(visible=visible, name=props.name,
                    uuid=uuid if not uuid or uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")


def main(conn: Any, log_path: str, env: dict[str, str] | None = None) -> None:
    # the pinning (CUDA_VISIBLE_DEVICES) before anything can initialise CUDA
    os.environ.update(env or {})
    _die_with_parent()
    _redirect_output(log_path)
    import faulthandler

    faulthandler.enable()  # a native crash leaves the Python stack in the log, and so in the cell's error text
    import torch

    from harness.measure.cell import ProblemCache
    from harness.measure.timing.l2 import L2Flusher
    from harness.run import tamper

    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = WorkerState(device=device, cache=ProblemCache(), flusher=L2Flusher() if device == "cuda" else None,
                        pristine=tamper.snapshot())
    try:
        gpu = gpu_stamp(device)
    except Exception as exc:  # noqa: BLE001 - a GPU that cannot describe itself is reported, not fatal here
        gpu = GpuStamp(visible=os.environ.get("CUDA_VISIBLE_DEVICES"), name="?", error=str(exc))
    import socket

    conn.send(Ready(pid=os.getpid(), host=socket.gethostname(), device=device, gpu=gpu))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        state.tampered = []
        reply: Reply
        try:
            reply = _handle(job, state)
        except BaseException as exc:  # noqa: BLE001 - everything is reported, nothing escapes
            # a patched timer or check would carry over to the next cell: the worker exits after this one
            reply = _failure(exc, bool(state.tampered))
            traceback.print_exc()
        if isinstance(reply, WorkerFailure) and reply.oom and not reply.fatal:  # after the except block: the
            # exception's frames, which hold the tensors that ran out, are gone, so emptying the cache gives
            # their memory back
            state.cache = ProblemCache()
            import gc

            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        conn.send(reply)
        if ends_worker(reply):
            sys.stderr.flush()
            os._exit(3)  # the CUDA context (or the process) is unusable: the supervisor starts a fresh worker
