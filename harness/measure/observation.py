"""The base of every typed observation the measurement makes: an immutable record of plain values
(numbers, strings, lists), so what a stage saw cannot change after it returned it."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Observation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
