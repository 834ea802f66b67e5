"""``flashcore report`` and ``flashcore audit``. Register on the app with::

    from harness.report.cli import audit, report
    app.command()(report)
    app.command()(audit)

Errors print one line on stderr and exit with status 2, without a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from harness.store import DEFAULT_DB

if TYPE_CHECKING:
    from harness.audit import AuditReport

_VERDICT_STYLE = {"confirmed": "green", "refuted": "bold red", "untested": "yellow", "untestable": "dim"}


def _fail(msg: str) -> NoReturn:
    typer.echo(f"flashcore: error: {msg}", err=True)
    raise typer.Exit(2)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


def report(
    db: Annotated[Path, typer.Option("--db", help="results database (SQLite)")] = DEFAULT_DB,
    run: Annotated[
        list[str], typer.Option("--run", help="run id to render (repeatable; default: every run)")
    ] = [],  # noqa: B006 - typer reads the default; it is never mutated
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the HTML pages")] = Path("dashboards"),
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            help="backend the speedup heat map divides by (default sdpa-flash, else the first with timings)",
        ),
    ] = "sdpa-flash",
    compare: Annotated[
        list[str],
        typer.Option(
            "--compare", help="two run ids or commits to compare, before then after (give --compare twice)"
        ),
    ] = [],  # noqa: B006 - as above
) -> None:
    """Write offline HTML dashboards: overview, performance, roofline, correctness, profile, comparison."""
    from harness.report import ReportError, render

    try:
        paths = render(db, run or None, out, baseline=baseline, compare=compare or None)
    except ReportError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the dashboards to {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {len(paths)} page(s) to {out}/ — open {out / 'index.html'}")


def audit(
    claims: Annotated[Path, typer.Argument(help="claims file (TOML), e.g. suites/claims/seeds.toml")],
    db: Annotated[Path, typer.Option("--db", help="results database with the measurements")] = DEFAULT_DB,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the audit page")] = Path("dashboards"),
) -> None:
    """Check published claims: arithmetic consistency, formulas, and the measured results."""
    from harness.audit import ClaimsError
    from harness.audit import audit as run_audit
    from harness.report import ReportError, write_audit

    try:
        rep = run_audit(claims, db)
    except ClaimsError as exc:
        _fail(str(exc))
    console = _console()
    console.print(verdict_table(rep))
    counts = ", ".join(f"{n} {k}" for k, n in rep.counts().items())
    console.print(
        f"{len(rep.verdicts)} claims: {counts}; {len(rep.inconsistent())} internally inconsistent; "
        f"measurements: {rep.db_note}"
    )
    try:
        paths = write_audit(rep, out)
    except ReportError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the audit page to {out}: {exc.strerror or exc}")
    console.print(f"wrote {paths[0]}")


def verdict_table(rep: AuditReport) -> Table:
    """The audit as a rich table, one row per claim."""
    t = Table(title=f"claims audit: {rep.claims_path}", show_lines=False)
    widths = {
        "id": 2,
        "backend / kind": 2,
        "problem": 2,
        "claimed": 2,
        "consistency": 3,
        "verdict": 1,
        "detail": 5,
    }
    for col, ratio in widths.items():
        t.add_column(col, overflow="fold", ratio=ratio)
    for row in rep.rows():
        what = (
            row["backend"]
            if row["kind"] == "measured"
            else (f"{row['backend']} vs {row['baseline']}" if row["kind"] == "speedup" else row["kind"])
        )
        cons = row["consistency"]
        cons_style = (
            "green"
            if cons.startswith("consistent")
            else ("bold yellow" if cons.startswith("inconsistent") else "dim")
        )
        style = _VERDICT_STYLE[row["verdict"]]
        factor = f" ×{row['factor']:.1f}" if row["factor"] else ""
        t.add_row(
            _esc(row["id"]),
            _esc(what),
            _esc(row["problem"]),
            _esc(row["claimed"]),
            f"[{cons_style}]{_esc(cons)}[/]",
            f"[{style}]{row['verdict']}{factor}[/]",
            _esc(row["detail"]),
        )
    return t


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)
