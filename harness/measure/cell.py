"""Measure one cell (a backend on a problem) inside a worker: the stages the suite asks for
(``harness.measure.stages``: correctness, determinism, timing), in order.

Returns a typed report (``harness.records.report.CellReport``) of observations only (errors, sample lists,
flags); the supervisor turns them into statistics and a verdict, so nothing the measured code can reach
decides its own result.
"""
from __future__ import annotations

from harness.backends import registry
from harness.backends.base import Unsupported, serving_unsupported
from harness.measure import guards
from harness.measure.environment import clocks
from harness.measure.problem_cache import InputSet, ProblemCache, derive_seed
from harness.measure.stages import CellContext, stages_for
from harness.measure.timing.l2 import L2Flusher
from harness.measure.verdict import Verdict
from harness.records.observations import NvmlClocks, StageObservation
from harness.records.report import CellReport
from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing

__all__ = ["InputSet", "ProblemCache", "Verdict", "derive_seed", "measure_cell"]


class _Seen:
    """What the cell observed so far, kept when a verdict or an error ends it early."""

    def __init__(self) -> None:
        self.clocks_before: NvmlClocks | None = None
        self.observations: list[StageObservation] = []


def measure_cell(backend_name: str, problem: Problem, checks: Checks, timing: Timing, device: str,
                 cache: ProblemCache, flusher: L2Flusher | None, timing_mode: str = "isolated") -> CellReport:
    """One visit of a cell in one timing mode (``isolated`` or ``sustained``, see harness.measure.timing.sustained)."""
    seen = _Seen()
    status, reason = "ok", ""
    try:
        _measure(seen, backend_name, problem, checks, timing, device, cache, flusher, timing_mode)
    except Verdict as v:
        seen.observations.extend(v.observations)  # what was seen before the verdict stays with the cell
        status, reason = v.status, v.reason
    except Unsupported as u:
        status, reason = "skipped", str(u)
    except BaseException:
        cache.problem, cache.sets = None, {}  # the inputs may be half-changed: the next cell starts afresh
        raise
    # the cached inputs are shared by every backend on this problem: one that changed them (in a call, or
    # later through references it kept) is rejected, and the next backend gets fresh ones
    if any(guards.fingerprint(*s.tensors()) != s.fingerprint for s in cache.sets.values()):
        cache.problem, cache.sets = None, {}
        if status != "rejected":
            status, reason = "rejected", "changed the harness's input tensors during the cell"
    return CellReport(status=status, reason=reason, timing_mode=timing_mode, clocks_before=seen.clocks_before,
                      observations=seen.observations)


def _measure(seen: _Seen, backend_name: str, problem: Problem, checks: Checks, timing: Timing,
             device: str, cache: ProblemCache, flusher: L2Flusher | None, timing_mode: str) -> None:
    backend = registry.get(backend_name)
    why = backend.unavailable()
    if why:
        raise Verdict("skipped", why)
    if device not in backend.devices:
        raise Verdict("skipped", f"runs on {'/'.join(backend.devices)} only; this machine has no CUDA GPU")
    why = (serving_unsupported(backend, problem) or backend.op_unsupported(problem.op)
           or backend.unsupported(problem))
    if why:
        raise Verdict("skipped", why)
    seen.clocks_before = NvmlClocks.of(clocks())
    ctx = CellContext(backend_name, backend, problem, checks, timing, device, cache, flusher, timing_mode)
    failed: Verdict | None = None  # a failed check lets the other checks run, then ends the cell
    for stage in stages_for(checks, timing, problem.op):
        if stage.timed and failed is not None:
            break
        obs = stage.run(ctx)
        seen.observations.append(obs)
        ending = getattr(obs, "ending", None)
        if ending is not None:
            if ending.status != "failed":
                raise Verdict(ending.status, ending.reason)
            failed = failed or Verdict(ending.status, ending.reason)
    if failed is not None:
        raise failed
