"""The schema version and its migrations: an older database is backed up beside itself and brought to
the current version in place, every row and every sample kept; a reader never migrates."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import SCHEMA_VERSION, RunInfo, Store, StoreError, now
from harness.store.migrations import MIGRATIONS
from harness.testing import as_older_schema
from harness.views.export import frame

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "h100" / "flashcore.db"
P = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)
CLOCKS = {"sm_mhz": 1890, "mem_mhz": 2619, "sm_max_mhz": 1980, "temp_c": 36, "power_w": 124.8,
          "throttle": ["sw_power_cap"]}

#: the tables as the flashcore before numbered migrations created them (meta.schema_version '2')
VERSION_2_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite TEXT, created_at TEXT, git_commit TEXT, argv TEXT, env TEXT,
                   peak_tflops REAL, peak_gbs REAL, status TEXT, finished_at TEXT, pid INTEGER, host TEXT,
                   heartbeat_at TEXT);
CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, suite TEXT, backend TEXT,
                      problem_key TEXT, status TEXT, reason TEXT, batch INTEGER, heads_q INTEGER, heads_kv INTEGER,
                      seqlen_q INTEGER, seqlen_k INTEGER, head_dim INTEGER, dtype TEXT, causal INTEGER,
                      softmax_scale REAL, layout TEXT, median_ms REAL, n_samples INTEGER, timing_mode TEXT,
                      extra TEXT, created_at TEXT, UNIQUE(run_id, backend, problem_key, timing_mode));
CREATE INDEX results_run ON results(run_id);
CREATE TABLE superseded_results (superseded_id INTEGER PRIMARY KEY AUTOINCREMENT, superseded_at TEXT,
                                 result_id INTEGER, run_id TEXT, suite TEXT, backend TEXT, problem_key TEXT,
                                 status TEXT, reason TEXT, batch INTEGER, heads_q INTEGER, heads_kv INTEGER,
                                 seqlen_q INTEGER, seqlen_k INTEGER, head_dim INTEGER, dtype TEXT, causal INTEGER,
                                 softmax_scale REAL, layout TEXT, median_ms REAL, n_samples INTEGER,
                                 timing_mode TEXT, extra TEXT, created_at TEXT);
CREATE INDEX superseded_run ON superseded_results(run_id);
INSERT INTO meta VALUES ('schema_version', '2');
"""
#: the extra of each stored cell: two timed (one of them pooled from two visits), one skipped
EXTRAS = {
    "naive": {"samples_ms": [1.5, 1.25, 1.75], "event_tare_ms": 0.25, "round_sizes": [3], "round_tares_ms": [0.25],
              "clocks_before": CLOCKS, "clocks_after": {**CLOCKS, "sm_mhz": 1980, "throttle": []}},
    "fa2": {"samples_ms": [2.0, 2.5, 3.0, 3.5], "round_sizes": [2, 2], "round_tares_ms": [0.5, 1.0],
            "clocks_before": {"error": "Not Supported"}},
    "sdpa": {},
}


def _version_2_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(VERSION_2_SQL)
    con.execute("INSERT INTO runs (run_id, suite, created_at, env, status) VALUES ('r1', 'smoke', ?, '{}', "
                "'complete')", (now(),))
    for backend, extra in EXTRAS.items():
        con.execute("INSERT INTO results (run_id, suite, backend, problem_key, status, batch, heads_q, heads_kv, "
                    "seqlen_q, seqlen_k, head_dim, dtype, causal, layout, median_ms, n_samples, timing_mode, extra, "
                    "created_at) VALUES ('r1', 'smoke', ?, ?, 'ok', 1, 2, 2, 16, 16, 64, 'bfloat16', 0, 'bshd', 1.0, "
                    "?, 'isolated', ?, ?)",
                    (backend, P.key(), len(extra.get("samples_ms", [])), json.dumps(extra), now()))
    con.commit()
    con.close()
    return path


