"""The harness's median next to Nsight Compute's view of the same cell.

``ncu_ms`` is the summed ``gpu__time_duration`` of every kernel launched inside one call's NVTX range,
replayed by ncu with caches flushed (``--cache-control all``, ncu's default, as the harness flushes L2) and
at the clocks ``--clock-control`` leaves. The harness median is CUDA-event time around the whole call,
so ``ncu_ms / harness_ms`` below 1 is the gaps between a call's kernels and launch overhead inside the
events (large for multi-kernel backends such as ``naive``), above 1 mostly lower clocks under ncu. The
harness median has the event pair's tare taken off; ``raw_ms`` is the median as the events measured it.
``kernel_ms``, where the run measured it (``[timing] kernel_clock_calls``), is the harness's own sum of
kernel durations from the profiler's CUPTI records: the same quantity ncu measures, by another tool. The
kernel clock also counts the memsets and copies of a call, which ncu does not profile: a row whose call
runs more than ncu timed (``untimed_by_ncu``, e.g. cuDNN's memset before its attention kernel) is one
where the events rightly measure more than ncu, and the agreement lines count it apart.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.records.result import Result
from harness.store.database import Store
from harness.tools.profiling import is_profile_suite
from harness.tools.profiling.ncu import TIME, CellProfile, stall_summary


@dataclass
class Row:
    backend: str
    problem_key: str
    status: str
    reason: str = ""
    harness_ms: float | None = None
    ncu_ms: float | None = None
    ratio: float | None = None  # ncu_ms / harness_ms
    raw_ms: float | None = None  # event median before the tare was taken off
    raw_ratio: float | None = None  # ncu_ms / raw_ms
    kernel_ms: float | None = None  # the harness's kernel clock (CUPTI), median per call
    kernel_ratio: float | None = None  # ncu_ms / kernel_ms
    kernels_per_call: float | None = None
    untimed_by_ncu: list[str] = field(default_factory=list)  # memsets/copies the call ran, ncu cannot time
    main_kernel: str = ""
    sm_mhz: float | None = None
    tensor_pct: float | None = None
    issue_pct: float | None = None  # issue slots used, % of active cycles
    xu_pct: float | None = None  # the XU pipe (MUFU: exponentials), % of active cycles
    l2_gbs: float | None = None  # bytes through L2 per second
    dram_gbs: float | None = None
    occupancy_pct: float | None = None
    registers: float | None = None
    smem_kib: float | None = None
    top_stall: str = ""


def ratio(ncu_ms: float | None, harness_ms: float | None) -> float | None:
    if ncu_ms is None or harness_ms is None or harness_ms <= 0:
        return None
    return ncu_ms / harness_ms


def medians_of_run(store: Store, run_id: str) -> dict[tuple[str, str], Result]:
    """The ok, timed results of one run, by (backend, problem key); isolated-mode rows only, the mode ncu is
    compared with (docs/timing.md)."""
    return {(r.backend, r.problem_key): r for r in store.iter_results(run_id)
            if r.status == "ok" and r.median_ms is not None and r.timing_mode == "isolated"}


def latest_medians(store: Store, cells: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Result]:
    """For each cell, its most recent ok timed result in any run that is not a profile run."""
    want = set(cells)
    found: dict[tuple[str, str], Result] = {}
    for r in store.iter_results():  # ordered by insertion: later rows win
        key = (r.backend, r.problem_key)
        timed = r.status == "ok" and r.median_ms is not None and r.timing_mode == "isolated"
        if key in want and timed and not is_profile_suite(r.suite):
            found[key] = r
    return found


def main_kernel(kernels: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The kernel with the most GPU time per call."""
    if not kernels:
        return "", {}
    name = max(kernels, key=lambda k: (kernels[k].get(TIME) or 0.0) * kernels[k].get("launches", 1))
    return name, kernels[name]


def make_row(backend: str, problem_key: str, prof: CellProfile, harness: Result | None) -> Row:
    row = Row(backend, problem_key, prof.status, prof.reason)
    row.harness_ms = harness.median_ms if harness is not None else None
    if harness is not None:
        row.raw_ms = harness.extra.get("raw_median_ms", harness.median_ms)
        row.kernel_ms = harness.extra.get("kernel_ms")
    if prof.status != "ok":
        return row
    row.ncu_ms = prof.call_ns / 1e6 if prof.call_ns is not None else None
    row.ratio = ratio(row.ncu_ms, row.harness_ms)
    row.raw_ratio = ratio(row.ncu_ms, row.raw_ms)
    row.kernel_ratio = ratio(row.ncu_ms, row.kernel_ms)
    row.kernels_per_call = sum(k["launches_per_call"] for k in prof.kernels.values())
    if harness is not None:
        names = harness.extra.get("kernel_clock_names")
        seen = harness.extra.get("kernels_per_call")
        if names is not None:
            row.untimed_by_ncu = [n for n in names if not n.startswith("kernel:")]
        elif seen is not None and seen > row.kernels_per_call + 0.5:  # runs measured before names were kept
            row.untimed_by_ncu = [f"other: {seen - row.kernels_per_call:g} more activities than ncu profiled"]
    name, k = main_kernel(prof.kernels)
    row.main_kernel = name
    hz = k.get("sm__cycles_elapsed.avg.per_second")
    row.sm_mhz = hz / 1e6 if hz else None
    row.tensor_pct = k.get("sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
                           k.get("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"))
    row.issue_pct = k.get("sm__inst_issued.avg.pct_of_peak_sustained_active")
    row.xu_pct = k.get("sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active")
    l2 = k.get("lts__t_bytes.sum.per_second")
    row.l2_gbs = l2 / 1e9 if l2 is not None else None
    bw = k.get("dram__bytes.sum.per_second")
    row.dram_gbs = bw / 1e9 if bw is not None else None
    row.occupancy_pct = k.get("sm__warps_active.avg.pct_of_peak_sustained_active")
    row.registers = k.get("launch__registers_per_thread")
    smem = k.get("smem_per_block_bytes")
    row.smem_kib = smem / 1024 if smem is not None else None
    row.top_stall = stall_summary(k)
    return row


