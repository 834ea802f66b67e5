"""Workers as Ray actors, anywhere in a Ray cluster: one actor per GPU (``num_gpus=1``; Ray sets its
CUDA_VISIBLE_DEVICES), or per CPU (``num_gpus=0, num_cpus=1``) where the cluster has no GPU, spread over
the nodes by Ray's own SPREAD strategy. Each actor keeps the same ``Worker`` process the local executor
uses, so a crash or hang is contained exactly as on one machine; the replies come back to the supervisor,
which alone writes the database. Ray is optional (``pip install 'flashcore[ray]'``)."""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from harness.run.executors import Attempt, ExecutorError, attempt
from harness.run.jobs import Job
from harness.run.shards import GpuSpecError, Slot

INSTALL_HINT = "--executor ray needs Ray, which is not installed: pip install 'flashcore[ray]' (or 'ray>=2.9')"
#: environment the actors get from the supervisor: the backends it registers, the test knobs, the commit
FORWARDED_PREFIX = "FLASHCORE_"


class _WorkerActor:
    """Runs on a node of the cluster: one Worker process on the GPU Ray gave this actor."""

    def __init__(self, log_dir: str, n: int) -> None:
        from harness.run.supervisor import Worker

        try:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
        except OSError:  # another node's path: a folder of this node's own
            log_dir = tempfile.mkdtemp(prefix="flashcore-ray-")
        self.worker = Worker(Path(log_dir), {}, f"ray-worker-{n}")
        self.expect_device: str | None = None

    def run(self, job: Job, timeout_s: float) -> Attempt:
        out = attempt(self.worker, job, timeout_s, self.expect_device)
        if out.ready is not None:
            if self.expect_device is None:
                self.expect_device = out.ready.device
            import ray

            # two nodes of one machine share its host name: the node tells them apart
            node = ray.get_runtime_context().get_node_id()[:8]
            out = out.with_host(f"{out.ready.host}/ray-node-{node}")
        return out

    def stop(self) -> None:
        self.worker.stop()


class RayHost:
    def __init__(self, actor: Any, n: int) -> None:
        self.actor = actor
        self.label = f"ray actor {n}"


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError(INSTALL_HINT) from None
        self.ray = ray
        self.address = address
        self.gpus = False  # whether the actors take a GPU each (the cluster has GPUs)
        self._connected_here = False

    def connect(self) -> None:
        if not self.ray.is_initialized():
            self.ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
            self._connected_here = True

    def slots(self, spec: str | None) -> list[Slot]:
        """``--gpus`` on a cluster: ``all`` (the default: every GPU of the cluster) or a count; Ray chooses
        which GPUs. A cluster without GPUs needs the count: that many CPU workers."""
        self.connect()
        have = int(self.ray.cluster_resources().get("GPU", 0))
        text = (spec or "all").strip().lower()
        if text == "all":
            if not have:
                raise GpuSpecError("--executor ray --gpus all: the Ray cluster has no GPU; give --gpus N for "
                                   "N workers on its CPUs")
            n = have
        elif text.isdigit() and int(text) >= 1:
            n = int(text)
            if have and n > have:
                raise GpuSpecError(f"--executor ray --gpus {n}: the Ray cluster has {have} GPU(s)")
        else:
            raise GpuSpecError(f"--executor ray --gpus {spec!r}: allowed all or a count N >= 1 (Ray picks "
                               "the GPUs)")
        self.gpus = have > 0
        return [Slot(None, None) for _ in range(n)]

    def hosts(self, slots: list[Slot], log_dir: str) -> list[RayHost]:
        self.connect()
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX)}
        cls = self.ray.remote(_WorkerActor).options(
            num_gpus=1 if self.gpus else 0, num_cpus=1, scheduling_strategy="SPREAD", max_concurrency=1,
            runtime_env={"env_vars": env} if env else None)
        return [RayHost(cls.remote(log_dir, n), n) for n in range(len(slots))]

    def submit(self, host: RayHost, job: Job, timeout_s: float) -> Future:
        return host.actor.run.remote(job, timeout_s).future()

    def retire(self, host: RayHost) -> None:
        try:
            self.ray.get(host.actor.stop.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - an actor already gone, or its node
            pass
        try:
            self.ray.kill(host.actor)
        except Exception:  # noqa: BLE001
            pass

    def kill(self, host: RayHost) -> None:
        try:
            self.ray.kill(host.actor)
        except Exception:  # noqa: BLE001
            pass

    def shutdown(self) -> None:
        if self._connected_here:
            self.ray.shutdown()