def _header(path: Path) -> tuple[int, str]:
    con = sqlite3.connect(path)
    try:
        return (con.execute("PRAGMA user_version").fetchone()[0],
                con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        con.close()


def _dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def _without_change_counters(data: bytes) -> bytes:
    """The file less the header counters SQLite's backup API stamps on the copy it writes: the change
    counter (offset 24), the schema cookie (40) and the version-valid-for number (92)."""
    return data[:24] + data[28:40] + data[44:92] + data[96:]


def _samples_in_extra(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return sum(len(json.loads(e or "{}").get("samples_ms") or []) for (e,) in con.execute("SELECT extra FROM results"))
    finally:
        con.close()


def test_there_is_a_migration_to_every_version():
    assert sorted(MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))


def test_a_version_2_database_migrates_with_every_row_and_every_sample(tmp_path):
    db = _version_2_db(tmp_path / "old.db")
    original = db.read_bytes()
    before = _dump(db)
    with Store(db, readonly=True) as s:
        rows_before = list(s.iter_results())
    with Store(db) as s:
        assert (s.schema, s.migrated_from) == (SCHEMA_VERSION, 2)
        assert s.backup == tmp_path / "old.db.bak-v2"
        assert list(s.iter_results()) == rows_before  # every row, its extra untouched
        samples = s.conn.execute("SELECT result_id, idx, ms, raw_ms FROM samples ORDER BY result_id, idx").fetchall()
        clocks = s.conn.execute("SELECT result_id, at, sm_mhz, throttle, error FROM clocks ORDER BY result_id, at"
                                ).fetchall()
    assert [tuple(r) for r in samples] == [
        (1, 0, 1.25, 1.5), (1, 1, 1.0, 1.25), (1, 2, 1.5, 1.75),  # less the event tare
        (2, 0, 1.5, 2.0), (2, 1, 2.0, 2.5), (2, 2, 2.0, 3.0), (2, 3, 2.5, 3.5),  # less each visit's own tare
    ]
    assert [tuple(r) for r in clocks] == [(1, "after", 1980.0, "", None), (1, "before", 1890.0, "sw_power_cap", None),
                                          (2, "before", None, None, "Not Supported")]
    assert _header(db) == (SCHEMA_VERSION, str(SCHEMA_VERSION))
    backup = tmp_path / "old.db.bak-v2"
    # the backup is the original: every byte of every page, less the counters the backup API stamps
    assert _without_change_counters(backup.read_bytes()) == _without_change_counters(original)
    assert len(backup.read_bytes()) == len(original)
    assert _dump(backup) == before


def test_a_second_open_of_a_migrated_database_changes_nothing(tmp_path):
    db = _version_2_db(tmp_path / "old.db")
    Store(db).close()
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data, mtime = db.read_bytes(), db.stat().st_mtime_ns
    with Store(db) as s:
        assert s.migrated_from is None and s.backup is None and s.schema == SCHEMA_VERSION
    assert (db.read_bytes(), db.stat().st_mtime_ns) == (data, mtime)
    assert sorted(p.name for p in tmp_path.iterdir() if ".bak-" in p.name) == ["old.db.bak-v2"]


def test_new_writes_fill_the_samples_and_clocks_and_a_replaced_row_takes_its_own_along(tmp_path):
    with Store(tmp_path / "new.db") as s:
        assert _header(tmp_path / "new.db") == (SCHEMA_VERSION, str(SCHEMA_VERSION))
        s.create_run(RunInfo(run_id="r1", suite="smoke", created_at=now()))
        s.add_result(Result.for_problem("r1", "smoke", "naive", P, "ok", median_ms=1.0, extra=EXTRAS["naive"]))
        s.add_result(Result.for_problem("r1", "smoke", "naive", P, "ok", median_ms=1.0, extra=EXTRAS["fa2"]))
        assert tuple(s.conn.execute("SELECT count(*), min(result_id) FROM samples").fetchone()) == (4, 2)
        assert s.conn.execute("SELECT count(*) FROM clocks").fetchone()[0] == 1
        s.add_result(Result.for_problem("r1", "smoke", "naive", P, "ok", median_ms=1.0, extra=EXTRAS["naive"]),
                     keep_previous=True)  # measured again: the row keeps its id, its detail is the new one's
        assert [tuple(r) for r in s.conn.execute("SELECT DISTINCT result_id FROM samples")] == [(2,)]
        assert s.conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 3
        assert s.conn.execute("SELECT count(*) FROM clocks").fetchone()[0] == 2


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed database")
def test_the_committed_database_migrates_keeping_its_rows_and_its_samples(tmp_path):
    copy = tmp_path / COMMITTED.name
    shutil.copy2(COMMITTED, copy)
    with Store(copy, readonly=True) as s:
        n = s.conn.execute("SELECT count(*) FROM results").fetchone()[0]
        found = s.schema
    samples = _samples_in_extra(copy)
    assert n and samples
    with Store(copy) as s:
        assert (s.schema, s.migrated_from) == (SCHEMA_VERSION, found)
        assert s.conn.execute("SELECT count(*) FROM results").fetchone()[0] == n
        assert s.conn.execute("SELECT count(*) FROM samples").fetchone()[0] == samples
        assert s.conn.execute("SELECT count(*) FROM samples WHERE raw_ms IS NULL").fetchone()[0] == 0
        assert s.conn.execute("SELECT count(*) FROM clocks").fetchone()[0] > 0
    assert _samples_in_extra(copy) == samples  # extra as it was, for the readers of it
    assert (tmp_path / f"{COMMITTED.name}.bak-v{found}").is_file()


def test_export_writes_the_same_columns_after_the_migration(tmp_path):
    pytest.importorskip("pandas")
    db = _version_2_db(tmp_path / "old.db")
    with Store(db, readonly=True) as s:
        before = frame(s)
    with Store(db) as s:
        after = frame(s)
    assert list(after.columns) == list(before.columns)
    assert after.equals(before)


def test_a_database_newer_than_this_flashcore_is_a_one_line_error(tmp_path):
    db = _version_2_db(tmp_path / "future.db")
    with sqlite3.connect(db) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    data = db.read_bytes()
    for readonly in (True, False):
        with pytest.raises(StoreError) as err:
            Store(db, readonly=readonly)
        message = str(err.value)
        assert "\n" not in message and str(db) in message
        assert f"schema version {SCHEMA_VERSION + 1}" in message
        assert f"the newest it knows is {SCHEMA_VERSION}" in message
    assert db.read_bytes() == data
    assert not list(tmp_path.glob("*.bak-*"))


def test_a_read_only_open_does_not_migrate_and_says_which_version_it_found(tmp_path):
    db = _version_2_db(tmp_path / "old.db")
    data, mtime = db.read_bytes(), db.stat().st_mtime_ns
    with Store(db, readonly=True) as s:
        assert s.schema == 2 and s.backup is None and s.migrated_from is None
        assert s.schema_text().startswith("schema version 2 (read as it is")
        assert [r.backend for r in s.iter_results()] == list(EXTRAS)
    assert (db.read_bytes(), db.stat().st_mtime_ns) == (data, mtime)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    db = _version_2_db(tmp_path / "old.db")
    before = _dump(db)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (result_id INTEGER)")  # a change the failure must take back
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(MIGRATIONS, SCHEMA_VERSION, broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        Store(db)
    assert _dump(db) == before
    assert _header(db) == (0, "2")


def test_a_version_3_database_gets_the_gpu_of_every_cell_with_no_row_lost(tmp_path):
    """5: the GPU stamp. A row from before ran on its run's one worker: its GPU is the run's."""
    db = tmp_path / "v3.db"
    with Store(db) as s:
        for rid, gpu in (("gpu-run", "NVIDIA H200"), ("cpu-run", "none (CPU)")):
            s.create_run(RunInfo(run_id=rid, suite="smoke", created_at=now(), env={"gpu": gpu}))
            s.add_result(Result.for_problem(rid, "smoke", "naive", P, "failed", extra=EXTRAS["naive"]))
            s.add_result(Result.for_problem(rid, "smoke", "naive", P, "ok", median_ms=1.0, extra=EXTRAS["naive"]),
                         keep_previous=True)
    as_older_schema(db, 3, ("gpu_index", "gpu_uuid", "gpu_name"))
    with Store(db, readonly=True) as s:
        assert s.schema == 3
        before = [(r.run_id, r.backend, r.status, r.median_ms, r.extra) for r in s.iter_results()]
    with Store(db) as s:
        assert (s.schema, s.migrated_from, s.backup) == (5, 3, tmp_path / "v3.db.bak-v3")
        rows = list(s.iter_results())
        assert [(r.run_id, r.backend, r.status, r.median_ms, r.extra) for r in rows] == before
        assert {r.run_id: (r.gpu_index, r.gpu_uuid, r.gpu_name) for r in rows} == {
            "gpu-run": (0, "", "NVIDIA H200"), "cpu-run": (None, "", "cpu")}
        old = s.conn.execute("SELECT run_id, status, gpu_name FROM superseded_results ORDER BY run_id").fetchall()
        assert [tuple(r) for r in old] == [("cpu-run", "failed", "cpu"), ("gpu-run", "failed", "NVIDIA H200")]
