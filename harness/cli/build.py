"""``flashcore build``: the project kernels compiled for sm_90a, with their resource and SASS report."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.console import console
from harness.cli.errors import fail


def build(
    out: Path | None = typer.Option(
        None, "--out", help="JSON report path (default results/local/build/report.json, ignored by git; "
                            "--out results/build/report.json refreshes the committed one)"),
) -> None:
    """Compile every project kernel for sm_90a and print the resource and SASS report."""
    try:
        from harness.tools.build import build_all, check_claims, print_report
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


def register(app: typer.Typer) -> None:
    app.command()(build)
