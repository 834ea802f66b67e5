"""Nsight Compute for one cell (a backend on a problem): the command, and parsing of its CSV output.

    ncu --nvtx --nvtx-include "flashcore@<backend>:<problem key>/" --clock-control none
        --metrics <list> --csv --page raw --print-units base --print-kernel-base function
        --target-processes all  python -m harness.tools.profile_target <backend> '<problem json>' --calls 3

The target (``harness.tools.profile_target``) warms the backend up outside any range, then makes ``--calls``
calls, each inside the NVTX range ``<backend>:<problem key>`` of the ``flashcore`` domain (the same range
``harness.measure.cell`` puts around every timed call), so ncu profiles exactly the kernels of those calls.

Metric names (Hopper, Nsight Compute 2025.x): the tensor-pipe, DRAM, occupancy and stall names below are
the sm90 vocabulary of a full-set report (ncu 2025.4.1 on H100; revollllt/flash-vla
``.claude/skills/ncu-report/references/08-sm90-metric-names.md``): there
``sm__pipe_tensor_op_hmma_cycles_active`` counts wgmma too, ``sm__inst_executed_pipe_tensor_op_gmma``
counts wgmma instructions, and the warp-stall breakdown is
``smsp__average_warps_issue_stalled_<reason>_per_issue_active.ratio`` (19 reasons, ``gmma`` being Hopper's).
Names drift between ncu versions, so a metric this ncu does not know is dropped, not fatal:
first against ``ncu --query-metrics`` (``filter_known``), then from ncu's own "Failed to find metric" error
(``unknown_metrics``, one retry per round); what was dropped is stored with the results.

After parsing, values are in base units: durations in ns, sizes in bytes, rates per second, percentages
in 0..100, ratios and counts as reported.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from harness.measure.nvtx_ranges import DOMAIN, range_name
from harness.spec.problem import Problem
from harness.tools.profiling import proc

NCU_ENV = "FLASHCORE_NCU"  # path to ncu, if it is not on PATH

TIME = "gpu__time_duration.sum"
STALL_REASONS = ("barrier", "branch_resolving", "dispatch_stall", "drain", "gmma", "imc_miss", "lg_throttle",
                 "long_scoreboard", "math_pipe_throttle", "membar", "mio_throttle", "misc", "no_instruction",
                 "not_selected", "selected", "short_scoreboard", "sleeping", "tex_throttle", "wait")
STALL_PREFIX, STALL_SUFFIX = "smsp__average_warps_issue_stalled_", "_per_issue_active.ratio"
METRICS: tuple[str, ...] = (
    TIME,
    "sm__cycles_elapsed.avg.per_second",  # SM clock while profiled: explains ncu vs harness time
    # speed of light
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
    # tensor pipe utilisation (% of active cycles) and instruction counts (wgmma vs mma.sync)
    "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_tensor_op_hmma.sum",
    "sm__inst_executed_pipe_tensor_op_gmma.sum",
    # issue slots and the pipes besides the tensor cores that attention keeps busy: XU (MUFU: the
    # exponentials) and FMA (the rest of the softmax)
    "sm__inst_issued.avg.pct_of_peak_sustained_active",
    "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
    # L2: bytes through it (TMA and global loads of K/V are served here) and how much of its peak
    "lts__t_bytes.sum.per_second",
    "lts__throughput.avg.pct_of_peak_sustained_elapsed",
    "lts__t_sector_hit_rate.pct",
    # DRAM traffic and bandwidth
    "dram__bytes.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "dram__bytes.sum.per_second",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
    # occupancy: achieved and theoretical
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "sm__maximum_warps_per_active_cycle_pct",
    # launch resources
    "launch__registers_per_thread",
    "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic",
    "launch__grid_size",
    "launch__block_size",
    "launch__waves_per_multiprocessor",
    # warp stalls: cycles between two issues, and its breakdown by reason
    "smsp__average_warp_latency_per_inst_issued.ratio",
    *(f"{STALL_PREFIX}{r}{STALL_SUFFIX}" for r in STALL_REASONS),
)
METRIC_SETS: dict[str, tuple[str, ...]] = {"full": METRICS, "time": (TIME, "sm__cycles_elapsed.avg.per_second")}
#: launch attributes are not hardware counters and do not appear in --query-metrics
_NEVER_FILTERED = ("launch__", "device__", "profiler__")


class NcuParseError(ValueError):
    pass


def find_ncu() -> str | None:
    forced = os.environ.get(NCU_ENV)
    if forced:
        return forced if os.path.exists(forced) else None
    return shutil.which("ncu")


def nvtx_include(backend: str, problem_key: str) -> str:
    """The push/pop range filter (trailing ``/``) for one cell in the flashcore domain."""
    return f"{DOMAIN}@{range_name(backend, problem_key)}/"


def base_name(metric: str) -> str:
    return metric.split(".", 1)[0]


def build_command(ncu: str, backend: str, problem: Problem, *, metrics: Sequence[str] = METRICS,
                  clock_control: str = "none", calls: int = 3, python: str = "python3",
                  seed: int = 1234) -> list[str]:
    if clock_control not in ("none", "base"):
        raise ValueError(f"clock control {clock_control!r}: allowed none, base")
    if not metrics:
        raise ValueError("no metrics to collect")
    return [ncu, "--nvtx", "--nvtx-include", nvtx_include(backend, problem.key()),
            "--clock-control", clock_control, "--metrics", ",".join(metrics),
            "--csv", "--page", "raw", "--print-units", "base", "--print-kernel-base", "function",
            "--target-processes", "all",
            python, "-m", "harness.tools.profile_target", backend, json.dumps(problem.as_dict(), sort_keys=True),
            "--calls", str(calls), "--seed", str(seed)]


# -- metric availability -----------------------------------------------------------------------------
_BASE = re.compile(r"^([a-z][a-z0-9]*__[a-z0-9_]+)\b")


def parse_query_metrics(text: str) -> set[str]:
    """Base metric names from ``ncu --query-metrics`` (one per line, name first)."""
    return {m.group(1) for line in text.splitlines() if (m := _BASE.match(line.strip()))}


def filter_known(metrics: Sequence[str], known: set[str]) -> tuple[list[str], list[str]]:
    """(kept, dropped): drop metrics whose base name ncu does not list. Without a usable list (fewer than
    50 names parsed) nothing is dropped."""
    if len(known) < 50:
        return list(metrics), []
    kept, dropped = [], []
    for m in metrics:
        (kept if m.startswith(_NEVER_FILTERED) or base_name(m) in known else dropped).append(m)
    return kept, dropped


_UNKNOWN = re.compile(r"Failed to find metric\s+(?:regex:)?\^?([A-Za-z0-9_]+)")


def unknown_metrics(output: str) -> set[str]:
    """Base names from ncu's ``==ERROR== Failed to find metric regex:^name\\.(sum|...)$`` messages."""
    return set(_UNKNOWN.findall(output))


