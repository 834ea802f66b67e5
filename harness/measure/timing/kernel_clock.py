"""A second clock: the GPU time of the kernels a call launched, from the profiler's CUPTI activity
records (``torch.profiler``), summed per call.

This is what Nsight Compute's ``gpu__time_duration`` and Nsight Systems add up: each kernel (and memcpy
or memset) from its start to its end on the GPU, on whatever stream it ran. It leaves out what the CUDA
events around a call also hold: the event pair's own cost, the launch latency of the first kernel, the
gaps between kernels. So it is the instrument to compare with ncu, and ``events − kernel`` is the
overhead a call pays beyond its kernels.

A call's kernels are found by correlation: each one carries the correlation id of the runtime or driver
API call that launched it, and that launch happened on the host inside the call's ``record_function``
range. Kernels the harness itself launches (flush, hold, input refresh, output check) are launched
outside the ranges and are not counted.
"""
from __future__ import annotations

import bisect
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MARK = "flashcore.call."
DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


@dataclass
class KernelClock:
    per_call_ms: list[float] = field(default_factory=list)  # one entry per profiled call
    kernels_per_call: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # what the calls ran on the GPU, first seen first
    error: str = ""  # why there are no numbers (profiler missing or busy, no kernel seen)


def _correlation(ev: dict[str, Any]) -> int | None:
    c = (ev.get("args") or {}).get("correlation")
    return int(c) if isinstance(c, (int, float)) else None


def per_call(events: Iterable[dict[str, Any]], n_calls: int, mark: str = MARK) -> KernelClock:
    """Sum the device activity of each marked call in a Chrome-trace event list (``traceEvents``)."""
    events = [e for e in events if e.get("ph") == "X"]
    ranges: list[tuple[float, float, int]] = []
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") == "user_annotation" and name.startswith(mark):
            try:
                idx = int(name[len(mark):])
            except ValueError:
                continue
            ranges.append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0)), idx))
    ranges.sort()
    starts = [r[0] for r in ranges]
    launch_ts: dict[int, float] = {}
    for e in events:
        c = _correlation(e)
        if c is not None and str(e.get("cat", "")).lower() not in DEVICE_CATS:
            launch_ts.setdefault(c, float(e["ts"]))
    total = [0.0] * n_calls
    count = [0] * n_calls
    names: dict[str, None] = {}
    for e in events:
        if str(e.get("cat", "")).lower() not in DEVICE_CATS:
            continue
        c = _correlation(e)
        ts = launch_ts.get(c) if c is not None else None
        if ts is None:
            continue
        k = bisect.bisect_right(starts, ts) - 1
        if k < 0:
            continue
        lo, hi, idx = ranges[k]
        if ts <= hi and 0 <= idx < n_calls:
            total[idx] += float(e.get("dur", 0.0)) * 1e-3  # µs → ms
            count[idx] += 1
            names.setdefault(f"{e.get('cat')}: {e.get('name')}", None)
    if len(ranges) < n_calls:
        return KernelClock(error=f"the profiler recorded {len(ranges)} of the {n_calls} call ranges")
    if not any(count):
        return KernelClock(error="the profiler recorded no kernel launched inside the calls (CUPTI busy with "
                                 "another tool, or launches it does not trace)")
    return KernelClock(total, count, list(names))


def measure(call: Callable[[int], Any], before: Callable[[int], object], after: Callable[[int, Any], None],
            first: int, n_calls: int) -> KernelClock:
    """Profile ``n_calls`` calls ``first, first + 1, ...``: ``before(i)`` (untimed set-up: refresh, flush,
    hold) and ``after(i, out)`` (the output check) run outside each call's range."""
    import torch

    try:
        from torch.profiler import ProfilerActivity, profile, record_function
    except ImportError as exc:  # pragma: no cover - part of torch
        return KernelClock(error=f"torch.profiler unavailable: {exc}")
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for j in range(n_calls):
                before(first + j)
                with record_function(f"{MARK}{j}"):
                    out = call(first + j)
                after(first + j, out)
            torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f).get("traceEvents", [])
    except Exception as exc:  # noqa: BLE001 - a second clock that fails leaves the first one standing
        return KernelClock(error=f"profiler failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return per_call(events, n_calls)
