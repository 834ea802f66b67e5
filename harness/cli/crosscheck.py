"""``flashcore crosscheck``: the same cells timed by flashcore, triton's do_bench and Nsight Compute in
one run (the instruments and their agreement: harness.tools.crosscheck)."""
from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import typer

from harness.cli.errors import fail
from harness.store.database import DEFAULT_DB
from harness.tools.crosscheck import (
    SUITE_PREFIX,
    SUSTAINED_MIN_MS,
    WITHIN,
    CrossRow,
    agreement_lines,
    missing_tools,
    run_dobench,
    table,
)


def crosscheck(
    suite: str = typer.Option(..., "--suite", "-s", help="suite name (suites/NAME.toml) or path"),
    filter: str = typer.Option("", "--filter", "-f", help='e.g. "seqlen_q>=4096,head_dim=128"'),
    backends: str = typer.Option("", "--backends", "-b", help="comma-separated backends (default: the suite's)"),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="results database (SQLite)"),
    run_id: str | None = typer.Option(None, "--run-id", help="name the cross-check run"),
    ncu_calls: int = typer.Option(20, "--ncu-calls", help="profiled calls per cell under ncu"),
    within: float = typer.Option(WITHIN, "--within", help="agreement asked of the pairings"),
    min_ms: float = typer.Option(SUSTAINED_MIN_MS, "--min-ms", help="sustained/do_bench judged on cells this long"),
    out_dir: Path = typer.Option(Path("results/local/crosscheck"), "--out-dir", help="ncu output per cell"),
    cell_timeout: float = typer.Option(900.0, "--cell-timeout", help="seconds allowed per ncu run"),
    dobench_longer: str = typer.Option("", "--dobench-longer", help="also do_bench with these rep= values (ms), "
                                       "comma-separated, e.g. 2000: kept beside the default's 100 ms"),
) -> None:
    """One run timing the chosen cells with flashcore (both modes), triton's do_bench and Nsight Compute,
    and how well they agree per cell."""
    from harness.records.result import Result
    from harness.run.plan import FilterError, make_plan
    from harness.run.supervisor import RunOptions, WorkerError, new_run_id, run_suite
    from harness.spec.suite import SuiteError, load_suite
    from harness.store.database import RunInfo, Store, StoreError, now
    from harness.tools.profiling import ncu

    if not 0 < within < 1:
        raise fail(f"crosscheck: --within {within!r}: must be a fraction in (0, 1), e.g. 0.02 for 2%")
    if ncu_calls < 1:
        raise fail(f"crosscheck: --ncu-calls {ncu_calls}: must be at least 1")
    try:
        longer = [int(x) for x in dobench_longer.split(",") if x.strip()]
    except ValueError:
        longer = [-1]
    if any(not 100 < x <= 60_000 for x in longer):
        raise fail(f"crosscheck: --dobench-longer {dobench_longer!r}: allowed whole milliseconds from 101 to 60000, comma-separated")
    from harness.backends import registry

    try:
        s = load_suite(suite)
        names = [b.strip() for b in backends.split(",") if b.strip()] or None
        for b in names or []:
            registry.get(b)  # an unknown name fails here, naming the known ones
        suite_name = s.name
        s = replace(s, name=f"crosscheck-timing:{s.name}",
                    timing=replace(s.timing, modes=("isolated", "sustained"), rounds=1, baseline=""))
        plan = make_plan(s, names, filter)
    except (SuiteError, FilterError, registry.UnknownBackendError) as exc:
        raise fail(f"crosscheck: {exc}") from None
    if not plan:
        raise fail(f"crosscheck: the filter {filter!r} leaves no problem of suite {suite!r}")
    missing = missing_tools()
    if missing:
        raise fail("crosscheck: needs an NVIDIA GPU, triton and Nsight Compute: " + "; ".join(missing))
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 240)
    exe = ncu.find_ncu()
    assert exe is not None
    rid = run_id or new_run_id()
    try:
        store = Store(db)
        t0 = time.perf_counter()
        timing_id = f"{rid}-flashcore"
        console.print(f"crosscheck: flashcore, both modes, {len(plan)} visits (run {timing_id})")
        run_suite(s, plan, store, RunOptions(run_id=timing_id, argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                             log_dir=out_dir / rid / "logs"))
        fc = {(r.backend, r.problem_key, r.timing_mode): r for r in store.iter_results(timing_id)}
        cells = list({(c.backend, c.problem.key()): c for c in plan}.values())
        console.print(f"crosscheck: do_bench of {len(cells)} cells")
        db_times = run_dobench(cells, timeout_s=max(600.0, 30.0 * len(cells) * (1 + len(longer))), longer_reps_ms=longer)
        from harness.measure import environment
        env = environment.collect()
        # the run's lease (pid, host, heartbeat): renewed per cell, so the run never reads as interrupted
        store.create_run(RunInfo(run_id=rid, suite=f"{SUITE_PREFIX}{suite_name}", created_at=now(),
                                 git_commit=env.get("git_commit", ""), argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                 env=env, pid=os.getpid(), host=socket.gethostname(), heartbeat_at=now()))
        (out_dir / rid).mkdir(parents=True, exist_ok=True)
        rows = []
        for n, c in enumerate(cells, 1):
            key = c.problem.key()
            prof = ncu.profile_cell(exe, c.backend, c.problem, metrics=ncu.METRIC_SETS["time"], clock_control="none",
                                    calls=ncu_calls, timeout_s=cell_timeout, python=sys.executable)
            (out_dir / rid / f"{c.backend}__{key}.ncu.txt").write_text(prof.output)
            iso, sus = fc.get((c.backend, key, "isolated")), fc.get((c.backend, key, "sustained"))
            d = db_times.get((c.backend, key), {})
            notes = [f"{m}: {r.status} {r.reason[:60]}" for m, r in (("isolated", iso), ("sustained", sus))
                     if r is not None and r.status != "ok"]
            if d.get("error"):
                notes.append(f"do_bench: {d['error'][:80]}")
            for rep, ms in (d.get("longer") or {}).items():
                notes.append(f"do_bench rep={rep}ms: {ms:.4g} ms")
            if prof.status != "ok":
                notes.append(f"ncu: {prof.status} {prof.reason[:80]}")
            row = CrossRow(c.backend, key, iso.median_ms if iso and iso.status == "ok" else None,
                           sus.median_ms if sus and sus.status == "ok" else None, d.get("median_ms"),
                           d.get("mean_ms"), prof.call_ns / 1e6 if prof.call_ns is not None else None, "; ".join(notes))
            rows.append(row)
            complete = None not in (row.isolated_ms, row.sustained_ms, row.dobench_ms, row.ncu_ms)
            extra = {"crosscheck": {**asdict(row), "sustained_vs_dobench": row.sustained_vs_dobench,
                                    "isolated_vs_ncu": row.isolated_vs_ncu, "isolated_vs_dobench": row.isolated_vs_dobench,
                                    "dobench_calls": d.get("calls"), "ncu_calls": ncu_calls,
                                    "dobench_longer_median_ms": d.get("longer") or {},
                                    "ncu_clock_control": "none", "flashcore_run": timing_id,
                                    "ncu_command": shlex.join(prof.command)}}
            store.add_result(Result.for_problem(rid, f"{SUITE_PREFIX}{suite_name}", c.backend, c.problem,
                                                "ok" if complete else "failed", row.notes[:1000], extra=extra))
            store.heartbeat(rid)
            console.print(f"crosscheck [{n}/{len(cells)}] {c.backend} {key}: isolated {row.isolated_ms}, "
                          f"sustained {row.sustained_ms}, do_bench {row.dobench_ms}, ncu {row.ncu_ms}")
        store.update_run(rid, status="complete", finished_at=now())
    except (StoreError, WorkerError, OSError) as exc:
        raise fail(f"crosscheck: {exc}") from None
    console.print(table(rows))
    for line in agreement_lines(rows, within, min_ms):
        console.print(line)
    console.print(f"crosscheck run {rid} (flashcore timings: {timing_id}) in {db}, "
                  f"{time.perf_counter() - t0:.0f} s; ncu output in {out_dir / rid}")


def register(app: typer.Typer) -> None:
    app.command()(crosscheck)
