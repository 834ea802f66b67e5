"""``flashcore env``: the GPU, the versions, and which backends are available here."""
from __future__ import annotations

import typer

from harness.cli.console import console
from harness.views import tables


def env() -> None:
    """GPU, versions, and every backend's availability (with the reason when unavailable)."""
    from harness.backends import registry
    from harness.measure import environment

    info = environment.collect()
    console.print(tables.env_table(info))
    rows = []
    for name in registry.names():
        b = registry.get(name)
        why = b.unavailable()
        ops = ", ".join(o for o in ("fwd", "bwd", "fwd_bwd") if b.op_unsupported(o) is None)
        rows.append((name, "available" if why is None else "unavailable", ops, why or b.description))
    for name, err in registry.load_errors().items():
        rows.append((name, "load error", "", err))
    console.print(tables.backend_table(rows))


def register(app: typer.Typer) -> None:
    app.command()(env)
