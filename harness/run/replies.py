"""What a worker says besides a cell's report (``harness.records.report.CellReport``): that it started,
its environment, the peaks, and a job that failed.

A failure is a reply too, not an exception over the pipe: the supervisor stores it as the cell's
``failed`` row and decides from it whether the worker is to be replaced.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.records.report import CellReport


class _Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuStamp(_Reply):
    """Which GPU a worker measures on (harness.run.worker.gpu_stamp)."""

    visible: str | None = None  # the CUDA_VISIBLE_DEVICES it was pinned with
    name: str = "cpu"  # as torch names the device; "cpu" without one
    uuid: str = ""  # as nvidia-smi spells it ("GPU-…")
    error: str = ""  # why the GPU could not describe itself


class Ready(_Reply):
    """A fresh worker's first message, once torch is imported and the device chosen."""

    pid: int
    host: str
    device: str  # cuda or cpu
    gpu: GpuStamp


class EnvReply(_Reply):
    env: dict[str, Any]  # harness.measure.environment.collect()
    device: str  # cuda or cpu


class PeakReply(_Reply):
    peak: dict[str, int | float] | None  # harness.measure.peak.Peaks as a dict; None on the CPU


class WorkerFailure(_Reply):
    """A job that raised in the worker, or a worker that crashed, hung or could not be reached."""

    error: str  # the exception, or what the supervisor saw of the worker
    traceback: str = ""
    oom: bool = False  # out of memory: the worker emptied its caches and goes on
    fatal: bool = False  # a CUDA error: the worker's context is unusable and it exits
    crashed: bool = False  # seen by the supervisor: the worker died, hung past its limit or was lost
    restart: bool = False  # the harness was tampered with during the job: the worker exits

    @property
    def reason(self) -> str:
        """One line for tables (a CUDA error's text goes on for lines)."""
        line = ((self.error or "unknown error").strip().splitlines() or [""])[0]
        if self.oom:
            return f"out of memory: {line}"
        if self.fatal:
            return f"CUDA error (worker restarted): {line}"
        return line


Reply = EnvReply | PeakReply | CellReport | WorkerFailure


def ends_worker(reply: Reply) -> bool:
    """Whether the worker exits after sending ``reply`` (the supervisor starts a fresh one for the next job)."""
    if isinstance(reply, WorkerFailure):
        return reply.restart or reply.fatal
    return isinstance(reply, CellReport) and reply.restart
