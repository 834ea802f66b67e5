"""The ``flashcore`` command line: one typer app; each command group is a module of this package, thin over
the library (every module here imports its heavy parts inside the command, so ``flashcore --help`` and
``flashcore run`` start without plotly, and the app is built without torch)."""
from __future__ import annotations

import typer

from harness.cli import (
    build,
    compare,
    crosscheck,
    db,
    diagnose,
    env,
    export,
    profile,
    report,
    run,
    show,
    standing,
    warm,
    wheelhouse,
)
from harness.cli.errors import OneLineErrors

# plain help text: typer's rich help prints every flag as taking a <bool> value, and reads "[timing]"
# in a help string as markup and drops it
HELP_MARKUP = None
app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=HELP_MARKUP,
                  context_settings={"max_content_width": 110},
                  help="Validate and time attention kernels on NVIDIA GPUs; keep every result.")
for _group in (env, run, show, export, compare, standing, build, report, profile, crosscheck, wheelhouse, db, diagnose,
               warm):
    _group.register(app)


def main() -> None:  # pragma: no cover - console script convenience
    app()
