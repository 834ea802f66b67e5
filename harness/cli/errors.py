"""The one error rule of the ``flashcore`` command line: every error is one line on stderr,
``flashcore: error: [COMMAND: ]what``, with exit status 2 (130 when interrupted), and no traceback."""
from __future__ import annotations

import importlib
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click; older typer uses click itself
    from typer import _click as _clk
except ImportError:  # pragma: no cover - depends on the installed typer
    import click as _clk
_NO_ARGS = getattr(_clk.exceptions, "NoArgsIsHelpError", ())
_ABORT = tuple({typer.Abort, getattr(_clk.exceptions, "Abort", typer.Abort)})

#: the most characters of an error line: the start (what failed, and where) is kept
MAX_ERROR_CHARS = 600


def one_line(msg: str) -> str:
    """``msg`` with its whitespace collapsed, cut to MAX_ERROR_CHARS (saying how much was cut)."""
    line = " ".join(str(msg).split()) or "unknown error"
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 40].rstrip() + f" … ({len(line) - MAX_ERROR_CHARS + 40} more characters)"
    return line


def fail(msg: str, code: int = 2) -> typer.Exit:
    """Print the error line naming the problem; the caller raises what this returns."""
    typer.echo(f"flashcore: error: {one_line(msg)}", err=True)
    return typer.Exit(code)


def require(module: str, command: str) -> ModuleType:
    """``module``, imported; where it cannot be (plotly missing on a GPU node, say), the error line saying
    that ``command`` is not available here and why."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise fail(f"{command} is not available here: {exc} (pip install -e . installs what it needs)") from None


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors a user's input or machine causes, reported as an error line (anything else is a bug)."""
    from harness.backends.registry import UnknownBackendError
    from harness.run.plan import FilterError
    from harness.run.supervisor import WorkerError
    from harness.spec.problem import ProblemError
    from harness.spec.suite import SuiteError
    from harness.store.database import StoreError
    from harness.views.export import ExportError

    # OSError and sqlite3.Error: a --db, --out or --log-dir the system refuses (a folder, no permission)
    return (SuiteError, FilterError, StoreError, UnknownBackendError, ExportError, WorkerError, ProblemError,
            OSError, sqlite3.Error)


def named(exc: BaseException, db: Path) -> str:
    """The error's text; a SQLite error, which never says which file, with the database's path."""
    return f"{db}: {exc}" if isinstance(exc, sqlite3.Error) else str(exc)


class OneLineErrors(TyperGroup):
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
            typer.echo(f"flashcore: error: {where}{one_line(e.format_message())}", err=True)
            code = 2
        except _ABORT:
            typer.echo("flashcore: error: aborted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)
