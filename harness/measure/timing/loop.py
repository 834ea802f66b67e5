"""The isolated mode's sampling loop, apart from what it measures.

Each iteration hands the ``sample`` callable three fresh events (``Marks``): it records ``held`` as the
hold before the call starts, ``start`` and ``end`` around the call. Every ``batch`` samples the loop
waits for the last end event, reads the batch back and asks the stopping rule. Samples whose
iteration began inside the first ``settle_s`` seconds are set aside, not kept (the settling window).

The event factory and the host clock are injected, so tests drive the loop with fake events on the
CPU; on a GPU they are CUDA events and ``time.perf_counter``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.measure.observation import Observation

BATCH = 8  # samples enqueued between host reads of the events


class Event(Protocol):
    """What the loop needs of a CUDA event (``torch.cuda.Event(enable_timing=True)``)."""

    def record(self, stream: Any = None) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: Any) -> float: ...  # milliseconds from this event to ``end``


class StopRule(Protocol):
    """``harness.measure.timing.stopping.Sampling``: a reason to stop, or None to go on."""

    def stop_reason(self, samples: Sequence[float], elapsed_s: float) -> str | None: ...


@dataclass(frozen=True)
class Marks:
    held: Event  # recorded as the hold before the call starts: held → start gives the SM clock
    start: Event
    end: Event


class Sampled(Observation):
    samples_ms: list[float]  # start → end of each kept sample
    settle_ms: list[float]  # samples of the settling window, set aside
    holds_ms: list[float]  # held → start of each kept sample
    stop_reason: str
    calls: int  # iterations run, settling ones included


class SamplingLoop:
    def __init__(self, rule: StopRule, *, new_event: Callable[[], Event],
                 clock: Callable[[], float] = time.perf_counter, batch: int = BATCH, settle_s: float = 0.0) -> None:
        self.rule, self.new_event, self.clock = rule, new_event, clock
        self.batch, self.settle_s = max(1, batch), settle_s

    def run(self, sample: Callable[[int, Marks], None]) -> Sampled:
        samples: list[float] = []
        settle: list[float] = []
        holds: list[float] = []
        pending: list[tuple[Marks, bool]] = []
        t_settled = self.clock() + self.settle_s
        stop = None
        i = 0
        while stop is None:
            marks = Marks(self.new_event(), self.new_event(), self.new_event())
            sample(i, marks)
            pending.append((marks, self.clock() < t_settled))
            i += 1
            if len(pending) >= self.batch:
                marks.end.synchronize()  # the last of the batch: the others are done too
                for m, settling in pending:
                    if settling:
                        settle.append(m.start.elapsed_time(m.end))
                    else:
                        samples.append(m.start.elapsed_time(m.end))
                        holds.append(m.held.elapsed_time(m.start))
                pending.clear()
                if samples:  # the settling window alone is no reason to stop
                    stop = self.rule.stop_reason(samples, self.clock() - t_settled)
        return Sampled(samples_ms=samples, settle_ms=settle, holds_ms=holds, stop_reason=stop, calls=i)