# -- values and units ----------------------------------------------------------------------------------
_GROUPED = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?([eE][-+]?\d+)?$")
_TIME_S = {"nsecond": 1e-9, "ns": 1e-9, "usecond": 1e-6, "us": 1e-6, "msecond": 1e-3, "ms": 1e-3,
           "second": 1.0, "s": 1.0}
_PREFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30,
           "Ti": 2.0**40}
_AMOUNT = re.compile(r"^(Ki|Mi|Gi|Ti|K|M|G|T)?(byte|cycle|inst|warp|thread|sector|request|block)s?$")


def parse_value(text: str) -> float | str | None:
    """A CSV cell as a number where it is one (thousands separators allowed), None for n/a."""
    s = text.strip().strip('"').strip()
    if s.lower() in ("", "n/a", "nan", "-"):
        return None
    if _GROUPED.match(s):
        s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        return text.strip()


def _amount(unit: str) -> float | None:
    m = _AMOUNT.match(unit)
    return _PREFIX[m.group(1) or ""] if m else None


def to_base(value: float | str | None, unit: str) -> float | str | None:
    """Scale ``value`` given in ``unit`` to base units: ns for time, bytes, per-second rates, Hz."""
    if not isinstance(value, float):
        return value
    u = (unit or "").strip()
    if u in _TIME_S:
        return value * _TIME_S[u] * 1e9
    if "/" in u:
        num, den = u.split("/", 1)
        a, t = _amount(num), _TIME_S.get(den)
        return value * a / t if a is not None and t is not None else value
    hz = re.fullmatch(r"(K|M|G|T|k|m|g|t)?hz", u, re.IGNORECASE)
    if hz:
        return value * _PREFIX[(hz.group(1) or "").upper()]
    a = _amount(u)
    return value * a if a is not None else value


