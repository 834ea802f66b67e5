"""The ncu-vs-harness table from saved Nsight Compute outputs, for profile runs whose rows did not reach
the database (a run stopped by a time limit before its rows were copied out).

Each ``BACKEND__PROBLEMKEY.ncu.txt`` that ``flashcore profile`` wrote is parsed exactly as the live command
parses it, and set beside the harness median of the same cell in a given run. ``FOLDER:CALLS`` gives a
folder's profiled calls per cell; a cell found in a later folder replaces the same cell of an earlier one
(e.g. re-profiled with more calls)."""
from __future__ import annotations

from pathlib import Path

from harness.tools.profiling import compare, ncu

SUFFIX = ".ncu.txt"


class SavedOutputError(ValueError):
    """A folder argument that names no saved outputs, or a CALLS that is not a whole number."""


def saved_cells(specs: list[str], default_calls: int) -> dict[tuple[str, str], tuple[Path, int]]:
    """(backend, problem key) -> (saved output, profiled calls) over the ``FOLDER[:CALLS]`` specs, in order."""
    cells: dict[tuple[str, str], tuple[Path, int]] = {}
    for spec in specs:
        folder, _, n = spec.partition(":")
        files = sorted(Path(folder).glob(f"*__*{SUFFIX}"))
        if not files or (n and not n.isdigit()):
            raise SavedOutputError(f"{spec}: want a folder of BACKEND__PROBLEM{SUFFIX} files, optionally "
                                   ":CALLS (a whole number)")
        for f in files:
            backend, key = f.name[: -len(SUFFIX)].split("__", 1)
            cells[(backend, key)] = (f, int(n) if n else default_calls)
    return cells


def rows(cells: dict[tuple[str, str], tuple[Path, int]], medians: dict) -> list[compare.Row]:
    """One ncu-vs-harness row per saved cell, beside its harness median (``medians``, by cell) where known."""
    out = []
    for (backend, key), (f, calls) in sorted(cells.items()):
        try:
            kernels, call_ns = ncu.summarize(ncu.parse_csv(f.read_text()), calls)
            prof = ncu.CellProfile("ok", "", kernels, call_ns)
        except ncu.NcuParseError as exc:
            prof = ncu.CellProfile("failed", str(exc))
        out.append(compare.make_row(backend, key, prof, medians.get((backend, key))))
    return out
