"""How a cell ends early: a status and a reason (rejected / failed / skipped)."""
from __future__ import annotations

from typing import Any


class Verdict(Exception):
    """Ends a cell early. ``observations`` are what was seen before it, still recorded with the cell."""

    def __init__(self, status: str, reason: str, observations: tuple[Any, ...] = ()) -> None:
        super().__init__(reason)
        self.status, self.reason, self.observations = status, reason, observations
