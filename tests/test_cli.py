"""The command line, end to end on this machine (the CPU path where no GPU is visible)."""
import sqlite3

import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def smoke_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("cli") / "r.db"
    res = runner.invoke(app, ["run", "--suite", "smoke", "--db", str(db), "--backends", "reference,naive,sdpa-math,fa2,flex"])
    assert res.exit_code == 0, res.output
    return db, res.output


def test_run_records_every_cell_and_names_skipped_backends(smoke_db):
    db, out = smoke_db
    rows = sqlite3.connect(db).execute("select backend, status, reason from results").fetchall()
    assert len(rows) == 8 * 5  # 8 problems × 5 backends, none dropped
    statuses = {b: s for b, s, _ in rows}
    assert statuses["naive"] == "ok" and statuses["reference"] == "ok"
    assert all(r for b, s, r in rows if s != "ok")  # every non-ok cell says why
    assert "skipped fa2" in out


def test_show_and_export_read_the_same_database(smoke_db, tmp_path):
    db, _ = smoke_db
    res = runner.invoke(app, ["show", "--db", str(db)])
    assert res.exit_code == 0 and "totals:" in res.output
    out = tmp_path / "e.csv"
    res = runner.invoke(app, ["export", "--db", str(db), "--format", "csv", "--out", str(out)])
    assert res.exit_code == 0 and out.read_text().startswith("run_id,suite,backend,status,reason")


def test_resume_reruns_nothing_when_a_run_is_complete(smoke_db):
    db, _ = smoke_db
    before = sqlite3.connect(db).execute("select count(*), max(id) from results").fetchone()
    res = runner.invoke(app, ["run", "--suite", "smoke", "--db", str(db), "--resume",
                              "--backends", "reference,naive,sdpa-math,fa2,flex"])
    assert res.exit_code == 0, res.output
    assert "40 of 40 cells already recorded" in res.output
    assert sqlite3.connect(db).execute("select count(*), max(id) from results").fetchone() == before


@pytest.mark.parametrize("args,msg", [
    (["run", "--suite", "nope"], "unknown suite 'nope': allowed"),
    (["run", "--suite", "smoke", "--backends", "warp-drive"], "unknown backend 'warp-drive': allowed"),
    (["run", "--suite", "smoke", "--filter", "colour=red"], "unknown key 'colour'"),
    (["run", "--suite", "smoke", "--filter", "seqlen_q>99999"], "leaves no problem"),
    (["show", "--db", "/nonexistent/x.db"], "does not exist"),
    (["export", "--format", "xlsx", "--db", "/nonexistent/x.db"], "does not exist"),
])
def test_bad_input_is_one_line_without_traceback(args, msg):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert msg in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith("flashcore: error:")]) == 1


def test_env_lists_every_backend_with_a_reason_when_unavailable():
    res = runner.invoke(app, ["env"])
    assert res.exit_code == 0
    for name in ("sdpa-flash", "sdpa-cudnn", "flex", "fa2", "fa3", "fa4", "naive", "reference"):
        assert name in res.output


def test_run_rejects_an_unknown_l2_flush_override_in_one_line(tmp_path):
    r = CliRunner().invoke(app, ["run", "--suite", "smoke", "--db", str(tmp_path / "x.db"), "--l2-flush", "clean"])
    assert r.exit_code != 0 and "--l2-flush 'clean': allowed read, write, off" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_run_rejects_a_negative_cooling_gap_in_one_line(tmp_path):
    r = CliRunner().invoke(app, ["run", "--suite", "smoke", "--db", str(tmp_path / "x.db"), "--cool", "-1"])
    assert r.exit_code != 0 and "--cool -1: allowed 0 (back to back) to 100 times the call's time" in r.output


def test_run_rejects_a_negative_kernel_clock_count_in_one_line(tmp_path):
    r = CliRunner().invoke(app, ["run", "--suite", "smoke", "--db", str(tmp_path / "x.db"), "--kernel-clock", "-1"])
    assert r.exit_code != 0 and "--kernel-clock -1: allowed 0 (off) to 10000 calls" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "x.db").exists()
