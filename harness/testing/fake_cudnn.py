"""A stand-in for the cuDNN frontend's graph tensors, for tests of the cuDNN backends on machines without
cuDNN: every ``set_x(value)`` is recorded in ``kw`` (``kw["output"]`` False until ``set_output``)."""
from __future__ import annotations

from typing import Any


class FakeTensor:
    def __init__(self, **kw: Any) -> None:
        self.kw = {"output": False, **kw}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("set_"):
            def setter(value: Any) -> FakeTensor:
                self.kw[name[4:]] = value
                return self
            return setter
        raise AttributeError(name)
