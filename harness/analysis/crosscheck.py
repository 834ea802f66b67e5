"""The cross-check's rows and their agreement: per cell, flashcore's two timing modes beside
``triton.testing.do_bench`` and Nsight Compute (measured by ``harness.tools.crosscheck``).

Expected agreement (docs/timing.md): ``sustained`` with do_bench's median, ``isolated`` with ncu. Each cell is
stored as one row of a run of suite ``crosscheck:<suite>`` with the times in ``extra.crosscheck``, so a stored
run reads back as the rows it was printed from (``rows_of``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from harness.records.result import Result

SUITE_PREFIX = "crosscheck:"
WITHIN = 0.02  # the agreement asked: 2%
SUSTAINED_MIN_MS = 0.1  # sustained vs do_bench is judged on cells of at least 100 µs
ISOLATED_MIN_MS = 0.02  # isolated vs ncu on kernels of at least 20 µs


@dataclass
class CrossRow:
    backend: str
    problem_key: str
    isolated_ms: float | None = None
    sustained_ms: float | None = None
    dobench_ms: float | None = None  # median
    dobench_mean_ms: float | None = None
    ncu_ms: float | None = None
    notes: str = ""  # why an instrument has no number

    @staticmethod
    def _ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b is not None and b > 0 else None

    @property
    def sustained_vs_dobench(self) -> float | None:
        return self._ratio(self.sustained_ms, self.dobench_ms)

    @property
    def isolated_vs_ncu(self) -> float | None:
        return self._ratio(self.isolated_ms, self.ncu_ms)

    @property
    def isolated_vs_dobench(self) -> float | None:
        return self._ratio(self.isolated_ms, self.dobench_ms)

    @property
    def complete(self) -> bool:
        """Every instrument gave a number."""
        return None not in (self.isolated_ms, self.sustained_ms, self.dobench_ms, self.ncu_ms)

    def stored(self, **context: Any) -> dict[str, Any]:
        """The row as kept in ``extra.crosscheck``: its fields, the three ratios, and ``context`` (how the
        instruments were run)."""
        return {**asdict(self), "sustained_vs_dobench": self.sustained_vs_dobench,
                "isolated_vs_ncu": self.isolated_vs_ncu, "isolated_vs_dobench": self.isolated_vs_dobench, **context}

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> CrossRow:
        return cls(**{k: d.get(k) for k in ("backend", "problem_key", "isolated_ms", "sustained_ms", "dobench_ms",
                                            "dobench_mean_ms", "ncu_ms")}, notes=d.get("notes") or "")


def is_crosscheck_suite(suite: str) -> bool:
    return suite.startswith(SUITE_PREFIX)


def rows_of(results: Iterable[Result]) -> list[CrossRow]:
    """The cross-check rows of a stored run, in the order they were measured (rows without
    ``extra.crosscheck`` are not cross-check cells and are passed over)."""
    return [CrossRow.from_stored(r.extra["crosscheck"]) for r in results
            if isinstance(r.extra.get("crosscheck"), dict)]


def _count(ratios: list[float], within: float) -> tuple[int, int, float]:
    moves = [abs(r - 1) for r in ratios]
    return sum(m <= within for m in moves), len(moves), max(moves, default=0.0)


def agreement(rows: list[CrossRow], within: float = WITHIN, sustained_min_ms: float = SUSTAINED_MIN_MS,
              isolated_min_ms: float = ISOLATED_MIN_MS) -> dict[str, tuple[int, int, float]]:
    """(within, judged, worst |ratio − 1|) for the two pairings the modes are meant to match: sustained
    with do_bench on cells of at least ``sustained_min_ms`` (by do_bench's median), isolated with ncu on
    kernels of at least ``isolated_min_ms`` (by ncu's time); and isolated with do_bench, for reference."""
    s = [r.sustained_vs_dobench for r in rows if r.dobench_ms is not None and r.dobench_ms >= sustained_min_ms]
    i = [r.isolated_vs_ncu for r in rows if r.ncu_ms is not None and r.ncu_ms >= isolated_min_ms]
    d = [r.isolated_vs_dobench for r in rows if r.dobench_ms is not None and r.dobench_ms >= sustained_min_ms]
    return {"sustained/do_bench": _count([x for x in s if x is not None], within),
            "isolated/ncu": _count([x for x in i if x is not None], within),
            "isolated/do_bench": _count([x for x in d if x is not None], within)}


def agreement_lines(rows: list[CrossRow], within: float = WITHIN, sustained_min_ms: float = SUSTAINED_MIN_MS,
                    isolated_min_ms: float = ISOLATED_MIN_MS) -> list[str]:
    a = agreement(rows, within, sustained_min_ms, isolated_min_ms)
    floors = {"sustained/do_bench": f">= {sustained_min_ms * 1e3:g} µs (do_bench)",
              "isolated/ncu": f">= {isolated_min_ms * 1e3:g} µs (ncu)",
              "isolated/do_bench": f">= {sustained_min_ms * 1e3:g} µs (do_bench), for reference"}
    return [f"{name}: {ok} of {n} cells {floors[name]} within {within:.0%} (worst {worst:.2%})"
            if n else f"{name}: no cell {floors[name]} has both numbers"
            for name, (ok, n, worst) in a.items()]
