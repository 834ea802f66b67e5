"""The ncu-vs-harness table from saved Nsight Compute outputs, for profile runs whose rows did not reach
the database (a run stopped by a time limit before its rows were copied out):

    python3 scripts/ncu_saved_vs_harness.py results/h100/profile/RUN[:CALLS] [DIR[:CALLS] ...] \
        --db results/h100/flashcore.db --timing h100-fa-paper-3 [--calls 3]

Each ``BACKEND__PROBLEMKEY.ncu.txt`` that ``flashcore profile`` wrote is parsed exactly as the live command
parses it, and set beside the harness median of the same cell in the run named by ``--timing``. ``:CALLS``
gives a folder's profiled calls per cell (default ``--calls``); a cell found in a later folder replaces
the same cell of an earlier one (e.g. re-profiled with more calls)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from harness.profiling import compare, ncu
from harness.store import Store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", metavar="DIR[:CALLS]")
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--timing", required=True, help="run id whose medians the ncu times are compared with")
    ap.add_argument("--calls", type=int, default=3, help="profiled calls per cell (flashcore profile --calls)")
    args = ap.parse_args(argv)
    cells: dict[tuple[str, str], tuple[Path, int]] = {}
    for spec in args.dirs:
        folder, _, n = spec.partition(":")
        files = sorted(Path(folder).glob("*__*.ncu.txt"))
        if not files or (n and not n.isdigit()):
            print(f"ncu_saved_vs_harness: {spec}: want a folder of BACKEND__PROBLEM.ncu.txt files, optionally "
                  ":CALLS (a whole number)", file=sys.stderr)
            return 2
        for f in files:
            backend, key = f.name[: -len(".ncu.txt")].split("__", 1)
            cells[(backend, key)] = (f, int(n) if n else args.calls)
    medians = compare.medians_of_run(Store(args.db, readonly=True), args.timing)
    rows = []
    for (backend, key), (f, calls) in sorted(cells.items()):
        try:
            kernels, call_ns = ncu.summarize(ncu.parse_csv(f.read_text()), calls)
            prof = ncu.CellProfile("ok", "", kernels, call_ns)
        except ncu.NcuParseError as exc:
            prof = ncu.CellProfile("failed", str(exc))
        rows.append(compare.make_row(backend, key, prof, medians.get((backend, key))))
    console = Console(width=240)
    console.print(compare.table(rows))
    for line in compare.agreement_lines(rows):
        console.print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
