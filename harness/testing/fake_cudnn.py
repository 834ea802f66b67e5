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


class FakeGraph:
    """A stand-in ``cudnn.pygraph``: records its keyword arguments, the tensors declared on it and the build
    steps called, in order; ``check_support`` raises cuDNN's refusal where ``refused()`` says so. Subclasses
    add the attention node and ``execute``; each keeps its own ``made`` list."""

    made: list[FakeGraph] = []

    def __init__(self, **kw: Any) -> None:
        self.kw, self.tensors, self.steps, self.executed = kw, [], [], []
        type(self).made.append(self)

    def tensor(self, **kw: Any) -> FakeTensor:
        t = FakeTensor(**kw)
        self.tensors.append(t)
        return t

    def refused(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        if name in ("validate", "build_operation_graph", "create_execution_plans", "build_plans"):
            return lambda *a: self.steps.append(name)
        if name == "check_support":
            def check() -> None:
                if self.refused():
                    raise RuntimeError("cudnnGraphNotSupportedError: no engine for this graph")
                self.steps.append(name)
            return check
        raise AttributeError(name)

    def get_workspace_size(self) -> int:
        return 64


def fake_module(graph: type[FakeGraph], version: str, backend_version: Any) -> Any:
    """A stand-in ``cudnn`` module whose ``pygraph`` is ``graph``: the data types, alignments and heuristic
    modes as strings, one handle, a stream per handle, and ``backend_version()`` returning what the
    callable ``backend_version`` returns."""
    import types

    m = types.ModuleType("cudnn")
    m.__version__ = version
    m.data_type = types.SimpleNamespace(FP8_E4M3="fp8_e4m3", BFLOAT16="bf16", HALF="half", FLOAT="float")
    m.diagonal_alignment = types.SimpleNamespace(TOP_LEFT="top_left", BOTTOM_RIGHT="bottom_right")
    m.heur_mode = types.SimpleNamespace(A="A", FALLBACK="FALLBACK")
    m.pygraph = graph
    m.create_handle = lambda: "handle"
    streams: dict[str, Any] = {}
    m.set_stream = lambda handle, stream: streams.__setitem__(handle, stream)
    m.get_stream = lambda handle: streams.get(handle)
    m.backend_version = backend_version
    return m
