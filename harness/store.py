"""The results database: an embedded SQLite file, one row per measured cell, committed as it completes.

Each result is written in its own transaction (WAL journal), so a run killed at any moment loses at most
the cell in flight, and ``--resume`` re-runs exactly the cells without a row.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.result import Result

DEFAULT_DB = Path("results/flashcore.db")
SCHEMA_VERSION = 1

_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}


def _column_sql() -> str:
    import typing

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


class StoreError(RuntimeError):
    pass


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
    status: str = "running"  # running | complete | interrupted
    finished_at: str = ""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: str | Path = DEFAULT_DB, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"results database {self.path} does not exist: run `flashcore run` first or pass --db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a flashcore results database: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.conn:
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, this flashcore reads {SCHEMA_VERSION}")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, suite TEXT, created_at TEXT, "
                "git_commit TEXT, argv TEXT, env TEXT, peak_tflops REAL, peak_gbs REAL, status TEXT, "
                "finished_at TEXT)"
            )
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {_column_sql()}, "
                "UNIQUE(run_id, backend, problem_key))"
            )
            self.conn.execute("CREATE INDEX IF NOT EXISTS results_run ON results(run_id)")
            self.conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: RunInfo) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run.run_id, run.suite, run.created_at, run.git_commit, run.argv,
                 json.dumps(run.env or {}), run.peak_tflops, run.peak_gbs, run.status, run.finished_at),
            )

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
        return RunInfo(**d)

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
    def add_result(self, result: Result) -> None:
        d = result.as_dict()
        d["extra"] = json.dumps(d["extra"], default=str)
        if not d["created_at"]:
            d["created_at"] = now()
        cols = ", ".join(d)
        marks = ", ".join("?" for _ in d)
        with self.conn:
            self.conn.execute(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", tuple(d.values()))

    def done_cells(self, run_id: str) -> set[tuple[str, str]]:
        rows = self.conn.execute("SELECT backend, problem_key FROM results WHERE run_id=?", (run_id,))
        return {(r[0], r[1]) for r in rows}

    def iter_results(self, run_id: str | None = None) -> Iterator[Result]:
        q = "SELECT * FROM results"
        args: tuple[Any, ...] = ()
        if run_id:
            q += " WHERE run_id=?"
            args = (run_id,)
        for row in self.conn.execute(q + " ORDER BY id", args):
            d = dict(row)
            d.pop("id")
            d["extra"] = json.loads(d["extra"] or "{}")
            for b in ("causal", "seed_bounds_ok", "timed_outputs_ok", "deterministic", "passed"):
                if d[b] is not None:
                    d[b] = bool(d[b])
            yield Result(**d)

    def results_frame(self, run_id: str | None = None):  # -> pandas.DataFrame
        import pandas as pd

        rows = [r.as_dict() for r in self.iter_results(run_id)]
        return pd.DataFrame(rows, columns=Result.columns())

    def runs_frame(self):
        import pandas as pd

        with closing(self.conn.execute("SELECT * FROM runs ORDER BY created_at, rowid")) as cur:
            return pd.DataFrame([dict(r) for r in cur], columns=[c[0] for c in cur.description])
