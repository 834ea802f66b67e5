"""Check a run of several workers (``flashcore run --gpus``) from its database alone, for the evidence of a
device call: every cell once, each problem's cells on one worker, every worker used, the GPU stamp on
every row. Prints what it found; exit status 1 if a check fails.

    python3 scripts/check_sharded_run.py results/h200/flashcore.db RUN_ID
"""
from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter, defaultdict


def main(db: str, run_id: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    env = json.loads(con.execute("SELECT env FROM runs WHERE run_id=?", (run_id,)).fetchone()[0] or "{}")
    status = con.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
    rows = con.execute("SELECT backend, problem_key, timing_mode, status, gpu_index, gpu_uuid, gpu_name, extra "
                       "FROM results WHERE run_id=?", (run_id,)).fetchall()
    con.close()
    cells = Counter((b, p, m) for b, p, m, *_ in rows)
    workers: dict[str, set] = defaultdict(set)
    for _, p, *_, extra in rows:
        workers[p].add((json.loads(extra or "{}").get("worker") or {}).get("shard"))
    used = {w for ws in workers.values() for w in ws}
    stamps = Counter((idx, uuid, name) for *_, idx, uuid, name, _ in rows)
    print(f"run {run_id}: {status}, {len(rows)} rows, statuses {dict(Counter(r[3] for r in rows))}")
    for g in env.get("gpus", []):
        print(f"  worker {g['shard']}: index {g['index']}, CUDA_VISIBLE_DEVICES={g['visible']}, {g['name']} "
              f"{g['uuid']} on {g['host']} ({g['device']}), peaks {g['peaks']}{', LOST: ' + g['lost'] if g.get('lost') else ''}")
    print(f"  stamps (index, uuid, name): {dict(stamps)}")
    checks = {
        "the run is complete": status == "complete",
        "every cell has one row": all(n == 1 for n in cells.values()),
        "each problem's cells on one worker": all(len(ws) == 1 for ws in workers.values()),
        "every worker measured something": used == {g["shard"] for g in env.get("gpus", [])} and len(used) > 1,
        "every row names its GPU": all(name for *_, name in stamps) and None not in used,
        "every row on a GPU has its UUID": all(uuid for _, uuid, name in stamps if name != "cpu"),
    }
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
