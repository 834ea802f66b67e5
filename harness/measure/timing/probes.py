"""The isolated mode's probes beside the samples, each a small unit returning a typed observation:
the tare (empty event pairs), the SM clock read from the holds and the cross-check (device-synchronised
calls). The observations the worker returns (the settling window, the clock reading, the kernel clock)
are defined torch-free in ``harness.records.observations``."""
from __future__ import annotations

import time
from collections.abc import Callable
from statistics import median
from typing import Any

from harness.measure.observation import Observation
from harness.measure.timing import sm_clock
from harness.measure.timing.loop import Event
from harness.records.observations import SmClockReading


def _cuda_event() -> Event:
    import torch

    return torch.cuda.Event(enable_timing=True)


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


class Tare(Observation):
    ms: float = 0.0  # median of empty event pairs, measured the way the samples were


def empty_pair_ms(n: int, hold_ms: float, flush: Callable[[str], None] | None = None, flush_mode: str = "read",
                  *, new_event: Callable[[], Event] = _cuda_event, sync: Callable[[], None] = _cuda_sync,
                  hold: Callable[[float], None] | None = None) -> float:
    """Median of ``n`` event pairs with nothing between them on the current stream, each after the same
    flush and hold as a sample (the hold queues both events before the GPU reaches them)."""
    hold = hold or (lambda ms: sm_clock.spin(sm_clock.cycles_for(ms)))
    pairs = []
    for _ in range(n):
        if flush is not None:
            flush(flush_mode)
        hold(hold_ms)
        start, end = new_event(), new_event()
        start.record()
        end.record()
        pairs.append((start, end))
    sync()
    return median(s.elapsed_time(e) for s, e in pairs)


def tare(n: int, hold_ms: float, flush: Callable[[str], None] | None = None, flush_mode: str = "read",
         **inject: Any) -> Tare:
    return Tare(ms=empty_pair_ms(n, hold_ms, flush, flush_mode, **inject))


def clock_reading(hold_cycles: int, holds_ms: list[float], hold_ms: float,
                  cal: sm_clock.Calibration | None) -> SmClockReading:
    """The clock from each sample's hold (``holds_ms``: held → start), given the probe's calibration."""
    mhz = [m for m in (sm_clock.effective_mhz(hold_cycles, h, cal) for h in holds_ms) if m] if cal else []
    error = sm_clock.implausible(mhz)
    if error:
        return SmClockReading(mhz=[], hold_ms=hold_ms, error=error, suspect=median(mhz))
    return SmClockReading(mhz=mhz, hold_ms=hold_ms)


class CrossCheck(Observation):
    synced_ms: list[float]  # start → call → device sync → end, less the host's enqueue time
    wall_ms: list[float]  # host clock around call + device sync


def cross_check(run: Callable[[int], Any], first: int, n: int, *,
                before: Callable[[int], None] | None = None, after: Callable[[int, Any], None] | None = None,
                new_event: Callable[[], Event] = _cuda_event, sync: Callable[[], None] = _cuda_sync,
                clock: Callable[[], float] = time.perf_counter) -> CrossCheck:
    """``n`` calls ``first, first + 1, ...``, each with a device-wide sync before the end event, which so
    brackets work on every stream. No hold here (work on another stream would run during it, before the
    start event); instead the host's own enqueue time, during which the GPU may idle inside the events,
    is subtracted. A call that hides its work elsewhere enqueues quickly, so its hidden work stays in
    the number. ``before(i)`` (refresh, flush) and ``after(i, out)`` (the check) run untimed."""
    synced, wall = [], []
    for j in range(first, first + n):
        if before is not None:
            before(j)
        sync()
        start, end = new_event(), new_event()
        t0 = clock()
        start.record()
        out = run(j)
        t_enqueue = (clock() - t0) * 1e3
        sync()
        wall.append((clock() - t0) * 1e3)
        end.record()
        end.synchronize()
        synced.append(max(0.0, start.elapsed_time(end) - t_enqueue))
        if after is not None:
            after(j, out)
    sync()
    return CrossCheck(synced_ms=synced, wall_ms=wall)
