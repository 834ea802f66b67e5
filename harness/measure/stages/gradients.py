"""The untimed stages of a backward operation (``bwd``, ``fwd_bwd``): are the gradients right, and the same
again.

Correctness: per trial and input distribution a fresh dO (N(0, 1), the input dtype); dQ, dK, dV (and O for
fwd_bwd) each against its float64 reference with FlashAttention's rule (``harness.measure.correctness``),
each checked for what it is (a plain tensor of its shape, fully written over poisoned memory); q, k, v and
dO must be unchanged by the call. The first input set is then called once more with dO scaled by −2
(exact): every gradient must follow it (−2 × the reference, within twice the tolerance), so gradients
computed once and returned again are caught even where no timing runs.

Determinism: bit-for-bit repeats per output. A backward whose repeats differ is reported
(``deterministic: false``, k of N per output); it fails the cell only where the suite requires
determinism of the operation (``Checks.requires_determinism``).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from harness.backends.metrics import reported_metrics
from harness.measure import correctness as C
from harness.measure import guards
from harness.measure.problem_cache import derive_seed
from harness.measure.stages.base import CellContext
from harness.measure.stages.checks import _sync, binding_of, too_weak, trace_custom_kernel, unwritten
from harness.measure.verdict import Verdict
from harness.records.observations import (
    Ending,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    KernelTrace,
)
from harness.spec.problem import OP_OUTPUTS, Problem

#: dO is scaled by this for the second call of the stale-gradient check (a power of two: exact)
STALE_SCALE = -2.0


def prepare_op(backend: Any, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               do: torch.Tensor) -> Any:
    """The backend's prepared call of the problem's backward operation."""
    if problem.op == "bwd":
        return backend.prepare_backward(problem, q, k, v, do)
    return backend.prepare_fwd_bwd(problem, q, k, v, do)


def poison_outputs(problem: Problem, dtype: torch.dtype, device: str) -> None:
    """Marked-NaN blocks of every output's size, as the forward's poisoning does for O."""
    for shape, n in Counter(problem.output_shapes().values()).items():
        guards.poison_free_memory(shape, dtype, device, copies=2 * n)


def outputs_problem(outs: object, problem: Problem, like: torch.Tensor) -> str | None:
    """None if ``outs`` is the operation's tuple of real, fully written tensors, else why not."""
    names, shapes = OP_OUTPUTS[problem.op], problem.output_shapes()
    if not isinstance(outs, (tuple, list)) or len(outs) != len(names):
        return (f"returned {type(outs).__name__}, expected a tuple ({', '.join(names)}) of "
                f"{len(names)} tensors")
    for name, out in zip(names, outs):
        bad = C.tensor_problem(out, shapes[name], like, name) or unwritten(out, name)
        if bad:
            return bad
    return None


def _merge(d: dict[str, Any], err: C.Errors, oracle: C.Oracle) -> None:
    d.update(max_abs=max(d.get("max_abs", 0.0), err.max_abs), mean_abs=max(d.get("mean_abs", 0.0), err.mean_abs),
             rel_l2=max(d.get("rel_l2", 0.0), err.rel_l2), nan=d.get("nan", 0) + err.nan,
             inf=d.get("inf", 0) + err.inf, tolerance=oracle.tolerance, torch_err=oracle.torch_err)


def _stale(outs: tuple[torch.Tensor, ...], names: tuple[str, ...], grads: dict[str, C.Oracle]) -> str | None:
    """Why the outputs of the dO·(−2) call do not follow dO, or None."""
    for name, out in zip(names, outs):
        if name == "o":  # O does not depend on dO
            continue
        o = grads[name]
        err = C.error_metrics(out, o.ref * STALE_SCALE)
        tol = abs(STALE_SCALE) * o.tolerance
        if err.nan or err.inf or err.max_abs > tol:
            return (f"stale gradients: called again with dO scaled by {STALE_SCALE:g}, {name} is off by "
                    f"{err.max_abs:.3g} (> {tol:.3g}), although the first call was right: gradients kept "
                    "from an earlier call")
    return None


