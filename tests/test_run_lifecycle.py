"""A run's life as its user sees it: it ends by saying where its results are and what to do next; a run
whose supervisor died (``kill -9``) reads ``interrupted``, not ``running`` forever; ``--resume`` refuses a
run that is still alive; ``--retry-failed`` measures the failed cells again and keeps the failed rows."""
from __future__ import annotations

import csv
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.store.database import STALE_S, Heartbeat, RunInfo, Store, StoreError, now
from harness.testing import FAULTS, TOOLS, registered, tiny_suite
from harness.testing.faulty import MIN_SEQLEN_ENV

ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()

def _suite(tmp_path: Path, name: str, backends: list[str], seqlens: list[int]) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(tiny_suite(name, backends, seqlens))
    return p


def _raw_status(db: Path, run_id: str) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
    finally:
        con.close()


def test_a_run_ends_by_naming_its_database_run_id_and_next_commands(tmp_path):
    suite = _suite(tmp_path, "tiny", ["reference"], [8])
    db = tmp_path / "r.db"
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--run-id", "first"])
    assert res.exit_code == 0, res.output
    assert f"run first (complete) is stored in {db}" in res.output
    assert f"flashcore show --run first --db {db}" in res.output
    assert f"flashcore report --run first --db {db}" in res.output


# -- the lease -------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("pid,host,age_s,alive", [
    ("self", "here", 0, True),
    ("dead", "here", 0, False),  # its process is gone from this host: dead however fresh the heartbeat
    ("self", "here", STALE_S + 5, False),  # no heartbeat for too long: dead even if the pid was reused
    (12345, "elsewhere", 0, True),  # another host: the heartbeat is all there is to go by
    (12345, "elsewhere", STALE_S + 5, False),
    (None, "", None, False),  # a run from before leases
])
def test_a_run_is_alive_only_while_its_lease_is_held(pid, host, age_s, alive):
    pid = os.getpid() if pid == "self" else _dead_pid() if pid == "dead" else pid
    host = socket.gethostname() if host == "here" else host
    beat = "" if age_s is None else (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat()
    info = RunInfo(run_id="x", suite="s", created_at=now(), pid=pid, host=host, heartbeat_at=beat)
    assert info.lease_alive() is alive


def test_the_heartbeat_renews_the_lease_while_the_run_goes_on(tmp_path):
    db = tmp_path / "r.db"
    old = (datetime.now(timezone.utc) - timedelta(seconds=STALE_S + 60)).isoformat(timespec="seconds")
    with Store(db) as s:
        s.create_run(RunInfo(run_id="long", suite="s", created_at=now(), pid=os.getpid(),
                             host=socket.gethostname(), heartbeat_at=old))
        assert s.get_run("long").status == "interrupted"  # a lease nobody renewed
        with Heartbeat(db, "long", every_s=0.05):
            time.sleep(0.5)
        assert s.get_run("long").heartbeat_at > old and s.get_run("long").status == "running"


def test_a_dead_run_reads_interrupted_and_the_next_writer_stores_it_so(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        s.create_run(RunInfo(run_id="dead", suite="s", created_at=now(), pid=_dead_pid(),
                             host=socket.gethostname(), heartbeat_at=now()))
        s.create_run(RunInfo(run_id="live", suite="s", created_at=now(), pid=os.getpid(),
                             host=socket.gethostname(), heartbeat_at=now()))
    res = cli.invoke(app, ["show", "--runs", "--db", str(db)])
    assert res.exit_code == 0
    line = {ln.split()[1]: ln for ln in res.output.splitlines() if ln.strip().startswith("│ dead") or
            ln.strip().startswith("│ live")}
    assert "interrupted" in line["dead"] and "running" in line["live"], res.output
    assert _raw_status(db, "dead") == "running"  # show only reads
    with Store(db) as s:
        assert s.mark_interrupted() == ["dead"]
    assert _raw_status(db, "dead") == "interrupted" and _raw_status(db, "live") == "running"


def test_a_run_whose_supervisor_lives_cannot_be_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Store(tmp_path / "r.db") as s:
            s.create_run(RunInfo(run_id="busy", suite="s", created_at=now(), pid=sleeper.pid,
                                 host=socket.gethostname(), heartbeat_at=now()))
            with pytest.raises(StoreError, match=rf"run 'busy' is still running \(pid {sleeper.pid} on "):
                s.claim_run("busy")
            sleeper.kill()
            sleeper.wait()
            assert s.claim_run("busy").pid == os.getpid()  # once it is gone, it can be continued
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_leaves_an_interrupted_run_and_resume_refuses_a_live_one(tmp_path):
    suite = _suite(tmp_path, "slow", ["test-slow"], [8, 9, 10, 11, 12, 13, 14, 15])
    db = tmp_path / "r.db"
    with registered(TOOLS):
        env = {**os.environ, "FLASHCORE_SLOW_S": "0.4"}
        proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import app; app()", "run", "--suite",
                                 str(suite), "--db", str(db), "--run-id", "victim"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 120
            n = 0
            while time.time() < deadline and proc.poll() is None and n < 1:
                time.sleep(0.1)
                try:
                    con = sqlite3.connect(db, timeout=1)
                    n = con.execute("SELECT count(*) FROM results").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    n = 0
            assert proc.poll() is None and n >= 1, proc.stderr.read().decode()[-2000:]
            # alive: shown as running, and a second supervisor is refused in one line
            shown = cli.invoke(app, ["show", "--runs", "--db", str(db)])
            assert "running" in shown.output, shown.output
            res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--resume", "--run-id", "victim"])
            assert res.exit_code == 2, res.output
            assert res.output.count("\n") == 1 and f"run 'victim' is still running (pid {proc.pid} on" in res.output
        finally:
            proc.kill()
            proc.wait(10)
        shown = cli.invoke(app, ["show", "--runs", "--db", str(db)])
        assert "interrupted" in shown.output and "running" not in shown.output, shown.output
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--resume", "--run-id", "victim"])
        assert res.exit_code == 0, res.output
    assert _raw_status(db, "victim") == "complete"
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*), count(DISTINCT problem_key) FROM results").fetchone() == (8, 8)


# -- --retry-failed ---------------------------------------------------------------------------------------
def test_retry_failed_measures_only_the_failed_cells_and_keeps_the_failed_rows(tmp_path, monkeypatch):
    suite = _suite(tmp_path, "flaky", ["reference", "fault-illegal-address"], [8, 16])
    db = tmp_path / "r.db"
    with registered(FAULTS):
        monkeypatch.setenv(MIN_SEQLEN_ENV, "1")  # the fault fires on every problem
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--run-id", "r"])
        assert res.exit_code == 0, res.output
        assert "flashcore run --suite flaky --retry-failed --run-id r" in res.output  # offered as a next step
        with Store(db, readonly=True) as s:
            first = {(r.backend, r.seqlen_q): r for r in s.iter_results("r")}
        assert {k: r.status for k, r in first.items()} == {
            ("reference", 8): "ok", ("reference", 16): "ok",
            ("fault-illegal-address", 8): "failed", ("fault-illegal-address", 16): "failed"}
        monkeypatch.setenv(MIN_SEQLEN_ENV, "100000")  # and now it does not
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--retry-failed", "--run-id", "r"])
        assert res.exit_code == 0, res.output
        assert "retrying 2 failed cell(s)" in res.output
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, backend, seqlen_q, status, created_at FROM results ORDER BY id").fetchall()
    old_ids = {(r.backend, r.seqlen_q): r.created_at for r in first.values()}
    assert [(b, q, st) for _, b, q, st, _ in rows] == [  # the same cells, in the same order, now all ok
        ("reference", 8, "ok"), ("fault-illegal-address", 8, "ok"),
        ("reference", 16, "ok"), ("fault-illegal-address", 16, "ok")]
    assert [c for _, b, q, _, c in rows if b == "reference"] == [old_ids[("reference", 8)],
                                                                 old_ids[("reference", 16)]]  # not re-run
    kept = con.execute("SELECT backend, seqlen_q, status, reason, superseded_at FROM superseded_results").fetchall()
    assert sorted((b, q, st) for b, q, st, _, _ in kept) == [("fault-illegal-address", 8, "failed"),
                                                             ("fault-illegal-address", 16, "failed")]
    assert all("illegal memory access" in reason and at for _, _, _, reason, at in kept)
    assert _raw_status(db, "r") == "complete"

    shown = cli.invoke(app, ["show", "--run", "r", "--db", str(db)])
    assert "2 cell(s) were measured again" in shown.output and "failed" not in shown.output.split("totals")[0]
    out = tmp_path / "x.csv"
    assert cli.invoke(app, ["export", "--db", str(db), "--out", str(out)]).exit_code == 0
    current = list(csv.DictReader(out.open()))
    assert len(current) == 4 and all(r["status"] == "ok" and not r["superseded_at"] for r in current)
    assert sorted(r["attempts"] for r in current) == ["1", "1", "2", "2"]
    assert cli.invoke(app, ["export", "--db", str(db), "--out", str(out), "--superseded"]).exit_code == 0
    every = list(csv.DictReader(out.open()))
    assert len(every) == 6 and sorted(r["status"] for r in every if r["superseded_at"]) == ["failed", "failed"]


def test_retry_failed_refuses_a_run_that_is_still_alive(tmp_path):
    suite = _suite(tmp_path, "tiny", ["reference"], [8])
    db = tmp_path / "r.db"
    with Store(db) as s:
        s.create_run(RunInfo(run_id="busy", suite="tiny", created_at=now(), pid=os.getpid(),
                             host="another-host", heartbeat_at=now()))
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--retry-failed", "--run-id", "busy"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "run 'busy' is still running" in res.output and "another-host" in res.output


def test_a_run_that_ended_can_be_continued_while_its_supervisor_lives_on(tmp_path):
    """The lease is held only while the run is running: a finished run of a process that is still alive
    (a notebook, a long session) can be retried."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Store(tmp_path / "r.db") as s:
            s.create_run(RunInfo(run_id="done", suite="s", created_at=now(), status="complete", pid=sleeper.pid,
                                 host=socket.gethostname(), heartbeat_at=now()))
            assert s.claim_run("done").pid == os.getpid()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ctrl_c_inside_a_threading_wait_is_the_one_line_interruption(tmp_path, monkeypatch):
    """Measured on a GPU: SIGINT landing in a threading wait surfaced as RuntimeError('release unlocked
    lock') raised while handling the KeyboardInterrupt, and printed a traceback instead of the one line."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.run import supervisor

    def interrupted(*a, **k):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock")  # noqa: B904 - as threading raises it

    monkeypatch.setattr(supervisor, "run_suite", interrupted)
    r = CliRunner().invoke(app, ["run", "--suite", "smoke", "--db", str(tmp_path / "x.db")])
    assert r.exit_code == 130
    assert "interrupted: every finished cell is stored; continue with --resume" in r.output
    assert "Traceback" not in r.output and "release unlocked lock" not in r.output
