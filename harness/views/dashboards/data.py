"""Frames for the dashboards, read from the results database (never retyped), with the derived columns
every page uses: a readable shape label, the correctness category, effective TFLOPS, arithmetic intensity."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.audit.check import problem_label
from harness.spec.problem import Problem
from harness.tools.profiling import is_profile_suite

#: correctness categories, in display order; only "passed" cells are ever plotted as performance
CATEGORIES = ("passed", "unchecked", "skipped", "failed", "rejected")
STATUSES = ("ok", "skipped", "failed", "rejected")


class ReportError(RuntimeError):
    """The dashboards cannot be made; the message is one line saying what to do."""


def isnum(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any) -> float | None:
    """A finite float, or None for NaN/None (pandas turns missing numbers into NaN)."""
    return float(x) if isnum(x) else None


def category(status: str, passed: Any) -> str:
    if status == "ok":
        return "passed" if passed is True else "unchecked"
    return status if status in CATEGORIES else "failed"


def _serving_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The serving-shape fields a row holds (a row from before them has none: the plain dense problem)."""
    out: dict[str, Any] = {}
    for key, cast in (("kind", str), ("page_size", int), ("lengths", str), ("window_left", int),
                      ("window_right", int), ("softcap", float)):
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[key] = cast(value)
    return out


def shape_label(row: dict[str, Any]) -> str:
    p = Problem(
        batch=int(row["batch"]),
        heads_q=int(row["heads_q"]),
        heads_kv=int(row["heads_kv"]),
        seqlen_q=int(row["seqlen_q"]),
        seqlen_k=int(row["seqlen_k"]),
        head_dim=int(row["head_dim"]),
        dtype=row["dtype"],
        causal=bool(row["causal"]),
        softmax_scale=num(row["softmax_scale"]) or None,  # not stored: the default
        layout=row["layout"] or "bshd",
        **_serving_fields(row),
    )
    label = problem_label(p)
    if p.kind == "decode":
        label = f"decode {'page ' + str(p.page_size) if p.page_size else 'contiguous'}: {label}"
    elif p.kind == "varlen":
        label = f"varlen {p.lengths}: {label}"
    if p.window_left >= 0 or p.window_right >= 0:
        label += f" window ({p.window_left}, {p.window_right})"
    if p.softcap:
        label += f" softcap {p.softcap:g}"
    if p.layout != "bshd":
        label += f" {p.layout}"
    if abs(p.softmax_scale - 1.0 / math.sqrt(p.head_dim)) > 1e-12:
        label += f" scale {p.softmax_scale:g}"
    return label


@dataclass
class Dataset:
    db: Path
    runs: pd.DataFrame  # one row per run, oldest first; env parsed to a dict
    results: pd.DataFrame  # one row per cell, with derived columns

    def run(self, run_id: str) -> dict[str, Any]:
        rows = self.runs[self.runs["run_id"] == run_id]
        if rows.empty:
            raise ReportError(
                f"no run {run_id!r} in {self.db} (runs there: {', '.join(self.runs['run_id'])})"
            )
        return rows.iloc[0].to_dict()

    def cells(self, run_id: str) -> pd.DataFrame:
        return self.results[self.results["run_id"] == run_id]

    def backends(self) -> list[str]:
        return sorted(self.results["backend"].unique().tolist())


def load(db: str | Path) -> Dataset:
    """Every run and result of a database; ReportError if it is missing, unreadable or empty."""
    from harness.store.database import Store, StoreError

    db = Path(db)
    if not db.exists():
        raise ReportError(
            f"results database {db} does not exist: run `flashcore run --suite smoke` first, "
            "or pass --db PATH"
        )
    if db.is_dir():
        raise ReportError(f"{db} is a directory, not a results database: pass --db PATH/TO/flashcore.db")
    try:
        with Store(db, readonly=True) as store:
            runs = store.runs_frame()
            results = store.results_frame()
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    if runs.empty:
        raise ReportError(f"{db} holds no runs: run `flashcore run --suite smoke` first, or pass --db PATH")
    if results.empty:
        raise ReportError(f"{db} holds {len(runs)} run(s) but no results: finish or --resume a run first")
    runs = runs.copy()
    runs["env"] = [json.loads(e) if isinstance(e, str) and e else {} for e in runs["env"]]
    return Dataset(db, runs.reset_index(drop=True), _derive(results))


