"""The timed stage: fresh contents rotated through buffers, every timed output checked, in the cell's
timing mode (``isolated``: ``harness.measure.timing.timer``; ``sustained``: ``harness.measure.timing.sustained``).
What a call of the problem's operation takes, and how each gets fresh contents, is ``work``'s.
A backward operation is timed with CUDA events (``[timing] mode = "graph"`` applies to the forward):
autograd's backward is not captured into a CUDA graph here."""
from __future__ import annotations

import math
import time
from dataclasses import replace
from statistics import median
from typing import Any

import torch

from harness.measure.environment import clocks, throttle_ns, throttled_ms
from harness.measure.nvtx_ranges import call_range
from harness.measure.problem_cache import InputSet, derive_seed
from harness.measure.stages.base import CellContext
from harness.measure.stages.work import work_for
from harness.measure.timing import sustained
from harness.measure.timing.stopping import DEFAULT_STOP, Sampling
from harness.measure.timing.timer import Isolated, time_cpu, time_cuda
from harness.records.observations import (
    Ending,
    NvmlClocks,
    SustainedDetails,
    SustainedGate,
    TimingObservation,
)

CONTENTS = 2  # distinct input sets rotated through timing
BUFFERS = 3  # buffers they are copied into (coprime with CONTENTS: a pointer never keeps its data)


def _wrong_outputs(ratio: float) -> Ending | None:
    if ratio <= 1.0:
        return None
    return Ending(status="rejected", reason=f"timed calls returned wrong outputs (worst error {ratio:.3g}× the "
                  "tolerance) although untimed calls were right: results cached or skipped across calls")


def visit_fraction(rounds: int) -> float:
    """With ``rounds`` = R each visit samples 1/R of the sampled time (and of the cap and sample count),
    so a backend's pooled samples add up to what one visit without rounds would take."""
    return 1.0 / max(1, rounds)


def sampling_for(timing: Any) -> Sampling:
    per = visit_fraction(timing.rounds)
    return Sampling(min_samples=timing.min_samples, max_noise=timing.max_noise,
                    max_samples=max(timing.min_samples, math.ceil(timing.max_samples * per)),
                    time_cap_s=timing.time_cap_s * per, min_time_s=timing.min_time_s * per,
                    # the suite may name the noise criteria (``[timing] stop``); older suites have no key
                    stop=getattr(timing, "stop", DEFAULT_STOP) or DEFAULT_STOP)


def _contents(ctx: CellContext) -> list[InputSet]:
    """The input sets the timed calls rotate through: the checked ones of the first distribution, and
    fresh ``normal`` ones up to CONTENTS."""
    sets = ctx.sets
    contents = [s for s in sets if s.distribution == sets[0].distribution][:CONTENTS]
    t = 0
    while len(contents) < CONTENTS:
        t += 1
        contents.append(ctx.cache.get(ctx.problem, derive_seed(ctx.checks.seed, ctx.problem.inputs_key(), "timing", t),
                                      "normal", ctx.device, ctx.checks.correctness, False))
    return contents


class TimingStage:
    name = "timing"
    timed = True

    def run(self, ctx: CellContext) -> TimingObservation:
        contents = _contents(ctx)
        if ctx.timing_mode == "sustained" and ctx.device == "cuda":
            return _time_sustained(ctx, contents)
        return _time_isolated(ctx, contents)


def _time_isolated(ctx: CellContext, contents: list[InputSet]) -> TimingObservation:
    problem, device, timing = ctx.problem, ctx.device, ctx.timing
    if problem.op != "fwd" and timing.mode == "graph":
        timing = replace(timing, mode="events")
    work = work_for(ctx)
    buffers = [work.buffer(contents[j % CONTENTS]) for j in range(BUFFERS)]
    runs_by_buffer = [work.prepare(b) for b in buffers]
    worst_ratio = torch.zeros((), dtype=torch.float64, device=device)
    # fresh contents for every call (harness.measure.stages.work): no two calls expect the same output,
    # so an answer kept from another call fails the check
    gen = torch.Generator(device=device).manual_seed(derive_seed(ctx.checks.seed, problem.key(), "timing-scales"))
    scales: dict[int, Any] = {}

    def refresh(i: int) -> None:
        scales[i] = work.fill(buffers[i % BUFFERS], work.source(i, contents, BUFFERS), gen)

    def call(i: int) -> Any:
        with call_range(ctx.backend_name, problem.key()):
            return runs_by_buffer[i % BUFFERS]()

    def check(i: int, out: Any) -> None:
        ratio = work.ratio(out, work.source(i, contents, BUFFERS), scales.pop(i))
        if ratio is not None:
            torch.maximum(worst_ratio, ratio, out=worst_ratio)  # NaN propagates

    sampling = sampling_for(timing)
    throttled: dict[str, float] | None = None
    timing_s: float | None = None
    if device == "cuda":
        held = throttle_ns()
        t0 = time.perf_counter()
        tr = time_cuda(call, refresh, check, sampling, Isolated.from_timing(timing, ctx.flusher, BUFFERS))
        # power/thermal throttling while the samples ran: explains a median that moved between runs
        throttled = throttled_ms(held, throttle_ns())
        timing_s = time.perf_counter() - t0
    else:
        tr = time_cpu(call, refresh, check, sampling, warmup=timing.warmup)
    ratio = float(worst_ratio)
    return TimingObservation(samples_ms=tr.sampled.samples_ms, method=tr.method, stop_reason=tr.sampled.stop_reason,
                             synced_ms=tr.cross.synced_ms, wall_ms=tr.cross.wall_ms, enqueue_ms=tr.warmup.enqueue_ms,
                             tare_ms=tr.tare.ms, worst_err_over_tol=ratio, throttled_ms=throttled, timing_s=timing_s,
                             clocks_after=NvmlClocks.of(clocks()), settle=tr.settle, clock=tr.clock,
                             kernel_clock=tr.kernel, ending=_wrong_outputs(ratio))


