"""The ``sustained`` timing mode: calls back to back for a fixed stretch of GPU time, as a training step,
``triton.testing.do_bench`` and the FlashAttention benchmark scripts run them.

The ``isolated`` mode (``harness.measure.timing.timer``) meets every call with a flushed L2 and an idle hold before
it, so the GPU starts each call with power headroom; that is close to what Nsight Compute sees. Under
back-to-back load the power limiter takes the clock down and a kernel's time up (on the H200, flashcore's
isolated medians of fa-paper read 7.8% faster than do_bench at the median cell). This mode times that
state instead:

* no flush kernel and no hold between calls: the inputs rotate through buffer sets whose total size
  exceeds twice the L2 (``rotation_sets``), so each call reads inputs the previous calls evicted;
* a warm-up of ``warmup_s`` seconds of back-to-back calls, set aside, then the timed window of
  ``duration_s`` seconds (GPU time, read from the events, not the host clock);
* one event pair around every call; the host stays at most ``lead`` calls ahead of the GPU (it waits on
  the end event of an earlier call, never on the newest), so the GPU queue is never drained and never
  grows beyond a few milliseconds of work.

The estimator is the median of the per-call event times, the statistic do_bench reports with
``return_mode="median"`` (its event pair is around each call too). The quotient of the window's span by
its call count, the "events around batches" estimator, is kept beside it (``batch_mean_ms``): it is a mean
and counts the gaps between calls, which do_bench's per-call events do not.

A host slower than the GPU (a kernel of tens of µs behind a Python wrapper of more) drains the queue: each
start event then runs as soon as the host records it and waits for the host to enqueue the call, so the
per-call events hold the host's time, not the GPU's (on the H200 up to 2.7x the isolated time). Such a cell
is timed *gated* (``time_gated``): the stream is held by a spin while the host enqueues a batch of calls,
which then run back to back; the events of the batch see GPU time only. The GPU idles during the spin, as it
idled between the calls anyway: such a kernel cannot load the GPU back to back from Python.

By default (``[timing] sustained_host_bound = "graph"``) such a cell is captured once as a CUDA graph of a
batch of calls and the graph replayed back to back (``time_replayed``): the GPU then runs it without the
idle holds, under the same power limit as a cell timed back to back. A capture that fails falls back to the
gate and the row says why. Gated batches meet a lighter duty cycle (the GPU idles in the holds and keeps its
top clock): on an H100 they gave FA3 and FA4 medians up to 14 % shorter than their replayed graphs
(docs/timing.md).

The event source is injected (``new_event``, ``host_clock``) so the loop's logic runs on the CPU in tests.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

ROTATION_FACTOR = 2  # the rotated input sets add up to more than this many times the L2
MIN_SETS = 3  # at least this many (odd: coprime with the 2 distinct contents rotated through them)
MAX_SETS = 255  # tiny problems would need thousands: capped, and the row says the L2 was not covered
LEAD_MS = 5.0  # how much GPU work the host keeps queued ahead (calls, at the warm-up's call time)
MAX_LEAD = 256
MAX_CALLS = 200_000


class Event(Protocol):
    """What the loop needs of a CUDA event (``torch.cuda.Event(enable_timing=True)``)."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: Any) -> float: ...  # milliseconds from this event to ``end``


