"""The cells a diagnostic is asked for: ``BACKEND:PROBLEM_KEY`` specs looked up in a suite's plan."""
from __future__ import annotations

from harness.run.plan import Cell, make_plan
from harness.spec.suite import Suite


def suite_cells(suite: Suite, specs: list[str], command: str) -> list[Cell]:
    """The plan's cell for each spec, in the order given; a spec that names none stops ``command`` with one
    line saying so."""
    by_key = {(c.backend, c.problem.key()): c for c in make_plan(suite)}
    cells = []
    for spec in specs:
        backend, _, key = spec.partition(":")
        if (backend, key) not in by_key:
            raise SystemExit(f"{command}: {spec}: not a cell of suite {suite.name!r} "
                             f"(its problem keys: flashcore run --suite {suite.name} prints them)")
        cells.append(by_key[(backend, key)])
    return cells
