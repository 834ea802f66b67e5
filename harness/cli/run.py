"""``flashcore run``: a suite's cells measured by workers, each result stored as it comes."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from harness.cli.console import console
from harness.cli.errors import fail, named, user_errors
from harness.store.database import DEFAULT_DB
from harness.views import tables


def _check_run_id(run_id: str | None) -> None:
    if run_id is not None and (not run_id.strip() or len(run_id) > 100 or not run_id.isprintable()
                               or run_id != run_id.strip()):
        raise fail(f"--run-id {run_id[:100]!r}: a run id is 1 to 100 printable characters, no outer spaces")


def _with_flush(s, how: str):
    """The suite with its L2 flush set from ``--l2-flush`` (read, write or off)."""
    from dataclasses import replace

    from pydantic import ValidationError

    from harness.spec.schema import Timing, choices

    if how == "off":
        return replace(s, timing=replace(s.timing, l2_flush=False))
    try:  # the mode is held to the suite key's choices by the model itself
        return replace(s, timing=replace(s.timing, l2_flush=True, l2_flush_mode=how))
    except ValidationError:
        raise fail(f"--l2-flush {how!r}: allowed {', '.join(choices(Timing, 'l2_flush_mode'))}, off") from None


def _with_timing(s, flag: str, key: str, value: float, allowed: str):
    """The suite with one ``[timing]`` key set from its command-line flag, held to the suite key's bounds
    by the model (``allowed`` says them, formatted with ``lo`` and ``hi``)."""
    from dataclasses import replace

    from pydantic import ValidationError

    from harness.spec.schema import Timing, bounds

    try:
        return replace(s, timing=replace(s.timing, **{key: value}))
    except ValidationError:
        lo, hi = bounds(Timing, key)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise fail(f"{flag} {shown}: allowed {allowed.format(lo=lo, hi=hi)}") from None


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
    remeasure: bool = typer.Option(
        False, "--remeasure",
        help="measure every recorded cell of the latest run of this suite (or --run-id) again, e.g. on another "
             "GPU (--gpus 3,); the earlier results are kept as superseded (flashcore compare --across-gpus)"),
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
    gpus: str | None = typer.Option(
        None, "--gpus",
        help="one worker per GPU, each pinned with CUDA_VISIBLE_DEVICES: all, a count N, or indices 0,2,3 (3, for GPU "
             "3 alone; 0,0: two workers on GPU 0); problems go longest first to whichever is free (default: one "
             "worker, not pinned)"),
    executor: str = typer.Option(
        "local", "--executor", help="where the workers run: local (this machine) or ray (a Ray cluster's actors)"),
    address: str | None = typer.Option(
        None, "--address", help="with --executor ray: the cluster (auto, ray://HOST:10001; default: a local Ray)"),
) -> None:
    """Run a suite: correctness, determinism and timing of each backend on each problem."""
    from harness.backends import registry
    from harness.run.plan import make_plan
    from harness.run.supervisor import RunOptions, run_suite
    from harness.spec.suite import load_suite
    from harness.store.database import Store

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
            from harness.measure.timing.options import with_modes

            s = with_modes(s, modes, baseline, backends)
        workers, slots = _workers(executor, address, gpus)
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
        if remeasure and (resume or retry_failed):
            raise fail("--remeasure measures every recorded cell again: it goes without --resume and --retry-failed")
        again = "--resume" if resume else "--retry-failed" if retry_failed else "--remeasure" if remeasure else ""
        if run_id is not None and not again and store.run_status(run_id) is not None:
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
                elif remeasure:
                    console.print(f"measuring {todo} recorded cell(s) again")
                elif todo < total:
                    console.print(f"resuming: {total - todo} of {total} cells already recorded")
                if slots is not None:
                    console.print(f"{len(slots)} workers ({workers.name}): problems longest first, each problem's "
                                  "cells on one GPU")

            def on_result(r, n: int, total: int) -> None:
                prog.update(task, completed=n, total=total, description=f"{s.name} {r.backend} {r.problem_key[:40]}")

            def on_event(text: str) -> None:
                console.print(text, markup=False, highlight=False)

            rid = run_suite(s, plan, store, RunOptions(resume=resume, retry_failed=retry_failed, run_id=run_id,
                                                       remeasure=remeasure,
                                                       log_dir=log_dir,
                                                       argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                                       on_result=on_result, on_start=on_start, on_event=on_event,
                                                       executor=workers, slots=slots))
        tables.print_run(console, store, rid)
        _print_next_steps(store, rid, db)
    except user_errors() as exc:
        raise fail(named(exc, db)) from None
    except KeyboardInterrupt:
        raise fail(INTERRUPTED, 130) from None
    except RuntimeError as exc:
        # Ctrl-C (or timeout -s INT) landing inside a threading wait can surface as "release unlocked lock"
        # raised while the KeyboardInterrupt was being handled: the same interruption
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise fail(INTERRUPTED, 130) from None
        raise


INTERRUPTED = "interrupted: every finished cell is stored; continue with --resume"


def _workers(executor: str, address: str | None, gpus: str | None):
    """The executor and its worker slots (None: the one worker of old), or a one-line error."""
    from harness.run import executors
    from harness.run.executors import ExecutorError

    try:
        chosen = executors.get(executor, address)
        if executor == "ray":
            return chosen, chosen.slots(gpus)
        return chosen, chosen.slots(gpus) if gpus is not None else None
    except (ValueError, ExecutorError) as exc:  # a GpuSpecError is a ValueError
        raise fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - Ray could not reach the cluster: its own words, one line
        raise fail(f"--executor ray --address {address or '(local)'}: {str(exc).strip().splitlines()[0][:300]}") from None


def _retry_plan(s, store, run_id: str | None, names: list[str] | None, filter: str, plan: list) -> list:
    """The plan of ``--retry-failed``: without ``--backends``, the suite's backends and those of the run's
    failed cells; a failed cell the plan cannot reach (another filter, a problem gone from the suite) is
    named, not silently dropped."""
    from harness.backends import registry
    from harness.run.plan import make_plan

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


def register(app: typer.Typer) -> None:
    app.command()(run)
