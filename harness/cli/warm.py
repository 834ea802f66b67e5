"""``flashcore warm``: fill the on-disk compile caches a suite's backends need (FlashInfer's JIT modules,
flex's Inductor cache), in parallel, before the run that measures them."""
from __future__ import annotations

import typer

from harness.cli.console import console
from harness.cli.errors import fail, user_errors


def warm(
    suite: list[str] = typer.Option(..., "--suite", "-s", help="suite name (suites/NAME.toml) or path; repeat it to "
                                                                "warm several suites' compiles side by side"),
    backends: str = typer.Option("", "--backends", "-b", help="comma-separated backends (default: the suite's)"),
    filter: str = typer.Option("", "--filter", "-f", help='e.g. "kind=varlen,causal=true"'),
    jobs: int = typer.Option(8, "--jobs", "-j", min=1, max=64, help="processes preparing at once"),
) -> None:
    """Prepare each backend on each problem of the suites once, in parallel processes; nothing is measured or stored."""
    from harness.backends import registry
    from harness.run.plan import make_plan
    from harness.spec.suite import load_suite
    from harness.tools.warm import warm as warm_plan

    plan = []
    try:
        names = [b.strip() for b in backends.split(",") if b.strip()] or None
        for n in names or []:
            registry.get(n)  # unknown names fail here, before anything starts
        for one in suite:
            s = load_suite(one)
            cells = make_plan(s, names, filter)
            if not cells:
                raise fail(f"the filter {filter!r} leaves no problem of suite {s.name!r} ({len(s.problems)} problems)")
            plan += cells
    except user_errors() as exc:
        raise fail(str(exc)) from None

    def show(w) -> None:
        console.print(f"{w.status:8} {w.seconds:8.1f} s  {w.backend:22} {w.problem_key}"
                      + (f"  ({w.reason[:160]})" if w.reason else ""))

    results = warm_plan(plan, jobs, on_done=show)
    failed = [w for w in results if w.status == "failed"]
    console.print(f"warmed {len(results)}: {sum(w.status == 'ok' for w in results)} ok, "
                  f"{sum(w.status == 'skipped' for w in results)} skipped, {len(failed)} failed")


def register(app: typer.Typer) -> None:
    app.command()(warm)
