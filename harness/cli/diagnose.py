"""``flashcore diagnose``: diagnostics over saved outputs (their logic: harness.tools.diagnostics)."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.errors import fail

diagnose_app = typer.Typer(no_args_is_help=True, help="Diagnostics over saved measurements and profiler outputs.")


@diagnose_app.command("ncu-saved")
def ncu_saved(
    dirs: list[str] = typer.Argument(..., metavar="DIR[:CALLS]...",
                                     help="folders of BACKEND__PROBLEM.ncu.txt files that flashcore profile wrote"),
    db: Path = typer.Option(..., "--db", help="results database with the harness timings"),
    timing: str = typer.Option(..., "--timing", help="run id whose medians the ncu times are compared with"),
    calls: int = typer.Option(3, "--calls", help="profiled calls per cell (flashcore profile --calls)"),
) -> None:
    """The ncu-vs-harness table from saved Nsight Compute outputs (profile runs whose rows never reached the
    database), beside the medians of the run --timing names."""
    from rich.console import Console

    from harness.store.database import Store, StoreError
    from harness.tools.diagnostics.ncu_saved import SavedOutputError, rows, saved_cells
    from harness.tools.profiling import compare

    try:
        cells = saved_cells(dirs, calls)
        medians = compare.medians_of_run(Store(db, readonly=True), timing)
    except (SavedOutputError, StoreError) as exc:
        raise fail(f"diagnose ncu-saved: {exc}") from None
    found = rows(cells, medians)
    console = Console(width=240)
    console.print(compare.table(found))
    for line in compare.agreement_lines(found):
        console.print(line)


#: the GPU diagnostics keep their own argparse options (``flashcore diagnose NAME --help`` prints them)
_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _passthrough(name: str, module: str, summary: str) -> None:
    @diagnose_app.command(name, context_settings=_PASSTHROUGH, add_help_option=False, help=summary)
    def command(ctx: typer.Context) -> None:
        import importlib

        importlib.import_module(f"harness.tools.diagnostics.{module}").main(list(ctx.args))


_passthrough("repeat-cells", "repeat_cells",
             "Time the same cells several times in one process, to split a median's run-to-run variation.")
_passthrough("thermal-timeline", "thermal_timeline",
             "One kernel's duration and the SM's effective clock over seconds of load after idle.")
_passthrough("clock-states", "clock_states",
             "Whether a kernel's time follows the SM clock between visits, timed by the host's clock.")
_passthrough("duty-cycle", "duty_cycle",
             "The sustained mode's loop with and without do_bench's flush between calls, beside do_bench.")


def register(app: typer.Typer) -> None:
    app.add_typer(diagnose_app, name="diagnose")
