"""What a worker returns for one visit of a cell: the verdict it reached and everything it observed, typed.

The report crosses the worker pipe as it is (pickled) and the supervisor reads it into the stored row
(``harness.analysis.verdict.to_result``); it holds observations only, never statistics or a final
verdict on speed, which the supervisor makes out of the measured code's reach.
"""
from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from harness.measure.observation import Observation
from harness.records.observations import (
    CorrectnessObservation,
    GradientCorrectnessObservation,
    NvmlClocks,
    StageObservation,
)

ObsT = TypeVar("ObsT", bound=Observation)

Status = Literal["ok", "skipped", "failed", "rejected"]


class TamperCheck(Observation):
    """The harness's functions found replaced after the cell (``harness.run.tamper``): the cell is rejected
    whatever it said, and what it said is kept."""

    replaced: list[str]
    status_before: str
    reason_before: str


class CellReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status = "ok"
    reason: str = ""  # why, for every status but ok
    timing_mode: str = "isolated"
    # the clocks as the stages began; None where the cell ended before (skipped, unavailable)
    clocks_before: NvmlClocks | None = None
    # in the order they were made: the stages' observations, then those a verdict that ended the cell carried
    observations: list[StageObservation] = Field(default_factory=list)
    tamper: TamperCheck | None = None

    def get(self, kind: type[ObsT]) -> ObsT | None:
        """The observation of this type (the last one, should there be several), or None."""
        return next((o for o in reversed(self.observations) if type(o) is kind), None)  # type: ignore[misc]

    @property
    def metrics(self) -> dict[str, Any]:
        """The backend's declared metrics (``Backend.metrics``), as its correctness check read them."""
        checked = self.get(CorrectnessObservation) or self.get(GradientCorrectnessObservation)
        return dict(checked.backend_metrics) if checked is not None else {}

    @property
    def restart(self) -> bool:
        """A tampered worker is not trusted with another cell: a patch would carry over."""
        return self.tamper is not None
