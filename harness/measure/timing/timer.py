"""The isolated timing mode: one CUDA event pair around each call, on the current stream.

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

Here the mode is composed: the warm-up, the sample's set-up (refresh, graph capture, flush, cooling,
hold), the loop (``harness.measure.timing.loop``) and the probes (``harness.measure.timing.probes``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.measure.observation import Observation
from harness.measure.timing import kernel_clock, sm_clock
from harness.measure.timing.l2 import L2Flusher
from harness.measure.timing.loop import BATCH, Marks, Sampled, SamplingLoop
from harness.measure.timing.probes import CrossCheck, Tare, clock_reading, cross_check, tare
from harness.measure.timing.stopping import Sampling
from harness.records.observations import KernelTime, SettleWindow, SmClockReading

_TARE_PAIRS = 15
_CROSS_CHECKS = 5  # device-synchronised calls after the samples


class WarmUp(Observation):
    enqueue_ms: float  # host time to enqueue one call (median)
    fastest_ms: float  # the fastest call with its device sync, host clock


def warm_up(call: Callable[[int], torch.Tensor], refresh: Callable[[int], None],
            check: Callable[[int, torch.Tensor], None], n: int, *, sync: Callable[[], None] | None = None,
            clock: Callable[[], float] | None = None) -> WarmUp:
    """``n`` (at least one) calls with a sync after each: compilation and autotuning stay out of the
    samples, and the call's time sets the batch, the hold and the cooling gap."""
    sync = sync or torch.cuda.synchronize  # looked up at the call, as every other use of it
    clock = clock or time.perf_counter
    enqueue, whole = [], []
    for i in range(max(1, n)):
        refresh(i)
        sync()
        t0 = clock()
        out = call(i)
        enqueue.append(clock() - t0)
        sync()
        whole.append(clock() - t0)
        check(i, out)
    sync()
    return WarmUp(enqueue_ms=sorted(enqueue)[len(enqueue) // 2] * 1e3, fastest_ms=min(whole) * 1e3)


@dataclass(frozen=True)
class Isolated:
    """What the isolated mode does around each call (a suite's ``[timing]``, see ``from_timing``)."""

    warmup: int = 3
    flush: L2Flusher | None = None
    graph: bool = False
    slots: int = 1  # input buffer sets the calls rotate through (one graph each)
    flush_mode: str = "read"
    settle_s: float = 0.0
    kernel_calls: int = 0  # > 0: also measure that many calls with the kernel clock
    cool: float = 0.0  # > 0: idle the GPU for that multiple of the call's time before each call

    @classmethod
    def from_timing(cls, timing: object, flusher: L2Flusher | None, slots: int) -> Isolated:
        t = timing
        return cls(warmup=t.warmup, flush=flusher if t.l2_flush else None, graph=t.mode == "graph", slots=slots,
                   flush_mode=t.l2_flush_mode, settle_s=t.settle_s, kernel_calls=t.kernel_clock_calls, cool=t.cool)

    def method(self) -> str:
        m = "cuda-graph" if self.graph else "cuda-events"
        if self.flush is not None:
            m += "+l2flush" if self.flush_mode == "write" else f"+l2flush-{self.flush_mode}"
        m += "+hold"
        if self.settle_s > 0:
            m += "+settle"
        if self.cool > 0:
            m += f"+cool{self.cool:g}"
        return m + "-tare"


class Timed(Observation):
    """Everything one timing of a cell observed, probe by probe."""

    method: str
    warmup: WarmUp
    sampled: Sampled
    tare: Tare
    clock: SmClockReading
    cross: CrossCheck
    kernel: KernelTime | None = None

    @property
    def settle(self) -> SettleWindow:
        return SettleWindow(samples_ms=self.sampled.settle_ms)


def time_cuda(call: Callable[[int], torch.Tensor], refresh: Callable[[int], None],
              check: Callable[[int, torch.Tensor], None], sampling: Sampling, opt: Isolated) -> Timed:
    """``call(i)`` runs sample ``i`` on input buffer set ``i % opt.slots`` (filled by ``refresh(i)``) and
    returns its output; ``check(i, out)`` enqueues the correctness check of that output (untimed)."""
    stream = torch.cuda.current_stream()
    graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def run(i: int) -> torch.Tensor:
        if not opt.graph:
            return call(i)
        g, out = graphs[i % opt.slots]
        g.replay()
        return out

    w = warm_up(call, refresh, check, opt.warmup)
    # read the events back often enough that the time cap is honoured for slow calls
    batch = max(1, min(BATCH, int(20.0 / max(w.fastest_ms, 1e-3))))
    hold_ms = min(2.0 * w.enqueue_ms + 0.02, 50.0)  # enough to queue the call behind it
    cool_ms = max(0.0, min(opt.cool * w.fastest_ms, 200.0) - hold_ms)  # more idle before the hold
    hold_cycles, cool_cycles = sm_clock.cycles_for(hold_ms), sm_clock.cycles_for(cool_ms)

    def ready(k: int, held: torch.cuda.Event | None = None) -> torch.cuda.Event:
        """What precedes every timed call: fresh inputs, (graph capture, once per buffer set), flush, the
        cooling gap, the hold. Records ``held`` as the hold starts (its timing gives the clock)."""
        refresh(k)
        if opt.graph and k % opt.slots not in graphs:  # one graph per input buffer set, captured untimed
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out_static = call(k)
            graphs[k % opt.slots] = (g, out_static)
        if opt.flush is not None:
            opt.flush(opt.flush_mode)
        sm_clock.spin(cool_cycles)
        held = held or torch.cuda.Event(enable_timing=True)  # the clock probe: the short hold alone
        held.record(stream)
        sm_clock.spin(hold_cycles)
        return held

    def sample(i: int, m: Marks) -> None:
        ready(i, m.held)
        m.start.record(stream)
        out = run(i)
        m.end.record(stream)
        check(i, out)

    loop = SamplingLoop(sampling, new_event=lambda: torch.cuda.Event(enable_timing=True), batch=batch,
                        settle_s=opt.settle_s)
    sampled = loop.run(sample)
    torch.cuda.synchronize()

    tared = tare(_TARE_PAIRS, hold_ms, opt.flush, opt.flush_mode)
    clock = clock_reading(hold_cycles, sampled.holds_ms, hold_ms + cool_ms, sm_clock.calibrate(hold_cycles))

    def before_cross(j: int) -> None:
        refresh(j)
        if opt.flush is not None:
            opt.flush(opt.flush_mode)

    i = sampled.calls
    cross = cross_check(run, i, _CROSS_CHECKS, before=before_cross, after=check)
    i += _CROSS_CHECKS
    kernel = (KernelTime.of(kernel_clock.measure(run, ready, check, i, opt.kernel_calls))
              if opt.kernel_calls > 0 else None)
    return Timed(method=opt.method(), warmup=w, sampled=sampled, tare=tared, clock=clock, cross=cross, kernel=kernel)


class _HostEvent:
    """An event that reads the host clock: the loop's event source on the CPU path."""

    def __init__(self) -> None:
        self.t = 0.0

    def record(self, stream: object = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _HostEvent) -> float:
        return (end.t - self.t) * 1e3


def time_cpu(call: Callable[[int], torch.Tensor], refresh: Callable[[int], None],
             check: Callable[[int, torch.Tensor], None], sampling: Sampling, *, warmup: int = 1) -> Timed:
    """Host wall clock, for the CPU path (no GPU here): numbers are for smoke-testing, not comparison."""
    for i in range(max(1, warmup)):
        refresh(i)
        check(i, call(i))

    def sample(i: int, m: Marks) -> None:
        refresh(i)
        m.held.record()
        m.start.record()
        out = call(i)
        m.end.record()
        check(i, out)

    sampled = SamplingLoop(sampling, new_event=_HostEvent, batch=1).run(sample)
    last = list(sampled.samples_ms[-5:])
    return Timed(method="cpu-wallclock", warmup=WarmUp(enqueue_ms=0.0, fastest_ms=0.0), sampled=sampled,
                 tare=Tare(ms=0.0), clock=SmClockReading(mhz=[], hold_ms=0.0),
                 cross=CrossCheck(synced_ms=last, wall_ms=last))
