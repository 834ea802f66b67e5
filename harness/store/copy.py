"""A consistent copy of a results database.

A run stopped by a time limit leaves its last rows in SQLite's write-ahead log (``SRC-wal``); a plain
``cp SRC`` leaves them behind. The backup API copies the database with its log applied."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.store.database import StoreError


def copy_database(src: Path, dest: Path) -> Path | None:
    """Copy ``src`` to ``dest`` (a file, or a folder to copy into under the same name); the path written,
    or None when ``dest`` is ``src`` itself (nothing is copied then)."""
    if not src.is_file():
        raise StoreError(f"{src}: no such database")
    if dest.is_dir():
        dest = dest / src.name
    if dest.resolve() == src.resolve():  # unlinking the destination would delete the source
        return None
    dest.unlink(missing_ok=True)
    with sqlite3.connect(src) as s, sqlite3.connect(dest) as d:
        s.backup(d)
    return dest
