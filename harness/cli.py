"""The ``flashcore`` command line: env, run, show, export, build, report, audit, profile, validate."""
from __future__ import annotations

import math
import shlex
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from harness import tables
from harness.store import DEFAULT_DB

try:  # typer >= 0.2x vendors click; older typer uses click itself
    from typer import _click as _clk
except ImportError:  # pragma: no cover - depends on the installed typer
    import click as _clk
_NO_ARGS = getattr(_clk.exceptions, "NoArgsIsHelpError", ())
_ABORT = tuple({typer.Abort, getattr(_clk.exceptions, "Abort", typer.Abort)})


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown command or option, a value of the wrong type, a missing argument) as one line
    ``flashcore: error: COMMAND: what`` with exit status 2, like every other error — not click's box."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
            code = rv if isinstance(rv, int) else 0
        except _NO_ARGS as e:  # bare `flashcore`: the help, as before
            e.show()
            code = e.exit_code
        except _clk.exceptions.ClickException as e:
            ctx = getattr(e, "ctx", None)
            where = " ".join(ctx.command_path.split()[1:]) if ctx is not None else ""
            where = f"{where}: " if where else ""
            typer.echo(f"flashcore: error: {where}{_one_line(e.format_message())}", err=True)
            code = 2
        except _ABORT:
            typer.echo("flashcore: error: aborted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)

    # Commands whose modules pull in plotly, pandas or the profilers are imported only when asked for,
    # so `flashcore run` starts (and works) on a node without them.
    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        return names + [n for n in _LAZY_COMMANDS if n not in names]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in _LAZY_COMMANDS:
            cmd = _load_lazy_command(cmd_name)
            self.add_command(cmd, cmd_name)
        return cmd


#: command name -> (module, function): registered on first use (see _OneLineErrors.get_command)
_LAZY_COMMANDS = {
    "report": ("harness.report.cli", "report"),
    "audit": ("harness.report.cli", "audit"),
    "profile": ("harness.profiling.cli", "profile"),
    "validate": ("harness.profiling.cli", "validate"),
    "crosscheck": ("harness.crosscheck", "crosscheck"),
    "wheelhouse": ("harness.wheelhouse", "wheelhouse"),
}


def _load_lazy_command(name: str) -> Any:
    """The click command of a lazily imported command; one whose module cannot be imported (plotly
    missing, say) becomes a command that says so in one line."""
    import importlib

    module, attr = _LAZY_COMMANDS[name]
    sub = typer.Typer(add_completion=False, rich_markup_mode=HELP_MARKUP)
    try:
        fn = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        why = str(exc)

        def unavailable(ctx: typer.Context) -> None:
            raise fail(f"{name} is not available here: {why} (pip install -e . installs what it needs)")

        sub.command(name=name, help=f"(not available here: {why})",
                    context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(unavailable)
    else:
        sub.command(name=name)(fn)
    return typer.main.get_command(sub)


# plain help text: typer's rich help prints every flag as taking a <bool> value, and reads "[timing]"
# in a help string as markup and drops it
HELP_MARKUP = None
app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=HELP_MARKUP,
                  context_settings={"max_content_width": 110},
                  help="Validate and time attention kernels on NVIDIA GPUs; keep every result.")
console = Console(width=None if sys.stdout.isatty() else 200)


#: the most characters of an error line: the start (what failed, and where) is kept
MAX_ERROR_CHARS = 600


def _one_line(msg: str) -> str:
    line = " ".join(str(msg).split()) or "unknown error"
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 40].rstrip() + f" … ({len(line) - MAX_ERROR_CHARS + 40} more characters)"
    return line


