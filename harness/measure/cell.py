"""Measure one cell (a backend on a problem) inside a worker: correctness, determinism, timing.

Returns raw observations only (errors, sample lists, flags); the supervisor turns them into statistics
and a verdict, so nothing the measured code can reach decides its own result.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import torch

from harness.backends import registry
from harness.backends.base import Unsupported
from harness.measure import correctness as C
from harness.measure import guards
from harness.measure.environment import clocks, throttle_ns, throttled_ms
from harness.measure.inputs import make_inputs
from harness.measure.nvtx_ranges import call_range
from harness.measure.timing import sustained
from harness.measure.timing.kernel_clock import KernelClock
from harness.measure.timing.l2 import L2Flusher
from harness.measure.timing.stopping import Sampling
from harness.measure.timing.timer import time_cpu, time_cuda
from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing

CONTENTS = 2  # distinct input sets rotated through timing
BUFFERS = 3  # buffers they are copied into (coprime with CONTENTS: a pointer never keeps its data)


def derive_seed(base: int, *parts: object) -> int:
    """Stable across processes (unlike hash())."""
    return zlib.crc32("|".join(map(str, (base, *parts))).encode()) & 0x7FFFFFFF


@dataclass
class InputSet:
    seed: int
    distribution: str
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    oracle: C.Oracle | None
    fingerprint: tuple[int, ...] = ()  # of q, k, v when made: checked after every cell


@dataclass
class ProblemCache:
    """Inputs and references of the problem being measured, shared by all its backends."""

    problem: Problem | None = None
    sets: dict[tuple[int, str], InputSet] = field(default_factory=dict)

    def get(self, problem: Problem, seed: int, distribution: str, device: str, with_oracle: bool,
            calibrate: bool) -> InputSet:
        if problem != self.problem:
            self.problem, self.sets = problem, {}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        key = (seed, distribution)
        s = self.sets.get(key)
        if s is None:
            q, k, v = make_inputs(problem, seed, distribution, device)
            s = InputSet(seed, distribution, q, k, v, None, guards.fingerprint(q, k, v))
            self.sets[key] = s
        if with_oracle and s.oracle is None:
            s.oracle = C.build_oracle(problem, s.q, s.k, s.v, calibrate=calibrate)
        return s


class Verdict(Exception):
    """Ends a cell early with a status and reason (rejected / failed / skipped)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _unwritten(out: torch.Tensor) -> str | None:
    n = guards.poisoned(out)
    if not n:
        return None
    return (f"output not fully written: {n} of {out.numel()} elements still hold the marked NaN the harness "
            "wrote into freed memory before the call (a stale buffer returned, or a partial write)")


def _settle_summary(settle: list[float]) -> dict[str, Any]:
    """How many samples the settling window set aside, and how its start compares with its end."""
    if not settle:
        return {"settle_calls": 0}
    return {"settle_calls": len(settle), "settle_first_ms": median(settle[:3]), "settle_last_ms": median(settle[-3:])}


def _clock_summary(mhz: list[float], hold_ms: float) -> dict[str, Any]:
    """The effective SM clock before each kept sample (``harness.measure.timing.sm_clock``), and the hold."""
    out: dict[str, Any] = {"hold_ms": round(hold_ms, 4)}
    if mhz:
        out.update(sm_mhz=round(median(mhz), 1), sm_mhz_min=round(min(mhz), 1),
                   sm_mhz_samples=[round(m, 1) for m in mhz])
    return out


def _kernel_summary(k: KernelClock) -> dict[str, Any]:
    if k.error:
        return {"kernel_clock_error": k.error}
    return {"kernel_ms": median(k.per_call_ms), "kernel_samples_ms": [round(x, 6) for x in k.per_call_ms],
            "kernels_per_call": max(k.kernels_per_call), "kernel_clock_names": k.names[:20]}


def _visit_fraction(timing: Timing) -> float:
    """With ``rounds`` = R each visit samples 1/R of the sampled time (and of the cap and sample count),
    so a backend's pooled samples add up to what one visit without rounds would take."""
    return 1.0 / max(1, timing.rounds)


