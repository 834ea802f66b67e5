"""The per-sample times and the clock readings of a result, as rows of their own.

A result keeps them in its ``extra`` JSON (which readers may go on reading); the ``samples`` and
``clocks`` tables hold the same numbers normalised, so a query can reach them without decoding JSON:

- ``samples(result_id, idx, ms, raw_ms)``: ``raw_ms`` as measured (``extra.samples_ms``), ``ms`` less
  the event tare of the visit it came from, as the row's statistics use it;
- ``clocks(result_id, at, sm_mhz, mem_mhz, sm_max_mhz, temp_c, power_w, throttle, error)``: the NVML
  snapshot taken ``before`` and ``after`` the cell (``extra.clocks_before`` / ``clocks_after``),
  ``throttle`` the active throttle reasons joined by commas.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

DETAIL_SQL = """
CREATE TABLE IF NOT EXISTS samples (result_id INTEGER NOT NULL, idx INTEGER NOT NULL, ms REAL, raw_ms REAL,
                                    PRIMARY KEY (result_id, idx));
CREATE TABLE IF NOT EXISTS clocks (result_id INTEGER NOT NULL, at TEXT NOT NULL, sm_mhz REAL, mem_mhz REAL,
                                   sm_max_mhz REAL, temp_c REAL, power_w REAL, throttle TEXT, error TEXT,
                                   PRIMARY KEY (result_id, at));
"""
#: where in ``extra`` each clock snapshot lives
CLOCK_KEYS = {"before": "clocks_before", "after": "clocks_after"}
CLOCK_COLUMNS = ("sm_mhz", "mem_mhz", "sm_max_mhz", "temp_c", "power_w")


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def sample_rows(result_id: int, extra: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``(result_id, idx, ms, raw_ms)`` for every sample of the result (none for a cell not timed)."""
    from types import SimpleNamespace

    # the net samples are analysis's rule (the tare of each pooled visit, floored): one definition of it
    from harness.analysis.verdict import net_samples

    raw = [_number(x) for x in extra.get("samples_ms") or []]
    try:
        net = net_samples(SimpleNamespace(extra=extra))  # it reads nothing but extra
    except (TypeError, ValueError):  # a malformed round record: the raw times are still kept
        net = []
    return [(result_id, i, net[i] if i < len(net) else None, x) for i, x in enumerate(raw)]


def clock_rows(result_id: int, extra: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``(result_id, at, sm_mhz, ..., throttle, error)`` for each clock snapshot the result holds."""
    rows = []
    for at, key in CLOCK_KEYS.items():
        c = extra.get(key)
        if not isinstance(c, dict):
            continue
        throttle = c.get("throttle")
        throttle_text = ",".join(map(str, throttle)) if isinstance(throttle, list) else throttle
        rows.append((result_id, at, *(_number(c.get(k)) for k in CLOCK_COLUMNS), throttle_text, c.get("error")))
    return rows


def drop_detail(conn: sqlite3.Connection, result_id: int) -> None:
    """Delete the sample and clock rows of one result."""
    conn.execute("DELETE FROM samples WHERE result_id=?", (result_id,))
    conn.execute("DELETE FROM clocks WHERE result_id=?", (result_id,))


def write_detail(conn: sqlite3.Connection, result_id: int, extra: dict[str, Any] | str | None) -> None:
    """Replace the sample and clock rows of one result by those of its ``extra`` (inside the caller's
    transaction)."""
    if isinstance(extra, str) or extra is None:
        extra = json.loads(extra or "{}")
    drop_detail(conn, result_id)
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)", sample_rows(result_id, extra))
    conn.executemany("INSERT INTO clocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", clock_rows(result_id, extra))


def fill_detail(conn: sqlite3.Connection, where: str = "", args: tuple[Any, ...] = ()) -> None:
    """Write the detail rows of every result (``where``: of those it selects) from their ``extra``."""
    for rid, extra in conn.execute(f"SELECT id, extra FROM results {where} ORDER BY id", args).fetchall():
        write_detail(conn, rid, extra)