# -- the CSV -------------------------------------------------------------------------------------------
@dataclass
class Launch:
    id: int
    kernel: str
    block: str = ""
    grid: str = ""
    metrics: dict[str, float | str | None] = field(default_factory=dict)


def parse_csv(text: str) -> list[Launch]:
    """Kernel launches from ``ncu --csv`` output: the raw page (one row per launch, a units row under the
    header) or the details page (one row per metric). Lines before the table and ``==PROF==``/``==WARNING==``
    lines are ignored; values are converted to base units."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID",')), None)
    if start is None:
        raise NcuParseError("no CSV table in the ncu output")
    table = [line for line in lines[start:] if line.strip() and not line.startswith("==")]
    rows = list(csv.reader(table))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    for need in ("ID", "Kernel Name"):
        if need not in col:
            raise NcuParseError(f"ncu CSV header lacks the {need!r} column: {header[:6]}")

    def attr(row: list[str], name: str) -> str:
        return row[col[name]] if name in col and col[name] < len(row) else ""

    launches: dict[int, Launch] = {}
    if "Metric Name" in col and "Metric Value" in col:  # details page: one metric per row
        for row in body:
            if len(row) != len(header) or not row[col["ID"]].strip().isdigit():
                continue
            lid = int(row[col["ID"]])
            launch = launches.setdefault(lid, Launch(lid, attr(row, "Kernel Name"), attr(row, "Block Size"),
                                                     attr(row, "Grid Size")))
            launch.metrics[row[col["Metric Name"]]] = to_base(parse_value(row[col["Metric Value"]]),
                                                              attr(row, "Metric Unit"))
        return [launches[k] for k in sorted(launches)]
    metric_cols = [(i, name) for i, name in enumerate(header) if "__" in name]
    units = [""] * len(header)
    if body and not body[0][col["ID"]].strip():
        units, body = body[0] + [""] * (len(header) - len(body[0])), body[1:]
    for row in body:
        if len(row) != len(header) or not row[col["ID"]].strip().isdigit():
            continue
        lid = int(row[col["ID"]])
        launches[lid] = Launch(lid, attr(row, "Kernel Name"), attr(row, "Block Size"), attr(row, "Grid Size"),
                               {name: to_base(parse_value(row[i]), units[i]) for i, name in metric_cols})
    return [launches[k] for k in sorted(launches)]


def summarize(launches: Sequence[Launch], calls: int) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Per kernel name (in launch order): every numeric metric averaged over its launches, plus
    ``launches``, ``launches_per_call``, ``smem_per_block_bytes`` (static + dynamic), block and grid.
    Also the summed ``gpu__time_duration`` of all launches divided by ``calls``: the GPU time of one call
    as ncu sees it (None if a launch lacks the duration)."""
    by_kernel: dict[str, list[Launch]] = {}
    for launch in launches:
        by_kernel.setdefault(launch.kernel, []).append(launch)
    out: dict[str, dict[str, Any]] = {}
    for name, group in by_kernel.items():
        d: dict[str, Any] = {}
        keys = list(dict.fromkeys(k for launch in group for k in launch.metrics))
        for k in keys:
            nums = [launch.metrics[k] for launch in group if isinstance(launch.metrics.get(k), float)]
            if nums:
                d[k] = mean(nums)
        static = d.get("launch__shared_mem_per_block_static")
        dynamic = d.get("launch__shared_mem_per_block_dynamic")
        if static is not None or dynamic is not None:
            d["smem_per_block_bytes"] = (static or 0.0) + (dynamic or 0.0)
        d.update(launches=len(group), launches_per_call=len(group) / max(calls, 1), block=group[0].block,
                 grid=group[0].grid)
        out[name] = d
    durations = [launch.metrics.get(TIME) for launch in launches]
    call_ns = (sum(durations) / max(calls, 1)  # type: ignore[arg-type]
               if launches and all(isinstance(x, float) for x in durations) else None)
    return out, call_ns


