"""The isolated mode's sampling loop and its probes on the CPU: a fake clock, fake events that read it,
and a fake ``sample`` that advances it by the call's duration (no GPU)."""
from __future__ import annotations

import pytest

from harness.measure.timing.loop import Marks, SamplingLoop
from harness.measure.timing.probes import clock_reading, cross_check, empty_pair_ms, tare
from harness.measure.timing.sm_clock import Calibration
from harness.measure.timing.stopping import CRITERIA, Sampling
from harness.records.observations import SettleWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0  # seconds

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms * 1e-3


class FakeEvent:
    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.t, self.synced = clock, None, False

    def record(self, stream: object = None) -> None:
        self.t = self.clock.now

    def synchronize(self) -> None:
        self.synced = True

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.t is not None and end.t is not None, "an event read before it was recorded"
        return (end.t - self.t) * 1e3


def fake_sampler(clock: FakeClock, durations_ms, hold_ms: float = 0.5):
    """A sample: the hold (``held`` recorded at its start), then the call of ``durations_ms(i)``."""
    calls = []

    def sample(i: int, m: Marks) -> None:
        m.held.record()
        clock.advance(hold_ms)
        m.start.record()
        clock.advance(durations_ms(i))
        m.end.record()
        calls.append(i)

    return sample, calls


def loop(clock: FakeClock, rule: Sampling, **kw) -> SamplingLoop:
    return SamplingLoop(rule, new_event=lambda: FakeEvent(clock), clock=clock, **kw)


def steady(ms: float = 1.0):
    return lambda i: ms


def noisy(i: int) -> float:
    return 1.0 + (i % 2) * 0.5  # a 50% spread: no noise criterion is met


def _recorded(obs) -> dict:
    """The keys of ``extra`` the supervisor stores for a probe's observation."""
    from harness.analysis.record import record
    from harness.records.result import Result
    from harness.spec.problem import Problem

    res = Result.for_problem("r", "s", "b", Problem(batch=1, heads_q=1, seqlen_q=8, head_dim=8), "ok")
    record(obs, res)
    return res.extra


def test_the_loop_stops_at_max_samples_when_the_noise_never_settles():
    clock = FakeClock()
    sample, calls = fake_sampler(clock, noisy)
    got = loop(clock, Sampling(min_samples=5, max_samples=40, time_cap_s=100.0), batch=8).run(sample)
    assert got.stop_reason == "40 samples"
    assert len(got.samples_ms) == 40 and got.calls == 40 == len(calls)


def test_the_loop_never_stops_below_min_samples_on_low_noise():
    clock = FakeClock()
    sample, _ = fake_sampler(clock, steady())
    got = loop(clock, Sampling(min_samples=20, max_noise=0.01, time_cap_s=100.0), batch=4).run(sample)
    assert "noise" in got.stop_reason
    assert len(got.samples_ms) == 20  # asked after every batch of 4: the first batch that reaches 20
    assert got.samples_ms == pytest.approx([1.0] * 20)


def test_the_loop_stops_at_the_time_cap_of_the_fake_clock():
    clock = FakeClock()
    sample, _ = fake_sampler(clock, lambda i: 10.0, hold_ms=0.0)  # 10 ms a call
    got = loop(clock, Sampling(min_samples=1000, max_samples=1000, time_cap_s=0.095), batch=1).run(sample)
    assert got.stop_reason == "time cap 0.095s"
    assert len(got.samples_ms) == 10  # the first sample whose end is past the cap


def test_the_time_cap_waits_for_the_floor_of_three_samples():
    clock = FakeClock()
    sample, _ = fake_sampler(clock, lambda i: 500.0, hold_ms=0.0)  # each call alone is past the cap
    got = loop(clock, Sampling(min_samples=10, time_cap_s=0.1), batch=1).run(sample)
    assert got.stop_reason == "time cap 0.1s" and len(got.samples_ms) == 3


