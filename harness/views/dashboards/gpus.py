"""The run page's GPU section: for a run measured by several workers (``flashcore run --gpus``, or Ray),
which GPU each worker ran on and which problems each GPU measured."""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.views.dashboards.html import Raw, h3, note, section, table


def _index(x: Any) -> str:
    return "?" if x is None or (isinstance(x, float) and x != x) else str(int(x))


def gpu_section(run: dict[str, Any], cells: pd.DataFrame) -> Raw | None:
    """None for a run of one worker on one GPU (the page's header names it)."""
    workers = (run.get("env") or {}).get("gpus") or []
    have = [c for c in ("gpu_index", "gpu_uuid", "gpu_name") if c in cells]
    if len(have) < 3 or cells.empty:
        return None
    keys = cells[have].astype(str).drop_duplicates()
    if len(keys) < 2 and len(workers) < 2:
        return None
    shard = [(e or {}).get("worker", {}).get("shard") if isinstance(e, dict) else None for e in cells["extra"]]
    df = cells.assign(worker=shard)
    rows = []
    for w in workers:
        peaks = w.get("peaks") or {}
        mine = df[df["worker"] == w.get("shard")]
        rows.append([w.get("shard"), _index(w.get("index")), w.get("name", ""), w.get("uuid", "") or "not recorded",
                     w.get("host", ""), f"{peaks['matmul_tflops']:.0f}" if peaks.get("matmul_tflops") else "",
                     len(mine), mine["problem_key"].nunique(), w.get("lost", "")])
    parts = [h3("Workers"),
             note("One worker per slot of --gpus (or per Ray actor), each pinned to its GPU; a problem's backends "
                  "all ran on one GPU, so ratios never mix GPUs. % of peak uses the peak of the cell's GPU."),
             table(["worker", "GPU", "name", "UUID", "host", "peak TFLOPS", "cells", "problems", "lost"], rows,
                   numeric=["worker", "peak TFLOPS", "cells", "problems"])] if rows else []
    ran = []
    for _, grp in df.groupby("problem_key", sort=False):
        gpus = sorted({f"{_index(i)} ({n})" for i, n in zip(grp["gpu_index"], grp["gpu_name"])})
        ws = sorted({str(int(w)) for w in grp["worker"] if w is not None and w == w})
        ran.append([grp["shape"].iloc[0], ", ".join(gpus), ", ".join(ws), len(grp)])
    parts += [h3("Which GPU ran what"), table(["problem", "GPU", "worker", "cells"], ran, numeric=["cells"])]
    return section("gpus", "GPUs", *parts)