def top_stalls(kernel: dict[str, Any], n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` largest stall reasons (warps per issue), ``selected`` (the issuing warp) excluded."""
    found = [(k[len(STALL_PREFIX):-len(STALL_SUFFIX)], v) for k, v in kernel.items()
             if k.startswith(STALL_PREFIX) and k.endswith(STALL_SUFFIX) and isinstance(v, float)]
    return sorted(((r, v) for r, v in found if r != "selected"), key=lambda rv: -rv[1])[:n]


def stall_summary(kernel: dict[str, Any], n: int = 2) -> str:
    """The ``n`` largest stall reasons as one short string, e.g. ``"wait 1.8, long_scoreboard 1.2"``."""
    return ", ".join(f"{r} {v:.2g}" for r, v in top_stalls(kernel, n))


# -- one cell, end to end -------------------------------------------------------------------------------
@dataclass
class CellProfile:
    status: str  # ok | skipped | failed
    reason: str = ""
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)
    call_ns: float | None = None
    launches: int = 0
    dropped_metrics: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    output: str = ""


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("==ERROR==") or "PROFILE_TARGET ERROR" in line:
            return line.strip()[:300]
    if "No kernels were profiled" in output:
        return ("ncu profiled no kernel: nothing ran inside the NVTX range "
                "(is the nvtx package installed in the target's Python?)")
    tail = [line for line in output.strip().splitlines() if line.strip()][-1:]
    return tail[0][:300] if tail else "no output"


def profile_cell(ncu: str, backend: str, problem: Problem, *, metrics: Sequence[str] = METRICS,
                 clock_control: str = "none", calls: int = 3, timeout_s: float = 600.0,
                 python: str = "python3",
                 runner: Callable[[list[str], float], proc.ProcResult] = proc.run) -> CellProfile:
    wanted, dropped = list(metrics), []
    for _ in range(4):
        cmd = build_command(ncu, backend, problem, metrics=wanted, clock_control=clock_control, calls=calls,
                            python=python)
        res = runner(cmd, timeout_s)
        out = res.output
        if res.timed_out:
            return CellProfile("failed", f"ncu timed out after {timeout_s:g}s", command=cmd, output=out,
                               dropped_metrics=dropped)
        skip = re.search(r"^PROFILE_TARGET SKIP (.*)$", out, re.MULTILINE)
        if skip:
            return CellProfile("skipped", skip.group(1).strip(), command=cmd, output=out,
                               dropped_metrics=dropped)
        unknown = unknown_metrics(out)
        retry = [m for m in wanted if base_name(m) in unknown]
        if retry and len(retry) < len(wanted):
            dropped += retry
            wanted = [m for m in wanted if m not in retry]
            continue
        try:
            launches = parse_csv(out)
        except NcuParseError:
            return CellProfile("failed", _first_error(out), command=cmd, output=out, dropped_metrics=dropped)
        if res.returncode != 0 or "PROFILE_TARGET DONE" not in out:
            return CellProfile("failed", f"exit {res.returncode}: {_first_error(out)}", command=cmd,
                               output=out, dropped_metrics=dropped)
        if not launches:
            return CellProfile("failed", _first_error(out), command=cmd, output=out, dropped_metrics=dropped)
        kernels, call_ns = summarize(launches, calls)
        return CellProfile("ok", "", kernels, call_ns, len(launches), dropped, cmd, out)
    return CellProfile("failed", "ncu kept rejecting metric names: " + ", ".join(sorted(set(dropped))),
                       dropped_metrics=dropped)
