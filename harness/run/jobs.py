"""What the supervisor asks a worker to do: one typed job per kind, sent over the pipe as it is.

The worker answers each with a typed reply (``harness.run.replies``; a cell: ``harness.records.report``).
No torch here: the supervisor builds jobs without importing it.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing


class _Job(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EnvJob(_Job):
    """Describe the worker's environment (GPU, driver, library versions); answered by an ``EnvReply``."""


class PeakJob(_Job):
    """Measure the GPU's matmul and copy peaks (none on the CPU); answered by a ``PeakReply``."""


class CellJob(_Job):
    """Measure one visit of a cell: a backend on a problem in a timing mode; answered by a ``CellReport``."""

    backend: str
    problem: Problem
    checks: Checks
    timing: Timing
    timing_mode: str = "isolated"


Job = EnvJob | PeakJob | CellJob
