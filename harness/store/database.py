"""The results database: an embedded SQLite file, one row per measured cell, committed as it completes.

Each result is written in its own transaction (WAL journal), so a run killed at any moment loses at most
the cell in flight, and ``--resume`` re-runs exactly the cells without a row.

Readers (``Store(path, readonly=True)``: show, export, compare, report, audit) open the file read-only
(SQLite ``mode=ro``) and refuse, without touching it, a file that is not a flashcore database; only a
writer opened with ``create=True`` (``flashcore run``) makes a new database, and only at the path asked.

A running run holds a lease in its ``runs`` row: the supervisor's pid and host and a heartbeat renewed
every ``HEARTBEAT_S`` seconds. A ``running`` row whose lease lapsed (its process gone from this host, or
no heartbeat for ``STALE_S`` seconds) reads as ``interrupted``, and is stored so by the next writer.

A cell measured again in the same run (``flashcore run --retry-failed``) replaces its row in ``results``
(so every reader sees the latest attempt), and the row it replaces is kept in ``superseded_results``
with the time it was superseded (``flashcore export --superseded`` includes them).

The schema is versioned (``harness.store.schema``): a writer that opens an older database backs it up
beside itself and migrates it in place (``harness.store.migrations``), every row kept; a reader reads it
as it is, at the version it found (``Store.schema``), and never changes it.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.records.result import Result
from harness.store import migrations
from harness.store.detail import drop_detail, write_detail
from harness.store.errors import StoreError
from harness.store.schema import (
    LEASE_COLUMNS,
    READABLE_SCHEMAS,
    RESULTS_UNIQUE,
    SCHEMA_VERSION,
    found_version,
    result_column_sql,
)

__all__ = ["DEFAULT_DB", "HEARTBEAT_S", "LEASE_COLUMNS", "READABLE_SCHEMAS", "SCHEMA_VERSION", "STALE_S",
           "Heartbeat", "RunInfo", "Store", "StoreError", "now", "pid_alive"]

DEFAULT_DB = Path("results/flashcore.db")
SQLITE_MAGIC = b"SQLite format 3\x00"
#: a running supervisor renews its lease at least this often (seconds)
HEARTBEAT_S = 20.0
#: a lease not renewed for this long belongs to a dead run, on any host (seconds)
STALE_S = 120.0


@dataclass
class RunInfo:
    run_id: str
    suite: str
    created_at: str
    git_commit: str = ""
    argv: str = ""
    env: dict[str, Any] | None = None
    peak_tflops: float | None = None  # matmul peak measured in this run
    peak_gbs: float | None = None  # device copy bandwidth measured in this run
    status: str = "running"  # running | complete | interrupted; as read, a lapsed lease reads interrupted
    finished_at: str = ""
    pid: int | None = None  # the lease: the supervisor's process id,
    host: str = ""  # the host it runs on,
    heartbeat_at: str = ""  # and when it last said it was alive (UTC, ISO 8601)

    def lease_alive(self, at: datetime | None = None) -> bool:
        """Whether the supervisor that holds this run's lease is still alive: a heartbeat younger than
        STALE_S and, on this host, its process still there. A run from before leases has none."""
        if not self.heartbeat_at:
            return False
        try:
            beat = datetime.fromisoformat(self.heartbeat_at)
        except ValueError:
            return False
        if beat.tzinfo is None:  # written without a zone: flashcore writes UTC
            beat = beat.replace(tzinfo=timezone.utc)
        age = ((at or datetime.now(timezone.utc)) - beat).total_seconds()
        if age > STALE_S:
            return False
        if self.host == socket.gethostname() and self.pid:
            return pid_alive(self.pid)
        return True

    def lease_text(self) -> str:
        """Who holds the lease, for messages."""
        try:
            at = datetime.fromisoformat(self.heartbeat_at)
            age = (datetime.now(timezone.utc) - at.replace(tzinfo=at.tzinfo or timezone.utc)).total_seconds()
            beat = f"last heartbeat {age:.0f} s ago"
        except ValueError:
            beat = "no heartbeat"
        return f"pid {self.pid} on {self.host or '?'}, {beat}"


_RUN_FIELDS = {f.name for f in fields(RunInfo)}
_RESULT_FIELDS = set(Result.columns())
#: problem fields with a non-null default, added after the first schema (serving shapes)
_PROBLEM_DEFAULTED = ("kind", "page_size", "lengths", "window_left", "window_right", "softcap")


class Heartbeat:
    """Renews a run's lease every HEARTBEAT_S seconds from a thread with its own connection, so a cell
    that takes minutes does not let the lease lapse. Use as a context manager around the run."""

    def __init__(self, path: Path, run_id: str, every_s: float = HEARTBEAT_S) -> None:
        self.path, self.run_id, self.every_s = path, run_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                with closing(sqlite3.connect(self.path, timeout=30)) as conn, conn:
                    conn.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=? AND pid=?",
                                 (now(), self.run_id, os.getpid()))
            except sqlite3.Error:  # a busy or vanished file: the next beat tries again
                pass

    def start(self) -> None:
        """Begin renewing (once; a second call does nothing)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """The results database at ``path``. ``readonly=True``: read it, never write (the file must be a
    flashcore database); otherwise a writer, which makes a new database only with ``create=True`` and
    migrates an older schema in place."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.conn: sqlite3.Connection | None = None
        #: the copy a writer made before migrating, and the version it migrated from (None: no migration)
        self.backup: Path | None = None
        self.migrated_from: int | None = None
        exists = self.path.exists()
        if (readonly or not create) and not exists:
            raise StoreError(f"results database {self.path} does not exist: run `flashcore run` first or pass --db")
        if exists and not self.path.is_file():
            raise StoreError(f"{self.path} is a directory, not a results database: pass --db PATH/TO/flashcore.db")
        # the file's first bytes say whether it is SQLite at all, before SQLite opens (or changes) it
        head = self._head() if exists else b""
        if exists and (head or readonly) and head != SQLITE_MAGIC:
            what = "an empty file" if not head else "not a SQLite file"
            raise StoreError(f"{self.path} is not a flashcore results database ({what}); nothing was changed")
        try:
            if readonly:
                self.conn = self._connect_readonly()
                self.schema = self._check_schema()
            else:
                if create:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=30)
                self.conn.row_factory = sqlite3.Row
                found = self._check_schema(empty_ok=create)  # before WAL: a refused file stays as it was
                if 0 < found < SCHEMA_VERSION:  # the copy before WAL too, so it is the file as it was
                    self.backup = migrations.back_up(self.conn, self.path, found)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                if found < SCHEMA_VERSION:
                    self.migrated_from = migrations.migrate(self.conn, self.path, found)
                self.schema = SCHEMA_VERSION
        except sqlite3.OperationalError as exc:  # "unable to open database file", locked...: name the file
            self._close_quietly()
            raise StoreError(f"{self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise StoreError(f"{self.path} is not a flashcore results database: {exc}") from None
        except StoreError:
            self._close_quietly()
            raise

    def _head(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                return f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read: {exc.strerror or exc}") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri() + "?mode=ro"
        # no -wal or -journal beside it: no writer has it open, and immutable keeps SQLite from leaving
        # empty -wal/-shm files beside a database it only read (it must not touch a read-only folder either)
        if not any(Path(f"{self.path}{s}").exists() for s in ("-wal", "-journal")):
            uri += "&immutable=1"
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def _close_quietly(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _check_schema(self, empty_ok: bool = False) -> int:
        """The schema version of a flashcore database (StoreError for anything else); 0 for a SQLite file
        without tables when ``empty_ok``."""
        assert self.conn is not None
        return found_version(self.conn, self.path, empty_ok=empty_ok)

    def schema_text(self) -> str:
        """The version found, for messages: and, for a reader of an older database, that it was not migrated."""
        if self.schema == SCHEMA_VERSION:
            return f"schema version {self.schema}"
        return (f"schema version {self.schema} (read as it is; a writer migrates it to {SCHEMA_VERSION}, "
                f"after a backup beside it)")

    def close(self) -> None:
        self._close_quietly()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: RunInfo) -> None:
        d = {f.name: getattr(run, f.name) for f in fields(RunInfo)}
        d["env"] = json.dumps(run.env or {})
        with self.conn:
            self.conn.execute(f"INSERT INTO runs ({', '.join(d)}) VALUES ({', '.join('?' for _ in d)})",
                              tuple(d.values()))

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "env" in fields:
            fields["env"] = json.dumps(fields["env"] or {})
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.conn:
            self.conn.execute(f"UPDATE runs SET {cols} WHERE run_id=?", (*fields.values(), run_id))

    def get_run(self, run_id: str) -> RunInfo:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            known = ", ".join(r.run_id for r in self.list_runs()[-5:]) or "none"
            raise StoreError(f"no run {run_id!r} in {self.path} (latest: {known})")
        d = dict(row)
        d["env"] = json.loads(d["env"] or "{}")
        info = RunInfo(**{k: v for k, v in d.items() if k in _RUN_FIELDS and v is not None})
        if info.status == "running" and not info.lease_alive():
            info.status = "interrupted"  # its supervisor is gone (kill -9, a lost node): it will never finish
        return info

    def run_status(self, run_id: str) -> str | None:
        """The run's status as ``get_run`` reads it, or None when the store has no such run."""
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is None:
            return None
        return self.get_run(run_id).status

    # -- the lease of a running run ---------------------------------------------------------------------
    def mark_interrupted(self) -> list[str]:
        """Store as ``interrupted`` every ``running`` run whose lease lapsed; their ids."""
        stored = [r[0] for r in self.conn.execute("SELECT run_id FROM runs WHERE status='running'")]
        dead = [rid for rid in stored if self.get_run(rid).status == "interrupted"]
        with self.conn:
            for rid in dead:
                self.conn.execute("UPDATE runs SET status='interrupted' WHERE run_id=? AND status='running'",
                                  (rid,))
        return dead

    def refuse_live(self, run_id: str) -> None:
        """StoreError if the run is running under another supervisor that is still alive (a run that
        ended holds no lease, whoever ran it)."""
        info = self.get_run(run_id)  # status "running" as read: its lease is alive
        if info.status == "running" and not (info.pid == os.getpid() and info.host == socket.gethostname()):
            raise StoreError(f"run {run_id!r} is still running ({info.lease_text()}): wait for it to end or "
                             "stop it; only a run that ended can be continued")

    def claim_run(self, run_id: str) -> RunInfo:
        """Take the lease of an existing run for this process, refusing one whose supervisor still lives
        (checked and taken in one write transaction, so two resumes cannot both win)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.refuse_live(run_id)
            self.conn.execute("UPDATE runs SET status='running', pid=?, host=?, heartbeat_at=? WHERE run_id=?",
                              (os.getpid(), socket.gethostname(), now(), run_id))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return self.get_run(run_id)

    def heartbeat(self, run_id: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=?", (now(), run_id))

    def list_runs(self) -> list[RunInfo]:
        rows = self.conn.execute("SELECT run_id FROM runs ORDER BY created_at, rowid").fetchall()
        return [self.get_run(r[0]) for r in rows]

    def latest_run_id(self, suite: str | None = None) -> str | None:
        q = "SELECT run_id FROM runs"
        args: tuple[Any, ...] = ()
        if suite:
            q += " WHERE suite=?"
            args = (suite,)
        row = self.conn.execute(q + " ORDER BY created_at DESC, rowid DESC LIMIT 1", args).fetchone()
        return row[0] if row else None

    # -- results ----------------------------------------------------------------------------
    def _result_columns(self) -> list[str]:
        return [r[1] for r in self.conn.execute("PRAGMA table_info(results)")]

    def _upgrade_results(self) -> None:
        """Give a results table from before a Result field existed its column (``ALTER TABLE``), and one
        from before timing modes its new uniqueness (rebuilt: SQLite cannot change a constraint in place).
        Done at the first write only, so reading an old database never changes it."""
        if getattr(self, "_upgraded", False):
            return
        have = self._result_columns()
        missing = [c for c in Result.columns() if c not in have]
        if missing:
            with self.conn:
                if "timing_mode" in missing:  # rebuild under the new UNIQUE, every old row an isolated one
                    self.conn.execute("ALTER TABLE results RENAME TO results_before_modes")
                    self.conn.execute(f"CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, {result_column_sql()}, "
                                      f"{RESULTS_UNIQUE})")
                    cols = ", ".join(["id", *[c for c in have if c != "id" and c in Result.columns()]])
                    self.conn.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM results_before_modes")
                    self.conn.execute("UPDATE results SET timing_mode='isolated' WHERE timing_mode IS NULL")
                    self.conn.execute("DROP TABLE results_before_modes")
                    self.conn.execute("CREATE INDEX IF NOT EXISTS results_run ON results(run_id)")
                else:
                    types = dict(c.split(" ", 1) for c in result_column_sql().split(", "))
                    for c in missing:
                        self.conn.execute(f"ALTER TABLE results ADD COLUMN {c} {types[c]}")
        self._upgraded = True

    def add_result(self, result: Result, *, keep_previous: bool = False) -> None:
        """Store one cell. ``keep_previous``: a row the cell already has in this run (and timing mode) is
        moved to ``superseded_results`` first, and the new one takes its place (and position)."""
        self._upgrade_results()
        d = result.as_dict()
        d["extra"] = json.dumps(d["extra"], default=str)
        if not d["created_at"]:
            d["created_at"] = now()
        cols = ", ".join(d)
        marks = ", ".join("?" for _ in d)
        with self.conn:
            old = None
            if keep_previous:
                old = self.conn.execute(
                    "SELECT id FROM results WHERE run_id=? AND backend=? AND problem_key=? AND timing_mode=?",
                    (d["run_id"], d["backend"], d["problem_key"], d.get("timing_mode", "isolated"))).fetchone()
            if old is None:
                # a replaced row takes its detail rows with it (REPLACE's delete fires no trigger)
                for (replaced,) in self.conn.execute(
                        "SELECT id FROM results WHERE run_id=? AND backend=? AND problem_key=? AND timing_mode=?",
                        (d["run_id"], d["backend"], d["problem_key"], d.get("timing_mode", "isolated"))).fetchall():
                    drop_detail(self.conn, replaced)
                cur = self.conn.execute(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})",
                                        tuple(d.values()))
                write_detail(self.conn, cur.lastrowid, result.extra)
                return
            have = [c for c in self._result_columns() if c != "id"]
            kept = [c for c in have if c in {r[1] for r in self.conn.execute("PRAGMA table_info(superseded_results)")}]
            self.conn.execute(f"INSERT INTO superseded_results (superseded_at, result_id, {', '.join(kept)}) "
                              f"SELECT ?, id, {', '.join(kept)} FROM results WHERE id=?", (now(), old[0]))
            self.conn.execute(f"UPDATE results SET {', '.join(f'{k}=?' for k in d)} WHERE id=?",
                              (*d.values(), old[0]))
            write_detail(self.conn, old[0], result.extra)

    def failed_cells(self, run_id: str) -> set[tuple[str, str]]:
        """The (backend, problem key) of every cell of the run whose latest result is ``failed``."""
        rows = self.conn.execute("SELECT backend, problem_key FROM results WHERE run_id=? AND status='failed'",
                                 (run_id,))
        return {(r[0], r[1]) for r in rows}

    def _has_superseded(self) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='superseded_results'"
                                 ).fetchone() is not None

    def superseded_counts(self, run_id: str | None = None) -> dict[tuple[str, str, str], int]:
        """Per (run id, backend, problem key): how many earlier results of the cell were superseded."""
        if not self._has_superseded():  # a schema-1 database read as it is
            return {}
        q = "SELECT run_id, backend, problem_key, count(*) FROM superseded_results"
        args: tuple[Any, ...] = ()
        if run_id:
            q += " WHERE run_id=?"
            args = (run_id,)
        return {(r[0], r[1], r[2]): r[3] for r in self.conn.execute(q + " GROUP BY run_id, backend, problem_key",
                                                                    args)}

    def iter_superseded(self, run_id: str) -> Iterator[Result]:
        """The earlier results of the run's re-measured cells, oldest first."""
        if not self._has_superseded():
            return
        for row in self.conn.execute("SELECT * FROM superseded_results WHERE run_id=? ORDER BY superseded_id",
                                     (run_id,)):
            d = dict(row)
            for k in ("superseded_id", "superseded_at", "result_id"):
                d.pop(k)
            yield self._row_to_result(d)

    def superseded_frame(self, run_id: str | None = None):  # -> pandas.DataFrame
        """The superseded results (earlier attempts of re-measured cells), with ``superseded_at``."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        if self._has_superseded():
            q = "SELECT * FROM superseded_results"
            args: tuple[Any, ...] = ()
            if run_id:
                q += " WHERE run_id=?"
                args = (run_id,)
            for row in self.conn.execute(q + " ORDER BY superseded_id", args):
                d = dict(row)
                when = d.pop("superseded_at")
                for k in ("superseded_id", "result_id"):
                    d.pop(k)
                r = self._row_to_result(d)
                rows.append({**r.as_dict(), "superseded_at": when})
        return pd.DataFrame(rows, columns=[*Result.columns(), "superseded_at"])

    def done_cells(self, run_id: str) -> set[tuple[str, str]]:
        rows = self.conn.execute("SELECT backend, problem_key FROM results WHERE run_id=?", (run_id,))
        return {(r[0], r[1]) for r in rows}

    def done_visits(self, run_id: str) -> dict[tuple[str, str, str], tuple[str, int]]:
        """Per (backend, problem key, timing mode) recorded in the run: its status and how many visits of
        the rotation its row pools (``--resume`` runs the visits after those)."""
        have = self._result_columns()
        mode = "timing_mode" if "timing_mode" in have else "'isolated'"
        rounds = "rounds" if "rounds" in have else "NULL"
        rows = self.conn.execute(f"SELECT backend, problem_key, {mode}, status, {rounds} FROM results "
                                 "WHERE run_id=?", (run_id,))
        return {(r[0], r[1], r[2] or "isolated"): (r[3], int(r[4] or 1)) for r in rows}

    def get_result(self, run_id: str, backend: str, problem_key: str, timing_mode: str = "isolated") -> Result | None:
        """The stored row of one cell in one timing mode, or None."""
        for r in self.iter_results(run_id, backend=backend, problem_key=problem_key):
            if r.timing_mode == timing_mode:
                return r
        return None

    def iter_results(self, run_id: str | None = None, *, backend: str | None = None,
                     problem_key: str | None = None) -> Iterator[Result]:
        q = "SELECT * FROM results"
        where: list[str] = []
        args: tuple[Any, ...] = ()
        for col, value in (("run_id", run_id), ("backend", backend), ("problem_key", problem_key)):
            if value:
                where.append(f"{col}=?")
                args += (value,)
        if where:
            q += " WHERE " + " AND ".join(where)
        for row in self.conn.execute(q + " ORDER BY id", args):
            d = dict(row)
            d.pop("id")
            yield self._row_to_result(d)

    @staticmethod
    def _row_to_result(d: dict[str, Any]) -> Result:
        """A stored row (without its id) as a Result: JSON and booleans decoded."""
        if d.get("timing_mode") is None:  # a row from before timing modes: timed the isolated way
            d["timing_mode"] = "isolated"
        if d.get("op") is None:  # a row from before operations: a forward
            d["op"] = "fwd"
        d["extra"] = json.loads(d.get("extra") or "{}")
        for b in ("causal", "seed_bounds_ok", "timed_outputs_ok", "deterministic", "passed"):
            if d.get(b) is not None:  # a column an older schema lacks keeps the Result default
                d[b] = bool(d[b])
        for c in _PROBLEM_DEFAULTED:  # a row written before the column existed (NULL) is the plain dense problem
            if d.get(c) is None:
                d.pop(c, None)
        return Result(**{k: v for k, v in d.items() if k in _RESULT_FIELDS})

    def results_frame(self, run_id: str | None = None):  # -> pandas.DataFrame
        import pandas as pd

        rows = [r.as_dict() for r in self.iter_results(run_id)]
        return pd.DataFrame(rows, columns=Result.columns())

    def runs_frame(self):
        import pandas as pd

        with closing(self.conn.execute("SELECT * FROM runs ORDER BY created_at, rowid")) as cur:
            df = pd.DataFrame([dict(r) for r in cur], columns=[c[0] for c in cur.description])
        if not df.empty:  # the status as read: a running run whose lease lapsed is interrupted
            df["status"] = [self.get_run(rid).status for rid in df["run_id"]]
        return df
