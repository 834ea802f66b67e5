"""The two timing modes, interleaved rounds, ratios to a baseline, and the cross-check, on the CPU: the
sustained loop runs against a simulated GPU stream (events, calls, a host that can run ahead)."""
from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from harness.measure.timing.sustained import (
    gate_plan,
    lead_for,
    rotation_sets,
    time_gated,
    time_replayed,
    time_sustained,
)


# -- a simulated stream: work runs in order, each op starts when the GPU is free and the host has enqueued it
class FakeGPU:
    def __init__(self, call_ms, enqueue_ms: float = 0.01) -> None:
        self.call_ms = call_ms  # call index -> GPU milliseconds
        self.enqueue_s = enqueue_ms * 1e-3
        self.gpu_free = 0.0  # seconds
        self.host = 0.0
        self.sets: list[int] = []
        self.enqueued = 0
        self.synced: list[int] = []  # the call index whose end event the host waited on
        self.max_ahead = 0

    def clock(self) -> float:
        return self.host

    def _run(self, seconds: float) -> float:
        start = max(self.gpu_free, self.host)
        self.gpu_free = start + seconds
        self.host += self.enqueue_s
        return start

    def event(self) -> FakeEvent:
        return FakeEvent(self)

    def call(self, n_sets: int):
        def run(i: int) -> tuple[int, int]:
            self.sets.append(i % n_sets)
            self._run(self.call_ms(i) * 1e-3)
            self.enqueued = i + 1
            return (i, i % n_sets)

        return run


class FakeEvent:
    def __init__(self, gpu: FakeGPU) -> None:
        self.gpu, self.t = gpu, None

    def record(self) -> None:
        self.t = self.gpu._run(0.0)

    def synchronize(self) -> None:
        self.gpu.host = max(self.gpu.host, self.t)

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.t - self.t) * 1e3


def _sustained(gpu: FakeGPU, n_sets: int = 3, **kw):
    args = dict(duration_s=0.15, warmup_s=0.05, min_samples=10, time_cap_s=1.0, est_call_ms=1.0)
    args.update(kw)
    return time_sustained(gpu.call(n_sets), n_sets, new_event=gpu.event, host_clock=gpu.clock, **args)


def test_sustained_times_a_window_of_gpu_time_after_the_warm_up():
    gpu = FakeGPU(lambda i: 1.0)
    st = _sustained(gpu)
    assert st.stop_reason == "window 0.15s"
    assert st.warmup_calls == 50  # calls starting in the first 50 ms of GPU time are set aside
    # the window spans at least 150 ms; the calls still queued at the stop (at most `lead`) count too
    assert 150 <= len(st.samples_ms) <= 151 + st.lead
    assert all(abs(x - 1.0) < 1e-9 for x in st.samples_ms)
    assert st.window_ms == pytest.approx(len(st.samples_ms) * 1.0)
    assert st.calls == st.warmup_calls + len(st.samples_ms)


def test_sustained_rotates_every_buffer_set_and_returns_the_last_output_of_each():
    gpu = FakeGPU(lambda i: 0.5)
    st = _sustained(gpu, n_sets=5, est_call_ms=0.5)
    assert gpu.sets[:7] == [0, 1, 2, 3, 4, 0, 1]
    assert sorted(st.last_out) == [0, 1, 2, 3, 4]
    last = st.calls - 1
    assert st.last_out[last % 5] == (last, last % 5)


def test_a_replayed_graph_of_calls_runs_back_to_back_and_each_sample_is_one_call_of_it():
    # a host that needs 3 ms to enqueue one 0.2 ms call, but one replay of a 25-call graph (5 ms of GPU work)
    # costs it only the 0.01 ms of one launch: the replays keep the GPU busy without gaps
    gpu = FakeGPU(lambda i: 25 * 0.2, enqueue_ms=0.01)
    replays: list[int] = []

    def replay() -> None:
        replays.append(1)
        gpu.call(1)(len(replays) - 1)

    st = time_replayed(replay, 25, duration_s=0.15, warmup_s=0.05, min_samples=10, time_cap_s=1.0, est_call_ms=0.2,
                       new_event=gpu.event, host_clock=gpu.clock)
    assert st.stop_reason == "window 0.15s"
    assert all(x == pytest.approx(0.2) for x in st.samples_ms)  # a replay's time over its 25 calls
    assert st.calls == 25 * len(replays) and st.warmup_calls == 25 * 10  # counted in calls: 10 replays = 50 ms
    assert st.window_ms == pytest.approx(len(st.samples_ms) * 5.0)  # no gap between replays
    assert st.batch_mean_ms == pytest.approx(0.2)  # the window per call, not per replay
    with pytest.raises(ValueError, match="batch of 0 calls"):
        time_replayed(replay, 0, duration_s=0.15, warmup_s=0.05, min_samples=10, time_cap_s=1.0, est_call_ms=0.2,
                      new_event=gpu.event, host_clock=gpu.clock)


