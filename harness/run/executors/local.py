"""Workers on this machine: one ``Worker`` process per slot, pinned with CUDA_VISIBLE_DEVICES, each driven
by a thread of a pool so the supervisor's thread only waits for whichever job ends first."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from harness.run.executors import Attempt, attempt
from harness.run.jobs import Job
from harness.run.shards import Slot, parse_gpus, visible_gpus


class LocalHost:
    def __init__(self, slot: Slot, log_dir: Path, n: int) -> None:
        from harness.run.supervisor import Worker

        name = "worker" if slot.index is None else f"worker-gpu{slot.index}-{n}"
        self.worker = Worker(log_dir, slot.env, name)
        self.label = "the worker" if slot.index is None else f"worker {n} (GPU {slot.index})"
        self.expect_device: str | None = None  # the device its first worker came up on


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None

    def slots(self, spec: str | None) -> list[Slot]:
        """``--gpus`` on this machine; without it, the one worker of old, not pinned."""
        return [Slot(None, None)] if spec is None else parse_gpus(spec, visible_gpus())

    def hosts(self, slots: list[Slot], log_dir: str) -> list[LocalHost]:
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(slots)), thread_name_prefix="flashcore-worker")
        return [LocalHost(s, Path(log_dir), n) for n, s in enumerate(slots)]

    def submit(self, host: LocalHost, job: Job, timeout_s: float) -> Future:
        assert self.pool is not None
        return self.pool.submit(self._run, host, job, timeout_s)

    @staticmethod
    def _run(host: LocalHost, job: Job, timeout_s: float) -> Attempt:
        out = attempt(host.worker, job, timeout_s, host.expect_device)
        if out.ready is not None and host.expect_device is None:
            host.expect_device = out.ready.device
        return out

    def retire(self, host: LocalHost) -> None:
        host.worker.stop()

    def kill(self, host: LocalHost) -> None:
        host.worker.kill()

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
