"""The one rule for "beyond noise": the median moved by more than the threshold AND Mann-Whitney on the raw
samples says p < alpha; rows without samples are judged by their p10–p90 spread instead."""
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.analysis import regress
from harness.analysis.compare import diff_runs
from harness.analysis.noise import DEFAULT_ALPHA, DEFAULT_THRESHOLD, VERDICTS, Spread, judge
from harness.analysis.stats import summarize
from harness.cli import app
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store
from harness.views.dashboards.compare_page import compare_frame
from harness.views.dashboards.data import load


def tight(ms: float, n: int = 50, rel: float = 0.01, seed: int = 0) -> list[float]:
    """``n`` samples around ``ms`` with a relative standard deviation ``rel``."""
    return list(ms * (1 + rel * np.random.default_rng(seed).standard_normal(n)))


def wide(ms: float, n: int = 21) -> list[float]:
    """Evenly spread over ms ± 50%: noise far larger than any shift judged here."""
    return list(np.linspace(0.5 * ms, 1.5 * ms, n))


def test_clearly_slower_and_clearly_faster_samples():
    before = tight(1.0)
    slower = judge(before, tight(1.10, seed=1))
    assert slower.verdict == "slower" and slower.beyond_noise
    assert slower.ratio == pytest.approx(1.10, abs=0.01) and slower.p < 1e-6
    assert "Mann-Whitney" in slower.reason and "\n" not in slower.reason
    faster = judge(before, tight(0.90, seed=1))
    assert faster.verdict == "faster" and faster.beyond_noise and faster.p < 1e-6


def test_a_shifted_median_inside_overlapping_noise_is_within_noise():
    before, after = wide(1.0), wide(1.06)
    c = judge(before, after)
    assert c.ratio == pytest.approx(1.06) and abs(c.ratio - 1) > DEFAULT_THRESHOLD  # the median alone would count
    assert c.p >= DEFAULT_ALPHA and c.verdict == "within noise" and not c.beyond_noise
    assert "not significant" in c.reason


def test_a_significant_shift_smaller_than_the_threshold_is_within_noise():
    c = judge(tight(1.0, rel=0.001), tight(1.02, rel=0.001, seed=1))
    assert c.p < 1e-6 and c.verdict == "within noise" and "within 5%" in c.reason


def test_identical_samples_are_within_noise():
    xs = tight(1.0)
    c = judge(xs, list(xs))
    assert c.verdict == "within noise" and c.ratio == 1.0 and c.p == pytest.approx(1.0)
    flat = judge([1.0] * 10, [1.0] * 10)  # nothing to rank apart
    assert flat.verdict == "within noise" and flat.p == 1.0


def test_few_samples_cannot_reach_significance():
    c = judge([1.0, 1.01, 1.02], [2.0, 2.01, 2.02])  # twice as slow, but 3 vs 3: the exact p is at least 0.1
    assert c.ratio == pytest.approx(2.0, abs=0.01) and c.p >= 0.1 and c.verdict == "within noise"
    assert judge([1.0], [2.0]).verdict == "within noise"


def test_missing_timings_are_no_data():
    for before, after in (([], [1.0]), ([1.0], None), (None, None)):
        c = judge(before, after)
        assert c.verdict == "no data" and not c.beyond_noise and c.ratio is None and c.p is None


def test_rows_without_samples_fall_back_to_the_spread_rule():
    slower = judge(Spread(1.0, 0.02), Spread(1.30, 0.02))
    assert slower.verdict == "slower" and slower.p is None and slower.noise == pytest.approx(0.04)
    assert "no raw samples" in slower.reason and "spread" in slower.reason
    inside = judge(Spread(1.0, 0.10), Spread(1.08, 0.10))  # beyond the threshold, within the 20% spread
    assert inside.verdict == "within noise" and "no raw samples" in inside.reason
    small = judge(Spread(1.0, 0.001), Spread(1.03, 0.001))  # beyond the spread, within the threshold
    assert small.verdict == "within noise"
    mixed = judge(tight(1.0), Spread(0.7, 0.01))  # one side with samples, one without: the spread rule
    assert mixed.verdict == "faster" and mixed.p is None
    assert Spread.of_percentiles(2.0, 1.9, 2.1).rel_spread == pytest.approx(0.1)
    assert Spread.of_percentiles(2.0, None, 2.1).rel_spread is None
    assert judge(Spread(1.0), Spread(1.5)).verdict == "slower"  # no spread recorded counts as none


