"""Whether the sustained mode and do_bench differ by their duty cycle, or by the inputs they rotate.

    flashcore diagnose duty-cycle --suite fa-paper --cell BACKEND:PROBLEM_KEY [--cell ...] [--rounds 3]
        [--window-s 0.15] [--warmup-s 0.05] [--json FILE]
    flashcore diagnose duty-cycle --from-json FILE        (the table again, no GPU)

Per cell, five loops in rotation, ``--rounds`` times, each round starting one loop later (so no loop always
follows the same one), with NVML's SM clock and board power polled during each:

* ``gapless``: the sustained mode's loop (``harness.measure.timing.sustained.time_sustained``): calls back to
  back over input sets rotated past twice the L2, one event pair per call, median;
* ``flush-gaps``: the same loop with do_bench's cache-clearing write (triton's own: 256 MiB zeroed) enqueued
  before every call, outside its event pair: do_bench's duty cycle;
* ``gapless-one-set`` and ``flush-one-set``: the same two loops on one input set, as do_bench calls its
  function (an input set larger than the L2 is still read from DRAM by each call);
* ``do_bench``: ``triton.testing.do_bench`` with its defaults, median.

Reading: ``flush-gaps`` within 1-2 % of ``do_bench`` while ``gapless`` reads slower, at a lower clock, says the
difference between the sustained mode and do_bench is the duty cycle the power limiter sees (docs/timing.md).
On the H100 it was not: ``flush-gaps`` read 6-9 % slower than do_bench at the same clock. The one-set loops
then ask whether the rotation through input sets (a working set several times larger, more address
translation) is what the loops differ by: ``flush-one-set`` within 1-2 % of ``do_bench`` says it is.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from statistics import fmean, median

LOOPS = ("gapless", "flush-gaps", "gapless-one-set", "flush-one-set", "do_bench")
#: the ratios the table ends with: each loop against do_bench, and the two differences under test
RATIOS = (("flush-gaps", "do_bench"), ("gapless", "flush-gaps"), ("gapless", "do_bench"),
          ("flush-one-set", "do_bench"), ("gapless-one-set", "do_bench"), ("flush-gaps", "flush-one-set"))


def round_order(r: int) -> tuple[str, ...]:
    """The loops of round ``r``: the rotation started ``r`` places later. In the first runs do_bench always
    came right after the flushed loop, one more difference between them than the one under test."""
    k = r % len(LOOPS)
    return LOOPS[k:] + LOOPS[:k]


@dataclass
class LoopReading:
    """One loop of one round: its median time per call, and the NVML means while it ran."""
    loop: str
    round: int
    median_ms: float
    calls: int
    sm_mhz: float | None = None
    power_w: float | None = None


@dataclass
class CellReadings:
    backend: str
    problem_key: str
    sets: int = 0  # input sets the two sustained loops rotate through
    readings: list[LoopReading] = field(default_factory=list)
    error: str = ""

    def median_of(self, loop: str) -> float | None:
        xs = [r.median_ms for r in self.readings if r.loop == loop]
        return median(xs) if xs else None

    def mean_of(self, loop: str, what: str) -> float | None:
        xs = [getattr(r, what) for r in self.readings if r.loop == loop and getattr(r, what) is not None]
        return fmean(xs) if xs else None

    def ratio(self, a: str, b: str) -> float | None:
        x, y = self.median_of(a), self.median_of(b)
        return x / y if x is not None and y else None


def report(cells: list[CellReadings]) -> list[str]:
    """The table: per cell and loop, the median over rounds (each round's in brackets), the mean SM clock and
    power; then the ratios that answer the question (``RATIOS``, those whose loops ran)."""
    lines = []
    for c in cells:
        lines.append(f"{c.backend} {c.problem_key}" + (f" ({c.sets} input sets)" if c.sets else ""))
        if c.error:
            lines.append(f"  {c.error}")
            continue
        for loop in LOOPS:
            rounds = [r.median_ms for r in c.readings if r.loop == loop]
            if not rounds:
                continue
            mhz, watts = c.mean_of(loop, "sm_mhz"), c.mean_of(loop, "power_w")
            lines.append(f"  {loop:<15} {c.median_of(loop):.4f} ms  [{', '.join(f'{x:.4f}' for x in rounds)}]"
                         + (f"  SM {mhz:.0f} MHz" if mhz is not None else "")
                         + (f"  {watts:.0f} W" if watts is not None else ""))
        for a, b in RATIOS:
            r = c.ratio(a, b)
            if r is not None:
                lines.append(f"  {a} / {b}: {r:.3f}")
    return lines


def _measure(cell: CellReadings, problem, rounds: int, window_s: float, warmup_s: float) -> None:  # GPU only
    import time

    import torch
    import triton.testing

    from harness.backends import registry
    from harness.measure.environment import NvmlPoller
    from harness.measure.inputs import make_inputs
    from harness.measure.timing import sustained

    backend = registry.get(cell.backend)
    why = backend.unavailable() or backend.unsupported(problem)
    if why:
        cell.error = f"skipped: {why}"
        return
    first = make_inputs(problem, 1234, "normal", "cuda")
    n_sets, _ = sustained.rotation_sets(sum(t.numel() * t.element_size() for t in first), sustained.l2_bytes())
    sets = [first] + [make_inputs(problem, 1234 + j, "normal", "cuda") for j in range(1, n_sets)]
    runs = [backend.prepare(problem, *s) for s in sets]
    cell.sets = n_sets
    driver = triton.runtime.driver.active
    do_bench_cache = driver.get_empty_cache_for_benchmark()  # the buffer do_bench zeroes before every call

    def call(i: int):
        return runs[i % n_sets]()

    def call_one_set(i: int):
        return runs[0]()

    for i in range(3):  # compilation and autotuning stay out
        call(i)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    call(0)
    torch.cuda.synchronize()
    est_ms = (time.perf_counter() - t0) * 1e3
    common = dict(duration_s=window_s, warmup_s=warmup_s, min_samples=10, time_cap_s=warmup_s + 5.0,
                  est_call_ms=est_ms, new_event=sustained.cuda_event)
    for r in range(rounds):
        for loop in round_order(r):
            with NvmlPoller(0.01) as poll:
                if loop == "do_bench":
                    times = triton.testing.do_bench(runs[0], return_mode="all")
                    med, calls = float(torch.tensor(times).median().item()), len(times)
                else:
                    between = (lambda: driver.clear_cache(do_bench_cache)) if loop.startswith("flush") else None
                    one_set = loop.endswith("one-set")
                    st = sustained.time_sustained(call_one_set if one_set else call, 1 if one_set else n_sets,
                                                  between=between, **common)
                    med, calls = median(st.samples_ms), len(st.samples_ms)
            mhz = [s.sm_mhz for s in poll.samples]
            watts = [s.power_w for s in poll.samples]
            cell.readings.append(LoopReading(loop, r, med, calls, fmean(mhz) if mhz else None,
                                             fmean(watts) if watts else None))


def _release_gpu_memory() -> None:
    import torch

    torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="flashcore diagnose duty-cycle", description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="fa-paper")
    ap.add_argument("--cell", action="append", default=[], help="BACKEND:PROBLEM_KEY (repeat for more cells)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rotations of the loops, each starting one loop later (5: every loop in every place)")
    ap.add_argument("--window-s", type=float, default=0.15, help="timed GPU time of each sustained loop")
    ap.add_argument("--warmup-s", type=float, default=0.05, help="back-to-back calls before, set aside")
    ap.add_argument("--json", default="", help="also write the readings here")
    ap.add_argument("--from-json", default="", help="print the table of a JSON an earlier run wrote (no GPU)")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            cells = [CellReadings(**{**d, "readings": [LoopReading(**r) for r in d["readings"]]}) for d in json.load(f)]
        print("\n".join(report(cells)))
        return
    if not args.cell or any(":" not in c for c in args.cell):
        raise SystemExit("duty-cycle: --cell BACKEND:PROBLEM_KEY is required (or --from-json FILE)")
    if not 1 <= args.rounds <= 20 or not 0.01 <= args.window_s <= 60 or not 0 <= args.warmup_s <= 60:
        raise SystemExit("duty-cycle: allowed --rounds 1 to 20, --window-s 0.01 to 60, --warmup-s 0 to 60")
    from harness.spec.suite import load_suite
    from harness.tools.diagnostics.cells import suite_cells

    cells = []
    for c in suite_cells(load_suite(args.suite), args.cell, "duty-cycle"):
        cell = CellReadings(c.backend, c.problem.key())
        _measure(cell, c.problem, args.rounds, args.window_s, args.warmup_s)
        _release_gpu_memory()  # the cell's input sets went with _measure's frame
        cells.append(cell)
        print("\n".join(report([cell])), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(c) for c in cells], f, indent=1)
