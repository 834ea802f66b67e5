"""Did the measured code replace the functions that measure it?

The candidate runs in the worker's process, so it can monkeypatch the timer (``Event.elapsed_time``
returning 0.001 ms), the synchronisation, or the harness's own checks (``correctness.passes`` returning
True) — research note §7: KernelBench's TIMING_EVENT_PATCH_PATTERNS, reference-kernels #162, pygpubench
``got_patch``. The worker snapshots the identity of every such function before a cell and compares
after it: any replacement rejects the cell and retires the worker, so the patch cannot reach the next
cell either. (Statistics are computed by the supervisor, out of reach; physically impossible numbers are
rejected there too.)
"""
from __future__ import annotations

import importlib
import sys
import time
from typing import Any

#: harness modules whose functions and classes' methods must keep their identity during a cell
HARNESS_MODULES = ("harness.measure.cell", "harness.measure.correctness", "harness.measure.guards",
                   "harness.tools.kernel_names", "harness.measure.timing.timer", "harness.measure.timing.stopping",
                   "harness.measure.timing.l2", "harness.analysis.stats", "harness.measure.inputs",
                   "harness.spec.attention_math", "harness.run.worker", "harness.run.tamper",
                   "harness.measure.problem_cache", "harness.measure.verdict", "harness.measure.stages.base",
                   "harness.measure.stages.checks", "harness.measure.stages.timing", "harness.records.observations",
                   "harness.measure.timing.loop", "harness.measure.timing.probes",
                   "harness.measure.stages.gradients", "harness.measure.stages.work", "harness.measure.kinds",
                   "harness.measure.inputs_decode", "harness.measure.inputs_varlen", "harness.spec.kinds.masks",
                   "harness.records.report", "harness.run.jobs", "harness.run.replies", "harness.backends.metrics")
#: (module, dotted attribute) of library functions the measurement relies on
LIBRARY = (
    ("time", "perf_counter"), ("time", "perf_counter_ns"), ("time", "monotonic"),
    ("torch", "equal"), ("torch", "maximum"), ("torch", "isnan"), ("torch", "isinf"), ("torch", "isfinite"),
    ("torch", "where"), ("torch", "full"), ("torch", "empty"), ("torch", "empty_strided"),
    ("torch.Tensor", "copy_"), ("torch.Tensor", "to"), ("torch.Tensor", "clone"), ("torch.Tensor", "abs"),
    ("torch.Tensor", "max"), ("torch.Tensor", "sum"), ("torch.Tensor", "view"), ("torch.Tensor", "__sub__"),
    ("torch.Tensor", "__truediv__"), ("torch.Tensor", "__float__"), ("torch.Tensor", "item"),
    ("torch.cuda", "synchronize"), ("torch.cuda", "current_stream"), ("torch.cuda", "_sleep"),
    ("torch.cuda", "graph"), ("torch.cuda.Event", "record"), ("torch.cuda.Event", "elapsed_time"),
    ("torch.cuda.Event", "synchronize"), ("torch.cuda.Event", "query"), ("torch.cuda.Event", "__init__"),
    ("torch.cuda.CUDAGraph", "replay"), ("torch.cuda.Stream", "synchronize"),
    ("torch.cuda.Stream", "wait_stream"),
)


def _resolve(path: str) -> Any:
    mod = path.partition(".")[0]
    obj: Any = sys.modules.get(mod) or importlib.import_module(mod)
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def snapshot() -> dict[str, int]:
    """name → id of every watched function (and of every callable in the harness modules loaded)."""
    snap: dict[str, int] = {}
    for owner, attr in LIBRARY:
        try:
            obj = _resolve(owner)
            snap[f"{owner}.{attr}"] = id(obj.__dict__[attr] if isinstance(obj, type) and attr in obj.__dict__
                                         else getattr(obj, attr))
        except (AttributeError, ImportError, KeyError):
            continue
    for name in HARNESS_MODULES:
        mod = sys.modules.get(name)
        if mod is None:
            continue
        for attr, value in list(vars(mod).items()):
            if attr.startswith("__") or not callable(value):
                continue
            snap[f"{name}.{attr}"] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for m, f in list(vars(value).items()):
                    if callable(f) or isinstance(f, (staticmethod, classmethod, property)):
                        snap[f"{name}.{attr}.{m}"] = id(f)
    return snap


def replaced(before: dict[str, int]) -> list[str]:
    """Watched names whose function changed since ``before`` (names that disappeared count too)."""
    now = snapshot()
    return [k for k, v in before.items() if now.get(k) != v]


def describe(names: list[str]) -> str:
    shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
    return f"tampered with the harness: replaced {shown} (found after this cell)"


_ = time  # imported so that ("time", ...) entries resolve without an import at snapshot time
