"""The untimed stages: is the output right (correctness), and is it the same again (determinism)."""
from __future__ import annotations

from typing import Any

import torch

from harness.backends.metrics import reported_metrics
from harness.measure import correctness as C
from harness.measure import guards
from harness.measure.problem_cache import derive_seed
from harness.measure.stages.base import CellContext
from harness.measure.verdict import Verdict
from harness.records.observations import (
    Binding,
    CorrectnessObservation,
    DeterminismObservation,
    Ending,
    KernelTrace,
)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def trace_custom_kernel(run: Any, device: str) -> KernelTrace:
    """The kernels and ops one call of a project kernel launches; Verdict (rejected) if it launched a
    library attention kernel."""
    from harness.tools import kernel_names

    launched: dict[str, Any] = {}
    why = kernel_names.check_custom(run, device, launched)
    trace = KernelTrace(**launched)
    if why:
        raise Verdict("rejected", why, (trace,))
    return trace


def unwritten(out: torch.Tensor, what: str = "output") -> str | None:
    n = guards.poisoned(out)
    if not n:
        return None
    return (f"{what} not fully written: {n} of {out.numel()} elements still hold the marked NaN the harness "
            "wrote into freed memory before the call (a stale buffer returned, or a partial write)")



def too_weak(weak: dict[str, str]) -> Ending:
    """The ending of a cell whose every input distribution lets a null output pass."""
    return Ending(status="rejected", reason="problem too weak: " + "; ".join(f"{d} inputs: {w}" for d, w in weak.items()))


def binding_of(err: C.Errors, oracle: C.Oracle, dist: str, counts: Any) -> Binding:
    """The error closest to failing, its tolerance, and NaN/Inf summed over ``counts`` (dicts with nan, inf)."""
    counts = list(counts)
    return Binding(max_abs_err=err.max_abs, mean_abs_err=err.mean_abs, rel_l2_err=err.rel_l2,
                   nan_count=sum(int(d["nan"]) for d in counts), inf_count=sum(int(d["inf"]) for d in counts),
                   tolerance=oracle.tolerance, torch_err=oracle.torch_err, binding_distribution=dist)

class CorrectnessStage:
    """Fresh inputs per trial and distribution; each output checked for what it is (a real tensor, fully
    written, inputs untouched) and, with a reference, against it."""

    name = "correctness"
    timed = False

    def run(self, ctx: CellContext) -> CorrectnessObservation:
        checks, problem, device, backend = ctx.checks, ctx.problem, ctx.device, ctx.backend
        binding: tuple[float, C.Errors, C.Oracle, str] | None = None
        per_dist: dict[str, dict[str, float]] = {}
        weak: dict[str, str] = {}
        trace: KernelTrace | None = None
        fail_reason = ""
        passed: bool | None = None
        for dist in checks.distributions:
            for trial in range(checks.trials):
                s = ctx.cache.get(problem, derive_seed(checks.seed, problem.key(), dist, trial), dist, device,
                                  checks.correctness, checks.calibrate)
                if s.oracle is not None and s.oracle.weak:
                    # this distribution cannot tell attention from a null output on this problem: it proves
                    # nothing, so it is left out of the verdict (and the cell rejected if no distribution is left)
                    weak[dist] = (f"null output(s) {', '.join(s.oracle.weak)} pass the tolerance "
                                  f"{s.oracle.tolerance:.3g}")
                    continue
                ctx.sets.append(s)
                run = backend.prepare(problem, s.q, s.k, s.v)
                guard = C.InputGuard(s.q, s.k, s.v)
                guards.poison_free_memory(ctx.out_shape, ctx.out_dtype(s.q.dtype), device)
                out = run()
                _sync(device)
                bad = C.output_problem(out, problem, s.q) or unwritten(out)
                if bad:
                    raise Verdict("rejected", bad, (trace,) if trace else ())
                changed = guard.changed()
                if changed:
                    raise Verdict("rejected", f"the call modified its input(s) {', '.join('qkv'[i] for i in changed)}",
                                  (trace,) if trace else ())
                if backend.custom_kernel and trace is None:
                    trace = trace_custom_kernel(run, device)
                if s.oracle is not None:
                    err = C.error_metrics(out, s.oracle.ref)
                    d = per_dist.setdefault(dist, {"max_abs": 0.0, "mean_abs": 0.0, "nan": 0, "inf": 0})
                    d.update(max_abs=max(d["max_abs"], err.max_abs), mean_abs=max(d["mean_abs"], err.mean_abs),
                             nan=d["nan"] + err.nan, inf=d["inf"] + err.inf, tolerance=s.oracle.tolerance,
                             torch_err=s.oracle.torch_err)
                    ratio = err.max_abs / max(s.oracle.tolerance, 1e-30) if not (err.nan or err.inf) else float("inf")
                    if binding is None or ratio > binding[0]:
                        binding = (ratio, err, s.oracle, dist)
                    if not C.passes(err, s.oracle):
                        passed = False
                        fail_reason = fail_reason or f"{dist} inputs, trial {trial}: {C.failure_reason(err, s.oracle)}"
                # kept for the determinism stage (a copy: the backend may reuse its output buffer)
                ctx.first_outputs.append((s, run, out.clone()))
                del out
        common = dict(per_distribution=per_dist, weak_distributions=weak,
                      backend_metrics=reported_metrics(backend), kernel_trace=trace)
        if not ctx.sets:
            return CorrectnessObservation(**common, ending=too_weak(weak))
        if binding is None:
            return CorrectnessObservation(**common)
        _, err, oracle, dist = binding
        first = per_dist[ctx.sets[0].distribution]
        passed = passed is not False
        return CorrectnessObservation(
            **common, binding=binding_of(err, oracle, dist, per_dist.values()),
            seed_bounds_ok=first["max_abs"] < C.SEED_MAX_ABS and first["mean_abs"] < C.SEED_MEAN_ABS,
            passed=passed, fail_reason=fail_reason,
            ending=None if passed else Ending(status="failed", reason=fail_reason))


class DeterminismStage:
    """Calls again over re-poisoned memory must match the first output bit for bit: catches partial
    writes, reads of uninitialised memory and races. The first input set is called
    ``checks.determinism_runs`` times in all, every other one twice."""

    name = "determinism"
    timed = False

    def run(self, ctx: CellContext) -> DeterminismObservation:
        mismatches, runs = 0, 0
        for n, (s, run, first) in enumerate(ctx.first_outputs):
            n_runs = max(2, ctx.checks.determinism_runs) if n == 0 else 2
            for _ in range(n_runs - 1):
                guards.poison_free_memory(ctx.out_shape, ctx.out_dtype(s.q.dtype), ctx.device)
                again = run()
                _sync(ctx.device)
                bad = unwritten(again)
                if bad:
                    raise Verdict("rejected", bad)
                runs += 1
                mismatches += 0 if C.bit_equal(again, first) else 1
                del again
        ctx.first_outputs.clear()
        ending = None
        if mismatches and ctx.checks.requires_determinism(ctx.problem.op):
            ending = Ending(status="failed", reason=f"not bit-identical: {mismatches} of {runs} repeated runs differ "
                            "from the first (a race, a read of uninitialised memory, or a partial write)")
        return DeterminismObservation(runs=runs + 1, mismatches=mismatches, ending=ending)