def test_work_between_calls_runs_outside_the_timed_pairs_and_stretches_the_window():
    gpu = FakeGPU(lambda i: 1.0)
    flushes: list[int] = []

    def flush() -> None:  # 0.1 ms of GPU work before every call, as do_bench's cache-clearing write
        flushes.append(gpu.enqueued)
        gpu._run(0.1e-3)

    st = _sustained(gpu, between=flush)
    assert flushes[:3] == [0, 1, 2] and len(flushes) == st.calls  # once before each call
    assert all(abs(x - 1.0) < 1e-9 for x in st.samples_ms)  # the events see the call alone
    assert st.window_ms == pytest.approx(len(st.samples_ms) * 1.1 - 0.1)  # the span holds the gaps
    assert st.warmup_calls == 46  # 50 ms of GPU time now holds fewer calls


def test_host_stays_a_bounded_number_of_calls_ahead_without_draining_the_queue():
    gpu = FakeGPU(lambda i: 2.0, enqueue_ms=0.001)
    waits: list[int] = []
    orig = FakeEvent.synchronize

    def sync(self: FakeEvent) -> None:
        waits.append(gpu.enqueued)
        orig(self)

    FakeEvent.synchronize = sync  # type: ignore[method-assign]
    try:
        st = _sustained(gpu, est_call_ms=2.0)
    finally:
        FakeEvent.synchronize = orig  # type: ignore[method-assign]
    assert st.lead == lead_for(2.0) == 3
    # the host waits on call i - lead before enqueuing call i: `lead` calls stay queued behind it
    assert waits[0] == st.lead and all(w - k == st.lead for k, w in enumerate(waits[:-1]))
    # back to back: every call starts where the previous one ended
    assert gpu.gpu_free == pytest.approx(st.calls * 2.0e-3, abs=1e-5)


def test_the_estimator_is_the_median_of_per_call_events_and_the_batch_mean_is_kept_beside_it():
    # every 10th call is 5x slower (a clock dip): the median ignores it, the batch quotient does not
    gpu = FakeGPU(lambda i: 5.0 if i % 10 == 0 else 1.0)
    st = _sustained(gpu)
    from statistics import median

    assert median(st.samples_ms) == pytest.approx(1.0)
    assert st.batch_mean_ms == pytest.approx(sum(st.samples_ms) / len(st.samples_ms))
    assert st.batch_mean_ms > 1.3


def test_a_host_slower_than_the_gpu_shows_in_the_batch_mean_not_in_per_call_events():
    # the host needs 0.2 ms per enqueued op (call and two events) for a 0.1 ms call: the GPU idles between
    gpu = FakeGPU(lambda i: 0.1, enqueue_ms=0.2)
    st = _sustained(gpu, est_call_ms=0.1)
    from statistics import median

    # the events hold the host's enqueue of the call and of the end event: launch gaps, not GPU time (the
    # measurement flags such a cell as host-bound)
    assert median(st.samples_ms) == pytest.approx(0.4, rel=1e-6)
    assert st.batch_mean_ms == pytest.approx(0.6, rel=1e-2)  # three ops per call at the host's pace


def test_a_host_slower_than_the_gpu_is_timed_gated_and_the_events_then_see_gpu_time_only():
    # the same host-bound call as above: behind a gate that covers the batch's enqueue, the calls of a batch
    # run back to back and every per-call event reads the call's 0.1 ms of GPU time
    gpu = FakeGPU(lambda i: 0.1, enqueue_ms=0.2)
    plan = gate_plan(enqueue_ms=0.2 * 3, gpu_call_ms=0.1)  # a call and its two events, at the host's pace
    assert plan is not None
    batch, gate_ms = plan
    assert batch == 50 and gate_ms == pytest.approx(1.5 * 50 * 0.6 + 0.05)
    gates: list[float] = []

    def gate(ms: float) -> None:
        gates.append(ms)
        gpu._run(ms * 1e-3)

    st = time_gated(gpu.call(3), 3, duration_s=0.015, warmup_s=0.005, min_samples=10, time_cap_s=5.0,
                    batch=batch, gate_ms=gate_ms, gate=gate, new_event=gpu.event, host_clock=gpu.clock)
    assert st.stop_reason == "window 0.015s"
    assert all(x == pytest.approx(0.1) for x in st.samples_ms)
    assert st.calls == len(gates) * batch  # whole batches, each behind its gate
    assert st.window_ms == pytest.approx(sum(st.samples_ms)) and st.window_ms >= 15.0
    # the warm-up is GPU time from the first call, gates included: the calls of the first batch (whose gate
    # ends 45 ms in) are set aside
    assert st.warmup_calls == batch


def test_a_gate_too_short_for_the_batch_shows_as_launch_gaps():
    # the check the gate plan's margin exists for: a gate shorter than the batch's enqueue lets the queue
    # drain and the events read the host's pace again
    gpu = FakeGPU(lambda i: 0.1, enqueue_ms=0.2)
    st = time_gated(gpu.call(3), 3, duration_s=0.01, warmup_s=0.0, min_samples=10, time_cap_s=5.0, batch=50,
                    gate_ms=1.0, gate=lambda ms: gpu._run(ms * 1e-3), new_event=gpu.event, host_clock=gpu.clock)
    from statistics import median

    assert median(st.samples_ms) > 0.3


