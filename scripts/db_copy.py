"""Copy a results database consistently: ``python3 scripts/db_copy.py SRC DEST_DIR_OR_FILE``.

A run stopped by a time limit leaves its last rows in SQLite's write-ahead log (``SRC-wal``); a plain
``cp SRC`` leaves them behind. The backup API copies the database with its log applied."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: db_copy.py SRC DEST_DIR_OR_FILE", file=sys.stderr)
        return 2
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    if not src.is_file():
        print(f"db_copy: {src}: no such database", file=sys.stderr)
        return 2
    if dest.is_dir():
        dest = dest / src.name
    if dest.resolve() == src.resolve():  # unlinking the destination would delete the source
        print(f"db_copy: {dest} is the source itself; nothing copied", file=sys.stderr)
        return 0
    dest.unlink(missing_ok=True)
    with sqlite3.connect(src) as s, sqlite3.connect(dest) as d:
        s.backup(d)
    print(f"db_copy: {src} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
