"""Bringing an older results database to the current schema, in place.

``MIGRATIONS[v]`` turns a database at version ``v - 1`` into one at ``v`` (version 1 is the first
flashcore wrote; a new database is created at the current version directly). A writer that opens an
older database first copies it beside itself as ``NAME.db.bak-vN`` (SQLite's backup API: a consistent
copy, rows still in the write-ahead log included), then runs every migration it needs in one
transaction, so a failure leaves the database as it was.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from harness.store import schema
from harness.store.detail import DETAIL_SQL, fill_detail


def _add_lease_and_superseded(conn: sqlite3.Connection) -> None:
    """1 -> 2: the lease columns of ``runs``; ``superseded_results`` for re-measured cells."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    for col, typ in schema.LEASE_COLUMNS.items():
        if col not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {typ}")
    for statement in schema.superseded_sql().split(";"):
        if statement.strip():
            conn.execute(statement)


def _add_samples_and_clocks(conn: sqlite3.Connection) -> None:
    """2 -> 3: the ``samples`` and ``clocks`` tables, filled from every result's ``extra``."""
    for statement in DETAIL_SQL.split(";"):
        if statement.strip():
            conn.execute(statement)
    fill_detail(conn)


def _add_operation(conn: sqlite3.Connection) -> None:
    """3 -> 4: the operation of each result (every row so far a forward) and the gradients' error columns."""
    for table in ("results", "superseded_results"):
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for col, typ in schema.OPERATION_COLUMNS.items():
            if col not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {typ}")
        conn.execute(f"UPDATE {table} SET op='fwd' WHERE op IS NULL")


def _add_gpu_stamp(conn: sqlite3.Connection) -> None:
    """4 -> 5: the GPU of every cell (``gpu_index``, ``gpu_uuid``, ``gpu_name``) in ``results`` and
    ``superseded_results``. A row from before ran on its run's one worker: its name is the run's GPU
    (``runs.env``; ``cpu`` for a CPU run), its index 0 on a GPU, its UUID not recorded ('')."""
    import json

    for table in ("results", "superseded_results"):
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for col, typ in schema.GPU_COLUMNS.items():
            if col not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {typ}")
        for run_id, env in conn.execute("SELECT run_id, env FROM runs").fetchall():
            try:
                gpu = str(json.loads(env or "{}").get("gpu") or "")
            except (ValueError, AttributeError):
                gpu = ""
            on_cpu = gpu.startswith("none")  # "none (CPU)": what a run without a GPU recorded
            conn.execute(f"UPDATE {table} SET gpu_name=?, gpu_uuid='', gpu_index=? "
                         "WHERE run_id=? AND gpu_name IS NULL",
                         ("cpu" if on_cpu else gpu, None if on_cpu or not gpu else 0, run_id))
        conn.execute(f"UPDATE {table} SET gpu_name='', gpu_uuid='' WHERE gpu_name IS NULL")  # rows of no run


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _add_lease_and_superseded,
    3: _add_samples_and_clocks,
    4: _add_operation,
    5: _add_gpu_stamp,
}
assert sorted(MIGRATIONS) == list(range(2, schema.SCHEMA_VERSION + 1)), "a migration per version"


def backup_path(path: Path, version: int) -> Path:
    """Where the copy of ``path`` at ``version`` goes: beside it, never over an earlier copy."""
    target = path.with_name(f"{path.name}.bak-v{version}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bak-v{version}.{n}")
        n += 1
    return target


def back_up(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the database open on ``conn`` beside ``path``; the copy's path."""
    target = backup_path(path, version)
    with sqlite3.connect(target) as dest:
        conn.backup(dest)
    dest.close()
    return target


def migrate(conn: sqlite3.Connection, path: Path, found: int) -> int:
    """Bring the database at ``found`` to the current version in one transaction; the version it was
    at when the transaction began (another writer may have migrated it meanwhile)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = schema.found_version(conn, path, empty_ok=True)  # again, now that no one else can write
        if start == 0:
            schema.create_current(conn)
        for version in range(max(start, 1) + 1, schema.SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
        if start != schema.SCHEMA_VERSION:
            schema.stamp(conn, schema.SCHEMA_VERSION)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return start
