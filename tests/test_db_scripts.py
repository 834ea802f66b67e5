"""The database commands used to bring device runs home: a consistent copy (flashcore db copy), and a
merge of runs (flashcore db merge)."""
import sqlite3
import subprocess
import sys

from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store

P = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)


def make(db, *runs):
    with Store(db) as st:
        for rid in runs:
            st.create_run(RunInfo(run_id=rid, suite="s", created_at=rid, git_commit="", argv="", env={}))
            st.add_result(Result.for_problem(rid, "s", "naive", P, "ok", median_ms=1.0))


def count(db, table):
    return sqlite3.connect(db).execute(f"select count(*) from {table}").fetchone()[0]


FLASHCORE = [sys.executable, "-c", "from harness.cli import main; main()"]


def merge(*args):
    return subprocess.run([*FLASHCORE, "db", "merge", *map(str, args)], capture_output=True, text=True)


def test_merge_adds_the_runs_the_destination_lacks_with_their_rows_and_is_idempotent(tmp_path):
    src, dest = tmp_path / "src.db", tmp_path / "dest.db"
    make(src, "base", "new-1", "new-2")
    make(dest, "base")
    assert "2 run(s) added" in merge(src, dest).stdout
    assert (count(dest, "runs"), count(dest, "results")) == (3, 3)
    assert "0 run(s) added" in merge(src, dest).stdout
    assert (count(dest, "runs"), count(dest, "results")) == (3, 3)
    assert {r.run_id for r in Store(dest, create=False).iter_results()} == {"base", "new-1", "new-2"}


def test_merge_can_take_named_runs_only_and_names_a_missing_one(tmp_path):
    src, dest = tmp_path / "src.db", tmp_path / "dest.db"
    make(src, "a", "b")
    make(dest, "x")
    assert "1 run(s) added to" in merge(src, dest, "b").stdout
    assert {r[0] for r in sqlite3.connect(dest).execute("select run_id from runs")} == {"x", "b"}
    res = merge(src, dest, "nope")
    assert res.returncode != 0 and "holds no run 'nope'" in res.stderr


def test_copy_keeps_rows_still_in_the_write_ahead_log(tmp_path):
    db = tmp_path / "live.db"
    make(db, "r")
    keep = sqlite3.connect(db)  # an open connection keeps the log from being folded back
    keep.execute("pragma journal_mode=wal")
    keep.execute("insert into runs (run_id, suite, created_at) values ('late', 's', 'z')")
    keep.commit()
    res = subprocess.run([*FLASHCORE, "db", "copy", str(db), str(tmp_path / "copy.db")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert {r[0] for r in sqlite3.connect(tmp_path / "copy.db").execute("select run_id from runs")} == {"r", "late"}


def test_copying_a_database_into_its_own_folder_leaves_it_whole(tmp_path):
    db = tmp_path / "fa.db"
    make(db, "r")
    # (before the guard, this unlinked the source and then hung or left an empty file)
    res = subprocess.run([*FLASHCORE, "db", "copy", str(db), str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "is the source itself" in res.stderr
    assert {r[0] for r in sqlite3.connect(db).execute("select run_id from runs")} == {"r"}
