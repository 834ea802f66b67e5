"""Does a kernel's time follow the SM clock between visits, by a clock the GPU does not keep?

    flashcore diagnose clock-states [--backend cudnn|flash] [--shape B,H,S,D] [--visits 12] [--json FILE]

A cell's median can sit still within one visit (samples agreeing to 0.05%) and move by 2% at the next,
while NVML reports 1980 MHz throughout and the hold-based probe (``harness.measure.timing.sm_clock``) at times
reads more than 1980. Either the SMs really ran faster than NVML's maximum, or the GPU's own timer (that
events read) drifted. This script times each visit's kernel by CUDA events, as the harness does, and
then a spin of a fixed cycle count twice: by events, and by the host's clock around a synchronize (a
timebase outside the GPU). If ``kernel time × host-timed clock`` holds still while the kernel's time
moves, the move is the SM clock, and the host says what that clock was.

Visits alternate idle gaps (0, 0.3, 1, 3 s) before them, to visit the states after idle and under load.
"""
from __future__ import annotations

import argparse
import json
import time
from statistics import median

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness.measure.environment import NvmlPoller
from harness.measure.timing import sm_clock
from harness.measure.timing.l2 import L2Flusher

GAPS_S = (0.0, 0.3, 1.0, 3.0)


def host_mhz(cycles: int) -> tuple[float, float]:
    """A spin of ``cycles`` timed by the host around synchronizes, and by an event pair: both as MHz."""
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    a.record()
    sm_clock.spin(cycles)
    b.record()
    torch.cuda.synchronize()
    host_s = time.perf_counter() - t0
    return cycles / host_s / 1e6, cycles / (a.elapsed_time(b) * 1e-3) / 1e6


def visit(call, flush: L2Flusher, samples: int, hold_cycles: int) -> tuple[list[float], list[float]]:
    """``samples`` calls as the harness times them (flush, timed hold, call); their times and holds (ms)."""
    pending = []
    for _ in range(samples):
        flush("read")
        h, s, e = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        h.record()
        sm_clock.spin(hold_cycles)
        s.record()
        call()
        e.record()
        pending.append((h, s, e))
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for _, s, e in pending], [h.elapsed_time(s) for h, s, _ in pending]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="flashcore diagnose clock-states", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("cudnn", "flash"), default="cudnn")
    ap.add_argument("--shape", default="8,32,2048,64", help="B,H,S,D (bf16, not causal)")
    ap.add_argument("--visits", type=int, default=12)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--spin-ms", type=float, default=50.0, help="the host-timed spin per visit")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    b, h, s, d = (int(x) for x in args.shape.split(","))
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[args.backend]

    def call() -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v)

    flush = L2Flusher()
    for _ in range(5):
        call()
    hold_cycles = sm_clock.cycles_for(0.1)
    spin_cycles = sm_clock.cycles_for(args.spin_ms)
    nominal = sm_clock.nominal_hz() / 1e6
    rows = []
    print(f"sdpa-{args.backend} B{b} H{h} S{s} D{d}; nominal {nominal:.0f} MHz; hold {hold_cycles} cycles")
    print(" visit gap_s  kernel_ms  hold_MHz  host_MHz  event_MHz  nvml_MHz  temp  power_W  ms×host/nominal")
    for i in range(args.visits):
        gap = GAPS_S[i % len(GAPS_S)]
        time.sleep(gap)
        with NvmlPoller(0.01) as poll:
            t_end = time.perf_counter() + 0.2  # settle, as the harness does
            while time.perf_counter() < t_end:
                visit(call, flush, 20, hold_cycles)
            times, holds = visit(call, flush, args.samples, hold_cycles)
            f_host, f_event = host_mhz(spin_cycles)
        cal = sm_clock.calibrate(hold_cycles)
        f_hold = [sm_clock.effective_mhz(hold_cycles, x, cal) for x in holds] if cal else []
        f_hold = [x for x in f_hold if x]
        t = median(times)
        row = {"visit": i, "gap_s": gap, "kernel_ms": t, "hold_mhz": median(f_hold) if f_hold else None,
               "host_mhz": f_host, "event_mhz": f_event,
               "nvml_mhz": median(p.sm_mhz for p in poll.samples) if poll.samples else None,
               "temp_c": max(p.temp_c for p in poll.samples) if poll.samples else None,
               "power_w": median(p.power_w for p in poll.samples) if poll.samples else None,
               "normalised_ms": t * f_host / nominal}
        rows.append(row)
        print(f" {i:5d} {gap:5.1f} {t:10.4f} {row['hold_mhz'] or float('nan'):9.1f} {f_host:9.1f} {f_event:10.1f}"
              f" {row['nvml_mhz'] or float('nan'):9.0f} {row['temp_c'] or 0:5d} {row['power_w'] or 0:8.1f}"
              f" {row['normalised_ms']:16.4f}")
    ts = [r["kernel_ms"] for r in rows]
    ns = [r["normalised_ms"] for r in rows]
    print(f"kernel time range {100 * (max(ts) / min(ts) - 1):.2f}%; time × host clock range "
          f"{100 * (max(ns) / min(ns) - 1):.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "shape": args.shape, "nominal_mhz": nominal, "rows": rows}, f)


if __name__ == "__main__":
    main()