def _time_sustained(raw: dict[str, Any], backend: Any, backend_name: str, problem: Problem, checks: Checks,
                    timing: Timing, contents: list[InputSet], device: str) -> None:
    """The sustained mode: input sets filled once (distinct V scales per set), then calls back to back with
    no flush and no hold, rotating through sets that add up to more than 2x the L2; the last output of
    every set is checked afterwards."""
    src0 = contents[0]
    set_bytes = sum(x.numel() * x.element_size() for x in (src0.q, src0.k, src0.v))
    l2 = sustained.l2_bytes()
    n_sets, covered = sustained.rotation_sets(set_bytes, l2)
    gen = torch.Generator(device=device).manual_seed(derive_seed(checks.seed, problem.key(), "sustained-scales"))
    sets, scales = [], []
    for j in range(n_sets):
        src = contents[j % CONTENTS]
        b = tuple(torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=device) for x in (src.q, src.k, src.v))
        sc = guards.timing_scales(problem.batch, problem.heads_kv, problem.head_dim, device, gen)
        b[0].copy_(src.q)
        b[1].copy_(src.k)
        guards.apply_scales(b[2], src.v, sc)
        sets.append(b)
        scales.append(sc)
    runs = [backend.prepare(problem, *b) for b in sets]

    def call(i: int) -> torch.Tensor:
        with call_range(backend_name, problem.key()):
            return runs[i % n_sets]()

    # warm-up with a sync after each call: compilation and autotuning stay out, and the call's time sets how
    # far the host runs ahead in the loop
    enqueue, whole = [], []
    for i in range(max(1, timing.warmup)):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        call(i)
        enqueue.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        whole.append(time.perf_counter() - t0)
    per = _visit_fraction(timing)
    enqueue_med_ms = sorted(enqueue)[len(enqueue) // 2] * 1e3
    gpu_ms = _gated_call_ms(call, n_sets, enqueue_med_ms)
    plan = sustained.gate_plan(enqueue_med_ms, gpu_ms)
    held = throttle_ns()
    t0 = time.perf_counter()
    common = dict(duration_s=timing.sustained_s * per, warmup_s=timing.sustained_warmup_s,
                  min_samples=timing.min_samples, time_cap_s=timing.sustained_warmup_s + timing.time_cap_s * per,
                  new_event=sustained.cuda_event)
    if plan is None:
        st = sustained.time_sustained(call, n_sets, est_call_ms=min(whole) * 1e3, **common)
    else:  # the host cannot keep up: batches behind a gate, so the events see GPU time only
        from harness.measure.timing import sm_clock

        batch, gate_ms = plan
        st = sustained.time_gated(call, n_sets, batch=batch, gate_ms=gate_ms,
                                  gate=lambda ms: sm_clock.spin(sm_clock.cycles_for(ms)), **common)
        raw["extra"].update(sustained_gated=True, sustained_gate_ms=round(gate_ms, 4), sustained_batch=batch)
    raw["extra"]["throttled_ms"] = throttled_ms(held, throttle_ns())
    raw["extra"]["timing_s"] = round(time.perf_counter() - t0, 3)
    worst = torch.zeros((), dtype=torch.float64, device=device)
    for j, out in st.last_out.items():
        o = contents[j % CONTENTS].oracle
        if o is not None:
            r = (guards.unscale_output(out, scales[j], problem.heads_q) - o.ref).abs().max() / max(o.tolerance, 1e-30)
            torch.maximum(worst, r, out=worst)
    st.last_out.clear()
    synced, wall = sustained.synced_calls(call, st.calls, 5)
    ratio = float(worst)
    enqueue_ms = sorted(enqueue)[len(enqueue) // 2] * 1e3
    method = (f"sustained-events+rotate{n_sets}" + ("" if covered else "-l2-not-covered")
              + (f"+gated{plan[0]}" if plan else ""))
    raw.update(samples_ms=st.samples_ms, timing_method=method, stop_reason=st.stop_reason, synced_ms=synced,
               wall_ms=wall, enqueue_ms=enqueue_ms, tare_ms=0.0, timed_outputs_ok=bool(ratio <= 1.0))
    raw["extra"].update(
        clocks_after=clocks(), timed_worst_err_over_tol=ratio, sustained_sets=n_sets,
        sustained_set_bytes=set_bytes, l2_bytes=l2, sustained_covers_l2=covered,
        sustained_warmup_calls=st.warmup_calls, sustained_calls=st.calls, sustained_window_ms=st.window_ms,
        sustained_batch_mean_ms=st.batch_mean_ms, sustained_lead=st.lead,
        # the host could not enqueue a call in the GPU time of one (so the cell was timed gated)
        sustained_host_bound=plan is not None, sustained_probe_ms=round(gpu_ms, 6),
        sustained_enqueue_ms=round(enqueue_med_ms, 6))
    if not ratio <= 1.0:
        raise Verdict("rejected", f"timed calls returned wrong outputs (worst error {ratio:.3g}× the tolerance) "
                                  "although untimed calls were right: results cached or skipped across calls")


def _gated_call_ms(call: Any, n_sets: int, enqueue_ms: float, n: int = 6) -> float:
    """One call's GPU time, back to back behind a hold long enough for the host to enqueue all ``n`` first
    (the first call is left out: it meets the hold's end)."""
    from harness.measure.timing import sm_clock

    torch.cuda.synchronize()
    sm_clock.spin(sm_clock.cycles_for(min(1.0 + 2.0 * n * enqueue_ms, 50.0)))
    events = []
    for i in range(n):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        call(i % n_sets)
        e.record()
        events.append((s, e))
    torch.cuda.synchronize()
    return median(s.elapsed_time(e) for s, e in events[1:])


def measure_cell(backend_name: str, problem: Problem, checks: Checks, timing: Timing, device: str,
                 cache: ProblemCache, flusher: L2Flusher | None, timing_mode: str = "isolated") -> dict[str, Any]:
    """One visit of a cell in one timing mode (``isolated`` or ``sustained``, see harness.measure.timing.sustained)."""
    raw: dict[str, Any] = {"status": "ok", "reason": "", "extra": {}, "timing_mode": timing_mode}
    try:
        _measure(raw, backend_name, problem, checks, timing, device, cache, flusher, timing_mode)
    except Verdict as v:
        raw["status"], raw["reason"] = v.status, v.reason
    except Unsupported as u:
        raw["status"], raw["reason"] = "skipped", str(u)
    except BaseException:
        cache.problem, cache.sets = None, {}  # the inputs may be half-changed: the next cell starts afresh
        raise
    # the cached inputs are shared by every backend on this problem: one that changed them (in a call, or
    # later through references it kept) is rejected, and the next backend gets fresh ones
    if any(guards.fingerprint(s.q, s.k, s.v) != s.fingerprint for s in cache.sets.values()):
        cache.problem, cache.sets = None, {}
        if raw["status"] != "rejected":
            raw["status"], raw["reason"] = "rejected", "changed the harness's input tensors during the cell"
    return raw


def _measure(raw: dict[str, Any], backend_name: str, problem: Problem, checks: Checks, timing: Timing,
             device: str, cache: ProblemCache, flusher: L2Flusher | None, timing_mode: str = "isolated") -> None:
    backend = registry.get(backend_name)
    why = backend.unavailable()
    if why:
        raise Verdict("skipped", why)
    if device not in backend.devices:
        raise Verdict("skipped", f"runs on {'/'.join(backend.devices)} only; this machine has no CUDA GPU")
    why = backend.unsupported(problem)
    if why:
        raise Verdict("skipped", why)
    out_shape = (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)
    raw["extra"]["clocks_before"] = clocks()

    # -- correctness: fresh inputs per trial and distribution ------------------------------------
    binding: tuple[float, C.Errors, C.Oracle, str] | None = None  # the trial closest to failing
    per_dist: dict[str, dict[str, float]] = {}
    sets: list[InputSet] = []
    weak: dict[str, str] = {}
    mismatches, runs = 0, 0
    for dist in checks.distributions:
        for trial in range(checks.trials):
            s = cache.get(problem, derive_seed(checks.seed, problem.key(), dist, trial), dist, device,
                          checks.correctness, checks.calibrate)
            if s.oracle is not None and s.oracle.weak:
                # this distribution cannot tell attention from a null output on this problem: it proves
                # nothing, so it is left out of the verdict (and the cell rejected if no distribution is left)
                weak[dist] = (f"null output(s) {', '.join(s.oracle.weak)} pass the tolerance "
                              f"{s.oracle.tolerance:.3g}")
                continue
            sets.append(s)
            run = backend.prepare(problem, s.q, s.k, s.v)
            guard = C.InputGuard(s.q, s.k, s.v)
            guards.poison_free_memory(out_shape, s.q.dtype, device)
            out = run()
            _sync(device)
            bad = C.output_problem(out, problem, s.q) or _unwritten(out)
            if bad:
                raise Verdict("rejected", bad)
            changed = guard.changed()
            if changed:
                raise Verdict("rejected", f"the call modified its input(s) {', '.join('qkv'[i] for i in changed)}")
            if backend.custom_kernel and "kernels_launched" not in raw["extra"]:
                from harness.tools import kernel_names
                why = kernel_names.check_custom(run, device, raw["extra"])
                if why:
                    raise Verdict("rejected", why)
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
                    raw["passed"] = False
                    raw.setdefault("fail_reason", f"{dist} inputs, trial {trial}: {C.failure_reason(err, s.oracle)}")
            # a second run over re-poisoned memory must match bit for bit: catches partial writes,
            # reads of uninitialised memory and races
            first = out.clone()
            del out
            n_runs = max(2, checks.determinism_runs) if len(sets) == 1 else 2
            for _ in range(n_runs - 1):
                guards.poison_free_memory(out_shape, s.q.dtype, device)
                again = run()
                _sync(device)
                bad = _unwritten(again)
                if bad:
                    raise Verdict("rejected", bad)
                runs += 1
                mismatches += 0 if C.bit_equal(again, first) else 1
                del again
            del first
    raw["extra"]["per_distribution"] = per_dist
    # what the backend did untimed in prepare (e.g. a JIT compile and its seconds), for the cell's record
    raw["extra"].update(getattr(backend, "cell_extra", dict)())
    if weak:
        raw["extra"]["weak_distributions"] = weak
    if not sets:
        raise Verdict("rejected", "problem too weak: " + "; ".join(f"{d} inputs: {w}" for d, w in weak.items()))
    if binding is not None:  # report the trial closest to failing, with its own tolerance
        _, err, oracle, dist = binding
        raw.update(max_abs_err=err.max_abs, mean_abs_err=err.mean_abs, rel_l2_err=err.rel_l2,
                   nan_count=sum(int(d["nan"]) for d in per_dist.values()),
                   inf_count=sum(int(d["inf"]) for d in per_dist.values()),
                   tolerance=oracle.tolerance, torch_err=oracle.torch_err, binding_distribution=dist)
        first = per_dist[sets[0].distribution]
        raw["seed_bounds_ok"] = first["max_abs"] < C.SEED_MAX_ABS and first["mean_abs"] < C.SEED_MEAN_ABS
        raw.setdefault("passed", True)
    raw.update(determinism_runs=runs + 1, determinism_mismatches=mismatches, deterministic=mismatches == 0)
    if raw.get("passed") is False:
        raise Verdict("failed", raw["fail_reason"])
    if mismatches and checks.require_deterministic:
        raise Verdict("failed", f"not bit-identical: {mismatches} of {runs} repeated runs differ from the first "
                                "(a race, a read of uninitialised memory, or a partial write)")

    # -- timing: rotate fresh contents through buffers, check every timed output -------------------
    if not timing.enabled:
        return
    contents = [s for s in sets if s.distribution == sets[0].distribution][:CONTENTS]
    t = 0
    while len(contents) < CONTENTS:
        t += 1
        contents.append(cache.get(problem, derive_seed(checks.seed, problem.key(), "timing", t), "normal",
                                  device, checks.correctness, False))
    if timing_mode == "sustained" and device == "cuda":
        _time_sustained(raw, backend, backend_name, problem, checks, timing, contents, device)
        return
    buffers = [tuple(torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=device)
                     for x in (contents[0].q, contents[0].k, contents[0].v)) for _ in range(BUFFERS)]
    runs_by_buffer = [backend.prepare(problem, *b) for b in buffers]
    worst_ratio = torch.zeros((), dtype=torch.float64, device=device)
    # fresh contents for every call: V scaled per (batch, kv head, channel) by ±1/±2 (exact), so no
    # two calls expect the same output and an answer kept from another call fails the check
    gen = torch.Generator(device=device).manual_seed(derive_seed(checks.seed, problem.key(), "timing-scales"))
    scales: dict[int, torch.Tensor] = {}

    def refresh(i: int) -> None:
        src, dst = contents[i % CONTENTS], buffers[i % BUFFERS]
        scales[i] = guards.timing_scales(problem.batch, problem.heads_kv, problem.head_dim, device, gen)
        dst[0].copy_(src.q)
        dst[1].copy_(src.k)
        guards.apply_scales(dst[2], src.v, scales[i])

    def call(i: int) -> torch.Tensor:
        with call_range(backend_name, problem.key()):
            return runs_by_buffer[i % BUFFERS]()

    def check(i: int, out: torch.Tensor) -> None:
        o, scale = contents[i % CONTENTS].oracle, scales.pop(i)
        if o is None:
            return
        ratio = (guards.unscale_output(out, scale, problem.heads_q) - o.ref).abs().max() / max(o.tolerance, 1e-30)
        torch.maximum(worst_ratio, ratio, out=worst_ratio)  # NaN propagates

    per = _visit_fraction(timing)
    sampling = Sampling(min_samples=timing.min_samples, max_noise=timing.max_noise,
                        max_samples=max(timing.min_samples, math.ceil(timing.max_samples * per)),
                        time_cap_s=timing.time_cap_s * per, min_time_s=timing.min_time_s * per)
    if device == "cuda":
        held = throttle_ns()
        t0 = time.perf_counter()
        tr = time_cuda(call, refresh, check, sampling, warmup=timing.warmup,
                       flush=flusher if timing.l2_flush else None, graph=timing.mode == "graph",
                       slots=BUFFERS, flush_mode=timing.l2_flush_mode, settle_s=timing.settle_s,
                       kernel_calls=timing.kernel_clock_calls, cool=timing.cool)
        # power/thermal throttling while the samples ran: explains a median that moved between runs
        raw["extra"]["throttled_ms"] = throttled_ms(held, throttle_ns())
        raw["extra"]["timing_s"] = round(time.perf_counter() - t0, 3)
    else:
        tr = time_cpu(call, refresh, check, sampling, warmup=timing.warmup)
    ratio = float(worst_ratio)
    raw.update(samples_ms=tr.samples_ms, timing_method=tr.method, stop_reason=tr.stop_reason,
               synced_ms=tr.synced_ms, wall_ms=tr.wall_ms, enqueue_ms=tr.enqueue_ms, tare_ms=tr.tare_ms,
               timed_outputs_ok=bool(ratio <= 1.0))
    raw["extra"]["clocks_after"] = clocks()
    raw["extra"]["timed_worst_err_over_tol"] = ratio
    raw["extra"].update(_settle_summary(tr.settle_ms))
    raw["extra"].update(_clock_summary(tr.sm_mhz, tr.hold_ms))
    if tr.sm_mhz_error:
        raw["extra"]["sm_mhz_error"] = tr.sm_mhz_error
        if tr.sm_mhz_suspect is not None:
            raw["extra"]["sm_mhz_suspect"] = round(tr.sm_mhz_suspect, 1)
    if tr.kernel is not None:
        raw["extra"].update(_kernel_summary(tr.kernel))
    if not ratio <= 1.0:
        raise Verdict("rejected", f"timed calls returned wrong outputs (worst error {ratio:.3g}× the tolerance) "
                                  "although untimed calls were right: results cached or skipped across calls")
