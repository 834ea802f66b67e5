"""Where a run of several workers (``flashcore run --gpus``) put its cells, checked from the database alone:
every cell once, each problem's cells on one worker, every worker used, the GPU stamp on every row. The
evidence that a sharded run did what the supervisor promises (``flashcore db check-shards``)."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Placement:
    run_id: str
    status: str
    rows: int
    statuses: dict[str, int]
    workers: list[str]  # one line per worker the run started: its pinning, GPU and peaks
    stamps: dict[str, int]  # "(index, uuid, name)" -> rows
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


class PlacementError(ValueError):
    """The database has no such run."""


def check_placement(db: Path, run_id: str) -> Placement:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        run = con.execute("SELECT env, status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if run is None:
            raise PlacementError(f"no run {run_id!r} in {db}")
        rows = con.execute("SELECT backend, problem_key, timing_mode, status, gpu_index, gpu_uuid, gpu_name, extra "
                           "FROM results WHERE run_id=?", (run_id,)).fetchall()
    finally:
        con.close()
    env = json.loads(run[0] or "{}")
    cells = Counter((b, p, m) for b, p, m, *_ in rows)
    by_problem: dict[str, set] = defaultdict(set)
    for _, p, *_, extra in rows:
        by_problem[p].add((json.loads(extra or "{}").get("worker") or {}).get("shard"))
    used = {w for ws in by_problem.values() for w in ws}
    stamps = Counter((idx, uuid, name) for *_, idx, uuid, name, _ in rows)
    gpus = env.get("gpus", [])
    workers = [f"worker {g['shard']}: index {g['index']}, CUDA_VISIBLE_DEVICES={g['visible']}, {g['name']} "
               f"{g['uuid']} on {g['host']} ({g['device']}), peaks {g['peaks']}"
               + (f", LOST: {g['lost']}" if g.get("lost") else "") for g in gpus]
    checks = {
        "the run is complete": run[1] == "complete",
        "every cell has one row": all(n == 1 for n in cells.values()),
        "each problem's cells on one worker": all(len(ws) == 1 for ws in by_problem.values()),
        "every worker measured something": used == {g["shard"] for g in gpus} and len(used) > 1,
        "every row names its GPU": all(name for *_, name in stamps) and None not in used,
        "every row on a GPU has its UUID": all(uuid for _, uuid, name in stamps if name != "cpu"),
    }
    return Placement(run_id, run[1], len(rows), dict(Counter(r[3] for r in rows)), workers,
                     {str(k): n for k, n in stamps.items()}, checks)