def test_threshold_and_alpha_are_carried_and_shared_with_the_gate():
    c = judge(tight(1.0), tight(1.03, seed=1), threshold=0.02, alpha=0.05)
    assert c.verdict == "slower" and (c.threshold, c.alpha) == (0.02, 0.05)
    assert judge(tight(1.0), tight(1.03, seed=1)).verdict == "within noise"
    assert (regress.DEFAULT_THRESHOLD, regress.DEFAULT_ALPHA) == (DEFAULT_THRESHOLD, DEFAULT_ALPHA)
    assert {c.verdict, "within noise", "no data"} <= set(VERDICTS)


# -- the three places that judge a change give the same verdict ---------------------------------------
#: backend -> (samples before, samples after, the verdict expected)
CELLS = {
    "slower": (tight(1.0), tight(1.10, seed=1), "slower"),
    "faster": (tight(1.0), tight(0.85, seed=1), "faster"),
    "noisy": (wide(1.0), wide(1.06), "within noise"),
    "same": (tight(1.0), tight(1.0), "within noise"),
}


def _store(path: Path) -> Path:
    store = Store(path)
    p = Problem(batch=1, heads_q=8, seqlen_q=1024, head_dim=64)
    for i, rid in enumerate(("a", "b")):
        store.create_run(RunInfo(run_id=rid, suite="s", created_at=f"2026-01-0{i + 1}T00:00:00+00:00",
                                 git_commit=f"c{i}", argv="", env={}, status="complete"))
        for backend, cell in CELLS.items():
            samples = cell[i]
            s = summarize(samples)
            r = Result.for_problem(rid, "s", backend, p, "ok", passed=True)
            r.median_ms, r.p10_ms, r.p90_ms, r.rel_spread, r.n_samples = s.median, s.p10, s.p90, s.rel_spread, s.n
            r.extra = {"samples_ms": samples}
            store.add_result(r)
    store.close()
    return path


def _bench(i: int) -> dict:
    return {"machine_info": {"gpu": "g", "driver": "d"},
            "benchmarks": [{"fullname": f"test[{backend}]", "name": backend,
                            "stats": {"data": [x * 1e-3 for x in cell[i]]},  # seconds, as pytest-benchmark
                            "extra_info": {"backend": backend, "problem_key": "p"}}
                           for backend, cell in CELLS.items()]}


def test_compare_the_dashboard_and_the_gate_give_the_same_verdict(tmp_path):
    db = _store(tmp_path / "x.db")
    with Store(db, readonly=True) as store:
        from_compare = {d.backend: d.judged.verdict for d in diff_runs(store, "a", "b")}
    frame = compare_frame(load(db), "a", "b")
    from_dashboard = dict(zip(frame["backend"], frame["verdict"], strict=True))
    from_gate = {v.label.split()[0]: v.verdict for v in regress.compare(_bench(0), _bench(1)).verdicts}
    expected = {backend: cell[2] for backend, cell in CELLS.items()}
    assert from_compare == from_dashboard == from_gate == expected
    sig = dict(zip(frame["backend"], frame["significant"], strict=True))
    assert sig == {b: v in ("slower", "faster") for b, v in expected.items()}
    statuses = {v.label.split()[0]: v.status for v in regress.compare(_bench(0), _bench(1)).verdicts}
    assert statuses == {"slower": "REGRESSED", "faster": "faster", "noisy": "noise", "same": "ok"}
    out = " ".join(CliRunner().invoke(app, ["compare", "a", "b", "--db", str(db)]).output.split())
    assert "2 of 4 cells changed beyond their noise" in out
