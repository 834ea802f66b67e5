"""Regression benchmarks: a representative set of (backend, problem) cells timed with pytest-benchmark.

What is timed, and how:
  * the backend's prepared call (``registry.get(name).prepare(problem, q, k, v)``, inputs from
    ``harness.measure.inputs.make_inputs``), back to back on the same inputs with warm L2: this is a regression
    signal, not the harness's cold-cache measurement (``flashcore run`` is that);
  * one round = ``iterations`` calls between two reads of ``cuda_sync_timer`` (synchronize, then the host
    clock), with ``iterations`` chosen so that a round lasts at least ``FLASHCORE_BENCH_ROUND_MS`` (2 ms)
    and is a multiple of 10 (so the slowdown test hook adds exactly its fraction to every round);
  * ``extra_info``: backend, problem, FLOPs, TFLOPS from the median, and the CUDA-event time per call of
    the same loop (events cannot be gated by pytest-benchmark, so they ride along for the record).

A backend that is not registered, unavailable here, or refuses the problem is SKIPPED with the reason;
the gate (harness/analysis/regress.py) fails when a cell measured in the baseline is missing now.

Environment: FLASHCORE_BENCH_BACKENDS (comma list), FLASHCORE_BENCH_SHAPES (fa-paper shapes as
seqlen:head_dim:full|causal, default 1024:64:full,2048:128:causal,4096:128:full), FLASHCORE_BENCH_ROUNDS
(30), FLASHCORE_BENCH_ROUND_MS (2.0), FLASHCORE_BENCH_DEVICE=cpu (a tiny CPU set for exercising the
pipeline only), FLASHCORE_SLOWDOWN (test hook, see harness/analysis/regress.py).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from statistics import median
from typing import Any

import pytest

from harness.analysis.regress import Slowed, cuda_sync_timer, parse_slowdown
from harness.spec.problem import Problem

GPU_BACKENDS = ("sdpa-flash", "sdpa-cudnn", "flex", "fa4", "flashcore-phase4x", "flashcore-bleeding-edge")
CPU_BACKENDS = ("sdpa-math", "naive")
DEVICE = "cpu" if os.environ.get("FLASHCORE_BENCH_DEVICE", "").lower() == "cpu" else "cuda"
ROUNDS = int(os.environ.get("FLASHCORE_BENCH_ROUNDS", "30"))
ROUND_MS = float(os.environ.get("FLASHCORE_BENCH_ROUND_MS", "2.0"))
#: fa-paper shapes as seqlen:head_dim:full|causal
SHAPES = os.environ.get("FLASHCORE_BENCH_SHAPES", "1024:64:full,2048:128:causal,4096:128:full")
ITER_QUANTUM = 10  # iterations per round are a multiple of this
SEED = 20260601


def fa_paper(seqlen: int, head_dim: int, causal: bool) -> Problem:
    """A shape of the fa-paper suite: 16k tokens (batch = 16384 / seqlen), hidden 2048, bfloat16."""
    return Problem(batch=16384 // seqlen, heads_q=2048 // head_dim, seqlen_q=seqlen, head_dim=head_dim,
                   dtype="bfloat16", causal=causal)


if DEVICE == "cpu":
    import torch

    torch.set_num_threads(1)  # a shared CPU's thread scheduling is most of its noise
    PROBLEMS = [Problem(batch=1, heads_q=4, seqlen_q=256, head_dim=64, dtype="float32")]
    DEFAULT_BACKENDS: tuple[str, ...] = CPU_BACKENDS
else:
    PROBLEMS = [fa_paper(int(s), int(d), c == "causal") for s, d, c in
                (spec.strip().split(":") for spec in SHAPES.split(",") if spec.strip())]
    DEFAULT_BACKENDS = GPU_BACKENDS
BACKENDS = [b.strip() for b in os.environ.get("FLASHCORE_BENCH_BACKENDS", "").split(",") if b.strip()] \
    or list(DEFAULT_BACKENDS)
CELLS = [(b, p) for p in PROBLEMS for b in BACKENDS]

pytestmark = pytest.mark.benchmark(timer=cuda_sync_timer, disable_gc=True)


def _sync() -> None:
    if DEVICE == "cuda":
        import torch

        torch.cuda.synchronize()


def _time_per_call_ms(fn: Callable[[], Any], calls: int, reps: int) -> float:
    """Median over ``reps`` loops of ``calls`` back-to-back calls: CUDA events on the GPU, host clock on
    the CPU."""
    import torch

    times = []
    for _ in range(reps):
        if DEVICE == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / calls)
    return median(times)


def _prepare(backend: str, problem: Problem) -> Callable[[], Any]:
    """The backend's timed callable, or pytest.skip with the reason it cannot run here."""
    import torch

    from harness.backends import registry
    from harness.backends.base import Unsupported
    from harness.measure.inputs import make_inputs

    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch (FLASHCORE_BENCH_DEVICE=cpu runs a tiny CPU set)")
    try:
        b = registry.get(backend)
    except registry.UnknownBackendError as exc:
        why = registry.load_errors()
        pytest.skip(f"{exc}" + (f" (load errors: {why})" if why else ""))
    reason = b.unavailable() or (None if DEVICE in b.devices else f"runs on {'/'.join(b.devices)} only") \
        or b.unsupported(problem)
    if reason:
        pytest.skip(reason)
    q, k, v = make_inputs(problem, SEED, "normal", DEVICE)
    try:
        run = b.prepare(problem, q, k, v)
    except Unsupported as exc:
        pytest.skip(str(exc))
    out = run()
    _sync()
    want = (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)
    if tuple(out.shape) != want or not bool(torch.isfinite(out).all()):
        pytest.fail(f"{backend} returned shape {tuple(out.shape)} (want {want}) or non-finite values: "
                    "not benchmarking a broken call")
    return run


@pytest.mark.parametrize(("backend", "problem"), CELLS, ids=[f"{b}-{p.key()}" for b, p in CELLS])
def test_attention(benchmark, backend: str, problem: Problem) -> None:
    run = _prepare(backend, problem)
    factor = parse_slowdown().get(backend, 1.0)
    target = Slowed(run, factor) if factor != 1.0 else run
    for _ in range(3):  # warm-up: caches, clocks, lazy initialisation
        run()
    _sync()
    per_call = _time_per_call_ms(run, 3, 3)
    iters = max(1, math.ceil(ROUND_MS / max(per_call, 1e-6)))
    iters = ITER_QUANTUM * math.ceil(iters / ITER_QUANTUM)

    benchmark.group = problem.key()
    benchmark.extra_info.update(backend=backend, problem_key=problem.key(), problem=problem.as_dict(),
                                flops=problem.flops(), device=DEVICE, slowdown=factor,
                                timer="harness.analysis.regress.cuda_sync_timer", l2="warm (no flush)")
    benchmark.pedantic(target, rounds=ROUNDS, iterations=iters, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable
        return
    med_s = benchmark.stats.stats.median
    event_ms = _time_per_call_ms(target, iters, 5)
    on_gpu = DEVICE == "cuda" and event_ms > 0
    benchmark.extra_info.update(
        iterations=iters, rounds=ROUNDS, median_ms=med_s * 1e3,
        tflops=problem.flops() / med_s / 1e12 if med_s > 0 else None,
        cuda_event_ms=event_ms if on_gpu else None,
        cuda_event_tflops=problem.flops() / (event_ms * 1e-3) / 1e12 if on_gpu else None)
