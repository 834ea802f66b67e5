"""The sampling loop: one CUDA event pair around each call, on the current stream.

Per sample: refresh the inputs (so no two consecutive calls see the same pointer with the same data),
flush L2, hold the stream with a short spin kernel while the host enqueues the call (so events measure
GPU time, not Python launch time — nvbench's blocking kernel), record start, call, record end, then
check the output. Samples are read back in batches and the stopping rule decides when to end.

The samples of the first ``settle_s`` seconds are taken the same way and set aside: on an H100 a long
kernel runs 1–3% slower for the first ~100 ms of sustained load than after it (the GPU's power
management settling), and a cell that stopped inside that window reported the slow state in one run and
the fast one in the next.

The hold doubles as a clock probe (``harness.measure.timing.sm_clock``): timed by its own event pair, it gives
the SM clock just before each sample. With ``cool`` > 0 a longer spin before it idles the GPU for
``cool`` × the call's time before each call, to keep it under its power limit: back-to-back calls of a
large kernel drove an H100 into the limiter and its kernels' time up by as much as 6.7%, by an amount
that depends on what ran before. (Off by default: on the H100 it did not make two runs agree better.)

Afterwards the tare: the same flush, hold and event pair with nothing between them. An event pair costs
some microseconds of its own (1–2 µs on an H100), which is not kernel time; the supervisor subtracts the
tare from every sample (what is left estimates the GPU time of the call itself, as a profiler's kernel
duration does) and keeps the raw samples beside it.

Last, a cross-check times a few calls with a device-wide synchronize before the end event: work hidden
on another stream shows up there and not in the events. Optionally a second clock (``kernel_clock``)
sums the GPU time of the kernels of a few more calls from the profiler's activity records.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

import torch

from harness.measure.timing import kernel_clock, sm_clock
from harness.measure.timing.l2 import L2Flusher
from harness.measure.timing.stopping import Sampling

_BATCH = 8  # samples enqueued between host reads of the events
_TARE_PAIRS = 15
_CROSS_CHECKS = 5  # device-synchronised calls after the samples


@dataclass
class TimingRaw:
    samples_ms: list[float]
    method: str
    stop_reason: str
    synced_ms: list[float] = field(default_factory=list)  # start → call → device sync → end, less enqueue
    wall_ms: list[float] = field(default_factory=list)  # host clock around call + device sync
    enqueue_ms: float = 0.0  # host time to enqueue one call
    tare_ms: float = 0.0  # median of empty event pairs, measured the way the samples were
    settle_ms: list[float] = field(default_factory=list)  # samples of the settling window, set aside
    kernel: kernel_clock.KernelClock | None = None  # the profiler's kernel time of a few calls
    sm_mhz: list[float] = field(default_factory=list)  # effective SM clock before each sample
    hold_ms: float = 0.0  # GPU idle before each call: the hold, and the cooling gap if any
    sm_mhz_error: str = ""  # why sm_mhz is empty although the clock was probed
    sm_mhz_suspect: float | None = None  # then the median reading all the same (kept, not used as a clock)


def _hold(ms: float) -> None:
    sm_clock.spin(sm_clock.cycles_for(ms))


def empty_pair_ms(n: int, hold_ms: float, flush: L2Flusher | None = None, flush_mode: str = "read") -> float:
    """Median of ``n`` event pairs with nothing between them on the current stream, each after the same
    flush and hold as a sample (the hold queues both events before the GPU reaches them): the tare."""
    stream = torch.cuda.current_stream()
    pairs = []
    for _ in range(n):
        if flush is not None:
            flush(flush_mode)
        _hold(hold_ms)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        end.record(stream)
        pairs.append((start, end))
    torch.cuda.synchronize()
    return median(s.elapsed_time(e) for s, e in pairs)


def time_cuda(call: Callable[[int], torch.Tensor], refresh: Callable[[int], None],
              check: Callable[[int, torch.Tensor], None], sampling: Sampling, *, warmup: int = 3,
              flush: L2Flusher | None = None, graph: bool = False, slots: int = 1,
              flush_mode: str = "read", settle_s: float = 0.0, kernel_calls: int = 0,
              cool: float = 0.0) -> TimingRaw:
    """``call(i)`` runs sample ``i`` on input buffer set ``i % slots`` (filled by ``refresh(i)``) and
    returns its output; ``check(i, out)`` enqueues the correctness check of that output (untimed).
    ``kernel_calls`` > 0 also measures that many calls with the kernel clock; ``cool`` > 0 idles the GPU
    for that multiple of the call's time before each call."""
    stream = torch.cuda.current_stream()
    graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def run(i: int) -> torch.Tensor:
        if not graph:
            return call(i)
        g, out = graphs[i % slots]
        g.replay()
        return out

    # warm-up, and how long the host takes to enqueue one call
    enqueue, whole = [], []
    for i in range(max(1, warmup)):
        refresh(i)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = call(i)
        enqueue.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        whole.append(time.perf_counter() - t0)
        check(i, out)
    torch.cuda.synchronize()
    enqueue_ms = sorted(enqueue)[len(enqueue) // 2] * 1e3
    # read the events back often enough that the time cap is honoured for slow calls
    batch = max(1, min(_BATCH, int(0.02 / max(min(whole), 1e-6))))
    hold_ms = min(2.0 * enqueue_ms + 0.02, 50.0)  # enough to queue the call behind it
    cool_ms = max(0.0, min(cool * min(whole) * 1e3, 200.0) - hold_ms)  # more idle before the hold
    hold_cycles, cool_cycles = sm_clock.cycles_for(hold_ms), sm_clock.cycles_for(cool_ms)
    method = "cuda-events"
    if graph:
        method = "cuda-graph"
    if flush is not None:
        method += "+l2flush" if flush_mode == "write" else f"+l2flush-{flush_mode}"
    method += "+hold"
    if settle_s > 0:
        method += "+settle"
    if cool > 0:
        method += f"+cool{cool:g}"

    def ready(k: int) -> torch.cuda.Event:
        """What precedes every timed call: fresh inputs, (graph capture, once per buffer set), flush, the
        cooling gap, the hold. Returns an event recorded as the hold starts (its timing gives the clock)."""
        refresh(k)
        if graph and k % slots not in graphs:  # one graph per input buffer set, captured untimed
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out_static = call(k)
            graphs[k % slots] = (g, out_static)
        if flush is not None:
            flush(flush_mode)
        sm_clock.spin(cool_cycles)
        held = torch.cuda.Event(enable_timing=True)  # the clock probe: the short hold alone
        held.record(stream)
        sm_clock.spin(hold_cycles)
        return held

    samples: list[float] = []
    settle: list[float] = []
    holds: list[float] = []  # of the kept samples
    pending: list[tuple[torch.cuda.Event, torch.cuda.Event, torch.cuda.Event, bool]] = []
    t_settled = time.perf_counter() + settle_s
    stop = None
    i = 0
    while stop is None:
        held = ready(i)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        out = run(i)
        end.record(stream)
        check(i, out)
        pending.append((held, start, end, time.perf_counter() < t_settled))
        i += 1
        if len(pending) >= batch:
            end.synchronize()
            for h, s, e, settling in pending:
                if settling:
                    settle.append(s.elapsed_time(e))
                else:
                    samples.append(s.elapsed_time(e))
                    holds.append(h.elapsed_time(s))
            pending.clear()
            if samples:
                stop = sampling.stop_reason(samples, time.perf_counter() - t_settled)
    torch.cuda.synchronize()

    tare_ms = empty_pair_ms(_TARE_PAIRS, hold_ms, flush, flush_mode)
    method += "-tare"
    cal = sm_clock.calibrate(hold_cycles)
    mhz = [m for m in (sm_clock.effective_mhz(hold_cycles, h, cal) for h in holds) if m] if cal else []
    clock_error = sm_clock.implausible(mhz)
    suspect = median(mhz) if clock_error else None
    if clock_error:
        mhz = []

    # cross-check: a device-wide sync before the end event brackets work on every stream. No hold here
    # (work on another stream would run during it, before the start event); instead the host's own
    # enqueue time, during which the GPU may idle inside the events, is subtracted. A call that hides
    # its work elsewhere enqueues quickly, so its hidden work stays in the number.
    synced, wall = [], []
    for j in range(_CROSS_CHECKS):
        refresh(i + j)
        if flush is not None:
            flush(flush_mode)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record(stream)
        out = run(i + j)
        t_enqueue = (time.perf_counter() - t0) * 1e3
        torch.cuda.synchronize()
        wall.append((time.perf_counter() - t0) * 1e3)
        end.record(stream)
        end.synchronize()
        synced.append(max(0.0, start.elapsed_time(end) - t_enqueue))
        check(i + j, out)
    torch.cuda.synchronize()
    i += _CROSS_CHECKS

    kernel = kernel_clock.measure(run, ready, check, i, kernel_calls) if kernel_calls > 0 else None
    return TimingRaw(samples, method, stop, synced, wall, enqueue_ms, tare_ms, settle, kernel, mhz,
                     hold_ms + cool_ms, clock_error or "", suspect)


def time_cpu(call: Callable[[int], torch.Tensor], refresh: Callable[[int], None],
             check: Callable[[int, torch.Tensor], None], sampling: Sampling, *, warmup: int = 1) -> TimingRaw:
    """Host wall clock, for the CPU path (no GPU here): numbers are for smoke-testing, not comparison."""
    for i in range(max(1, warmup)):
        refresh(i)
        check(i, call(i))
    samples: list[float] = []
    t_start = time.perf_counter()
    stop = None
    i = 0
    while stop is None:
        refresh(i)
        t0 = time.perf_counter()
        out = call(i)
        samples.append((time.perf_counter() - t0) * 1e3)
        check(i, out)
        i += 1
        stop = sampling.stop_reason(samples, time.perf_counter() - t_start)
    return TimingRaw(samples, "cpu-wallclock", stop, list(samples[-5:]), list(samples[-5:]), 0.0)
