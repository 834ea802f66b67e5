"""What a stage of a cell's measurement is, and the state the stages of one cell share.

A stage has a name and ``run(ctx)``, which returns a typed observation (``harness.records.observations``)
or raises ``Verdict`` to end the cell at once. An observation may carry a verdict of its own: a
rejection ends the cell after the observation is recorded; a failure lets the remaining checks run
(their numbers are kept with the cell) and ends it before the first timed stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.measure.observation import Observation
from harness.measure.problem_cache import InputSet, ProblemCache
from harness.measure.timing.l2 import L2Flusher
from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing


@dataclass
class CellContext:
    """One visit of a cell: what it measures, and what earlier stages leave for later ones."""

    backend_name: str
    backend: Any
    problem: Problem
    checks: Checks
    timing: Timing
    device: str
    cache: ProblemCache
    flusher: L2Flusher | None
    timing_mode: str = "isolated"
    sets: list[InputSet] = field(default_factory=list)  # the input sets the checks used (weak ones left out)
    # per checked set: its prepared call and first output (a backward's: the tuple of its outputs), for the
    # determinism stage
    first_outputs: list[tuple[InputSet, Any, Any]] = field(default_factory=list)

    @property
    def out_shape(self) -> tuple[int, ...]:
        from harness.measure.kinds import out_shape

        return out_shape(self.problem)

    def out_dtype(self, input_dtype: Any) -> Any:
        """The dtype a right output has (bfloat16 for FP8 inputs), for poisoning the memory it may take."""
        from harness.measure.kinds import out_dtype

        return out_dtype(self.problem, input_dtype)


class Stage(Protocol):
    name: str
    timed: bool  # a timed stage runs only on a cell whose checks passed

    def run(self, ctx: CellContext) -> Observation: ...
