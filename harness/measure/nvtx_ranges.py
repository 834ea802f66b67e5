"""NVTX ranges in one ``flashcore`` domain, so Nsight tools can select exactly the measured calls
(``ncu --nvtx --nvtx-include "flashcore@<backend>:<problem key>/"``)."""
from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager as ContextManager

try:
    import nvtx as _nvtx
except ImportError:  # pragma: no cover - nvtx is a dependency, but ranges are optional
    _nvtx = None

DOMAIN = "flashcore"


def range_name(backend: str, problem_key: str) -> str:
    return f"{backend}:{problem_key}"


def call_range(backend: str, problem_key: str) -> ContextManager[object]:
    if _nvtx is None:
        return contextlib.nullcontext()
    return _nvtx.annotate(message=range_name(backend, problem_key), domain=DOMAIN, color="green")