def fail(msg: str, code: int = 2) -> typer.Exit:
    """One line on stderr naming the problem; no traceback."""
    typer.echo(f"flashcore: error: {_one_line(msg)}", err=True)
    return typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from harness.backends.registry import UnknownBackendError
    from harness.export import ExportError
    from harness.plan import FilterError
    from harness.problem import ProblemError
    from harness.runner import WorkerError
    from harness.store import StoreError
    from harness.suite import SuiteError

    # OSError and sqlite3.Error: a --db, --out or --log-dir the system refuses (a folder, no permission)
    return (SuiteError, FilterError, StoreError, UnknownBackendError, ExportError, WorkerError, ProblemError,
            OSError, sqlite3.Error)


def _named(exc: BaseException, db: Path) -> str:
    """The error's text; a SQLite error, which never says which file, with the database's path."""
    return f"{db}: {exc}" if isinstance(exc, sqlite3.Error) else str(exc)


def _check_run_id(run_id: str | None) -> None:
    if run_id is not None and (not run_id.strip() or len(run_id) > 100 or not run_id.isprintable()
                               or run_id != run_id.strip()):
        raise fail(f"--run-id {run_id[:100]!r}: a run id is 1 to 100 printable characters, no outer spaces")


@app.command()
def env() -> None:
    """GPU, versions, and every backend's availability (with the reason when unavailable)."""
    from harness import envinfo
    from harness.backends import registry

    info = envinfo.collect()
    console.print(tables.env_table(info))
    rows = []
    for name in registry.names():
        b = registry.get(name)
        why = b.unavailable()
        rows.append((name, "available" if why is None else "unavailable", why or b.description))
    for name, err in registry.load_errors().items():
        rows.append((name, "load error", err))
    console.print(tables.backend_table(rows))


def _with_flush(s, how: str):
    """The suite with its L2 flush set from ``--l2-flush`` (read, write or off)."""
    from dataclasses import replace

    from harness.suite import L2_FLUSH_MODES

    if how == "off":
        return replace(s, timing=replace(s.timing, l2_flush=False))
    if how not in L2_FLUSH_MODES:
        raise fail(f"--l2-flush {how!r}: allowed {', '.join(L2_FLUSH_MODES)}, off")
    return replace(s, timing=replace(s.timing, l2_flush=True, l2_flush_mode=how))


def _with_timing(s, flag: str, key: str, value: float, allowed: str):
    """The suite with one ``[timing]`` key set from its command-line flag, held to the suite key's bounds
    (``allowed`` says them, formatted with ``lo`` and ``hi``)."""
    from dataclasses import replace

    from harness.suite import NUMBER_BOUNDS

    lo, hi = NUMBER_BOUNDS[key]
    if not lo <= value <= hi:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise fail(f"{flag} {shown}: allowed {allowed.format(lo=lo, hi=hi)}")
    return replace(s, timing=replace(s.timing, **{key: value}))


