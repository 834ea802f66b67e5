"""What a cell's stages observe, as typed records (``harness.measure.stages`` returns them).

They cross the worker pipe as they are, inside a ``CellReport``, and the supervisor reads them into the
stored row (``harness.analysis.record``). Plain data only: the supervisor unpickles them without
importing torch, and a patch the measured code makes to these classes in the worker cannot reach what the
supervisor reads.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.measure.observation import Observation

if TYPE_CHECKING:
    from harness.measure.timing.kernel_clock import KernelClock


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


class SettleWindow(Observation):
    """The isolated mode's settling window (``harness.measure.timing.loop``)."""

    samples_ms: list[float]  # set aside: the GPU was still settling


class SmClockReading(Observation):
    """The effective SM clock before each kept sample (``harness.measure.timing.sm_clock``), and the hold."""

    mhz: list[float]
    hold_ms: float  # GPU idle before each call: the hold, and the cooling gap if any
    error: str = ""  # why mhz is empty although the clock was probed
    suspect: float | None = None  # then the median reading all the same (kept, not used as a clock)


class KernelTime(Observation):
    """The profiler's kernel time of a few calls (``harness.measure.timing.kernel_clock``)."""

    per_call_ms: list[float] = []
    kernels_per_call: list[int] = []
    names: list[str] = []
    error: str = ""

    @classmethod
    def of(cls, k: KernelClock) -> KernelTime:
        return cls(per_call_ms=k.per_call_ms, kernels_per_call=k.kernels_per_call, names=k.names, error=k.error)


class SustainedGate(Observation):
    """How a host-bound cell was timed in the sustained mode: batches of calls behind a hold."""

    batch: int  # calls enqueued behind each hold
    gate_ms: float  # the hold, long enough for the host to enqueue the batch


class SustainedDetails(Observation):
    """The sustained mode's own observations (``harness.measure.timing.sustained``)."""

    sets: int  # input buffer sets rotated through
    set_bytes: int
    l2_bytes: int
    covers_l2: bool  # whether the sets add up to more than twice the L2 (False: capped)
    warmup_calls: int  # set aside
    calls: int  # every call enqueued
    window_ms: float  # GPU time of the timed window
    batch_mean_ms: float | None  # the window per timed call
    lead: int  # calls the host ran ahead of the GPU at most (gated: the batch)
    probe_ms: float  # one call's GPU time, measured back to back behind a hold before the timing
    gate: SustainedGate | None = None  # the host could not enqueue a call in its GPU time: timed gated
    graph_batch: int | None = None  # ... and timed instead as a CUDA graph of this many calls, replayed back to back
    graph_error: str = ""  # the capture asked for failed (the cell was timed gated): why

    @property
    def host_bound(self) -> bool:
        return self.gate is not None or self.graph_batch is not None


class TimingObservation(Observation):
    samples_ms: list[float]
    method: str
    stop_reason: str
    synced_ms: list[float]  # the cross-check's device-synchronised calls
    wall_ms: list[float]
    enqueue_ms: float
    tare_ms: float
    worst_err_over_tol: float  # of every timed output (NaN if one was NaN)
    # on a GPU: NVML's power and thermal throttling while the samples ran (None without NVML), and the host
    # seconds they took; neither on the CPU path
    throttled_ms: dict[str, float] | None = None
    timing_s: float | None = None
    clocks_after: NvmlClocks | None = None  # as the timing ended
    settle: SettleWindow | None = None  # the isolated mode's probes
    clock: SmClockReading | None = None
    kernel_clock: KernelTime | None = None  # with ``[timing] kernel_clock_calls``
    sustained: SustainedDetails | None = None  # the sustained mode's
    ending: Ending | None = None

    @property
    def outputs_ok(self) -> bool:
        return bool(self.worst_err_over_tol <= 1.0)


#: every observation a stage returns, or a verdict carries (a closed set: a report can be rebuilt from
#: its JSON as well as from its pickle)
StageObservation = (KernelTrace | CorrectnessObservation | DeterminismObservation | GradientCorrectnessObservation
                    | GradientDeterminismObservation | TimingObservation)
