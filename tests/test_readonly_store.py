"""Commands that only read never write: show, export, compare, report and audit open the database
read-only and refuse a file that is not a flashcore database without touching it; only ``run`` makes a
new database, and only where it is asked to. A schema-1 database is migrated in place by a writer."""
from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import SCHEMA_VERSION, RunInfo, Store, StoreError, now

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "results" / "h100").glob("*.db"))
P = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)
cli = CliRunner()


def _fingerprint(path: Path) -> tuple[bytes, int, list[str]]:
    """The file's bytes and mtime, and what lies beside it (a reader must not leave -wal/-shm files)."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def _flashcore_db(path: Path) -> Path:
    with Store(path) as s:
        s.create_run(RunInfo(run_id="r1", suite="smoke", created_at=now(), status="complete"))
        s.add_result(Result.for_problem("r1", "smoke", "naive", P, "ok", median_ms=1.0))
    return path


def _other_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'ada')")
    con.commit()
    con.close()
    return path


def _schema_99(path: Path) -> Path:
    _flashcore_db(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=DELETE")  # so a switch back to WAL would show in the header
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    return path


READERS = [
    ["show"], ["show", "--runs"], ["export", "--out", "{tmp}/x.csv"], ["compare", "r1", "r1"],
    ["report", "--out", "{tmp}/dash"], ["audit", str(ROOT / "suites" / "claims" / "seeds.toml"), "--out", "{tmp}/dash"],
]
BAD_FILES = {
    "other-sqlite": (_other_sqlite, "not a flashcore results database (its tables: customers)"),
    "empty": (lambda p: (p.write_bytes(b""), p)[1], "not a flashcore results database (an empty file)"),
    "not-sqlite": (lambda p: (p.write_bytes(b"PK\x03\x04 a zip, say" * 50), p)[1], "not a SQLite file"),
    "schema-99": (_schema_99, "schema version 99, this flashcore reads 1, 2"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("argv", READERS, ids=lambda a: a[0] + ("-runs" if "--runs" in a else ""))
def test_a_reader_refuses_a_file_that_is_not_a_flashcore_database_without_touching_it(tmp_path, argv, kind):
    make, shown = BAD_FILES[kind]
    db = make(tmp_path / "some.db")
    before = _fingerprint(db)
    res = cli.invoke(app, [a.format(tmp=tmp_path) for a in argv] + ["--db", str(db)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("flashcore: error:"), res.output
    assert str(db) in lines[0] and shown in lines[0], lines[0]
    assert _fingerprint(db) == before  # bytes, mtime, and nothing left beside it
    assert not (tmp_path / "dash").exists() and not (tmp_path / "x.csv").exists()  # no page written either


@pytest.mark.parametrize("argv", READERS, ids=lambda a: a[0] + ("-runs" if "--runs" in a else ""))
def test_a_reader_leaves_a_valid_database_exactly_as_it_was(tmp_path, argv):
    db = _flashcore_db(tmp_path / "r.db")
    before = _fingerprint(db)
    res = cli.invoke(app, [a.format(tmp=tmp_path) for a in argv] + ["--db", str(db)])
    assert res.exit_code == 0, res.output
    assert _fingerprint(db)[:2] == before[:2]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.db")) == ["r.db"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_valid_database_in_a_read_only_folder_can_be_shown(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = _flashcore_db(folder / "r.db")
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    db.chmod(stat.S_IRUSR)
    try:
        res = cli.invoke(app, ["show", "--db", str(db)])
        assert res.exit_code == 0, res.output
        assert "naive" in res.output
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_read_only_store_opens_a_database_it_cannot_write(tmp_path, monkeypatch):
    """The same as above for root (who can write anywhere): the reader asks SQLite for a read-only
    connection, so even a write it tried would be refused."""
    db = _flashcore_db(tmp_path / "r.db")
    with Store(db, readonly=True) as s:
        assert [r.run_id for r in s.list_runs()] == ["r1"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            s.conn.execute("DELETE FROM results")


def test_readers_need_the_database_to_exist_and_never_create_one(tmp_path):
    missing = tmp_path / "sub" / "nope.db"
    for argv in (["show"], ["export", "--out", str(tmp_path / "x.csv")], ["compare", "a", "b"]):
        res = cli.invoke(app, [*argv, "--db", str(missing)])
        assert res.exit_code == 2 and str(missing) in res.output and "does not exist" in res.output
    assert not missing.parent.exists()


def test_a_writer_refuses_someone_elses_sqlite_file_too(tmp_path):
    db = _other_sqlite(tmp_path / "theirs.db")
    before = _fingerprint(db)
    with pytest.raises(StoreError, match="its tables: customers"):
        Store(db)
    assert _fingerprint(db) == before
    (tmp_path / "later").mkdir()
    future = _schema_99(tmp_path / "later" / "future.db")
    before = _fingerprint(future)
    with pytest.raises(StoreError, match="schema version 99"):
        Store(future)
    assert _fingerprint(future) == before
    assert future.read_bytes()[18:20] == b"\x01\x01"  # still a rollback journal: not switched to WAL


def test_run_creates_a_database_only_at_the_path_asked(tmp_path):
    db = tmp_path / "new" / "r.db"
    with Store(db) as s:  # what `flashcore run --db` opens
        assert s.list_runs() == []
    assert db.is_file()
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "other.db", create=False)
    assert not (tmp_path / "other.db").exists()


def _schema_1_copy(tmp_path: Path) -> Path:
    """A database as flashcore wrote it before leases: schema 1, runs without the lease columns."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite TEXT, created_at TEXT, git_commit TEXT, argv TEXT,
                           env TEXT, peak_tflops REAL, peak_gbs REAL, status TEXT, finished_at TEXT);
        INSERT INTO runs VALUES ('old-done', 'smoke', '2025-01-01T00:00:00+00:00', 'abc', '', '{}', NULL, NULL,
                                 'complete', '2025-01-01T00:01:00+00:00');
        INSERT INTO runs VALUES ('old-killed', 'smoke', '2025-01-02T00:00:00+00:00', 'abc', '', '{}', NULL, NULL,
                                 'running', '');
        CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, suite TEXT, backend TEXT,
                              problem_key TEXT, status TEXT, reason TEXT, batch INTEGER, heads_q INTEGER,
                              heads_kv INTEGER, seqlen_q INTEGER, seqlen_k INTEGER, head_dim INTEGER, dtype TEXT,
                              causal INTEGER, softmax_scale REAL, layout TEXT, extra TEXT, created_at TEXT,
                              UNIQUE(run_id, backend, problem_key));
    """)
    con.execute("INSERT INTO results (run_id, suite, backend, problem_key, status, reason, batch, heads_q, heads_kv, "
                "seqlen_q, seqlen_k, head_dim, dtype, causal, softmax_scale, layout, extra, created_at) VALUES "
                "('old-done', 'smoke', 'naive', ?, 'ok', '', 1, 2, 2, 16, 16, 64, 'bfloat16', 0, 0.125, 'bshd', "
                "'{}', '2025-01-01T00:00:30+00:00')", (P.key(),))
    con.commit()
    con.close()
    return db


def test_a_schema_1_database_is_read_as_it_is_and_migrated_in_place_by_a_writer(tmp_path):
    db = _schema_1_copy(tmp_path)
    before = _fingerprint(db)
    with Store(db, readonly=True) as s:  # a reader: no migration, nothing written
        assert s.schema == 1
        runs = {r.run_id: r for r in s.list_runs()}
        assert runs["old-done"].status == "complete"
        assert runs["old-killed"].status == "interrupted"  # no lease: its supervisor is long gone
        assert [r.backend for r in s.iter_results()] == ["naive"]
    assert _fingerprint(db)[:2] == before[:2]
    with Store(db) as s:  # a writer migrates, keeping every row
        assert s.schema == SCHEMA_VERSION
        assert [r.run_id for r in s.list_runs()] == ["old-done", "old-killed"]
        assert [(r.backend, r.median_ms) for r in s.iter_results()] == [("naive", None)]
        cols = {r[1] for r in s.conn.execute("PRAGMA table_info(runs)")}
        assert {"pid", "host", "heartbeat_at"} <= cols
        version = s.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert version == str(SCHEMA_VERSION)
        s.create_run(RunInfo(run_id="new", suite="smoke", created_at=now()))  # and it takes new runs


@pytest.mark.parametrize("committed", COMMITTED, ids=lambda p: p.name)
def test_the_committed_databases_open_read_only_untouched_and_migrate_on_a_copy(tmp_path, committed):
    before = _fingerprint(committed)
    with Store(committed, readonly=True) as s:
        runs = s.list_runs()
        n = s.conn.execute("SELECT count(*) FROM results").fetchone()[0]
    assert runs and n
    assert _fingerprint(committed) == before  # not a byte, not the mtime, no -wal/-shm left beside it
    copy = tmp_path / committed.name
    shutil.copy2(committed, copy)
    with Store(copy) as s:
        assert s.schema == SCHEMA_VERSION
        assert [r.run_id for r in s.list_runs()] == [r.run_id for r in runs]
        assert s.conn.execute("SELECT count(*) FROM results").fetchone()[0] == n