class GradientCorrectnessStage:
    name = "correctness"
    timed = False

    def run(self, ctx: CellContext) -> GradientCorrectnessObservation:
        checks, problem, device, backend = ctx.checks, ctx.problem, ctx.device, ctx.backend
        names = OP_OUTPUTS[problem.op]
        per_output: dict[str, dict[str, Any]] = {}
        per_dist: dict[str, dict[str, dict[str, Any]]] = {}
        weak: dict[str, str] = {}
        trace: KernelTrace | None = None
        binding: tuple[float, str, C.Errors, C.Oracle, str] | None = None
        passed: bool | None = None
        fail_reason = ""
        for dist in checks.distributions:
            for trial in range(checks.trials):
                s = ctx.cache.get(problem, derive_seed(checks.seed, problem.inputs_key(), dist, trial), dist, device,
                                  checks.correctness, checks.calibrate)
                if s.grads is not None:
                    nulls = [w for n in names for w in s.grads[n].weak]
                    if nulls:
                        weak[dist] = (f"null output(s) {', '.join(nulls)} pass the tolerance "
                                      f"{', '.join(f'{n} {s.grads[n].tolerance:.3g}' for n in names)}")
                        continue
                ctx.sets.append(s)
                do = s.do.clone()  # the harness's dO buffer: refilled for the stale-gradient check
                run = prepare_op(backend, problem, s.q, s.k, s.v, do)
                guard = C.InputGuard(s.q, s.k, s.v, do)
                poison_outputs(problem, s.q.dtype, device)
                outs = run()
                _sync(device)
                seen = (trace,) if trace else ()
                bad = outputs_problem(outs, problem, s.q)
                if bad:
                    raise Verdict("rejected", bad, seen)
                changed = guard.changed()
                if changed:
                    raise Verdict("rejected", "the call modified its input(s) "
                                  f"{', '.join(('q', 'k', 'v', 'do')[i] for i in changed)}", seen)
                if backend.custom_kernel and trace is None:
                    trace = trace_custom_kernel(run, device)
                first_ok = True
                if s.grads is not None:
                    d = per_dist.setdefault(dist, {})
                    for name, out in zip(names, outs):
                        o = s.grads[name]
                        err = C.error_metrics(out, o.ref)
                        _merge(d.setdefault(name, {}), err, o)
                        _merge(per_output.setdefault(name, {}), err, o)
                        ratio = err.max_abs / max(o.tolerance, 1e-30) if not (err.nan or err.inf) else float("inf")
                        if binding is None or ratio > binding[0]:
                            binding = (ratio, name, err, o, dist)
                        if not C.passes(err, o):
                            first_ok = passed = False
                            fail_reason = fail_reason or (f"{dist} inputs, trial {trial}: {name} "
                                                          f"{C.failure_reason(err, o)}")
                first = tuple(o.clone() for o in outs)  # kept for determinism (the backend may reuse buffers)
                del outs
                if s.grads is not None and first_ok and len(ctx.first_outputs) == 0:
                    do.mul_(STALE_SCALE)
                    poison_outputs(problem, s.q.dtype, device)
                    again = run()
                    _sync(device)
                    why = outputs_problem(again, problem, s.q) or _stale(tuple(again), names, s.grads)
                    if why:
                        raise Verdict("rejected", why, (trace,) if trace else ())
                    del again
                    do.copy_(s.do)
                ctx.first_outputs.append((s, run, first))
        common = dict(per_output=per_output, per_distribution=per_dist, weak_distributions=weak,
                      backend_metrics=reported_metrics(backend), kernel_trace=trace)
        if not ctx.sets:
            return GradientCorrectnessObservation(**common, ending=too_weak(weak))
        if binding is None:
            return GradientCorrectnessObservation(**common)
        _, name, err, oracle, dist = binding
        passed = passed is not False
        return GradientCorrectnessObservation(
            **common, binding_output=name, binding=binding_of(err, oracle, dist, per_output.values()),
            passed=passed, fail_reason=fail_reason,
            ending=None if passed else Ending(status="failed", reason=fail_reason))


class GradientDeterminismStage:
    """As the forward's: the first input set ``checks.determinism_runs`` times in all, every other one
    twice, over re-poisoned memory; compared per output."""

    name = "determinism"
    timed = False

    def run(self, ctx: CellContext) -> GradientDeterminismObservation:
        names = OP_OUTPUTS[ctx.problem.op]
        differ = dict.fromkeys(names, 0)
        mismatches = repeats = 0
        for n, (s, run, first) in enumerate(ctx.first_outputs):
            n_runs = max(2, ctx.checks.determinism_runs) if n == 0 else 2
            for _ in range(n_runs - 1):
                poison_outputs(ctx.problem, s.q.dtype, ctx.device)
                again = run()
                _sync(ctx.device)
                bad = outputs_problem(again, ctx.problem, s.q)
                if bad:
                    raise Verdict("rejected", bad)
                repeats += 1
                hit = [name for name, a, f in zip(names, again, first) if not C.bit_equal(a, f)]
                for name in hit:
                    differ[name] += 1
                mismatches += bool(hit)
                del again
        ctx.first_outputs.clear()
        ending = None
        if mismatches and ctx.checks.requires_determinism(ctx.problem.op):
            which = ", ".join(f"{name} in {k} of {repeats}" for name, k in differ.items() if k)
            ending = Ending(status="failed", reason=f"not bit-identical: repeated runs differ from the first "
                            f"({which}); the suite requires determinism")
        return GradientDeterminismObservation(runs=repeats + 1, repeats=repeats, mismatches=mismatches,
                                              per_output=differ, ending=ending)
