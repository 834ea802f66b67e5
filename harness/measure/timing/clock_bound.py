"""The one rule for a clock reading that cannot be the clock, shared by the measurement
(``harness.measure.timing.sm_clock``) and ``flashcore compare`` (which must not import torch)."""
from __future__ import annotations

MAX_OVER = 1.01  # more than this far above the GPU's maximum clock is an error of the probe


def above_max(mhz: float, top_mhz: float) -> bool:
    return mhz > MAX_OVER * top_mhz
