"""A cross-check run as stored: printed again by `flashcore show`, refused when its id is taken, and resumed
after a cut, measuring only the cells it lacks (the instruments are stand-ins: no GPU)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.analysis.crosscheck import CrossRow, rows_of
from harness.records.result import Result
from harness.run.plan import make_plan
from harness.spec.suite import load_suite
from harness.store.database import RunInfo, Store, now
from harness.tools.crosscheck import (
    CrosscheckError,
    CrosscheckRequest,
    DoBenchTiming,
    Instruments,
    run_crosscheck,
    timing_suite,
)


def _request(run_id: str = "x", resume: bool = False, tmp_path=None) -> CrosscheckRequest:
    s = load_suite("fa-paper")
    timing = timing_suite(s)
    plan = make_plan(timing, ["sdpa-cudnn", "fa4"], "seqlen_q>=8192,head_dim=128,causal=false")
    return CrosscheckRequest(suite_name=s.name, timing=timing, plan=plan, run_id=run_id, argv="flashcore crosscheck",
                             resume=resume, out_dir=tmp_path or "out")


class FakeInstruments:
    """flashcore stores both modes of every cell; do_bench and ncu answer from fixed numbers; ncu can be
    told to die on the n-th cell, as a call cut by its time limit would."""

    def __init__(self, die_on: int | None = None):
        self.die_on, self.profiled, self.benched, self.flashcore_runs = die_on, [], [], 0

    def flashcore(self, req, store):
        self.flashcore_runs += 1
        if store.run_status(req.timing_run_id) == "complete":
            return
        store.create_run(RunInfo(run_id=req.timing_run_id, suite=req.timing.name, created_at=now(), status="complete"))
        for c in req.plan:
            store.add_result(Result.for_problem(req.timing_run_id, req.timing.name, c.backend, c.problem, "ok",
                                                timing_mode=c.mode, median_ms=1.0 if c.mode == "isolated" else 1.1))

    def dobench(self, cells, timeout_s, longer):
        self.benched.append([c.backend for c in cells])
        return {(c.backend, c.problem.key()): DoBenchTiming(c.backend, c.problem.key(), 1.08, 1.09, 50) for c in cells}

    def ncu(self, cell, req):
        self.profiled.append((cell.backend, cell.problem.key()))
        if self.die_on is not None and len(self.profiled) == self.die_on:
            raise KeyboardInterrupt  # the call's time limit
        return SimpleNamespace(status="ok", reason="", call_ns=990_000, command=["ncu"])

    def bundle(self) -> Instruments:
        return Instruments(flashcore=self.flashcore, dobench=self.dobench, ncu=self.ncu)


def test_a_crosscheck_stores_a_row_per_cell_that_reads_back_as_printed(tmp_path):
    fake = FakeInstruments()
    with Store(tmp_path / "c.db") as store:
        rows = run_crosscheck(_request(), store, fake.bundle())
        assert store.get_run("x").status == "complete" and store.get_run("x").suite == "crosscheck:fa-paper"
        again = rows_of(store.iter_results("x"))
    assert len(rows) == 4 and again == rows
    assert rows[0] == CrossRow(rows[0].backend, rows[0].problem_key, 1.0, 1.1, 1.08, 1.09, 0.99, "")
    assert rows[0].sustained_vs_dobench == pytest.approx(1.1 / 1.08)


def test_a_taken_run_id_is_refused_without_resume_and_resume_needs_something_to_go_on_with(tmp_path):
    with Store(tmp_path / "c.db") as store:
        run_crosscheck(_request(), store, FakeInstruments().bundle())
        with pytest.raises(CrosscheckError, match="already in .*add --resume"):
            run_crosscheck(_request(), store, FakeInstruments().bundle())
        with pytest.raises(CrosscheckError, match="--resume: no cross-check run 'y'"):
            run_crosscheck(_request("y", resume=True), store, FakeInstruments().bundle())
        store.create_run(RunInfo(run_id="z", suite="fa-paper", created_at=now(), status="complete"))
        with pytest.raises(CrosscheckError, match="is of suite 'fa-paper', not 'crosscheck:fa-paper'"):
            run_crosscheck(_request("z", resume=True), store, FakeInstruments().bundle())


def test_a_crosscheck_cut_after_two_cells_resumes_with_the_cells_it_lacks(tmp_path):
    cut = FakeInstruments(die_on=3)
    with Store(tmp_path / "c.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_crosscheck(_request(), store, cut.bundle())
        assert len(rows_of(store.iter_results("x"))) == 2 and store.get_run("x").status == "interrupted"
        again = FakeInstruments()
        rows = run_crosscheck(_request(resume=True), store, again.bundle())
        assert store.get_run("x").status == "complete"
    first = cut.profiled[:2]
    assert len(rows) == 4 and [(r.backend, r.problem_key) for r in rows[:2]] == first
    assert len(again.profiled) == 2 and not set(again.profiled) & set(first)  # only the cells it lacked
    assert again.benched == [[b for b, _ in again.profiled]]
    assert again.flashcore_runs == 1  # the complete flashcore run is reused, not measured again


def test_flashcore_show_prints_a_crosscheck_run_as_its_instruments_side_by_side(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    with Store(tmp_path / "c.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_crosscheck(_request(), store, FakeInstruments(die_on=2).bundle())
    res = CliRunner().invoke(app, ["show", "--run", "x", "--db", str(tmp_path / "c.db")], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "cross-check: ms per call" in res.output and "1.0185" in res.output  # 1.1 / 1.08
    assert "sustained/do_bench: 1 of 1 cells >= 100 µs (do_bench) within 2% (worst 1.85%)" in res.output
    assert "isolated/ncu: 1 of 1 cells >= 20 µs (ncu) within 2% (worst 1.01%)" in res.output
    assert "isolated/do_bench: 0 of 1 cells >= 100 µs (do_bench), for reference within 2% (worst 7.41%)" in res.output
    assert "run interrupted: 1 cell(s) stored; `flashcore crosscheck --run-id x --resume` measures the rest" in res.output
