"""A cell's measurement as stages (``base.Stage``), composed per suite by ``stages_for``."""
from __future__ import annotations

from harness.measure.stages.base import CellContext, Stage
from harness.measure.stages.checks import CorrectnessStage, DeterminismStage
from harness.measure.stages.gradients import GradientCorrectnessStage, GradientDeterminismStage
from harness.measure.stages.timing import TimingStage
from harness.spec.suite import Checks, Timing


def stages_for(checks: Checks, timing: Timing, op: str = "fwd") -> list[Stage]:
    """The checks always run (the determinism check too: even ``determinism_runs`` = 1 repeats the
    call once); timing only where the suite's ``[timing] enabled``. A backward operation (bwd, fwd_bwd)
    has its gradients checked instead of the forward's output."""
    stages: list[Stage] = ([CorrectnessStage(), DeterminismStage()] if op == "fwd"
                           else [GradientCorrectnessStage(), GradientDeterminismStage()])
    if timing.enabled:
        stages.append(TimingStage())
    return stages


__all__ = ["CellContext", "CorrectnessStage", "DeterminismStage", "GradientCorrectnessStage",
           "GradientDeterminismStage", "Stage", "TimingStage", "stages_for"]
