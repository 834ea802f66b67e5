"""From a suite to the ordered list of cells to measure, with the user's filters applied.

Cells are ordered problem-major, so a worker computes each problem's reference once and every backend
on that problem is measured back to back under the same conditions. Within a problem: each timing mode
of the suite in turn, and within a mode ``[timing] rounds`` visits of every backend in rotation (A B C
A B C ...), so a slow drift of the GPU's power state falls on all backends alike.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.spec.kinds import KINDS
from harness.spec.problem import DTYPES, LAYOUTS, OPS, Problem
from harness.spec.suite import Suite

_OPS: dict[str, Callable[[object, object], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq, "=": operator.eq,
    ">": operator.gt, "<": operator.lt,
}
_TERM = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|!=|==|=|>|<)\s*(\S+)\s*$")
FILTER_KEYS = ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim", "dtype", "causal", "layout", "op",
               "kind", "page_size", "lengths", "window_left", "window_right", "softcap")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Cell:
    backend: str
    problem: Problem
    mode: str = "isolated"  # the timing mode (harness.spec.suite.MEASURE_MODES): part of the cell's identity
    round: int = 0  # which visit of the rotation (0-based); the visits of a cell pool into one result

    @property
    def key(self) -> tuple[str, str, str]:
        """What a stored result row is unique by within a run (besides the run)."""
        return (self.backend, self.problem.key(), self.mode)


def _parse_value(raw: str) -> object:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(raw)
    except ValueError:
        return raw


def _check_filter_value(term: str, key: str, value: object) -> None:
    """A value the key can never hold is a typo (``causal=yes``, ``batch=true``), not a filter matching
    nothing; and a bool must not pass for the integer 1 (True == 1 in Python)."""
    if key == "causal":
        ok, allowed = isinstance(value, bool), "true or false"
    elif key == "dtype":
        ok, allowed = value in DTYPES, ", ".join(DTYPES)
    elif key == "layout":
        ok, allowed = value in LAYOUTS, ", ".join(LAYOUTS)
    elif key == "op":
        ok, allowed = value in OPS, ", ".join(OPS)
    elif key == "kind":
        ok, allowed = value in KINDS, ", ".join(KINDS)
    elif key == "lengths":
        ok, allowed = isinstance(value, str), "a length distribution name"
    elif key == "softcap":
        ok, allowed = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        ok, allowed = isinstance(value, int) and not isinstance(value, bool), "an integer"
    if not ok:
        raise FilterError(f"filter term {term!r}: {key} takes {allowed}")


def parse_filter(expr: str) -> Callable[[Problem], bool]:
    """``"seqlen_q>=1024,head_dim=128,causal=true"``: every term must hold. A term without an
    operator matches as a substring of the problem key (e.g. ``d128`` or ``causal``)."""
    preds: list[Callable[[Problem], bool]] = []
    for term in filter(None, (t.strip() for t in expr.split(","))):
        m = _TERM.match(term)
        if not m:
            preds.append(lambda p, t=term: t in p.key())
            continue
        key, op, raw = m.groups()
        if key not in FILTER_KEYS:
            raise FilterError(f"filter term {term!r}: unknown key {key!r}; allowed {', '.join(FILTER_KEYS)}")
        value = _parse_value(raw)
        _check_filter_value(term, key, value)

        def pred(p: Problem, key: str = key, op: str = op, value: object = value) -> bool:
            try:
                return _OPS[op](getattr(p, key), value)
            except TypeError:
                raise FilterError(f"filter term {key}{op}{value!r}: cannot compare with {getattr(p, key)!r}") from None

        preds.append(pred)
    return lambda p: all(f(p) for f in preds)


def make_plan(suite: Suite, backends: Sequence[str] | None = None, filter_expr: str = "") -> list[Cell]:
    names = list(backends) if backends else list(suite.backends)
    keep = parse_filter(filter_expr) if filter_expr else (lambda p: True)
    modes = suite.timing.modes if suite.timing.enabled else ("isolated",)
    return [Cell(b, p, m, r) for p in suite.problems if keep(p) for m in modes
            for r in range(suite.timing.rounds if suite.timing.enabled else 1) for b in names]


def one_per_problem(plan: Sequence[Cell]) -> list[Cell]:
    """The first cell of each (backend, problem), in plan order: what an instrument that does not depend on
    the timing mode or the round (ncu, do_bench) measures once."""
    first: dict[tuple[str, str], Cell] = {}
    for c in plan:
        first.setdefault((c.backend, c.problem.key()), c)
    return list(first.values())
