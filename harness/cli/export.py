"""``flashcore export``: stored results as CSV or Parquet."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.console import console
from harness.cli.errors import fail, named, user_errors
from harness.store.database import DEFAULT_DB


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
    from harness.store.database import Store
    from harness.views.export import export as do_export

    try:
        store = Store(db, readonly=True)
        out = out or Path(f"results/local/export.{format}")
        n = do_export(store, format, out, run or None, superseded=superseded)
        console.print(f"wrote {n} rows to {out}")
    except user_errors() as exc:
        raise fail(named(exc, db)) from None


def register(app: typer.Typer) -> None:
    app.command()(export)
