"""How one kernel's duration and the SM's effective clock evolve over seconds of load after idle.

    flashcore diagnose thermal-timeline --suite fa-paper \
        --cell flashcore-bleeding-edge:b8-hq32-hkv32-sq2048-sk2048-d64-bfloat16-full-bshd \
        --phases idle:8,load:8,idle:2,load:4 [--json FILE]

During ``load`` the kernel runs back to back (L2 flushed before each call, as the harness times it);
every ~20 ms a spin of a known number of SM cycles (``torch.cuda._sleep``) is timed between two calls:
cycles / elapsed is the clock the SMs really ran at, whatever NVML reports. NVML's clock, temperature
and power are polled beside. Prints a table binned in 250 ms of GPU time.
"""
from __future__ import annotations

import argparse
import gzip
import json
import time
from statistics import median, pstdev

import torch

from harness.backends import registry
from harness.measure.environment import NvmlPoller
from harness.measure.inputs import make_inputs
from harness.measure.timing import sm_clock
from harness.measure.timing.l2 import L2Flusher
from harness.spec.suite import load_suite
from harness.tools.diagnostics.cells import suite_cells

SPIN_CYCLES = 2_000_000  # ~1 ms at 1.98 GHz


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="flashcore diagnose thermal-timeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="fa-paper")
    ap.add_argument("--cell", default="", help="BACKEND:PROBLEM_KEY")
    ap.add_argument("--phases", default="idle:8,load:8,idle:2,load:4")
    ap.add_argument("--bin-s", type=float, default=0.25)
    ap.add_argument("--json", default="")
    ap.add_argument("--from-json", default="", help="print the table of a JSON an earlier run wrote (no GPU)")
    args = ap.parse_args(argv)
    if args.from_json:
        opener = gzip.open if args.from_json.endswith(".gz") else open
        with opener(args.from_json, "rt") as f:
            d = json.load(f)
        report(d["cell"], d["phases"], d["calls"], d["nvml"], args.bin_s)
        return

    if ":" not in args.cell:
        raise SystemExit("--cell BACKEND:PROBLEM_KEY is required (or --from-json FILE)")
    suite = load_suite(args.suite)
    [cell] = suite_cells(suite, [args.cell], "thermal-timeline")
    backend_name, problem = cell.backend, cell.problem
    q, k, v = make_inputs(problem, 1234, "normal", "cuda")
    run = registry.get(backend_name).prepare(problem, q, k, v)
    flush = L2Flusher()
    for _ in range(3):
        run()
    torch.cuda.synchronize()

    stream = torch.cuda.current_stream()
    ref = torch.cuda.Event(enable_timing=True)
    ref.record(stream)
    torch.cuda.synchronize()
    t_host0 = time.perf_counter()
    calls: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []  # (kernel or spin, its events)
    with NvmlPoller(0.01) as poller:
        for phase in args.phases.split(","):
            kind, secs = phase.split(":")
            t_end = time.perf_counter() + float(secs)
            if kind == "idle":
                time.sleep(float(secs))
                continue
            next_spin = 0.0
            n = 0
            while time.perf_counter() < t_end:
                flush("read")
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(stream)
                run()
                b.record(stream)
                calls.append(("kernel", a, b))
                if time.perf_counter() >= next_spin:
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record(stream)
                    sm_clock.spin(SPIN_CYCLES)
                    b.record(stream)
                    calls.append(("spin", a, b))
                    next_spin = time.perf_counter() + 0.02
                n += 1
                if n % 16 == 0:
                    b.synchronize()
            torch.cuda.synchronize()

    rows = []
    for kind, a, b in calls:
        t = ref.elapsed_time(a) / 1e3
        ms = a.elapsed_time(b)
        rows.append({"t": t, "kind": kind, "ms": ms, "mhz": SPIN_CYCLES / (ms * 1e3) if kind == "spin" else None})
    nvml = [{"t": x.t - t_host0, "sm_mhz": x.sm_mhz, "temp_c": x.temp_c, "power_w": x.power_w}
            for x in poller.samples]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cell": args.cell, "phases": args.phases, "calls": rows, "nvml": nvml}, f)
    report(args.cell, args.phases, rows, nvml, args.bin_s)


def report(cell: str, phases: str, rows: list[dict], nvml: list[dict], bin_s: float) -> None:
    """The table of bins, then one line: over the bins with at least 50 calls and a clock reading, how far
    the kernel's time ranged, and how much its time and its cycle count (time × effective clock) varied."""
    print(f"{cell}  phases {phases}")
    print("   t_s  kernel_ms   n  eff_MHz  nvml_MHz  temp  power_W")
    bins: dict[int, tuple[list[float], list[float], list[dict]]] = {}
    for r in rows:
        ks, ss, _ = bins.setdefault(int(r["t"] / bin_s), ([], [], []))
        (ks if r["kind"] == "kernel" else ss).append(r["ms"] if r["kind"] == "kernel" else r["mhz"])
    for p in nvml:
        if p["t"] >= 0:
            bins.setdefault(int(p["t"] / bin_s), ([], [], []))[2].append(p)
    base = None
    times, cycles = [], []
    for i in sorted(bins):
        ks, ss, ps = bins[i]
        if not ks:
            continue
        km = median(ks)
        base = base or km
        print(f"{i * bin_s:6.2f}  {km:9.4f} {len(ks):3d}  {median(ss) if ss else float('nan'):7.1f}"
              f"  {median(p['sm_mhz'] for p in ps) if ps else 0:8.0f}  {median(p['temp_c'] for p in ps) if ps else 0:4.0f}"
              f"  {median(p['power_w'] for p in ps) if ps else 0:7.1f}  {km / base - 1:+.2%}")
        if len(ks) > 50 and ss:
            times.append(km)
            cycles.append(km * median(ss))
    if times:
        cv = [pstdev(x) / (sum(x) / len(x)) for x in (times, cycles)]
        print(f"{len(times)} full bins: kernel {min(times):.4f}-{max(times):.4f} ms ({max(times) / min(times) - 1:+.1%}); "
              f"variation of time {cv[0]:.2%}, of cycles (time x clock) {cv[1]:.2%}; "
              f"NVML max power {max((p['power_w'] for p in nvml), default=0):.0f} W, "
              f"min clock {min((p['sm_mhz'] for p in nvml), default=0)} MHz")

if __name__ == "__main__":
    main()