def _time_sustained(ctx: CellContext, contents: list[InputSet]) -> TimingObservation:
    """The sustained mode: input sets filled once (distinct V scales per set), then calls back to back with
    no flush and no hold, rotating through sets that add up to more than 2x the L2; the last output of
    every set is checked afterwards."""
    problem, device, timing = ctx.problem, ctx.device, ctx.timing
    work = work_for(ctx)
    set_bytes = work.set_bytes(contents[0])
    l2 = sustained.l2_bytes()
    n_sets, covered = sustained.rotation_sets(set_bytes, l2)
    gen = torch.Generator(device=device).manual_seed(derive_seed(ctx.checks.seed, problem.key(), "sustained-scales"))
    sets, scales = [], []
    for j in range(n_sets):
        src = contents[j % CONTENTS]
        b = work.buffer(src)
        scales.append(work.fill(b, src, gen))
        sets.append(b)
    runs = [work.prepare(b) for b in sets]

    def call(i: int) -> Any:
        with call_range(ctx.backend_name, problem.key()):
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
    per = visit_fraction(timing.rounds)
    enqueue_med_ms = sorted(enqueue)[len(enqueue) // 2] * 1e3
    gpu_ms = _gated_call_ms(call, n_sets, enqueue_med_ms)
    plan = sustained.gate_plan(enqueue_med_ms, gpu_ms)
    graph: tuple[Any, list[Any]] | None = None  # a host-bound cell's batch as a CUDA graph: replay, outputs
    graph_error = ""
    if plan is not None and timing.sustained_host_bound == "graph":  # captured before the timing: set-up
        try:
            graph = _capture_batch(call, n_sets, plan[0], gpu_ms)
        except Exception as exc:  # noqa: BLE001 - any capture failure: timed gated instead, and the row says why
            first = str(exc).strip().splitlines()[:1]
            graph_error = f"{type(exc).__name__}: {first[0][:200] if first else ''}"
    graph_batch = plan[0] if graph is not None else None
    held = throttle_ns()
    t0 = time.perf_counter()
    common = dict(duration_s=timing.sustained_s * per, warmup_s=timing.sustained_warmup_s,
                  min_samples=timing.min_samples, time_cap_s=timing.sustained_warmup_s + timing.time_cap_s * per,
                  new_event=sustained.cuda_event)
    if plan is None:
        st = sustained.time_sustained(call, n_sets, est_call_ms=min(whole) * 1e3, **common)
    elif graph is not None:  # the host cannot keep up: the batch replayed back to back
        replay, outs = graph
        st = sustained.time_replayed(replay, plan[0], est_call_ms=gpu_ms, **common)
        st.last_out = {j % n_sets: out for j, out in enumerate(outs)}  # each set's last call in the batch
    else:  # the host cannot keep up: batches behind a gate, so the events see GPU time only
        from harness.measure.timing import sm_clock

        batch, gate_ms = plan
        st = sustained.time_gated(call, n_sets, batch=batch, gate_ms=gate_ms,
                                  gate=lambda ms: sm_clock.spin(sm_clock.cycles_for(ms)), **common)
    throttled = throttled_ms(held, throttle_ns())
    timing_s = time.perf_counter() - t0
    worst = torch.zeros((), dtype=torch.float64, device=device)
    for j, out in st.last_out.items():
        r = work.ratio(out, contents[j % CONTENTS], scales[j])
        if r is not None:
            torch.maximum(worst, r, out=worst)
    st.last_out.clear()
    synced, wall = sustained.synced_calls(call, st.calls, 5)
    ratio = float(worst)
    method = (f"sustained-events+rotate{n_sets}" + ("" if covered else "-l2-not-covered")
              + (f"+graph{graph_batch}" if graph_batch else f"+gated{plan[0]}" if plan else ""))
    details = SustainedDetails(
        sets=n_sets, set_bytes=set_bytes, l2_bytes=l2, covers_l2=covered, warmup_calls=st.warmup_calls,
        calls=st.calls, window_ms=st.window_ms, batch_mean_ms=st.batch_mean_ms, lead=st.lead, probe_ms=gpu_ms,
        # the host could not enqueue a call in the GPU time of one (so the cell was timed gated)
        gate=SustainedGate(batch=plan[0], gate_ms=plan[1]) if plan is not None and graph_batch is None else None,
        graph_batch=graph_batch, graph_error=graph_error)
    return TimingObservation(samples_ms=st.samples_ms, method=method, stop_reason=st.stop_reason, synced_ms=synced,
                             wall_ms=wall, enqueue_ms=enqueue_med_ms, tare_ms=0.0, worst_err_over_tol=ratio,
                             throttled_ms=throttled, timing_s=timing_s, clocks_after=NvmlClocks.of(clocks()),
                             sustained=details, ending=_wrong_outputs(ratio))


def _capture_batch(call: Any, n_sets: int, batch: int, gpu_call_ms: float) -> tuple[Any, list[Any]]:
    """``batch`` calls (in rotation over the sets) captured as one CUDA graph, after three calls on a side
    stream as torch asks before a capture; returns the graph's replay and the captured calls' outputs (they
    hold the last replay's results). Raises when one replay shows the capture missed the calls' GPU work
    (``sustained.replay_shortfall``: measured against ``gpu_call_ms``, one call's GPU time)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(3):
            call(i % n_sets)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [call(i) for i in range(batch)]
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize()
    if why := sustained.replay_shortfall(start.elapsed_time(end) / batch, gpu_call_ms):
        raise RuntimeError(why)
    return graph.replay, outs


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
