"""The two ceilings, measured on the GPU in the same run as the results they scale:
a large bf16 matrix product (TFLOP/s) and a large device-to-device copy (GB/s, bytes read + written).
Datasheet numbers are leads only; these are what "% of peak" and the roofline use."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from statistics import median

import torch

from harness.measure.timing.probes import empty_pair_ms


@dataclass
class Peaks:
    matmul_tflops: float
    copy_gbs: float
    matmul_shape: int
    empty_event_us: float  # two events with nothing between them: the floor of every event timing


def _time_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return median(times)


def measure(n: int = 8192, copy_bytes: int = 2 << 30, reps: int = 20) -> Peaks:
    """Random data (zeros run faster and would overstate the peak)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    mm_ms = _time_ms(functools.partial(torch.matmul, a, b, out=c), reps)
    del a, b, c
    src = torch.randn(copy_bytes // 4, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    cp_ms = _time_ms(functools.partial(dst.copy_, src), reps)
    del src, dst
    torch.cuda.empty_cache()
    empty_ms = empty_pair_ms(reps, hold_ms=0.1)
    return Peaks(matmul_tflops=2 * n**3 / (mm_ms * 1e-3) / 1e12,
                 copy_gbs=2 * copy_bytes / (cp_ms * 1e-3) / 1e9, matmul_shape=n, empty_event_us=empty_ms * 1e3)