def test_a_gpu_bound_call_is_not_gated():
    assert gate_plan(enqueue_ms=0.05, gpu_call_ms=1.0) is None
    assert gate_plan(enqueue_ms=0.5, gpu_call_ms=0.1) == (50, pytest.approx(1.5 * 50 * 0.5 + 0.05))
    assert gate_plan(enqueue_ms=1.0, gpu_call_ms=0.01)[0] == 256  # batches capped
    assert gate_plan(enqueue_ms=1.0, gpu_call_ms=0.01)[1] == 50.0  # and the gate


def test_long_calls_stop_at_the_time_cap_with_a_floor_of_samples():
    gpu = FakeGPU(lambda i: 120.0)
    st = _sustained(gpu, time_cap_s=0.3, est_call_ms=120.0)
    assert st.stop_reason == "time cap 0.3s"
    assert len(st.samples_ms) >= 3
    assert st.warmup_calls == 1


def test_rotation_sets_exceed_twice_the_l2_and_are_odd():
    l2 = 60 << 20  # H200
    fa_paper = 3 * 16384 * 2048 * 2  # Q, K, V of 16k tokens, hidden 2048, bf16
    assert rotation_sets(fa_paper, l2) == (3, True)
    n, covered = rotation_sets(1 << 20, l2)
    assert covered and n % 2 == 1 and n * (1 << 20) > 2 * l2 and (n - 2) * (1 << 20) <= 2 * l2
    n, covered = rotation_sets(4096, l2)
    assert (n, covered) == (255, False)
    assert rotation_sets(50 << 20, 50 << 20) == (3, True)
    with pytest.raises(ValueError):
        rotation_sets(0, l2)


# -- suite keys, plan ---------------------------------------------------------------------------
GOOD = """
[suite]
name = "t"
backends = ["naive", "sdpa-math"]
[[grid]]
batch = 1
heads_q = 2
seqlen_q = [16, 32]
head_dim = 64
"""


def _suite(tmp_path: Path, timing: str = "", name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(GOOD + ("[timing]\n" + timing if timing else ""))
    return p


@pytest.mark.parametrize("timing, match", [
    ("modes = ['isolated', 'warm']\n", r"\[timing\] modes = 'warm': allowed isolated, sustained"),
    ("modes = []\n", r"\[timing\] modes = \[\]: must be a non-empty list"),
    ("modes = ['sustained', 'sustained']\n", "lists a value twice"),
    ("sustained_s = 0\n", r"\[timing\] sustained_s = 0: .*from 0.01 to 60"),
    ("sustained_warmup_s = 100\n", r"\[timing\] sustained_warmup_s = 100: .*from 0 to 60"),
    ("rounds = 0\n", r"\[timing\] rounds = 0: .*from 1 to 100"),
    ("sustained_host_bound = 'replay'\n", r"\[timing\] sustained_host_bound = 'replay': .*gated.*graph"),
    ("baseline = 'fa4'\n", r"\[timing\] baseline = 'fa4': not one of the suite's backends naive, sdpa-math"),
])
def test_bad_timing_mode_keys_are_one_line_errors(tmp_path, timing, match):
    from harness.spec.suite import SuiteError, load_suite

    with pytest.raises(SuiteError, match=match) as e:
        load_suite(str(_suite(tmp_path, timing)))
    assert "\n" not in str(e.value)


def test_default_is_isolated_only_and_the_plan_rotates_backends_within_problem_and_mode(tmp_path):
    from harness.run.plan import make_plan
    from harness.spec.suite import load_suite

    s = load_suite(str(_suite(tmp_path)))
    assert s.timing.modes == ("isolated",) and s.timing.rounds == 1 and not s.timing.baseline
    assert [(c.backend, c.mode, c.round) for c in make_plan(s)][:2] == [("naive", "isolated", 0),
                                                                         ("sdpa-math", "isolated", 0)]
    s = load_suite(str(_suite(tmp_path, "modes = ['isolated', 'sustained']\nrounds = 2\nbaseline = 'sdpa-math'\n")))
    plan = make_plan(s)
    assert len(plan) == 2 * 2 * 2 * 2
    first = [(c.backend, c.mode, c.round) for c in plan if c.problem == s.problems[0]]
    assert first == [("naive", "isolated", 0), ("sdpa-math", "isolated", 0), ("naive", "isolated", 1),
                     ("sdpa-math", "isolated", 1), ("naive", "sustained", 0), ("sdpa-math", "sustained", 0),
                     ("naive", "sustained", 1), ("sdpa-math", "sustained", 1)]
    assert plan[0].key == ("naive", s.problems[0].key(), "isolated")


def test_fa_paper_reports_both_modes_against_sdpa_cudnn():
    from harness.spec.suite import load_suite

    t = load_suite("fa-paper").timing
    assert t.modes == ("isolated", "sustained") and t.baseline == "sdpa-cudnn"
    assert 0.1 <= t.sustained_s <= 0.2 and t.sustained_warmup_s <= 0.1  # the 8-minute budget


# -- store ----------------------------------------------------------------------------------------
def _result(backend="naive", mode="isolated", samples=(1.0, 1.1, 0.9), status="ok", tare=0.0, run="r"):
    from harness.records.result import Result
    from harness.spec.problem import Problem

    p = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)
    r = Result.for_problem(run, "t", backend, p, status, timing_mode=mode, rounds=1,
                           extra={"samples_ms": list(samples), "event_tare_ms": tare,
                                  "round_sizes": [len(samples)], "round_tares_ms": [tare]})
    from harness.analysis.stats import summarize

    if samples and status == "ok":
        s = summarize([x - tare for x in samples])
        r.median_ms, r.p10_ms, r.p90_ms, r.rel_spread, r.n_samples = s.median, s.p10, s.p90, s.rel_spread, s.n
        r.tflops = p.flops() / (s.median * 1e-3) / 1e12
    return r


