"""Adding the runs of one results database to another.

For databases written by separate device calls from the same starting copy: every run of SRC that DEST
lacks (or only the runs named) is copied with all its rows. A run already in DEST is left alone, so
merging twice changes nothing."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.store.detail import fill_detail
from harness.store.errors import StoreError


def merge_runs(src: Path, dest: Path, only: list[str] | None = None) -> list[str]:
    """Copy the runs of ``src`` that ``dest`` lacks (of ``only``, when given) with their rows; their ids."""
    for p in (src, dest):
        if not p.is_file():
            raise StoreError(f"{p}: no such database")
    with sqlite3.connect(dest) as d:
        d.execute("ATTACH DATABASE ? AS src", (str(src),))
        have = {r[0] for r in d.execute("SELECT run_id FROM main.runs")}
        runs = [r[0] for r in d.execute("SELECT run_id FROM src.runs ORDER BY created_at")]
        todo = [r for r in runs if r not in have and (not only or r in only)]
        missing = [r for r in only or [] if r not in runs]
        if missing:
            raise StoreError(f"{src} holds no run {missing[0]!r}")
        # the columns both schemas have: a database from before a column was added still merges
        cols = [r[1] for r in d.execute("PRAGMA main.table_info(results)") if r[1] != "id"]
        src_cols = {r[1] for r in d.execute("PRAGMA src.table_info(results)")}
        shared = ", ".join(c for c in cols if c in src_cols)
        # a destination with the samples and clocks tables gets the merged rows' too, from their extra
        detail = d.execute("SELECT 1 FROM main.sqlite_master WHERE name='samples'").fetchone() is not None
        for rid in todo:
            d.execute("INSERT INTO main.runs SELECT * FROM src.runs WHERE run_id = ?", (rid,))
            d.execute(f"INSERT INTO main.results ({shared}) SELECT {shared} FROM src.results WHERE run_id = ? "
                      "ORDER BY id", (rid,))
            if detail:
                fill_detail(d, "WHERE run_id = ?", (rid,))
        d.commit()
        d.execute("DETACH DATABASE src")
    return todo