def test_the_loop_stops_when_the_named_criterion_says_so():
    # the noise halves once, then stays: noise-stable ends it, noise-below (1%) never would
    def dur(i: int) -> float:
        return 1.0 + (0.2 if i % 2 else 0.0)

    clock = FakeClock()
    sample, _ = fake_sampler(clock, dur)
    rule = Sampling(min_samples=10, max_noise=0.01, max_samples=10_000, time_cap_s=100.0, stable_window=16,
                    stop="noise-stable")
    got = loop(clock, rule, batch=8).run(sample)
    assert got.stop_reason.startswith("noise stable") and len(got.samples_ms) == 32

    clock = FakeClock()
    sample, _ = fake_sampler(clock, dur)
    rule = Sampling(min_samples=10, max_noise=0.01, max_samples=200, time_cap_s=100.0, stop="noise-below")
    assert loop(clock, rule, batch=8).run(sample).stop_reason == "200 samples"


def test_the_criteria_are_registered_by_name_and_an_unknown_name_is_refused():
    assert {"noise", "noise-below", "noise-stable"} <= set(CRITERIA)
    assert Sampling().stop == "noise" and len(Sampling().criteria()) == 2  # both rules: the default
    with pytest.raises(ValueError, match="allowed noise"):
        Sampling(stop="entropy-please")


def test_the_settle_window_is_set_aside_and_its_samples_kept_apart():
    clock = FakeClock()
    # the first 4 calls run slow (5 ms, 20 ms in all), the rest at 1 ms; a sample belongs to the window
    # when the window is still open after it was enqueued
    sample, _ = fake_sampler(clock, lambda i: 5.0 if i < 4 else 1.0, hold_ms=0.0)
    got = loop(clock, Sampling(min_samples=10, max_samples=10, time_cap_s=100.0), batch=1,
               settle_s=0.0205).run(sample)
    assert len(got.settle_ms) == 4
    assert got.settle_ms == pytest.approx([5.0] * 4)
    assert got.samples_ms == pytest.approx([1.0] * 10)  # none of the settling samples is kept
    assert got.calls == len(got.settle_ms) + len(got.samples_ms)
    # what the row keeps of the window (harness.analysis.record)
    x = _recorded(SettleWindow(samples_ms=got.settle_ms))
    assert x["settle_calls"] == len(got.settle_ms) and x["settle_first_ms"] == pytest.approx(5.0)
    assert _recorded(SettleWindow(samples_ms=[])) == {"settle_calls": 0}


def test_the_events_are_read_back_in_batches_after_a_wait_on_the_last_one():
    clock = FakeClock()
    made: list[FakeEvent] = []

    def new_event() -> FakeEvent:
        made.append(FakeEvent(clock))
        return made[-1]

    sample, _ = fake_sampler(clock, noisy)
    got = SamplingLoop(Sampling(min_samples=5, max_samples=12, time_cap_s=100.0), new_event=new_event,
                       clock=clock, batch=6).run(sample)
    assert len(got.samples_ms) == 12 and len(made) == 3 * 12
    ends = made[2::3]
    assert [e.synced for e in ends] == [i % 6 == 5 for i in range(12)]  # the last end event of each batch


def test_the_holds_give_each_kept_sample_its_clock(monkeypatch):
    from harness.measure.timing import sm_clock

    monkeypatch.setattr(sm_clock, "nominal_hz", lambda: 1.98e9)  # an H100's maximum, without a GPU
    clock = FakeClock()
    sample, _ = fake_sampler(clock, steady(), hold_ms=0.505)
    got = loop(clock, Sampling(min_samples=8, max_samples=8, time_cap_s=100.0)).run(sample)
    assert got.holds_ms == pytest.approx([0.505] * 8)
    # a hold of 990_000 cycles that took 0.505 ms with a 5 µs offset: 1980 MHz
    r = clock_reading(990_000, got.holds_ms, 0.6, Calibration(offset_ms=0.005))
    assert r.mhz == pytest.approx([1980.0] * 8) and not r.error
    assert _recorded(r)["sm_mhz"] == 1980.0 and _recorded(r)["hold_ms"] == 0.6
    assert clock_reading(990_000, got.holds_ms, 0.6, None).mhz == []  # no calibration: no clock
    # an offset that was off reads above the maximum: kept as suspect, never as the clock
    bad = clock_reading(990_000, got.holds_ms, 0.6, Calibration(offset_ms=0.05))
    assert bad.mhz == [] and "above the GPU's maximum" in bad.error and bad.suspect == pytest.approx(2175.8, abs=0.1)
    assert "sm_mhz" not in _recorded(bad) and _recorded(bad)["sm_mhz_suspect"] == pytest.approx(2175.8, abs=0.1)