def test_a_cell_has_a_row_per_mode_and_an_old_database_is_migrated_at_the_first_write(tmp_path):
    from harness.store.database import RunInfo, Store

    db = tmp_path / "old.db"
    with Store(db) as s:
        s.create_run(RunInfo("r", "t", "2026-01-01T00:00:00+00:00"))
    # make it a database from before timing modes: the old UNIQUE, no timing_mode or rounds column
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(results)") if r[1] not in ("timing_mode", "rounds")]
    con.execute("DROP TABLE results")
    con.execute(f"CREATE TABLE results ({', '.join(c + ' INTEGER PRIMARY KEY AUTOINCREMENT' if c == 'id' else c for c in cols)}, "
                "UNIQUE(run_id, backend, problem_key))")
    old = _result()
    con.execute("INSERT INTO results (run_id, suite, backend, problem_key, status, median_ms, extra) "
                "VALUES ('r', 't', 'naive', ?, 'ok', 1.0, '{}')", (old.problem_key,))
    con.commit()
    con.close()
    before = db.read_bytes()
    with Store(db, readonly=True) as s:
        (row,) = list(s.iter_results("r"))
        assert row.timing_mode == "isolated" and row.median_ms == 1.0
        assert s.done_visits("r") == {("naive", old.problem_key, "isolated"): ("ok", 1)}
    assert db.read_bytes() == before  # reading changed nothing
    with Store(db) as s:
        s.add_result(_result(mode="sustained", samples=(2.0, 2.0, 2.0)))
        rows = {r.timing_mode: r for r in s.iter_results("r")}
        assert set(rows) == {"isolated", "sustained"}
        assert rows["isolated"].median_ms == 1.0 and rows["sustained"].median_ms == 2.0
        assert s.get_result("r", "naive", old.problem_key, "sustained").median_ms == 2.0
        s.add_result(_result(mode="sustained", samples=(3.0, 3.0, 3.0)))  # a later write replaces its own mode only
        assert {r.timing_mode: r.median_ms for r in s.iter_results("r")} == {"isolated": 1.0, "sustained": 3.0}


# -- pooling, ratios --------------------------------------------------------------------------------
def test_pooled_visits_subtract_each_visits_own_tare():
    from harness.analysis import verdict
    a = _result(samples=(1.5, 1.6, 1.4), tare=0.5)  # net 1.0, 1.1, 0.9
    b = _result(samples=(1.2, 1.3, 1.1), tare=0.2)  # net 1.0, 1.1, 0.9
    b.extra["cell_seconds"], a.extra["cell_seconds"] = 1.0, 2.0
    p = verdict.pool(a, b)
    assert p.rounds == 2 and p.n_samples == 6
    assert sorted(verdict.net_samples(p)) == pytest.approx([0.9, 0.9, 1.0, 1.0, 1.1, 1.1])
    assert p.median_ms == pytest.approx(1.0)
    assert [v["median_ms"] for v in p.extra["visits"]] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert p.extra["cell_seconds"] == 3.0


def test_a_failed_later_visit_decides_the_row_and_keeps_the_earlier_samples():
    from harness.analysis import verdict
    a = _result(samples=(1.0, 1.0, 1.0))
    b = _result(status="failed", samples=())
    p = verdict.pool(a, b)
    assert p.status == "failed" and p.rounds == 2
    assert p.extra["earlier_visits"]["samples_ms"] == [1.0, 1.0, 1.0]


def test_ratio_to_baseline_interval_contains_the_true_ratio_and_the_baseline_is_exactly_one():
    import random

    from harness.analysis import verdict
    rng = random.Random(3)
    base = _result("sdpa-math", samples=[rng.gauss(1.0, 0.01) for _ in range(400)])
    fast = _result("naive", samples=[rng.gauss(0.9, 0.01) for _ in range(400)])
    out = verdict.baseline_ratios([base, fast], "sdpa-math")
    assert out["sdpa-math"] == {"baseline": "sdpa-math", "ratio": 1.0, "lo": 1.0, "hi": 1.0, "confidence": 0.95}
    r = out["naive"]
    assert r["lo"] < 0.9 < r["hi"] and r["lo"] < r["ratio"] < r["hi"] and r["hi"] - r["lo"] < 0.01
    assert verdict.baseline_ratios([fast], "sdpa-math") == {}


