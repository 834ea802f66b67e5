"""Where each typed observation of a cell's report goes in the stored row: which ``Result`` column, which
key of ``extra``. The one place that mapping lives; the supervisor applies it (``verdict.to_result``), out
of the measured code's reach.

``extra`` is filled in the order the worker made the observations (the clocks first), so its JSON reads
as the cell ran.
"""
from __future__ import annotations

from functools import singledispatch

from harness.measure.observation import Observation
from harness.records.observations import (
    Binding,
    CorrectnessObservation,
    DeterminismObservation,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    KernelTrace,
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
    res.extra.update(obs.extra)
