"""Terminal presentation: the tables and progress bar the CLI prints (rich)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.analysis.crosscheck import CrossRow, agreement_lines, is_crosscheck_suite, rows_of
from harness.store.database import Store

#: problem kinds whose roof is the memory bandwidth, not the tensor peak (harness.spec.problem.Problem.bandwidth_bound)
BANDWIDTH_KINDS = ("decode",)
_STATUS_STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "rejected": "bold red"}


def progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)


def env_table(info: dict[str, Any]) -> Table:
    t = Table(title="environment", show_header=False)
    for key in ("gpu", "capability", "sm_count", "gpu_memory_gib", "driver", "cuda", "cudnn", "torch", "python",
                "git_commit"):
        if info.get(key) is not None:
            t.add_row(key, str(info[key]))
    if info.get("clocks"):
        t.add_row("clocks", str(info["clocks"]))
    t.add_row("packages", ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items()))
    return t


def backend_table(rows: Iterable[tuple[str, str, str, str]]) -> Table:
    """(backend, state, operations, reason or description) per backend."""
    t = Table(title="backends")
    t.add_column("backend")
    t.add_column("state")
    t.add_column("operations")
    t.add_column("reason / description", overflow="fold")
    for name, state, ops, why in rows:
        t.add_row(name, f"[{'green' if state == 'available' else 'yellow'}]{state}[/]", ops, why)
    return t


def runs_table(store: Store) -> Table:
    t = Table(title=f"runs in {store.path}")
    for c in ("run_id", "suite", "created", "status", "gpu", "commit", "cells"):
        t.add_column(c)
    counts: dict[str, int] = defaultdict(int)
    for r in store.iter_results():
        counts[r.run_id] += 1
    for r in store.list_runs():
        t.add_row(r.run_id, r.suite, r.created_at, r.status, str((r.env or {}).get("gpu", "")), r.git_commit,
                  str(counts[r.run_id]))
    return t


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def ratio_text(r: dict | None) -> str:
    """A ratio to the baseline with its bootstrap interval, e.g. ``0.912 [0.908, 0.915]``."""
    if not r:
        return ""
    return f"{r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def gpu_key(r: Any) -> tuple[Any, str]:
    """Which GPU a row ran on: its index as given and its UUID (two hosts' GPU 0 differ by UUID)."""
    return (r.gpu_index, r.gpu_uuid or "")


def gpu_label(r: Any) -> str:
    return "" if r.gpu_index is None and not r.gpu_uuid else str(r.gpu_index if r.gpu_index is not None else "?")


def gpus_used(results: list[Any]) -> dict[tuple[Any, str], str]:
    """The GPUs a run's rows ran on, each with its name and how many cells, in order of index."""
    counts: dict[tuple[Any, str], int] = defaultdict(int)
    names: dict[tuple[Any, str], str] = {}
    for r in results:
        counts[gpu_key(r)] += 1
        names[gpu_key(r)] = r.gpu_name or "?"
    order = sorted(counts, key=lambda k: (k[0] is None, k[0] if k[0] is not None else 0, k[1]))
    return {k: f"{names[k]}{' ' + k[1] if k[1] else ''}, {counts[k]} cells" for k in order}


def print_run(console: Console, store: Store, run_id: str) -> None:
    info = store.get_run(run_id)
    results = list(store.iter_results(run_id))
    env = info.env or {}
    peak = f"{info.peak_tflops:.0f} TFLOPS matmul, {info.peak_gbs:.0f} GB/s copy" if info.peak_tflops else "not measured"
    console.print(f"[bold]run {run_id}[/] suite {info.suite} on {env.get('gpu', '?')} "
                  f"(torch {env.get('torch', '?')}, commit {info.git_commit or '?'}); peaks: {peak}")
    if is_crosscheck_suite(info.suite):  # its rows are instruments side by side, not measured cells
        rows = rows_of(results)
        console.print(crosscheck_table(rows))
        for line in agreement_lines(rows):
            console.print(line, markup=False, highlight=False)
        if info.status != "complete":
            again = info.argv if "--run-id" in info.argv else f"{info.argv} --run-id {run_id}"
            console.print(f"run {info.status}: {len(rows)} cell(s) stored; `{again} --resume` measures the rest",
                          markup=False, highlight=False)
        return
    used = gpus_used(results)
    several = len(used) > 1  # the GPU of each cell is shown only when there is more than one
    if several:
        console.print(f"{len(used)} GPUs: " + "; ".join(f"{k[0] if k[0] is not None else '?'} ({v})"
                                                         for k, v in used.items()), markup=False, highlight=False)
    t = Table(show_lines=False)
    bases = {str(r.extra["ratio_to_baseline"].get("baseline")) for r in results if r.extra.get("ratio_to_baseline")}
    cols = [("backend", "left"), ("problem", "left"), ("op", "left"), ("mode", "left"), ("status", "left"),
            ("median ms", "right"),
            ("p10–p90", "right"), ("TFLOPS", "right"), ("% peak", "right"), ("max err", "right"),
            ("tol", "right"), ("det", "center"), ("method", "left")]
    if bases:  # each backend's ratio to the baseline (time / baseline's time), 95% bootstrap interval
        cols.insert(8, (f"× {', '.join(sorted(bases))} [95%]", "right"))
    # bandwidth-bound kinds (decode): their headline is GB/s over the minimum bytes, and its % of the copy
    # bandwidth measured in the same run
    bandwidth = any(getattr(r, "kind", "dense") in BANDWIDTH_KINDS for r in results)
    if bandwidth:
        cols[8:8] = [("GB/s", "right"), ("% copy", "right")]
    if several:
        cols.insert(3, ("gpu", "right"))
    for c, j in cols:
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    skipped: dict[str, set[str]] = defaultdict(set)
    for r in results:
        if r.status == "skipped":
            skipped[r.backend].add(r.reason)
            continue
        spread = f"{r.p10_ms:.4g}–{r.p90_ms:.4g}" if r.p10_ms is not None else ""
        det = "" if r.deterministic is None else ("✓" if r.deterministic else f"✗{r.determinism_mismatches}")
        if r.deterministic is False and r.op != "fwd":  # which gradients differ, k of N
            per = r.extra.get("determinism_per_output") or {}
            det += " " + ",".join(f"{n} {d['differ']}/{d['of']}" for n, d in per.items() if d.get("differ"))
        style = _STATUS_STYLE.get(r.status, "")
        mode = r.timing_mode + (f" ×{r.rounds}" if (r.rounds or 1) > 1 else "")  # visits pooled
        row = [r.backend, r.problem_key, r.op, mode, f"[{style}]{r.status}[/]", _fmt(r.median_ms, ".4g"), spread,
               _fmt(r.tflops, ".1f") if r.status == "ok" else "", _fmt(r.pct_peak, ".1f") if r.status == "ok" else "",
               _fmt(r.max_abs_err, ".2g"), _fmt(r.tolerance, ".2g"), det, r.timing_method]
        if bases:
            row.insert(8, ratio_text(r.extra.get("ratio_to_baseline")))
        if bandwidth:
            ok = r.status == "ok"
            row[8:8] = [_fmt(r.gbs, ".0f") if ok else "", _fmt(r.pct_bandwidth, ".1f") if ok else ""]
        if several:
            row.insert(3, gpu_label(r))
        t.add_row(*row)
    console.print(t)
    bad = [r for r in results if r.status in ("failed", "rejected")]
    for r in bad:
        console.print(f"[{_STATUS_STYLE[r.status]}]{r.status}[/] {r.backend} {r.problem_key}: {escape(r.reason)}")
    for backend, reasons in sorted(skipped.items()):
        console.print(f"[yellow]skipped[/] {backend}: {escape('; '.join(sorted(reasons)))}")
    counts = defaultdict(int)
    for r in results:
        counts[r.status] += 1
    console.print("totals: " + ", ".join(f"{k} {counts[k]}" for k in ("ok", "skipped", "failed", "rejected")))


def crosscheck_table(rows: list[CrossRow]) -> Table:
    def f(x: float | None, spec: str = ".4f") -> str:
        return "" if x is None else format(x, spec)

    t = Table(title="cross-check: ms per call; ratios flashcore / other instrument")
    for c in ("backend", "problem", "isolated", "sustained", "do_bench median", "do_bench mean", "ncu",
              "sustained/do_bench", "isolated/ncu", "isolated/do_bench", "notes"):
        t.add_column(c, justify="left" if c in ("backend", "problem", "notes") else "right", overflow="fold")
    for r in rows:
        t.add_row(r.backend, r.problem_key, f(r.isolated_ms), f(r.sustained_ms), f(r.dobench_ms),
                  f(r.dobench_mean_ms), f(r.ncu_ms), f(r.sustained_vs_dobench), f(r.isolated_vs_ncu),
                  f(r.isolated_vs_dobench), escape(r.notes))
    return t


def diff_table(diffs) -> Table:
    t = Table(title="run comparison (ratio = new / baseline median)")
    clocks = any(d.clock_ratio is not None for d in diffs)
    bases = any(d.a_base or d.b_base for d in diffs)
    cols = [("backend", "left"), ("problem", "left"), ("mode", "left"), ("baseline ms", "right"), ("new ms", "right"),
            ("ratio", "right"), ("noise", "right"), ("p", "right"), ("beyond noise", "center")]
    if clocks:  # the time ratio the two effective SM clocks predict
        cols.append(("clock ratio", "right"))
    if bases:  # each run's ratio to the baseline backend, 95% bootstrap interval, and its move
        cols += [("× base, baseline run [95%]", "right"), ("× base, new run [95%]", "right"), ("moved", "right")]
    for c, j in cols:
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    for d in diffs:
        change = d.judged  # harness.analysis.noise: the verdict the dashboards and the gate give too
        row = [d.backend, d.problem_key, d.mode, f"{d.a_ms:.4g}", f"{d.b_ms:.4g}", f"{d.ratio:.4f}", f"{d.noise:.2%}",
               f"{change.p:.2g}" if change.p is not None else "",
               f"[red]{change.verdict}[/]" if change.beyond_noise else ""]
        if clocks:
            row.append(f"{d.clock_ratio:.4f}" if d.clock_ratio is not None else "")
        if bases:
            row += [ratio_text(d.a_base), ratio_text(d.b_base), f"{d.base_move:+.2%}" if d.base_move is not None else ""]
        t.add_row(*row)
    return t
