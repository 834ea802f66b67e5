"""Metrics a backend adds to its cells: each one declared (name, unit, whether higher is better), so
``extra`` carries only the harness's own keys and the names the backends declare.

A backend reports values for them from ``cell_extra()`` (its untimed work, e.g. a JIT compile and its
seconds); the correctness stage reads them, and a name the backend did not declare fails the cell with
a message saying how to declare it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the key in the cell's extra
    unit: str = ""  # e.g. "s"; "" for a count, a note or a record of several values
    #: True or False for a score read as such; None where neither is better (a note, e.g. which path ran)
    higher_is_better: bool | None = None


class UndeclaredMetric(ValueError):
    """A backend reported a metric it does not declare in ``metrics``."""


def reported_metrics(backend: Any) -> dict[str, Any]:
    """The backend's ``cell_extra()``, every name checked against its declared ``metrics``."""
    values = dict(getattr(backend, "cell_extra", dict)())
    declared = {m.name for m in getattr(backend, "metrics", ())}
    undeclared = [k for k in values if k not in declared]
    if undeclared:
        names = ", ".join(repr(k) for k in undeclared)
        raise UndeclaredMetric(
            f"{getattr(backend, 'name', type(backend).__name__)}: cell_extra() reported {names}, which its "
            f"metrics do not declare; add MetricSpec(name, unit, higher_is_better) for each to the class's "
            f"metrics (declared: {', '.join(sorted(declared)) or 'none'})")
    return values