@app.command()
def run(
    suite: str = typer.Option(..., "--suite", "-s", help="suite name (suites/NAME.toml) or path"),
    backends: str = typer.Option("", "--backends", "-b", help="comma-separated backends (default: the suite's)"),
    filter: str = typer.Option("", "--filter", "-f", help='e.g. "seqlen_q>=1024,head_dim=128,causal=true"'),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="results database (SQLite)"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest run of this suite (or --run-id)"),
    retry_failed: bool = typer.Option(
        False, "--retry-failed",
        help="measure again the failed cells of the latest run of this suite (or --run-id); the failed "
             "results are kept as superseded"),
    run_id: str | None = typer.Option(None, "--run-id", help="name the run, or pick the run to resume"),
    log_dir: Path | None = typer.Option(None, "--log-dir", help="where worker logs go (default: a temp dir)"),
    l2_flush: str | None = typer.Option(
        None, "--l2-flush", help="override the suite's L2 flush between samples: read, write or off"),
    kernel_clock: int | None = typer.Option(
        None, "--kernel-clock",
        help="also sum the kernel time of N calls per cell from the profiler's CUPTI records (0: off; "
             "default: the suite's kernel_clock_calls)"),
    cool: float | None = typer.Option(
        None, "--cool",
        help="GPU idle before each timed call, in multiples of the call's time (0: back to back; default: the "
             "suite's [timing] cool, 0 unless set)"),
    modes: str | None = typer.Option(
        None, "--modes", help="timing modes, comma-separated: isolated, sustained (default: the suite's [timing] modes)"),
    rounds: int | None = typer.Option(
        None, "--rounds", help="visits of every backend of a problem, in rotation (default: the suite's [timing] rounds)"),
    baseline: str | None = typer.Option(
        None, "--baseline", help="backend the others are reported as a ratio to (default: the suite's [timing] baseline)"),
) -> None:
    """Run a suite: correctness, determinism and timing of each backend on each problem."""
    from harness.backends import registry
    from harness.plan import make_plan
    from harness.runner import RunOptions, run_suite
    from harness.store import Store
    from harness.suite import load_suite

    try:
        _check_run_id(run_id)
        s = load_suite(suite)
        if l2_flush is not None:
            s = _with_flush(s, l2_flush)
        if kernel_clock is not None:
            s = _with_timing(s, "--kernel-clock", "kernel_clock_calls", kernel_clock, "{lo:g} (off) to {hi:g} calls")
        if cool is not None:
            s = _with_timing(s, "--cool", "cool", cool, "{lo:g} (back to back) to {hi:g} times the call's time")
        if rounds is not None:
            s = _with_timing(s, "--rounds", "rounds", rounds, "{lo:g} to {hi:g} visits")
        if modes is not None or baseline is not None:
            from harness.timing.options import with_modes

            s = with_modes(s, modes, baseline, backends)
        names = [b.strip() for b in backends.split(",") if b.strip()] or None
        for n in names or []:
            registry.get(n)  # unknown names fail here, before anything runs
            if names.count(n) > 1:
                raise fail(f"--backends: {n!r} is given twice")
        plan = make_plan(s, names, filter)
        if not plan:
            raise fail(f"the filter {filter!r} leaves no problem of suite {s.name!r} ({len(s.problems)} problems)")
        if log_dir is not None and log_dir.exists() and not log_dir.is_dir():
            raise fail(f"--log-dir {str(log_dir)!r} is a file, not a folder")
        store = Store(db)
        known_ids = {r[0] for r in store.conn.execute("SELECT run_id FROM runs")}
        again = "--resume" if resume else "--retry-failed" if retry_failed else ""
        if run_id is not None and not again and run_id in known_ids:
            raise fail(f"--run-id {run_id!r}: a run of that id is already in {db}: pick another, or add --resume")
        if run_id is not None and again:
            info = store.get_run(run_id)
            if info.suite != s.name:
                raise fail(f"{again} --run-id {run_id!r}: that run is of suite {info.suite!r}, not {s.name!r}")
        if again and (run_id or store.latest_run_id(s.name)):
            # refused before anything starts; the runner checks again as it takes the run over
            store.refuse_live(run_id or store.latest_run_id(s.name))
        if retry_failed:
            plan = _retry_plan(s, store, run_id, names, filter, plan)
        with tables.progress(console) as prog:
            task = prog.add_task(f"{s.name}", total=len(plan))

            def on_start(todo: int, total: int) -> None:
                prog.update(task, total=todo, completed=0)
                if retry_failed:
                    console.print(f"retrying {todo} failed cell(s){' and the missing ones' if resume else ''}")
                elif todo < total:
                    console.print(f"resuming: {total - todo} of {total} cells already recorded")

            def on_result(r, n: int, total: int) -> None:
                prog.update(task, completed=n, description=f"{s.name} {r.backend} {r.problem_key[:40]}")

            rid = run_suite(s, plan, store, RunOptions(resume=resume, retry_failed=retry_failed, run_id=run_id,
                                                       log_dir=log_dir,
                                                       argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                                       on_result=on_result, on_start=on_start))
        tables.print_run(console, store, rid)
        _print_next_steps(store, rid, db)
    except _user_errors() as exc:
        raise fail(_named(exc, db)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: every finished cell is stored; continue with --resume", 130) from None


def _retry_plan(s, store, run_id: str | None, names: list[str] | None, filter: str, plan: list) -> list:
    """The plan of ``--retry-failed``: without ``--backends``, the suite's backends and those of the run's
    failed cells; a failed cell the plan cannot reach (another filter, a problem gone from the suite) is
    named, not silently dropped."""
    from harness.backends import registry
    from harness.plan import make_plan

    rid = run_id or store.latest_run_id(s.name)
    if rid is None:
        raise fail(f"--retry-failed: no earlier run of suite {s.name!r} in {store.path}")
    failed = store.failed_cells(rid)
    if names is None:
        extra = sorted({b for b, _ in failed} - set(s.backends) & set(registry.names()))
        if extra:
            plan = make_plan(s, [*s.backends, *extra], filter)
    reachable = {(c.backend, c.problem.key()) for c in plan}
    left = sorted(failed - reachable)
    if left:
        console.print(f"note: {len(left)} failed cell(s) of run {rid} are outside this plan and are not retried "
                      f"(first: {left[0][0]} {left[0][1]})")
    return plan


def _print_next_steps(store, run_id: str, db: Path) -> None:
    """Where the results went and what to do with them."""
    info = store.get_run(run_id)
    q = shlex.quote
    console.print(f"run {run_id} ({info.status}) is stored in {db}", markup=False, highlight=False)
    steps = [f"flashcore show --run {q(run_id)} --db {q(str(db))}",
             f"flashcore report --run {q(run_id)} --db {q(str(db))}"]
    if info.status == "interrupted":
        steps.append(f"flashcore run --suite {q(info.suite)} --resume --run-id {q(run_id)} --db {q(str(db))}")
    if store.failed_cells(run_id):
        steps.append(f"flashcore run --suite {q(info.suite)} --retry-failed --run-id {q(run_id)} --db {q(str(db))}")
    console.print("next: " + "   ".join(steps), markup=False, highlight=False, soft_wrap=True)


@app.command()
def show(
    db: Path = typer.Option(DEFAULT_DB, "--db"),
    run: str | None = typer.Option(None, "--run", help="run id (default: the latest)"),
    runs: bool = typer.Option(False, "--runs", help="list the runs instead"),
) -> None:
    """Show a run's results table (or the list of runs)."""
    from harness.store import Store

    try:
        store = Store(db, readonly=True)
        if runs:
            console.print(tables.runs_table(store))
            return
        rid = run or store.latest_run_id()
        if rid is None:
            raise fail(f"{db} holds no runs yet: run `flashcore run --suite smoke` first")
        tables.print_run(console, store, rid)
        retried = store.superseded_counts(rid)
        if retried:
            console.print(f"{len(retried)} cell(s) were measured again (--retry-failed): the table shows the latest "
                          f"result; the {sum(retried.values())} earlier one(s) are kept (flashcore export "
                          "--superseded)", markup=False, highlight=False)
    except _user_errors() as exc:
        raise fail(_named(exc, db)) from None


@app.command()
def export(
    format: str = typer.Option("csv", "--format", help="csv or parquet"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output file (default results/local/export.FORMAT)"),
    db: Path = typer.Option(DEFAULT_DB, "--db"),
    run: list[str] = typer.Option([], "--run", help="run id(s) to export (default: all)"),
    superseded: bool = typer.Option(
        False, "--superseded",
        help="also the earlier results of cells measured again (--retry-failed), superseded_at set"),
) -> None:
    """Write one row per (run, backend, problem) as CSV or Parquet."""
    from harness.export import export as do_export
    from harness.store import Store

    try:
        store = Store(db, readonly=True)
        out = out or Path(f"results/local/export.{format}")
        n = do_export(store, format, out, run or None, superseded=superseded)
        console.print(f"wrote {n} rows to {out}")
    except _user_errors() as exc:
        raise fail(_named(exc, db)) from None


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="baseline run id"),
    run_b: str = typer.Argument(..., help="run id to compare with the baseline"),
    db: Path = typer.Option(DEFAULT_DB, "--db"),
    min_ms: float = typer.Option(0.1, "--min-ms", help="agreement is judged on cells at least this long"),
    within: float = typer.Option(0.01, "--within", help="relative agreement asked of those cells"),
    baseline: str | None = typer.Option(
        None, "--baseline",
        help="backend to report every other one as a ratio to, with a bootstrap interval (default: the ratios "
             "the runs stored, from the suite's [timing] baseline)"),
) -> None:
    """Two runs side by side: per-cell median ratio and which changes exceed the measured noise."""
    from harness.compare import (
        agreement,
        clock_attribution,
        diff_runs,
        method_mismatches,
        normalised_agreement,
    )
    from harness.store import Store

    if not (math.isfinite(min_ms) and min_ms >= 0):
        raise fail(f"--min-ms {min_ms!r}: must be a finite number >= 0")
    if not (math.isfinite(within) and 0 < within < 1):
        raise fail(f"--within {within!r}: must be a fraction in (0, 1), e.g. 0.01 for 1%")
    try:
        store = Store(db, readonly=True)
        diffs = diff_runs(store, run_a, run_b, baseline)
    except _user_errors() as exc:
        raise fail(_named(exc, db)) from None
    if not diffs:
        raise fail(f"runs {run_a} and {run_b} share no ok cell to compare")
    console.print(tables.diff_table(diffs))
    ok, n, worst = agreement(diffs, min_ms, within)
    console.print(f"{ok} of {n} cells of >= {min_ms:g} ms agree within {within:.1%} (worst {worst:.2%}); "
                  f"{sum(d.beyond_noise for d in diffs)} of {len(diffs)} cells changed beyond their noise")
    n_off, followed, unclocked = clock_attribution(diffs, min_ms, within)
    if n_off > unclocked:
        console.print(f"of the {n_off} cells outside {within:.1%}, {followed} moved with the effective SM clock "
                      f"(at least half the change); {unclocked} have no usable clock (none recorded, or one "
                      "above the GPU's maximum)")
    n_ok, n_read, n_worst = normalised_agreement(diffs, min_ms, within)
    if n_read:
        console.print(f"diagnostic, not a measurement: with each time scaled by its run's clock reading (suspect "
                      f"readings included), {n_ok} of {n_read} cells would agree within {within:.1%} "
                      f"(worst {n_worst:.2%})")
    from harness.compare import ratio_agreement

    r_ok, r_n, r_worst = ratio_agreement(diffs, min_ms, within)
    if r_n:
        console.print(f"ratios to the baseline: {r_ok} of {r_n} cells of >= {min_ms:g} ms agree within {within:.1%} "
                      f"between the runs (worst {r_worst:.2%})")
    elif baseline:
        console.print(f"ratios to the baseline: no cell of >= {min_ms:g} ms has a ratio to {baseline} in both runs")
    mixed = method_mismatches(diffs)
    if mixed:
        console.print(f"note: {len(mixed)} cells were timed by different methods ({mixed[0].a_method} vs "
                      f"{mixed[0].b_method}): their ratios include the change of method")


@app.command()
def build(
    out: Path | None = typer.Option(
        None, "--out", help="JSON report path (default results/local/build/report.json, ignored by git; "
                            "--out results/build/report.json refreshes the committed one)"),
) -> None:
    """Compile every project kernel for sm_90a and print the resource and SASS report."""
    try:
        from harness.build import build_all, check_claims, print_report
    except ImportError as exc:
        raise fail(f"the kernel build pipeline is not available: {exc}") from None
    try:
        report = build_all(out)
    except (RuntimeError, OSError) as exc:
        raise fail(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
    print_report(report, console)
    violations = check_claims(report)
    for v in violations:
        typer.echo(f"claim violated: {v}", err=True)
    if violations:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console script convenience
    app()