#: the Row field holding ncu / harness for each harness clock
RATIO_OF = {"median": "ratio", "raw": "raw_ratio", "kernel": "kernel_ratio"}


@dataclass
class Agreement:
    judged: int  # cells with both numbers and an ncu time of at least min_ms
    within: int  # of those, |ncu / harness - 1| <= tolerance
    worst: Row | None


def agreement(rows: Iterable[Row], min_ms: float = 0.02, tolerance: float = 0.02, *,
              clock: str = "median", kernels_only: bool = False) -> Agreement:
    """How many cells of at least ``min_ms`` (by ncu) agree within ``tolerance``: ``clock`` picks the
    harness number, ``median`` (events, tare off), ``raw`` (events as measured) or ``kernel`` (CUPTI).
    ``kernels_only`` leaves out calls that also run memsets or copies ncu does not time."""
    attr = RATIO_OF[clock]
    judged = [r for r in rows if getattr(r, attr) is not None and r.ncu_ms is not None and r.ncu_ms >= min_ms
              and not (kernels_only and r.untimed_by_ncu)]
    ok = [r for r in judged if abs(getattr(r, attr) - 1.0) <= tolerance]
    worst = max(judged, key=lambda r: abs(getattr(r, attr) - 1.0), default=None)
    return Agreement(len(judged), len(ok), worst)


def agreement_lines(rows: list[Row], min_ms: float = 0.02, tolerance: float = 0.02) -> list[str]:
    """One line per clock: the target read off the table."""
    lines = []
    for clock, what in (("median", "harness median (events, tare off)"), ("raw", "raw event median"),
                        ("kernel", "harness kernel clock (CUPTI)")):
        a = agreement(rows, min_ms, tolerance, clock=clock)
        if not a.judged:
            continue
        w = a.worst
        lines.append(f"{what}: {a.within} of {a.judged} cells of >= {min_ms * 1e3:g} us within "
                     f"{tolerance:.0%} of ncu; worst ncu/harness {getattr(w, RATIO_OF[clock]):.3f} "
                     f"({w.backend} {w.problem_key}, ncu {w.ncu_ms * 1e3:.1f} us)")
    untimed = [r for r in rows if r.untimed_by_ncu]
    if untimed:
        a = agreement(rows, min_ms, tolerance, kernels_only=True)
        if a.judged:
            w = a.worst
            lines.append(f"harness median, leaving out the {len(untimed)} cells whose calls also run work ncu "
                         f"does not time ({'; '.join(sorted({n for r in untimed for n in r.untimed_by_ncu}))}): "
                         f"{a.within} of {a.judged} within {tolerance:.0%}; worst ncu/harness {w.ratio:.3f} "
                         f"({w.backend} {w.problem_key})")
    return lines


def table(rows: list[Row]):  # -> rich.table.Table
    from rich.table import Table

    def f(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "-"

    t = Table(title="Nsight Compute vs harness (ncu ms = summed kernel time of one call)")
    for col in ("backend", "problem", "status", "harness ms", "ncu ms", "ncu/harness", "ncu/raw", "ncu/kernel",
                "kernels", "untimed by ncu",
                "main kernel", "SM MHz", "tensor %", "issue %", "XU %", "L2 GB/s", "DRAM GB/s", "occ %", "regs",
                "smem KiB", "top stalls"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r.backend, r.problem_key, r.status if r.status == "ok" else f"{r.status}: {r.reason[:80]}",
                  f(r.harness_ms, ".4f"), f(r.ncu_ms, ".4f"), f(r.ratio, ".3f"), f(r.raw_ratio, ".3f"),
                  f(r.kernel_ratio, ".3f"),
                  f(r.kernels_per_call, ".3g"), ", ".join(n.split(":")[0] for n in r.untimed_by_ncu) or "-",
                  r.main_kernel[:40], f(r.sm_mhz, ".0f"), f(r.tensor_pct, ".1f"), f(r.issue_pct, ".1f"),
                  f(r.xu_pct, ".1f"), f(r.l2_gbs, ".0f"), f(r.dram_gbs, ".0f"),
                  f(r.occupancy_pct, ".1f"), f(r.registers, ".0f"), f(r.smem_kib, ".1f"), r.top_stall)
    return t