#: the timing modes in display order (harness.spec.suite.MEASURE_MODES)
MODES = ("isolated", "sustained")
#: the operations in display order (harness.spec.problem.OPS), and how a page names each
OPS = ("fwd", "bwd", "fwd_bwd")
OP_TITLES = {"fwd": "forward", "bwd": "backward", "fwd_bwd": "forward + backward"}


def ops_of(cells: pd.DataFrame) -> list[str]:
    """The operations present in ``cells``, in display order."""
    have = set(cells["op"].dropna()) if "op" in cells else {"fwd"}
    return [o for o in OPS if o in have] + sorted(have - set(OPS))


def modes_of(cells: pd.DataFrame) -> list[str]:
    """The timing modes present in ``cells``, in display order."""
    have = set(cells["timing_mode"].dropna()) if "timing_mode" in cells else {"isolated"}
    return [m for m in MODES if m in have] + sorted(have - set(MODES))


def _derive(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    # rows from before timing modes were timed the isolated way
    df["timing_mode"] = df["timing_mode"].fillna("isolated") if "timing_mode" in df else "isolated"
    # rows from before operations are forwards
    df["op"] = df["op"].fillna("fwd") if "op" in df else "fwd"
    df["ratio_to_baseline"] = [(e or {}).get("ratio_to_baseline") if isinstance(e, dict) else None
                               for e in df["extra"]]
    # a backward's label names its operation, so no chart or table puts it in the forward's place
    df["shape"] = [shape_label(r) + ("" if r["op"] == "fwd" else f" · {r['op']}") for r in df.to_dict("records")]
    df["category"] = [category(s, p) for s, p in zip(df["status"], df["passed"], strict=True)]
    med = pd.to_numeric(df["median_ms"], errors="coerce")
    flops = pd.to_numeric(df["flops"], errors="coerce")
    # TFLOPS from the stored FLOP count and median; the stored tflops column is the same number when present
    df["tflops_eff"] = flops / (med * 1e-3) / 1e12
    df["timed"] = (df["category"] == "passed") & med.gt(0)
    df["ai"] = flops / pd.to_numeric(df["min_bytes"], errors="coerce")
    # order problems the way a reader scans a sweep: dtype, mask, head_dim, then size
    # grouped by problem kind first (dense, then decode, then varlen)
    kinds = df["kind"].fillna("dense") if "kind" in df else pd.Series(["dense"] * len(df), index=df.index)
    df["kind"] = kinds
    df["order"] = list(
        zip(
            kinds.map({"dense": 0, "decode": 1, "varlen": 2}).fillna(3),
            df["dtype"],
            df["causal"].astype(bool),
            df["head_dim"],
            df["batch"],
            df["heads_q"],
            df["heads_kv"],
            df["seqlen_q"],
            df["seqlen_k"],
            df["layout"],
            [OPS.index(o) if o in OPS else len(OPS) for o in df["op"]],
            df["problem_key"],
            strict=True,
        )
    )
    return df


def shapes_in_order(df: pd.DataFrame) -> list[str]:
    firsts = df.drop_duplicates("shape")
    return [s for _, s in sorted(zip(firsts["order"], firsts["shape"], strict=True))]


def select_runs(ds: Dataset, run_ids: Sequence[str] | None) -> list[str]:
    known = ds.runs["run_id"].tolist()
    if not run_ids:
        return known
    missing = [r for r in run_ids if r not in known]
    if missing:
        raise ReportError(f"no run {missing[0]!r} in {ds.db} (runs there: {', '.join(known[-8:])})")
    return [r for r in known if r in set(run_ids)]  # oldest first, as stored


def resolve_run(ds: Dataset, spec: str) -> str:
    """A run id, or a git commit (prefix) meaning the latest run made at that commit."""
    if spec in set(ds.runs["run_id"]):
        return spec
    hits = ds.runs[ds.runs["git_commit"].fillna("").str.startswith(spec)] if spec else ds.runs.iloc[0:0]
    if hits.empty:
        raise ReportError(
            f"--compare {spec!r} is neither a run id nor a commit of a run in {ds.db} "
            f"(runs there: {', '.join(ds.runs['run_id'].tolist()[-8:])})"
        )
    return str(hits.iloc[-1]["run_id"])


def compare_pair(ds: Dataset, specs: Sequence[str] | None, selected: list[str]) -> tuple[str, str] | None:
    """The (before, after) runs to compare: as asked, else the latest two selected runs of one suite that
    has medians to compare (not a ``profile:`` suite, whose rows are ncu metrics)."""
    if specs:
        if len(specs) != 2:
            raise ReportError(
                f"--compare takes exactly two runs or commits (before, after); got {len(specs)}"
            )
        a, b = resolve_run(ds, specs[0]), resolve_run(ds, specs[1])
        if a == b:
            raise ReportError(f"--compare {specs[0]} {specs[1]}: both name run {a}; pick two different runs")
        return a, b
    runs = ds.runs[ds.runs["run_id"].isin(selected)]
    runs = runs[runs["run_id"].isin(set(ds.results["run_id"]))]
    for suite in reversed(runs["suite"].tolist()):
        if is_profile_suite(str(suite)):
            continue
        same = runs[runs["suite"] == suite]["run_id"].tolist()
        if len(same) >= 2:
            return same[-2], same[-1]
    return None


def env_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's environment as (key, value) rows, the well-known keys first."""
    env: dict[str, Any] = dict(run.get("env") or {})
    rows: list[tuple[str, str]] = []
    first = (
        "gpu",
        "capability",
        "sm_count",
        "gpu_memory_gib",
        "driver",
        "cuda",
        "cudnn",
        "torch",
        "python",
        "platform",
        "power_limit_w",
        "gpu_count",
        "l2_bytes",
    )
    commit = run.get("git_commit") or env.get("git_commit") or ""
    rows.append(("git commit", str(commit) or "not recorded"))
    for key in first:
        if env.get(key) is not None:
            rows.append((key, str(env[key])))
    clocks = env.get("clocks")
    if isinstance(clocks, dict):
        rows.append(("clocks at start", ", ".join(f"{k} {v}" for k, v in clocks.items())))
    pk = env.get("packages")
    if isinstance(pk, dict) and pk:
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in pk.items())))
    for key in sorted(set(env) - set(first) - {"clocks", "packages", "git_commit"}):
        rows.append(
            (
                key,
                json.dumps(env[key], sort_keys=True) if isinstance(env[key], (dict, list)) else str(env[key]),
            )
        )
    pt, pg = num(run.get("peak_tflops")), num(run.get("peak_gbs"))
    rows.append(("measured matmul peak", f"{pt:.1f} TFLOPS" if pt else "not measured"))
    rows.append(("measured copy bandwidth", f"{pg:.0f} GB/s" if pg else "not measured"))
    for key in ("status", "created_at", "finished_at", "argv"):
        if run.get(key):
            rows.append((key.replace("_", " "), str(run[key])))
    return rows


def clock_summary(cells: pd.DataFrame) -> list[tuple[str, str]]:
    """SM clock range, hottest temperature and throttle reasons seen across a run's cells."""
    sm: list[float] = []
    temp: list[float] = []
    throttle: set[str] = set()
    for extra in cells["extra"]:
        for key in ("clocks_before", "clocks_after"):
            c = (extra or {}).get(key)
            if not isinstance(c, dict):
                continue
            if isnum(c.get("sm_mhz")):
                sm.append(c["sm_mhz"])
            if isnum(c.get("temp_c")):
                temp.append(c["temp_c"])
            throttle.update(t for t in c.get("throttle") or [] if t != "gpu_idle")
    if not sm:
        return [("SM clock during cells", "not recorded (no NVML)")]
    rows = [("SM clock during cells", f"{min(sm):.0f}–{max(sm):.0f} MHz over {len(sm)} readings")]
    if temp:
        rows.append(("hottest GPU temperature", f"{max(temp):.0f} °C"))
    rows.append(("throttle reasons seen", ", ".join(sorted(throttle)) or "none"))
    return rows