def rotation_sets(set_bytes: int, l2_bytes: int, factor: int = ROTATION_FACTOR, minimum: int = MIN_SETS,
                  cap: int = MAX_SETS) -> tuple[int, bool]:
    """How many input buffer sets to rotate through so their total exceeds ``factor`` × L2, made odd; and
    whether that total was reached (False when the cap stopped it)."""
    if set_bytes <= 0:
        raise ValueError(f"input set of {set_bytes} bytes: must be positive")
    n = max(minimum, factor * l2_bytes // set_bytes + 1)
    n += 1 - n % 2  # odd
    if n > cap:
        n = cap - (1 - cap % 2)
    return n, n * set_bytes > factor * l2_bytes


@dataclass
class SustainedRaw:
    samples_ms: list[float]  # per-call event times of the calls in the timed window
    stop_reason: str
    warmup_calls: int  # calls that started within the warm-up, set aside
    calls: int  # every call enqueued
    window_ms: float  # GPU time from the first timed call's start to the last one's end
    lead: int  # how many calls the host ran ahead of the GPU at most
    last_out: dict[int, Any] = field(default_factory=dict)  # the last output of each buffer set, to check
    calls_per_sample: int = 1  # a replayed graph's sample is the mean of this many calls

    @property
    def batch_mean_ms(self) -> float | None:
        """The window's span per call: the estimator of events around a batch of calls."""
        return self.window_ms / (len(self.samples_ms) * self.calls_per_sample) if self.samples_ms else None


def lead_for(est_call_ms: float, lead_ms: float = LEAD_MS) -> int:
    return max(2, min(MAX_LEAD, math.ceil(lead_ms / max(est_call_ms, 1e-4))))



def _enqueuer(call: Callable[[int], Any], n_sets: int, new_event: Callable[[], Event], starts: list[Event],
              ends: list[Event], last_out: dict[int, Any],
              between: Callable[[], None] | None = None) -> Callable[[int], None]:
    """Enqueue call ``i`` between two fresh events, keeping the events and the buffer set's last output;
    ``between`` (if any) is enqueued before the start event, outside the timed pair."""
    def enqueue(i: int) -> None:
        if between is not None:
            between()
        s, e = new_event(), new_event()
        s.record()
        last_out[i % n_sets] = call(i)
        e.record()
        starts.append(s)
        ends.append(e)
    return enqueue


def time_sustained(call: Callable[[int], Any], n_sets: int, *, duration_s: float, warmup_s: float,
                   min_samples: int, time_cap_s: float, est_call_ms: float, new_event: Callable[[], Event],
                   host_clock: Callable[[], float] = time.perf_counter, floor_samples: int = 3,
                   max_calls: int = MAX_CALLS, between: Callable[[], None] | None = None) -> SustainedRaw:
    """``call(i)`` runs call ``i`` on buffer set ``i % n_sets`` and returns its output.

    Stops enqueuing once the completed calls' timed window spans ``duration_s`` of GPU time with at least
    ``min_samples`` calls in it; or once ``time_cap_s`` of host time passed with ``floor_samples`` (a
    median of one call is noise); or at ``max_calls``. ``between``: GPU work enqueued before every call,
    outside its events (the sustained mode has none; ``flashcore diagnose duty-cycle`` puts do_bench's
    flush there)."""
    lead = lead_for(est_call_ms)
    starts: list[Event] = []
    ends: list[Event] = []
    last_out: dict[int, Any] = {}
    enqueue = _enqueuer(call, n_sets, new_event, starts, ends, last_out, between)
    first_timed: int | None = None  # index of the first call that started after the warm-up
    timed_done = 0  # completed calls of the window
    window_s = 0.0
    t0 = host_clock()
    stop = ""
    i = 0
    while not stop:
        if i >= lead:
            j = i - lead
            ends[j].synchronize()  # an earlier call: the GPU still has `lead` calls queued behind it
            if first_timed is None and starts[0].elapsed_time(starts[j]) * 1e-3 >= warmup_s:
                first_timed = j
            if first_timed is not None:
                timed_done = j - first_timed + 1
                window_s = starts[first_timed].elapsed_time(ends[j]) * 1e-3
            if window_s >= duration_s and timed_done >= min_samples:
                stop = f"window {duration_s:g}s"
            elif host_clock() - t0 >= time_cap_s and timed_done >= min(floor_samples, min_samples):
                stop = f"time cap {time_cap_s:g}s"
            elif i >= max_calls:
                stop = f"{max_calls} calls"
            if stop:
                break
        enqueue(i)
        i += 1
    ends[-1].synchronize()
    # every call that started after the warm-up counts, the ones still queued at the stop included: they ran
    # back to back like the rest
    if first_timed is None:
        first_timed = next((j for j in range(len(starts)) if starts[0].elapsed_time(starts[j]) * 1e-3 >= warmup_s),
                           len(starts))
    samples = [starts[j].elapsed_time(ends[j]) for j in range(first_timed, len(starts))]
    window_ms = starts[first_timed].elapsed_time(ends[-1]) if samples else 0.0
    return SustainedRaw(samples, stop, first_timed, len(starts), window_ms, lead, last_out)


def time_gated(call: Callable[[int], Any], n_sets: int, *, duration_s: float, warmup_s: float,
               min_samples: int, time_cap_s: float, batch: int, gate_ms: float, gate: Callable[[float], None],
               new_event: Callable[[], Event], host_clock: Callable[[], float] = time.perf_counter,
               floor_samples: int = 3, max_calls: int = MAX_CALLS) -> SustainedRaw:
    """The loop for a host slower than the GPU: ``gate(gate_ms)`` holds the idle stream while the host
    enqueues ``batch`` calls (``gate_ms`` must cover their enqueue), which then run back to back. The window
    is the GPU time of the timed calls (the gates left out); the warm-up is GPU time from the first call,
    gates included. Stopping as in ``time_sustained``."""
    starts: list[Event] = []
    ends: list[Event] = []
    last_out: dict[int, Any] = {}
    enqueue = _enqueuer(call, n_sets, new_event, starts, ends, last_out)
    first_timed: int | None = None
    busy_ms = 0.0  # GPU time of the completed timed calls
    counted = 0  # how many of them are in busy_ms
    t0 = host_clock()
    stop = ""
    i = 0
    while True:
        if ends:
            ends[-1].synchronize()  # the batch is done, the stream idle: the next gate starts from nothing
            if first_timed is None:
                first_timed = next((j for j in range(len(starts))
                                    if starts[0].elapsed_time(starts[j]) * 1e-3 >= warmup_s), None)
                counted = first_timed or 0
            if first_timed is not None:
                busy_ms += sum(starts[j].elapsed_time(ends[j]) for j in range(counted, len(ends)))
                counted = len(ends)
                timed_done = len(ends) - first_timed
                if busy_ms * 1e-3 >= duration_s and timed_done >= min_samples:
                    stop = f"window {duration_s:g}s"
                elif host_clock() - t0 >= time_cap_s and timed_done >= min(floor_samples, min_samples):
                    stop = f"time cap {time_cap_s:g}s"
            if not stop and i >= max_calls:
                stop = f"{max_calls} calls"
            if stop:
                break
        gate(gate_ms)
        for _ in range(batch):
            enqueue(i)
            i += 1
    first = first_timed if first_timed is not None else len(starts)
    samples = [starts[j].elapsed_time(ends[j]) for j in range(first, len(starts))]
    return SustainedRaw(samples, stop, first, len(starts), sum(samples), batch, last_out)


def time_replayed(replay: Callable[[], Any], batch: int, *, duration_s: float, warmup_s: float, min_samples: int,
                  time_cap_s: float, est_call_ms: float, new_event: Callable[[], Event],
                  host_clock: Callable[[], float] = time.perf_counter, floor_samples: int = 3,
                  max_calls: int = MAX_CALLS) -> SustainedRaw:
    """The loop for a host slower than the GPU, with the calls captured beforehand as one CUDA graph of
    ``batch`` calls: ``replay()`` enqueues them all at once, so the replays run back to back as
    ``time_sustained`` runs single calls (one event pair per replay, the host a few replays ahead). A sample
    is one replay's time over ``batch``: the mean of its calls, gaps between them included.
    ``est_call_ms``: one call's GPU time. Counts (calls, warm-up) are of calls, not replays."""
    if batch < 1:
        raise ValueError(f"batch of {batch} calls: must be >= 1")
    raw = time_sustained(lambda _i: replay(), 1, duration_s=duration_s, warmup_s=warmup_s,
                         min_samples=max(1, math.ceil(min_samples / batch)), time_cap_s=time_cap_s,
                         est_call_ms=est_call_ms * batch, new_event=new_event, host_clock=host_clock,
                         floor_samples=floor_samples, max_calls=max(1, max_calls // batch))
    return SustainedRaw([x / batch for x in raw.samples_ms], raw.stop_reason, raw.warmup_calls * batch,
                        raw.calls * batch, raw.window_ms, raw.lead * batch, calls_per_sample=batch)


def gate_plan(enqueue_ms: float, gpu_call_ms: float, lead_ms: float = LEAD_MS, margin: float = 1.5,
              host_bound_at: float = 0.8) -> tuple[int, float] | None:
    """``(batch, gate_ms)`` when the host cannot keep the GPU busy (it needs more than ``host_bound_at`` of a
    call's GPU time to enqueue one), else None: batches of about ``lead_ms`` of GPU work, behind a gate of
    ``margin`` × their enqueue time (at most 50 ms)."""
    if gpu_call_ms <= 0 or enqueue_ms <= host_bound_at * gpu_call_ms:
        return None
    batch = max(8, min(MAX_LEAD, math.ceil(lead_ms / gpu_call_ms)))
    return batch, min(margin * batch * enqueue_ms + 0.05, 50.0)


REPLAY_FLOOR = 0.5  # a replayed call faster than this share of the call's own GPU time missed the call's work


def replay_shortfall(replay_call_ms: float, gpu_call_ms: float, floor: float = REPLAY_FLOOR) -> str:
    """Why a captured batch is not the calls it was captured from, or "" when it is: a graph whose replay takes
    less than ``floor`` × one call's GPU time per call did not capture the call's GPU work (work launched on
    another stream runs once, during the capture; a call that returns a cached output captures nothing), so its
    replays would time next to nothing. Replays may beat the call alone (no launch gaps), not halve it."""
    if gpu_call_ms > 0 and replay_call_ms < floor * gpu_call_ms:
        return (f"the captured graph replays in {replay_call_ms:.4f} ms a call where the call alone takes "
                f"{gpu_call_ms:.4f} ms on the GPU: the capture missed the call's GPU work")
    return ""


def cuda_event() -> Event:
    """A timing event; ``record()`` with no stream records on the current one (the loop's event source on a
    GPU: torch's own event, nothing wrapped around it, so the host enqueues as fast as it can)."""
    import torch

    return torch.cuda.Event(enable_timing=True)


def l2_bytes(default: int = 50 << 20) -> int:
    """The device's L2 size (60 MB on an H200, 50 MB on an H100), from the driver."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return int(getattr(props, "L2_cache_size", 0)) or default


def synced_calls(call: Callable[[int], Any], first: int, n: int) -> tuple[list[float], list[float]]:
    """The escape cross-check of the isolated loop without its flush: ``n`` calls, each with a device-wide
    sync before the end event, less the host's enqueue time (ms); and the host wall clock of each."""
    from harness.measure.timing.probes import cross_check

    c = cross_check(call, first, n)
    return c.synced_ms, c.wall_ms
