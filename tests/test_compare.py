"""Comparing two runs: a moved median is set beside the move of the effective SM clock."""
from typer.testing import CliRunner

from harness.analysis.compare import CellDiff
from harness.cli import app
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store


def diff(a_ms: float, b_ms: float, a_mhz: float | None, b_mhz: float | None) -> CellDiff:
    return CellDiff("k", "p", a_ms, b_ms, 0.005, a_mhz=a_mhz, b_mhz=b_mhz)


def test_a_slower_median_at_a_lower_clock_follows_the_clock():
    d = diff(1.0, 1.02, 1980.0, 1941.0)  # 2% slower, clock 2% lower
    assert round(d.clock_ratio, 3) == 1.02 and d.follows_clock


def test_a_slower_median_at_the_same_clock_does_not():
    assert not diff(1.0, 1.02, 1975.0, 1975.0).follows_clock
    assert not diff(1.0, 1.02, 1941.0, 1980.0).follows_clock  # the clock rose: the time should have fallen
    assert diff(1.0, 1.02, None, 1980.0).clock_ratio is None and not diff(1.0, 1.02, None, None).follows_clock


def test_compare_counts_the_cells_outside_the_bound_that_moved_with_the_clock(tmp_path):
    db = tmp_path / "x.db"
    store = Store(db)
    p, q = Problem(batch=1, heads_q=8, seqlen_q=1024, head_dim=64), Problem(batch=2, heads_q=8, seqlen_q=1024, head_dim=64)
    runs = {"a": (1.0, 1980.0, 1.0, 2030.0), "b": (1.03, 1922.0, 1.03, 2030.0)}  # 2030: above the maximum
    for rid, (ms_p, mhz_p, ms_q, mhz_q) in runs.items():
        store.create_run(RunInfo(run_id=rid, suite="s", created_at="2026-01-01T00:00:00+00:00", git_commit="c",
                                 argv="", env={}, status="complete"))
        for prob, ms, mhz in ((p, ms_p, mhz_p), (q, ms_q, mhz_q)):
            r = Result.for_problem(rid, "s", "sdpa-flash", prob, "ok", passed=True)
            r.median_ms, r.rel_spread = ms, 0.004
            r.extra = {"sm_mhz": mhz, "clocks_before": {"sm_max_mhz": 1980}}
            store.add_result(r)
    store.close()
    out = CliRunner().invoke(app, ["compare", "a", "b", "--db", str(db)]).output
    assert "0 of 2 cells of >= 0.1 ms agree within 1.0%" in out
    # q's baseline clock is impossible, so q counts as a cell without a clock, not as one the clock explains
    assert "of the 2 cells outside 1.0%, 1 moved with the effective SM clock" in out
    assert "1 have no usable clock" in out
    assert "clock ratio" in out
    # scaled by the readings, suspect ones included: p's move is all clock, q's (same reading) is not
    assert "1 of 2 cells would agree within 1.0%" in " ".join(out.split())


def test_a_suspect_reading_scales_the_time_but_is_never_taken_for_the_clock():
    from harness.analysis.compare import _clock, _reading

    stored = {"sm_mhz_suspect": 2030.0, "sm_mhz_error": "read 2030 MHz, above the GPU's maximum 1980 MHz",
              "clocks_before": {"sm_max_mhz": 1980}}
    legacy = {"sm_mhz_error": "read 2033 MHz, above the GPU's maximum 1980 MHz: the probe's offset was off"}
    assert _clock(stored) is None and _reading(stored) == 2030.0
    assert _reading(legacy) == 2033.0  # recorded before the reading had its own field
    assert _reading({}) is None and _reading({"sm_mhz": 1975.0}) == 1975.0
    d = CellDiff("k", "p", 0.5965, 0.5823, 0.01, a_read=1970.1, b_read=2033.0)  # an H100 pair, 2.4% apart
    assert abs(d.normalised_ratio - 1) < 0.01 and d.clock_ratio is None
