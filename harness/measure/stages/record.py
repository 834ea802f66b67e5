"""The one boundary between the stages' typed observations and the cell's raw record (the fields and
``extra`` the worker sends back, from which the supervisor builds the Result)."""
from __future__ import annotations

from functools import singledispatch
from typing import Any

from harness.measure.observation import Observation
from harness.records.observations import (
    CorrectnessObservation,
    DeterminismObservation,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    KernelTrace,
    TimingObservation,
)


@singledispatch
def record(obs: Observation, raw: dict[str, Any]) -> None:
    raise TypeError(f"no record for {type(obs).__name__}")


@record.register
def _(obs: KernelTrace, raw: dict[str, Any]) -> None:
    raw["extra"].update(kernels_launched=obs.kernels_launched, ops_called=obs.ops_called)


def _checked(obs: CorrectnessObservation | GradientCorrectnessObservation, raw: dict[str, Any]) -> None:
    """What the forward's and the gradients' correctness observations record alike."""
    if obs.kernel_trace is not None:
        record(obs.kernel_trace, raw)
    raw["extra"]["per_distribution"] = obs.per_distribution
    raw["extra"].update(obs.backend_metrics)
    if obs.weak_distributions:
        raw["extra"]["weak_distributions"] = obs.weak_distributions
    if obs.binding is not None:
        raw.update(obs.binding.model_dump())
    if obs.passed is not None:
        raw["passed"] = obs.passed
    if obs.fail_reason:
        raw["fail_reason"] = obs.fail_reason


@record.register
def _(obs: CorrectnessObservation, raw: dict[str, Any]) -> None:
    _checked(obs, raw)
    if obs.binding is not None:
        raw["seed_bounds_ok"] = obs.seed_bounds_ok


@record.register
def _(obs: DeterminismObservation, raw: dict[str, Any]) -> None:
    raw.update(determinism_runs=obs.runs, determinism_mismatches=obs.mismatches, deterministic=obs.deterministic)


#: the gradients that have columns of their own (O's errors of a fwd_bwd stay in extra.per_output)
GRADIENT_COLUMNS = ("dq", "dk", "dv")


@record.register
def _(obs: GradientCorrectnessObservation, raw: dict[str, Any]) -> None:
    _checked(obs, raw)
    raw["extra"]["per_output"] = obs.per_output
    for name in GRADIENT_COLUMNS:
        if name in obs.per_output:
            raw[f"{name}_max_err"] = obs.per_output[name]["max_abs"]
            raw[f"{name}_rel_l2_err"] = obs.per_output[name]["rel_l2"]
    if obs.binding is not None:
        raw["extra"]["binding_output"] = obs.binding_output


@record.register
def _(obs: GradientDeterminismObservation, raw: dict[str, Any]) -> None:
    raw.update(determinism_runs=obs.runs, determinism_mismatches=obs.mismatches, deterministic=obs.deterministic)
    raw["extra"]["determinism_per_output"] = {
        name: {"deterministic": k == 0, "differ": k, "of": obs.repeats} for name, k in obs.per_output.items()}


@record.register
def _(obs: TimingObservation, raw: dict[str, Any]) -> None:
    raw.update(samples_ms=obs.samples_ms, timing_method=obs.method, stop_reason=obs.stop_reason,
               synced_ms=obs.synced_ms, wall_ms=obs.wall_ms, enqueue_ms=obs.enqueue_ms, tare_ms=obs.tare_ms,
               timed_outputs_ok=obs.outputs_ok)
    raw["extra"].update(obs.extra)