def test_ratio_ci_agrees_with_scipy_bootstrap():
    np = pytest.importorskip("numpy")
    stats = pytest.importorskip("scipy.stats")
    from harness.analysis.stats import ratio_ci

    rng = np.random.default_rng(7)
    a, b = rng.normal(0.95, 0.02, 800), rng.normal(1.0, 0.02, 600)
    ratio, lo, hi = ratio_ci(a, b, n_resamples=4000)
    res = stats.bootstrap((a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
                          paired=False, method="percentile", n_resamples=4000, vectorized=True, random_state=1)
    assert ratio == pytest.approx(np.median(a) / np.median(b))
    width = res.confidence_interval.high - res.confidence_interval.low
    assert abs(lo - res.confidence_interval.low) < 0.1 * width
    assert abs(hi - res.confidence_interval.high) < 0.1 * width


def test_compare_matches_cells_by_mode_and_counts_ratio_agreement(tmp_path):
    from harness.analysis.compare import diff_runs, ratio_agreement
    from harness.store.database import RunInfo, Store

    with Store(tmp_path / "c.db") as s:
        for run, (iso, sus, ra, rb) in {"a": (1.0, 1.2, 0.900, 1.0), "b": (1.0, 1.3, 0.905, 1.0)}.items():
            s.create_run(RunInfo(run, "t", f"2026-01-0{1 if run == 'a' else 2}T00:00:00+00:00"))
            for backend, ratio in (("naive", ra), ("sdpa-math", rb)):
                for mode, ms in (("isolated", iso), ("sustained", sus)):
                    r = _result(backend, mode, samples=(ms, ms, ms), run=run)
                    r.extra["ratio_to_baseline"] = {"baseline": "sdpa-math", "ratio": ratio, "lo": ratio - 0.01,
                                                    "hi": ratio + 0.01}
                    s.add_result(r)
        diffs = diff_runs(s, "a", "b")
    assert sorted((d.backend, d.mode, round(d.ratio, 4)) for d in diffs) == [
        ("naive", "isolated", 1.0), ("naive", "sustained", round(1.3 / 1.2, 4)),
        ("sdpa-math", "isolated", 1.0), ("sdpa-math", "sustained", round(1.3 / 1.2, 4))]
    ok, n, worst = ratio_agreement(diffs, min_ms=0.5, within=0.01)
    assert (ok, n) == (2, 2) and worst == pytest.approx(0.905 / 0.9 - 1)  # the baseline's own rows left out
    assert ratio_agreement(diffs, min_ms=0.5, within=0.005)[0] == 0


# -- the whole path on the CPU: both modes, rounds, a crash in round 2 -----------------------------
CRASHER = textwrap.dedent('''
    import os
    from pathlib import Path
    from harness.spec import attention_math
    from harness.backends.base import Backend

    class CrashOnSecondVisit(Backend):
        name = "test-crash-second-visit"
        devices = ("cuda", "cpu")
        description = "right answers in its first visit; the process aborts in its second"

        def prepare(self, problem, q, k, v):
            counter = Path(os.environ["FLASHCORE_TEST_COUNTER"])
            n = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(n + 1))
            if n >= 4:  # a visit prepares 4 times (1 correctness trial, 3 timing buffers)
                os.abort()
            return lambda: attention_math.attention(q, k, v, problem, __import__("torch").float32, q.dtype)
''')


def test_rounds_pool_visits_and_a_crash_in_round_two_loses_nothing_of_the_others(tmp_path, monkeypatch):
    from harness.backends import registry
    from harness.run.plan import make_plan
    from harness.run.supervisor import RunOptions, run_suite
    from harness.spec.suite import load_suite
    from harness.store.database import Store

    (tmp_path / "roundcrash.py").write_text(CRASHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLASHCORE_BACKENDS", "roundcrash:CrashOnSecondVisit")
    monkeypatch.setenv("FLASHCORE_TEST_COUNTER", str(tmp_path / "counter"))
    import roundcrash

    registry.register(roundcrash.CrashOnSecondVisit)
    text = GOOD.replace('["naive", "sdpa-math"]', '["naive", "test-crash-second-visit", "sdpa-math"]').replace(
        "seqlen_q = [16, 32]", "seqlen_q = 16")
    path = tmp_path / "r.toml"
    path.write_text(text + "[checks]\ntrials = 1\ndeterminism_runs = 2\n[timing]\nmin_samples = 3\n"
                    "max_samples = 20\ntime_cap_s = 0.2\nmin_time_s = 0\nwarmup = 1\nrounds = 2\n"
                    "modes = ['isolated']\nbaseline = 'sdpa-math'\n")
    s = load_suite(str(path))
    with Store(tmp_path / "r.db") as store:
        rid = run_suite(s, make_plan(s), store, RunOptions(log_dir=tmp_path / "logs"))
        rows = {r.backend: r for r in store.iter_results(rid)}
        assert rows["naive"].status == "ok" and rows["naive"].rounds == 2
        assert len(rows["naive"].extra["round_sizes"]) == 2
        assert len(rows["naive"].extra["visits"]) == 2
        assert rows["naive"].n_samples == sum(rows["naive"].extra["round_sizes"])
        crashed = rows["test-crash-second-visit"]
        assert crashed.status == "failed" and "crashed" in crashed.reason and crashed.rounds == 2
        assert crashed.extra["earlier_visits"]["samples_ms"]  # round 1's samples kept
        assert rows["sdpa-math"].rounds == 2
        assert rows["naive"].extra["ratio_to_baseline"]["baseline"] == "sdpa-math"
        assert "ratio_to_baseline" not in crashed.extra
        # nothing left to do: a resume measures no visit
        seen = []
        run_suite(s, make_plan(s), store, RunOptions(resume=True, run_id=rid, log_dir=tmp_path / "logs",
                                                     on_start=lambda todo, total: seen.append((todo, total))))
        assert seen == [(0, 6)]


def test_resume_runs_a_missing_mode_of_recorded_cells(tmp_path):
    from harness.run.plan import make_plan
    from harness.run.supervisor import RunOptions, run_suite
    from harness.spec.suite import load_suite
    from harness.store.database import Store

    base = "[timing]\nmin_samples = 3\nmax_samples = 10\ntime_cap_s = 0.1\nmin_time_s = 0\nwarmup = 1\n"
    p = tmp_path / "m.toml"
    p.write_text(GOOD.replace("seqlen_q = [16, 32]", "seqlen_q = 16") + base + "modes = ['isolated']\n")
    with Store(tmp_path / "m.db") as store:
        s = load_suite(str(p))
        rid = run_suite(s, make_plan(s), store, RunOptions(log_dir=tmp_path / "logs"))
        p.write_text(GOOD.replace("seqlen_q = [16, 32]", "seqlen_q = 16") + base + "modes = ['isolated', 'sustained']\n")
        s = load_suite(str(p))
        seen = []
        run_suite(s, make_plan(s), store, RunOptions(resume=True, run_id=rid, log_dir=tmp_path / "logs",
                                                     on_start=lambda todo, total: seen.append((todo, total))))
        assert seen == [(2, 4)]
        assert sorted((r.backend, r.timing_mode) for r in store.iter_results(rid)) == [
            ("naive", "isolated"), ("naive", "sustained"), ("sdpa-math", "isolated"), ("sdpa-math", "sustained")]
        assert store.get_run(rid).status == "complete"


def test_show_prints_the_mode_and_the_ratio_with_its_interval(tmp_path):
    from rich.console import Console

    from harness.store.database import RunInfo, Store
    from harness.views import tables

    with Store(tmp_path / "t.db") as s:
        s.create_run(RunInfo("r", "t", "2026-01-01T00:00:00+00:00"))
        r = _result(mode="sustained")
        r.rounds = 3
        r.extra["ratio_to_baseline"] = {"baseline": "sdpa-math", "ratio": 0.912, "lo": 0.908, "hi": 0.915}
        s.add_result(r)
        con = Console(width=300, record=True)
        tables.print_run(con, s, "r")
    text = con.export_text()
    assert "sustained ×3" in text and "0.912 [0.908, 0.915]" in text and "× sdpa-math [95%]" in text


# -- cross-check ------------------------------------------------------------------------------------
def test_crosscheck_agreement_from_canned_numbers():
    from harness.analysis.crosscheck import CrossRow, agreement, agreement_lines

    rows = [
        CrossRow("fa4", "a", isolated_ms=0.200, sustained_ms=0.215, dobench_ms=0.216, ncu_ms=0.198),  # both agree
        CrossRow("fa4", "b", isolated_ms=0.100, sustained_ms=0.110, dobench_ms=0.104, ncu_ms=0.097),  # 5.8%, 3.1%
        CrossRow("fa4", "c", isolated_ms=0.030, sustained_ms=0.031, dobench_ms=0.040, ncu_ms=0.0299),  # under 100 µs
        CrossRow("fa4", "d", isolated_ms=0.5, sustained_ms=None, dobench_ms=0.6, ncu_ms=None, notes="ncu: failed"),
    ]
    a = agreement(rows)
    assert a["sustained/do_bench"][:2] == (1, 2)
    assert a["sustained/do_bench"][2] == pytest.approx(0.110 / 0.104 - 1)
    assert a["isolated/ncu"][:2] == (2, 3)
    assert a["isolated/do_bench"][:2] == (0, 3)
    lines = agreement_lines(rows)
    assert lines[0].startswith("sustained/do_bench: 1 of 2 cells >= 100 µs (do_bench) within 2%")
    assert agreement_lines([CrossRow("x", "y")])[1] == "isolated/ncu: no cell >= 20 µs (ncu) has both numbers"


def test_crosscheck_parses_the_do_bench_child_output():
    from harness.tools.crosscheck import DoBenchTiming, parse_dobench

    out = ('noise\nCROSSCHECK {"backend": "fa4", "problem_key": "k", "median_ms": 0.2, "mean_ms": 0.21}\n'
           "CROSSCHECK {broken\n")
    assert parse_dobench(out) == {("fa4", "k"): DoBenchTiming("fa4", "k", median_ms=0.2, mean_ms=0.21)}


def test_a_do_bench_record_reads_back_from_the_line_the_child_prints():
    from harness.tools.crosscheck import DoBenchTiming

    t = DoBenchTiming("fa4", "k", median_ms=0.2, mean_ms=0.21, calls=480, longer_median_ms={"2000": 0.23})
    assert DoBenchTiming.from_line(t.line()) == t
    assert DoBenchTiming.from_line('CROSSCHECK {"backend": "fa4"}') is None  # no problem key: not a record
    assert DoBenchTiming.from_line("median 0.2") is None


def test_crosscheck_without_gpu_triton_or_ncu_is_one_line(tmp_path):
    import torch
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.tools.crosscheck import missing_tools

    if torch.cuda.is_available() and not missing_tools():
        pytest.skip("this machine has everything a cross-check needs")
    res = CliRunner().invoke(app, ["crosscheck", "--suite", "fa-paper", "--filter", "seqlen_q=512",
                                   "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2
    err = (res.stderr if hasattr(res, "stderr") else res.output).strip()
    assert err.count("\n") == 0 and err.startswith("flashcore: error: crosscheck: needs an NVIDIA GPU")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("value", ["abc", "50", "100", "70000", "2000,x"])
def test_crosscheck_refuses_a_bad_longer_do_bench_stretch_in_one_line(tmp_path, value):
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["crosscheck", "--suite", "fa-paper", "--dobench-longer", value,
                                   "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2
    err = (res.stderr if hasattr(res, "stderr") else res.output).strip()
    assert err.count("\n") == 0 and "--dobench-longer" in err and "from 101 to 60000" in err
    assert not (tmp_path / "x.db").exists()


# -- on a GPU (skipped elsewhere) ------------------------------------------------------------------------
@pytest.mark.gpu
def test_sustained_mode_on_a_gpu_rotates_past_the_l2_and_checks_its_outputs():
    from statistics import median

    from harness.measure.cell import ProblemCache, measure_cell
    from harness.measure.timing.sustained import l2_bytes
    from harness.records.observations import TimingObservation
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    p = Problem(batch=4, heads_q=16, seqlen_q=2048, head_dim=128)  # 48 MB of inputs per set
    report = measure_cell("sdpa-flash", p, Checks(), Timing(time_cap_s=0.5), "cuda", ProblemCache(), None,
                          timing_mode="sustained")
    assert report.status == "ok", report.reason
    timed = report.get(TimingObservation)
    assert timed.outputs_ok and timed.tare_ms == 0.0
    x = timed.sustained
    assert x.covers_l2 and x.sets * x.set_bytes > 2 * l2_bytes()
    assert timed.method == f"sustained-events+rotate{x.sets}"
    assert x.window_ms >= 0.15 * 1e3 * 0.99 and x.warmup_calls >= 1
    assert not x.host_bound
    # back to back: the window is the calls and almost nothing else
    assert x.batch_mean_ms == pytest.approx(median(timed.samples_ms), rel=0.05)


def _host_bound_sustained_cell(host_bound: str):
    """A cell of microseconds of GPU work behind Python (host-bound), timed in the sustained mode."""
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.records.observations import TimingObservation
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    p = Problem(batch=1, heads_q=2, seqlen_q=128, head_dim=64)
    report = measure_cell("sdpa-flash", p, Checks(), Timing(time_cap_s=0.5, sustained_host_bound=host_bound), "cuda",
                          ProblemCache(), None, timing_mode="sustained")
    assert report.status == "ok", report.reason
    timed = report.get(TimingObservation)
    return timed, timed.sustained


@pytest.mark.gpu
def test_a_host_bound_cell_can_be_replayed_as_a_cuda_graph_back_to_back():
    timed, x = _host_bound_sustained_cell("graph")
    assert x.graph_error == "" and x.graph_batch is not None and x.gate is None and x.host_bound
    assert timed.method.endswith(f"+graph{x.graph_batch}") and timed.outputs_ok
    # replays back to back: the window is the calls' time, with no holds between batches
    assert x.window_ms >= 0.15 * 1e3 * 0.99
    assert x.batch_mean_ms == pytest.approx(sum(timed.samples_ms) / len(timed.samples_ms), rel=0.1)


@pytest.mark.gpu
def test_a_host_bound_cell_can_still_be_timed_gated_behind_holds():
    timed, x = _host_bound_sustained_cell("gated")
    assert x.gate is not None and x.graph_batch is None and x.graph_error == "" and x.host_bound
    assert timed.method.endswith(f"+gated{x.gate.batch}") and timed.outputs_ok


def test_a_graph_that_replays_in_under_half_the_calls_gpu_time_missed_their_work():
    from harness.measure.timing.sustained import replay_shortfall

    assert replay_shortfall(0.004, 0.030) and "missed" in replay_shortfall(0.004, 0.030)
    assert replay_shortfall(0.014, 0.030)  # just under half
    assert replay_shortfall(0.022, 0.030) == ""  # faster than the call alone (no launch gaps) is expected
    assert replay_shortfall(0.031, 0.030) == ""


@pytest.mark.gpu
def test_a_call_whose_capture_holds_no_gpu_work_is_not_replayed():
    import torch

    from harness.measure.stages.timing import _capture_batch

    cached = torch.ones(1024, device="cuda")

    def call(i: int) -> torch.Tensor:  # an output from a cache: nothing for the graph to capture
        return cached

    with pytest.raises(RuntimeError, match="missed the call's GPU work"):
        _capture_batch(call, 3, 16, gpu_call_ms=0.05)


def test_a_host_bound_cell_is_replayed_as_a_graph_unless_the_suite_asks_for_the_gate():
    from harness.spec.suite import Timing

    assert Timing().sustained_host_bound == "graph"
    assert Timing(sustained_host_bound="gated").sustained_host_bound == "gated"


@pytest.mark.gpu
def test_a_kernel_that_caches_across_calls_is_rejected_in_the_sustained_mode_too():
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing
    from harness.testing import EXPLOITS, registered

    p = Problem(batch=2, heads_q=8, seqlen_q=1024, head_dim=64)
    with registered(EXPLOITS):
        report = measure_cell("exploit-cache-content", p, Checks(), Timing(time_cap_s=0.3), "cuda", ProblemCache(),
                              None, timing_mode="sustained")
    assert report.status == "rejected", report.reason


def test_a_do_bench_child_that_dies_is_replaced_and_the_cell_it_died_on_is_named(monkeypatch):
    import json as _json

    from harness.run.plan import Cell
    from harness.spec.problem import Problem
    from harness.tools import crosscheck
    from harness.tools.profiling import proc

    cells = [Cell(b, Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)) for b in ("a", "b", "c")]
    calls = []

    def fake_run(cmd, timeout_s, env=None):
        todo = _json.loads(Path(cmd[-1]).read_text())
        calls.append([c["backend"] for c in todo])
        if todo[0]["backend"] == "a":  # reports a, dies on b
            line = {"backend": "a", "problem_key": todo[0]["problem_key"], "median_ms": 1.0}
            return proc.ProcResult(-6, "CROSSCHECK " + _json.dumps(line) + "\nFatal Python error: Aborted\n")
        return proc.ProcResult(0, "".join("CROSSCHECK " + _json.dumps({"backend": c["backend"], "problem_key":
                                          c["problem_key"], "median_ms": 3.0}) + "\n" for c in todo))

    monkeypatch.setattr(proc, "run", fake_run)
    got = crosscheck.run_dobench(cells, 60)
    key = cells[0].problem.key()
    assert calls == [["a", "b", "c"], ["c"]]
    assert got[("a", key)].median_ms == 1.0 and got[("c", key)].median_ms == 3.0
    assert got[("b", key)].error.startswith("do_bench process died (exit -6")


def test_a_do_bench_child_that_cannot_start_is_tried_twice_and_every_cell_names_why(monkeypatch):
    from harness.run.plan import Cell
    from harness.spec.problem import Problem
    from harness.tools import crosscheck
    from harness.tools.profiling import proc

    cells = [Cell(b, Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)) for b in ("a", "b", "c")]
    calls = []

    def fake_run(cmd, timeout_s, env=None):
        calls.append(cmd)
        return proc.ProcResult(1, "ModuleNotFoundError: No module named 'triton'\n")

    monkeypatch.setattr(proc, "run", fake_run)
    got = crosscheck.run_dobench(cells, 60)
    assert len(calls) == 2
    assert got[("a", cells[0].problem.key())].error.startswith("do_bench process died")
    assert got[("c", cells[0].problem.key())].error == "do_bench process: ModuleNotFoundError: No module named 'triton'"


def test_the_dashboard_draws_each_mode_apart_and_lists_the_ratios(tmp_path):
    from harness.store.database import RunInfo, Store
    from harness.views.dashboards import render

    with Store(tmp_path / "d.db") as s:
        for run, day in (("a", 1), ("b", 2)):
            s.create_run(RunInfo(run, "t", f"2026-01-0{day}T00:00:00+00:00"))
            for backend, ms in (("naive", 1.0), ("sdpa-math", 2.0)):
                for mode, scale in (("isolated", 1.0), ("sustained", 1.1)):
                    r = _result(backend, mode, samples=(ms * scale,) * 3, run=run)
                    r.passed = True
                    r.extra["ratio_to_baseline"] = {"baseline": "sdpa-math", "ratio": 0.5 if backend == "naive" else 1.0,
                                                    "lo": 0.49 if backend == "naive" else 1.0,
                                                    "hi": 0.51 if backend == "naive" else 1.0}
                    s.add_result(r)
    written = render(tmp_path / "d.db", out_dir=tmp_path / "out", baseline="sdpa-math", compare=["a", "b"])
    run_page = next(p for p in written if p.name.startswith("run-") and "b" in p.stem.split("-", 1)[1]).read_text()
    for text in ('id="performance-isolated"', 'id="performance-sustained"', 'id="roofline-sustained"',
                 "Performance (sustained timing)", 'id="ratios"', "0.490 – 0.510", "timing mode: sustained"):
        assert text in run_page, text
    cmp_page = next(p for p in written if p.name.startswith("compare-")).read_text()
    assert "naive · sustained" in cmp_page and "Ratios to the baseline in both runs" in cmp_page


@pytest.mark.parametrize("args, match", [
    (["--modes", "isolated,warm"], "--modes 'warm': allowed isolated, sustained"),
    (["--modes", ","], "--modes ',': give one or more of isolated, sustained"),
    (["--rounds", "0"], "--rounds 0: allowed 1 to 100 visits"),
    (["--baseline", "fa4", "--backends", "naive"], "--baseline 'fa4': not one of the backends this run measures (naive)"),
])
def test_run_options_for_modes_rounds_and_baseline_are_one_line_errors(tmp_path, args, match):
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["run", "--suite", "smoke", "--db", str(tmp_path / "x.db"), *args])
    assert res.exit_code == 2
    err = (res.stderr if hasattr(res, "stderr") else res.output).strip()
    assert err.count("\n") == 0 and match in err, err
