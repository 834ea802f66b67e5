"""Command-line overrides of the suite's timing modes and baseline (``flashcore run --modes --baseline``),
checked as the suite keys are: a bad value is one line naming the option, the value and what is allowed."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.spec.suite import MEASURE_MODES, SuiteError


def parse_modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes:
        raise SuiteError(f"--modes {text!r}: give one or more of {', '.join(MEASURE_MODES)}, comma-separated")
    for m in modes:
        if m not in MEASURE_MODES:
            raise SuiteError(f"--modes {m!r}: allowed {', '.join(MEASURE_MODES)}")
        if modes.count(m) > 1:
            raise SuiteError(f"--modes {text!r}: {m!r} is given twice")
    return modes


def with_modes(suite: Any, modes: str | None, baseline: str | None, backends: str = "") -> Any:
    """The suite with ``[timing] modes`` and/or ``baseline`` replaced; the baseline must be one of the
    backends the run measures (``--backends``, else the suite's)."""
    t = suite.timing
    if modes is not None:
        t = replace(t, modes=parse_modes(modes))
    if baseline is not None:
        names = [b.strip() for b in backends.split(",") if b.strip()] or list(suite.backends)
        if baseline not in names:
            raise SuiteError(f"--baseline {baseline!r}: not one of the backends this run measures "
                             f"({', '.join(names)})")
        t = replace(t, baseline=baseline)
    return replace(suite, timing=t)