def test_the_tare_is_the_median_empty_pair_measured_like_a_sample():
    clock = FakeClock()
    costs = iter([0.002, 0.001, 0.003, 0.002, 0.010])  # one outlier: the median ignores it
    flushes, holds = [], []

    class PairCost(FakeEvent):
        def record(self, stream: object = None) -> None:
            if self.t is None and getattr(clock, "_half", False):
                clock.advance(next(costs))
            clock._half = not getattr(clock, "_half", False)
            super().record()

    t = tare(5, 0.3, flush=flushes.append, flush_mode="read", new_event=lambda: PairCost(clock),
             sync=lambda: None, hold=holds.append)
    assert t.ms == pytest.approx(0.002)
    assert flushes == ["read"] * 5 and holds == [0.3] * 5  # each pair after the same flush and hold
    # the supervisor subtracts the tare from the samples: a 1 ms call read with a 2 µs pair is 0.998 ms
    assert 1.0 - t.ms == pytest.approx(0.998)
    clock2 = FakeClock()
    assert empty_pair_ms(3, 0.0, new_event=lambda: FakeEvent(clock2), sync=lambda: None,
                         hold=lambda ms: None) == 0.0


def test_the_cross_check_subtracts_the_enqueue_time_and_runs_set_up_and_check_untimed():
    clock = FakeClock()
    seen = []

    def run(j: int) -> int:
        clock.advance(0.1)  # enqueue: host time inside the events
        return j

    def sync() -> None:
        clock.advance(2.0)  # the GPU's work, waited for

    c = cross_check(run, 7, 3, before=lambda j: seen.append(("before", j)),
                    after=lambda j, out: seen.append(("after", j, out)),
                    new_event=lambda: FakeEvent(clock), sync=sync, clock=clock)
    assert c.synced_ms == pytest.approx([2.0] * 3)  # 0.1 enqueue + 2.0 sync, less the enqueue
    assert c.wall_ms == pytest.approx([2.1] * 3)
    assert seen == [("before", 7), ("after", 7, 7), ("before", 8), ("after", 8, 8), ("before", 9), ("after", 9, 9)]


def test_an_observation_is_immutable():
    clock = FakeClock()
    sample, _ = fake_sampler(clock, steady())
    got = loop(clock, Sampling(min_samples=3, max_samples=3, time_cap_s=100.0)).run(sample)
    with pytest.raises(Exception, match="frozen"):
        got.stop_reason = "changed"


def test_the_suite_may_name_the_criterion_and_rounds_share_the_sampling():
    from dataclasses import replace
    from types import SimpleNamespace

    from harness.measure.stages.timing import sampling_for
    from harness.spec.suite import Timing

    t = Timing(rounds=2, max_samples=1000, time_cap_s=1.0, min_time_s=0.1)
    s = sampling_for(t)
    assert s.stop == getattr(t, "stop", "noise") and s.max_samples == 500
    assert s.time_cap_s == 0.5 and s.min_time_s == 0.05
    named = SimpleNamespace(**{f: getattr(t, f) for f in ("min_samples", "max_noise", "max_samples", "time_cap_s",
                                                          "min_time_s", "rounds")}, stop="noise-below")
    assert sampling_for(named).stop == "noise-below" and len(sampling_for(named).criteria()) == 1
    assert sampling_for(replace(t, rounds=1)).max_samples == 1000
