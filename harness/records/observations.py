"""What a cell's stages observe, as typed records (``harness.measure.stages`` returns them).

They cross the worker pipe as they are, inside a ``CellReport``, and the supervisor reads them into the
stored row (``harness.analysis.record``). Plain data only: the supervisor unpickles them without
importing torch, and a patch the measured code makes to these classes in the worker cannot reach what the
supervisor reads.
"""
from __future__ import annotations

from typing import Any

from harness.measure.observation import Observation


class Ending(Observation):
    """A verdict an observation carries: ``status`` rejected or failed, and why."""

    status: str
    reason: str


class NvmlClocks(Observation):
    """The GPU's clocks as NVML reads them at one moment (``harness.measure.environment.clocks``): every field None without
    NVML; only ``error`` where NVML is present but a query failed."""

    sm_mhz: int | float | None = None
    mem_mhz: int | float | None = None
    sm_max_mhz: int | float | None = None
    temp_c: int | float | None = None
    power_w: float | None = None
    throttle: list[str] | None = None
    error: str | None = None

    @classmethod
    def of(cls, reading: dict[str, Any] | None) -> NvmlClocks:
        return cls(**(reading or {}))

    def as_stored(self) -> dict[str, Any] | None:
        """As ``clocks()`` returned it, which is how ``extra`` keeps it."""
        if self.error is not None:
            return {"error": self.error}
        if self.sm_mhz is None:
            return None
        return self.model_dump(exclude={"error"})


class KernelTrace(Observation):
    """What a backend claiming a custom kernel launched (``harness.tools.kernel_names.check_custom``)."""

    kernels_launched: list[str]
    ops_called: list[str]


class Binding(Observation):
    """The trial closest to failing, with its own tolerance."""

    max_abs_err: float
    mean_abs_err: float
    rel_l2_err: float
    nan_count: int  # over every distribution
    inf_count: int
    tolerance: float
    torch_err: float
    binding_distribution: str


class CorrectnessObservation(Observation):
    per_distribution: dict[str, dict[str, Any]]  # max_abs, mean_abs, nan, inf, tolerance, torch_err
    weak_distributions: dict[str, str]  # distributions left out: a null output passes their tolerance
    # what the backend reported of its untimed work in prepare (e.g. a JIT compile and its seconds), each
    # name one the backend declares (``Backend.metrics``)
    backend_metrics: dict[str, Any]
    kernel_trace: KernelTrace | None = None
    binding: Binding | None = None  # None without a reference (correctness off)
    seed_bounds_ok: bool | None = None
    passed: bool | None = None
    fail_reason: str = ""
    ending: Ending | None = None


class DeterminismObservation(Observation):
    runs: int  # calls compared, the first ones included
    mismatches: int  # repeated calls that differ from the first bit for bit
    ending: Ending | None = None

    @property
    def deterministic(self) -> bool:
        return self.mismatches == 0


class GradientCorrectnessObservation(Observation):
    # per output, worst over trials and distributions: max_abs, mean_abs, rel_l2, nan, inf, tolerance, torch_err
    per_output: dict[str, dict[str, Any]]
    per_distribution: dict[str, dict[str, dict[str, Any]]]  # distribution -> output -> the same
    weak_distributions: dict[str, str]
    backend_metrics: dict[str, Any]  # as the forward's
    kernel_trace: KernelTrace | None = None
    binding: Binding | None = None  # the output and trial closest to failing
    binding_output: str = ""
    passed: bool | None = None
    fail_reason: str = ""
    ending: Ending | None = None


class GradientDeterminismObservation(Observation):
    runs: int  # calls compared, the first ones included
    repeats: int  # repeated calls compared with their first
    mismatches: int  # repeated calls in which any output differs from the first bit for bit
    per_output: dict[str, int]  # output -> repeated calls in which it differs
    ending: Ending | None = None

    @property
    def deterministic(self) -> bool:
        return self.mismatches == 0


class TimingObservation(Observation):
    samples_ms: list[float]
    method: str
    stop_reason: str
    synced_ms: list[float]  # the cross-check's device-synchronised calls
    wall_ms: list[float]
    enqueue_ms: float
    tare_ms: float
    worst_err_over_tol: float  # of every timed output (NaN if one was NaN)
    extra: dict[str, Any]  # the mode's own observations, as stored in the cell's extra
    ending: Ending | None = None

    @property
    def outputs_ok(self) -> bool:
        return bool(self.worst_err_over_tol <= 1.0)


#: every observation a stage returns, or a verdict carries (a closed set: a report can be rebuilt from
#: its JSON as well as from its pickle)
StageObservation = (KernelTrace | CorrectnessObservation | DeterminismObservation | GradientCorrectnessObservation
                    | GradientDeterminismObservation | TimingObservation)
