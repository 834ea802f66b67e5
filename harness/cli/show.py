"""``flashcore show``: a stored run's results table, or the list of runs."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.console import console
from harness.cli.errors import fail, named, user_errors
from harness.store.database import DEFAULT_DB
from harness.views import tables


def show(
    db: Path = typer.Option(DEFAULT_DB, "--db"),
    run: str | None = typer.Option(None, "--run", help="run id (default: the latest)"),
    runs: bool = typer.Option(False, "--runs", help="list the runs instead"),
) -> None:
    """Show a run's results table (or the list of runs)."""
    from harness.store.database import Store

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
    except user_errors() as exc:
        raise fail(named(exc, db)) from None


def register(app: typer.Typer) -> None:
    app.command()(show)
