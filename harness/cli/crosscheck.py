"""``flashcore crosscheck``: the same cells timed by flashcore, triton's do_bench and Nsight Compute in
one run (the instruments: harness.tools.crosscheck; the rows and their agreement: harness.analysis.crosscheck)."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import typer

from harness.analysis.crosscheck import SUSTAINED_MIN_MS, WITHIN, agreement_lines
from harness.cli.errors import fail
from harness.store.database import DEFAULT_DB


def crosscheck(
    suite: str = typer.Option(..., "--suite", "-s", help="suite name (suites/NAME.toml) or path"),
    filter: str = typer.Option("", "--filter", "-f", help='e.g. "seqlen_q>=4096,head_dim=128"'),
    backends: str = typer.Option("", "--backends", "-b", help="comma-separated backends (default: the suite's)"),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="results database (SQLite)"),
    run_id: str | None = typer.Option(None, "--run-id", help="name the cross-check run (with --resume: the run to go on with)"),
    resume: bool = typer.Option(False, "--resume", help="go on with the run --run-id names: measure the cells it lacks"),
    ncu_calls: int = typer.Option(20, "--ncu-calls", help="profiled calls per cell under ncu"),
    within: float = typer.Option(WITHIN, "--within", help="agreement asked of the pairings"),
    min_ms: float = typer.Option(SUSTAINED_MIN_MS, "--min-ms", help="sustained/do_bench judged on cells this long"),
    out_dir: Path = typer.Option(Path("results/local/crosscheck"), "--out-dir", help="ncu output per cell"),
    cell_timeout: float = typer.Option(900.0, "--cell-timeout", help="seconds allowed per ncu run"),
    dobench_longer: str = typer.Option("", "--dobench-longer", help="also do_bench with these rep= values (ms), "
                                       "comma-separated, e.g. 2000: kept beside the default's 100 ms"),
) -> None:
    """One run timing the chosen cells with flashcore (both modes), triton's do_bench and Nsight Compute,
    and how well they agree per cell. `flashcore show --run RUN` prints a stored one again."""
    from harness.run.plan import FilterError, make_plan
    from harness.run.supervisor import WorkerError, new_run_id
    from harness.spec.suite import SuiteError, load_suite
    from harness.store.database import Store, StoreError
    from harness.tools.crosscheck import (
        CrosscheckError,
        CrosscheckRequest,
        missing_tools,
        run_crosscheck,
        timing_suite,
    )
    from harness.views.tables import crosscheck_table

    if not 0 < within < 1:
        raise fail(f"crosscheck: --within {within!r}: must be a fraction in (0, 1), e.g. 0.02 for 2%")
    if ncu_calls < 1:
        raise fail(f"crosscheck: --ncu-calls {ncu_calls}: must be at least 1")
    if resume and not run_id:
        raise fail("crosscheck: --resume needs --run-id: the cross-check run to go on with")
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
        timing = timing_suite(s)
        plan = make_plan(timing, names, filter)
    except (SuiteError, FilterError, registry.UnknownBackendError) as exc:
        raise fail(f"crosscheck: {exc}") from None
    if not plan:
        raise fail(f"crosscheck: the filter {filter!r} leaves no problem of suite {suite!r}")
    missing = missing_tools()
    if missing:
        raise fail("crosscheck: needs an NVIDIA GPU, triton and Nsight Compute: " + "; ".join(missing))
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 240)
    req = CrosscheckRequest(suite_name=s.name, timing=timing, plan=plan, run_id=run_id or new_run_id(),
                            argv=shlex.join(["flashcore", *sys.argv[1:]]), ncu_calls=ncu_calls,
                            cell_timeout_s=cell_timeout, dobench_longer_ms=tuple(longer), out_dir=out_dir,
                            resume=resume)
    t0 = time.perf_counter()
    console.print(f"crosscheck: flashcore, both modes (run {req.timing_run_id}), then do_bench and ncu per cell")

    def progress(n: int, total: int, r) -> None:
        console.print(f"crosscheck [{n}/{total}] {r.backend} {r.problem_key}: isolated {r.isolated_ms}, "
                      f"sustained {r.sustained_ms}, do_bench {r.dobench_ms}, ncu {r.ncu_ms}")

    try:
        with Store(db) as store:
            rows = run_crosscheck(req, store, on_cell=progress)
    except (CrosscheckError, StoreError, WorkerError, OSError) as exc:
        raise fail(f"crosscheck: {exc}") from None
    console.print(crosscheck_table(rows))
    for line in agreement_lines(rows, within, min_ms):
        console.print(line)
    console.print(f"crosscheck run {req.run_id} (flashcore timings: {req.timing_run_id}) in {db}, "
                  f"{time.perf_counter() - t0:.0f} s; ncu output in {out_dir / req.run_id}")


def register(app: typer.Typer) -> None:
    app.command()(crosscheck)
