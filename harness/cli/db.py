"""``flashcore db copy``, ``flashcore db merge`` and ``flashcore db check-shards``: bringing results databases home
from device runs, and checking where a run of several workers put its cells."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.errors import fail

db_app = typer.Typer(no_args_is_help=True, help="Copy a results database consistently, merge the runs of two, check a sharded run.")


@db_app.command()
def copy(
    src: Path = typer.Argument(..., help="the database to copy"),
    dest: Path = typer.Argument(..., help="a file, or a folder to copy into under the same name"),
) -> None:
    """Copy a database with its write-ahead log applied (a plain cp can leave a stopped run's last rows behind)."""
    from harness.store.copy import copy_database
    from harness.store.database import StoreError

    try:
        written = copy_database(src, dest)
    except StoreError as exc:
        raise fail(f"db copy: {exc}") from None
    if written is None:
        typer.echo(f"flashcore: db copy: {dest} is the source itself; nothing copied", err=True)
        return
    typer.echo(f"copied {src} -> {written}")


@db_app.command()
def merge(
    src: Path = typer.Argument(..., help="the database whose runs are added"),
    dest: Path = typer.Argument(..., help="the database they are added to"),
    run_ids: list[str] = typer.Argument(None, help="only these runs (default: every run DEST lacks)"),
) -> None:
    """Add every run of SRC that DEST lacks, with all its rows; a run already in DEST is left alone."""
    from harness.store.database import StoreError
    from harness.store.merge import merge_runs

    try:
        added = merge_runs(src, dest, run_ids or None)
    except StoreError as exc:
        raise fail(f"db merge: {exc}") from None
    typer.echo(f"{len(added)} run(s) added to {dest}: {', '.join(added) or '-'}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("check-shards")
def check_shards(
    run_id: str = typer.Argument(..., help="a run of several workers (flashcore run --gpus)"),
    db: Path = typer.Option(Path("results/flashcore.db"), "--db", help="results database"),
) -> None:
    """Check a sharded run from its database: every cell once, each problem on one worker, every worker used,
    the GPU on every row. Exit status 1 if a check fails."""
    from harness.analysis.placement import PlacementError, check_placement

    if not db.is_file():
        raise fail(f"db check-shards: no database at {db}")
    try:
        p = check_placement(db, run_id)
    except PlacementError as exc:
        raise fail(f"db check-shards: {exc}") from None
    typer.echo(f"run {p.run_id}: {p.status}, {p.rows} rows, statuses {p.statuses}")
    for line in p.workers:
        typer.echo(f"  {line}")
    typer.echo(f"  stamps (index, uuid, name): {p.stamps}")
    for what, ok in p.checks.items():
        typer.echo(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not p.ok:
        raise typer.Exit(1)
