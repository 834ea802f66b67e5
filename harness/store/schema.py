"""The results database's tables, and which schema version a database file is at.

``PRAGMA user_version`` holds the version; databases from before it was kept (user_version 0) carry it
in ``meta.schema_version``, checked against the tables they hold:

1. ``meta``, ``runs`` and ``results``;
2. ``runs`` with a lease (``pid``, ``host``, ``heartbeat_at``), and ``superseded_results``;
3. ``samples`` and ``clocks``: the per-sample times and clock readings of ``extra``, normalised;
4. the operation of each result (``op``: fwd, bwd, fwd_bwd; every older row a forward) and the errors of
   a backward's gradients (``dq_max_err``, ``dk_max_err``, ``dv_max_err`` and their ``*_rel_l2_err``), in
   ``results`` and ``superseded_results``.
5. ``gpu_index``, ``gpu_uuid`` and ``gpu_name`` in ``results`` and ``superseded_results``: the GPU each cell
   ran on (a run may use several, ``flashcore run --gpus``).

``results`` has a column per field of ``Result`` in every version; a field added to ``Result`` gets its
column at the first write (see ``Store``), not a version of its own.
"""
from __future__ import annotations

import sqlite3
import typing
from pathlib import Path

from harness.records.result import Result
from harness.store.detail import DETAIL_SQL
from harness.store.errors import StoreError

SCHEMA_VERSION = 5
#: schema versions this flashcore reads (a writer migrates the older ones to SCHEMA_VERSION)
READABLE_SCHEMAS = tuple(range(1, SCHEMA_VERSION + 1))
#: columns schema 2 added to runs: the lease
LEASE_COLUMNS = {"pid": "INTEGER", "host": "TEXT", "heartbeat_at": "TEXT"}
#: columns schema 4 added to results and superseded_results: the operation and the gradients' errors
OPERATION_COLUMNS = {"op": "TEXT", "dq_max_err": "REAL", "dk_max_err": "REAL", "dv_max_err": "REAL",
                     "dq_rel_l2_err": "REAL", "dk_rel_l2_err": "REAL", "dv_rel_l2_err": "REAL"}
#: columns schema 5 added to results and superseded_results: the GPU each cell ran on
GPU_COLUMNS = {"gpu_index": "INTEGER", "gpu_uuid": "TEXT", "gpu_name": "TEXT"}
#: a result row per cell and timing mode (rows written before timing_mode existed are isolated)
RESULTS_UNIQUE = "UNIQUE(run_id, backend, problem_key, timing_mode)"

_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}


def result_column_sql() -> str:
    """The ``results`` columns, one per ``Result`` field, typed from its annotation."""
    hints = typing.get_type_hints(Result)
    cols = []
    for name in Result.columns():
        if name == "extra":
            cols.append("extra TEXT")
            continue
        t = hints[name]
        base = next((v for k, v in _TYPES.items() if k is t or k in getattr(t, "__args__", ())), "TEXT")
        cols.append(f"{name} {base}")
    return ", ".join(cols)


def runs_sql() -> str:
    lease = ", ".join(f"{k} {t}" for k, t in LEASE_COLUMNS.items())
    return ("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, suite TEXT, created_at TEXT, "
            "git_commit TEXT, argv TEXT, env TEXT, peak_tflops REAL, peak_gbs REAL, status TEXT, "
            f"finished_at TEXT, {lease})")


def superseded_sql() -> str:
    return ("CREATE TABLE IF NOT EXISTS superseded_results (superseded_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            f"superseded_at TEXT, result_id INTEGER, {result_column_sql()});\n"
            "CREATE INDEX IF NOT EXISTS superseded_run ON superseded_results(run_id);")


def create_current(conn: sqlite3.Connection) -> None:
    """Create every table of the current schema in an empty database (inside the caller's transaction)."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute(runs_sql())
    conn.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {result_column_sql()}, "
                 f"{RESULTS_UNIQUE})")
    conn.execute("CREATE INDEX IF NOT EXISTS results_run ON results(run_id)")
    for statement in (superseded_sql() + DETAIL_SQL).split(";"):
        if statement.strip():
            conn.execute(statement)
    stamp(conn, SCHEMA_VERSION)


def stamp(conn: sqlite3.Connection, version: int) -> None:
    """Record ``version`` in the header and, for flashcore from before user_version, in ``meta``."""
    conn.execute(f"PRAGMA user_version = {int(version)}")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _structural_version(conn: sqlite3.Connection, tables: set[str]) -> int:
    """The newest version whose tables and columns the database holds."""
    runs = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    if not (set(LEASE_COLUMNS) <= runs and "superseded_results" in tables):
        return 1
    if not {"samples", "clocks"} <= tables:
        return 2
    results = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    if set(GPU_COLUMNS) <= results:
        return 5
    return 4 if set(OPERATION_COLUMNS) <= results else 3


def found_version(conn: sqlite3.Connection, path: Path, *, empty_ok: bool = False) -> int:
    """The schema version of the flashcore database open on ``conn``; 0 for a SQLite file without
    tables when ``empty_ok``. StoreError for anything else, or a version this flashcore does not know."""
    tables = _tables(conn)
    if not tables and empty_ok:
        return 0
    if not {"meta", "runs", "results"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) or "none"
        raise StoreError(f"{path} is not a flashcore results database (its tables: {shown}); nothing was changed")
    header = conn.execute("PRAGMA user_version").fetchone()[0]
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    stamped = row[0] if row else "missing"
    try:
        in_meta: int | None = int(stamped)
    except (TypeError, ValueError):
        in_meta = None
    # the newer of the two: a flashcore that knows more may have written either
    version = max(header, in_meta) if header and in_meta is not None else (header or in_meta)
    known = ", ".join(map(str, READABLE_SCHEMAS))
    if version is None or version not in READABLE_SCHEMAS:
        newest = f" (the newest it knows is {SCHEMA_VERSION})" if version and version > SCHEMA_VERSION else ""
        raise StoreError(f"{path}: schema version {version if version is not None else stamped}, this flashcore "
                         f"reads {known}{newest}; nothing was changed")
    # a stamp from before user_version is trusted only as far as the tables bear it out
    return version if header else min(version, _structural_version(conn, tables))
