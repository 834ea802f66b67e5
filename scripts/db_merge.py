"""Add the runs of one results database to another: ``python3 scripts/db_merge.py SRC DEST [RUN_ID ...]``.

For databases written by separate device calls from the same starting copy: every run of SRC that DEST
lacks (or only the RUN_IDs named) is copied with all its rows. A run already in DEST is left alone, so
merging twice changes nothing."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path


def merge(src: Path, dest: Path, only: list[str] | None = None) -> list[str]:
    with sqlite3.connect(dest) as d:
        d.execute("ATTACH DATABASE ? AS src", (str(src),))
        have = {r[0] for r in d.execute("SELECT run_id FROM main.runs")}
        runs = [r[0] for r in d.execute("SELECT run_id FROM src.runs ORDER BY created_at")]
        todo = [r for r in runs if r not in have and (not only or r in only)]
        missing = [r for r in only or [] if r not in runs]
        if missing:
            raise SystemExit(f"db_merge: {src} holds no run {missing[0]!r}")
        cols = [r[1] for r in d.execute("PRAGMA main.table_info(results)") if r[1] != "id"]
        src_cols = {r[1] for r in d.execute("PRAGMA src.table_info(results)")}
        shared = ", ".join(c for c in cols if c in src_cols)
        for rid in todo:
            d.execute("INSERT INTO main.runs SELECT * FROM src.runs WHERE run_id = ?", (rid,))
            d.execute(f"INSERT INTO main.results ({shared}) SELECT {shared} FROM src.results WHERE run_id = ? "
                      "ORDER BY id", (rid,))
        d.commit()
        d.execute("DETACH DATABASE src")
    return todo


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: db_merge.py SRC DEST [RUN_ID ...]", file=sys.stderr)
        return 2
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    for p in (src, dest):
        if not p.is_file():
            print(f"db_merge: {p}: no such database", file=sys.stderr)
            return 2
    added = merge(src, dest, sys.argv[3:] or None)
    print(f"db_merge: {len(added)} run(s) added to {dest}: {', '.join(added) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
