"""Where the workers run: ``local`` (processes on this machine, one per GPU slot) or ``ray`` (the same
workers inside Ray actors, anywhere in a Ray cluster). Either way the supervisor gets one future per job
and stays the only writer of the database.

An executor makes one *host* per slot: an object that keeps one worker process alive on its GPU (a
``harness.run.supervisor.Worker``, replaced after a crash) and runs one job at a time on it through
``attempt``.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

from harness.run.jobs import Job
from harness.run.replies import Ready, Reply, WorkerFailure
from harness.run.shards import Slot


class ExecutorError(RuntimeError):
    """An executor that cannot be used here (Ray not installed); one line saying what to do."""


@dataclass(frozen=True)
class Attempt:
    """What running one job on a host came to: the worker's reply, or the host lost for good."""
    reply: Reply | None = None
    elapsed_s: float = 0.0
    ready: Ready | None = None  # the Ready of a worker process started for this job
    lost: str | None = None  # why no worker can run on this host any more
    ran: bool = False  # with ``lost``: the job was under way (its cell is failed, not given back untried)

    def with_host(self, host: str) -> Attempt:
        """The same, its Ready naming ``host`` (Ray: two nodes of one machine share its host name)."""
        return self if self.ready is None else replace(self, ready=self.ready.model_copy(update={"host": host}))


class Host(Protocol):
    """One slot's worker, as the executor hands it to the supervisor."""

    label: str  # for messages: "GPU 2", "ray actor 1 on node-a"


class Executor(Protocol):
    name: str

    def slots(self, spec: str | None) -> list[Slot]:
        """The workers ``--gpus`` asks for (None: the default), GpuSpecError, one line, if it cannot be."""
        ...

    def hosts(self, slots: list[Slot], log_dir: str) -> list[Host]:
        """One host per slot (started lazily: the first job starts its worker)."""
        ...

    def submit(self, host: Host, job: Job, timeout_s: float) -> Future:
        """Run ``job`` on the host's worker; the future holds the ``Attempt``. It raises only when
        the host itself is gone (a Ray actor whose node died): the supervisor counts that as lost."""
        ...

    def retire(self, host: Host) -> None:
        """Stop the host's worker for good (its GPU is lost, or the run ended)."""
        ...

    def kill(self, host: Host) -> None:
        """Stop the host's worker at once (the run is being interrupted)."""
        ...

    def shutdown(self) -> None:
        ...


def attempt(worker: Any, job: Job, timeout_s: float, expect_device: str | None) -> Attempt:
    """Run one job on ``worker`` (a ``Worker``), starting a fresh process first where the last one is gone.

    The reply, or ``lost`` where no worker can run on this slot any more: a fresh one did not start, or came
    up on another device than the slot's first one (a GPU fallen off the bus leaves a worker that sees only
    the CPU). A crash or hang in the job itself is a reply (a ``WorkerFailure``: the cell failed), not a loss:
    the next job starts a fresh worker on the same GPU."""
    from harness.run.supervisor import WorkerError

    ready = None
    if not worker.alive():
        try:
            ready = worker.start()
        except WorkerError as exc:
            return Attempt(lost=f"no worker starts on it: {exc}")
        if expect_device and ready.device != expect_device:
            worker.kill()
            return Attempt(lost=f"its worker came up on {ready.device!r}, not {expect_device!r} (the GPU is unusable)",
                           ready=ready)
    t0 = time.perf_counter()
    try:
        reply = worker.request(job, timeout_s)
    except WorkerError as exc:
        reply = WorkerFailure(error=str(exc), crashed=True)
    return Attempt(reply=reply, elapsed_s=time.perf_counter() - t0, ready=ready)


def get(name: str, address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``); ValueError, one line, for anything else."""
    if name == "local":
        if address:
            raise ValueError("--address is for --executor ray")
        from harness.run.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from harness.run.executors.ray import RayExecutor

        return RayExecutor(address)
    raise ValueError(f"--executor {name!r}: allowed local, ray")
