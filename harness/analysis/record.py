"""Where each typed observation of a cell's report goes in the stored row: which ``Result`` column, which
key of ``extra``. The one place that mapping lives; the supervisor applies it (``verdict.to_result``), out
of the measured code's reach.

``extra`` is filled in the order the worker made the observations (the clocks first), so its JSON reads
as the cell ran.
"""
from __future__ import annotations

from functools import singledispatch
from statistics import median

from harness.measure.observation import Observation
from harness.records.observations import (
    Binding,
    CorrectnessObservation,
    DeterminismObservation,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    KernelTime,
    KernelTrace,
    SettleWindow,
    SmClockReading,
    SustainedDetails,
    TimingObservation,
)
from harness.records.report import CellReport
from harness.records.result import Result

#: the gradients that have columns of their own (O's errors of a fwd_bwd stay in extra.per_output)
GRADIENT_COLUMNS = ("dq", "dk", "dv")


def record_report(report: CellReport, res: Result) -> None:
    """Every observation of ``report`` into ``res``, as measured (statistics and verdicts are the caller's)."""
    if report.clocks_before is not None:
        res.extra["clocks_before"] = report.clocks_before.as_stored()
    for obs in report.observations:
        record(obs, res)
    if report.tamper is not None:  # what the cell said before it was rejected for tampering
        res.extra["status_before_tamper_check"] = [report.tamper.status_before, report.tamper.reason_before]


def binding(report: CellReport) -> Binding | None:
    """The trial closest to failing, where a correctness check compared with a reference."""
    for obs in reversed(report.observations):
        if isinstance(obs, (CorrectnessObservation, GradientCorrectnessObservation)) and obs.binding is not None:
            return obs.binding
    return None


@singledispatch
def record(obs: Observation, res: Result) -> None:
    raise TypeError(f"no record for {type(obs).__name__}")


@record.register
def _(obs: KernelTrace, res: Result) -> None:
    res.extra.update(kernels_launched=obs.kernels_launched, ops_called=obs.ops_called)


def _checked(obs: CorrectnessObservation | GradientCorrectnessObservation, res: Result) -> None:
    """What the forward's and the gradients' correctness observations record alike."""
    if obs.kernel_trace is not None:
        record(obs.kernel_trace, res)
    res.extra["per_distribution"] = obs.per_distribution
    res.extra.update(obs.backend_metrics)
    if obs.weak_distributions:
        res.extra["weak_distributions"] = obs.weak_distributions
    b = obs.binding
    if b is not None:
        res.max_abs_err, res.mean_abs_err, res.rel_l2_err = b.max_abs_err, b.mean_abs_err, b.rel_l2_err
        res.nan_count, res.inf_count, res.tolerance = b.nan_count, b.inf_count, b.tolerance
        res.torch_max_abs_err = b.torch_err
    if obs.passed is not None:
        res.passed = obs.passed


@record.register
def _(obs: CorrectnessObservation, res: Result) -> None:
    _checked(obs, res)
    if obs.binding is not None:
        res.seed_bounds_ok = obs.seed_bounds_ok


@record.register
def _(obs: DeterminismObservation, res: Result) -> None:
    res.determinism_runs, res.determinism_mismatches, res.deterministic = obs.runs, obs.mismatches, obs.deterministic


@record.register
def _(obs: GradientCorrectnessObservation, res: Result) -> None:
    _checked(obs, res)
    res.extra["per_output"] = obs.per_output
    for name in GRADIENT_COLUMNS:
        if name in obs.per_output:
            setattr(res, f"{name}_max_err", obs.per_output[name]["max_abs"])
            setattr(res, f"{name}_rel_l2_err", obs.per_output[name]["rel_l2"])
    if obs.binding is not None:
        res.extra["binding_output"] = obs.binding_output


@record.register
def _(obs: GradientDeterminismObservation, res: Result) -> None:
    res.determinism_runs, res.determinism_mismatches, res.deterministic = obs.runs, obs.mismatches, obs.deterministic
    res.extra["determinism_per_output"] = {
        name: {"deterministic": k == 0, "differ": k, "of": obs.repeats} for name, k in obs.per_output.items()}


@record.register
def _(obs: TimingObservation, res: Result) -> None:
    # the samples themselves are the caller's: it takes the tare off and computes the statistics
    res.timing_method, res.stop_reason, res.timed_outputs_ok = obs.method, obs.stop_reason, obs.outputs_ok
    extra = res.extra
    if obs.sustained is not None and obs.sustained.gate is not None:
        gate = obs.sustained.gate
        extra.update(sustained_gated=True, sustained_gate_ms=round(gate.gate_ms, 4), sustained_batch=gate.batch)
    if obs.sustained is not None and obs.sustained.graph_batch is not None:
        extra.update(sustained_graph_batch=obs.sustained.graph_batch)
    if obs.sustained is not None and obs.sustained.graph_error:
        extra.update(sustained_graph_error=obs.sustained.graph_error)
    if obs.timing_s is not None:  # on a GPU
        extra["throttled_ms"] = obs.throttled_ms
        extra["timing_s"] = round(obs.timing_s, 3)
    if obs.clocks_after is not None:
        extra["clocks_after"] = obs.clocks_after.as_stored()
    extra["timed_worst_err_over_tol"] = obs.worst_err_over_tol
    for probe in (obs.settle, obs.clock, obs.kernel_clock):
        if probe is not None:
            record(probe, res)
    if obs.sustained is not None:
        _sustained(obs.sustained, obs.enqueue_ms, res)


@record.register
def _(obs: SettleWindow, res: Result) -> None:
    """How many samples the window set aside, and how its start compares with its end."""
    s = obs.samples_ms
    res.extra["settle_calls"] = len(s)
    if s:
        res.extra.update(settle_first_ms=median(s[:3]), settle_last_ms=median(s[-3:]))


@record.register
def _(obs: SmClockReading, res: Result) -> None:
    res.extra["hold_ms"] = round(obs.hold_ms, 4)
    if obs.mhz:
        res.extra.update(sm_mhz=round(median(obs.mhz), 1), sm_mhz_min=round(min(obs.mhz), 1),
                         sm_mhz_samples=[round(m, 1) for m in obs.mhz])
    if obs.error:
        res.extra["sm_mhz_error"] = obs.error
        if obs.suspect is not None:
            res.extra["sm_mhz_suspect"] = round(obs.suspect, 1)


@record.register
def _(obs: KernelTime, res: Result) -> None:
    if obs.error:
        res.extra["kernel_clock_error"] = obs.error
        return
    res.extra.update(kernel_ms=median(obs.per_call_ms), kernel_samples_ms=[round(x, 6) for x in obs.per_call_ms],
                     kernels_per_call=max(obs.kernels_per_call), kernel_clock_names=obs.names[:20])


def _sustained(obs: SustainedDetails, enqueue_ms: float, res: Result) -> None:
    """The sustained mode's own keys (its gate, if any, comes first: ``TimingObservation``'s record)."""
    res.extra.update(
        sustained_sets=obs.sets, sustained_set_bytes=obs.set_bytes, l2_bytes=obs.l2_bytes,
        sustained_covers_l2=obs.covers_l2, sustained_warmup_calls=obs.warmup_calls, sustained_calls=obs.calls,
        sustained_window_ms=obs.window_ms, sustained_batch_mean_ms=obs.batch_mean_ms, sustained_lead=obs.lead,
        sustained_host_bound=obs.host_bound, sustained_probe_ms=round(obs.probe_ms, 6),
        sustained_enqueue_ms=round(enqueue_ms, 6))
