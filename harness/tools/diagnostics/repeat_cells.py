"""Time the same cells several times in one process, to split a median's run-to-run variation.

    flashcore diagnose repeat-cells --suite fa-paper --rounds 4 [--shift] [--poll-ms 2] \
        --cell flashcore-bleeding-edge:b8-hq32-hkv32-sq2048-sk2048-d64-bfloat16-full-bshd ...

Each round measures every cell as ``flashcore run`` does (the worker's ``measure_cell``, same suite
settings) and prints its tared median. Run the script in several processes: rounds that agree while
processes disagree point at per-process state (where buffers landed in memory, what was compiled);
rounds that disagree point at the GPU's state over time. ``--shift`` frees the allocator's cache and
moves every buffer to new addresses between rounds. ``--poll-ms`` samples the SM clock and the
clock-event reasons by NVML while each cell is timed, to see clock dips the before/after snapshots miss.
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from statistics import median

import torch

from harness.analysis.stats import summarize
from harness.measure.cell import ProblemCache, measure_cell
from harness.measure.environment import NvmlPoller, NvmlSample
from harness.measure.timing.l2 import L2Flusher
from harness.records.observations import TimingObservation
from harness.spec.suite import load_suite
from harness.tools.diagnostics.cells import suite_cells


def poll_summary(samples: list[NvmlSample]) -> dict[str, object]:
    """The SM clock NVML reported while a cell ran, and every clock-event reason seen."""
    if not samples:
        return {}
    mhz = [x.sm_mhz for x in samples]
    reasons = 0
    for x in samples:
        reasons |= x.reasons
    return {"polls": len(mhz), "sm_min": min(mhz), "sm_median": median(mhz), "sm_mean": sum(mhz) / len(mhz),
            "reasons_or": hex(reasons)}


def summarize_file(path: str, prefix: int) -> None:
    """Per cell (and per the first ``prefix`` characters of the tag): how far its medians ranged."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("median_ms"):
                groups.setdefault((r["tag"][:prefix], r["backend"], r["problem"]), []).append(r)
    for (tag, backend, problem), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        ms = [r["median_ms"] for r in rows]
        mhz = [r["eff_mhz"] for r in rows if r.get("eff_mhz")]
        clock = f"  clock {min(mhz):.0f}-{max(mhz):.0f} MHz" if mhz else ""
        print(f"{tag:4s} {backend:24s} {problem:56s} n={len(ms)} range {max(ms) / min(ms) - 1:.2%}{clock}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="flashcore diagnose repeat-cells", description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="fa-paper")
    ap.add_argument("--cell", action="append", default=[], help="BACKEND:PROBLEM_KEY (repeatable)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--shift", action="store_true", help="new buffer addresses every round")
    ap.add_argument("--poll-ms", type=float, default=0.0)
    ap.add_argument("--json", default="", help="append one JSON line per measurement to this file")
    ap.add_argument("--tag", default="")
    ap.add_argument("--cool", type=float, default=None, help="override the suite's [timing] cool")
    ap.add_argument("--summarize", default="", help="print the range of each cell's medians in a JSON-lines file "
                                                    "an earlier run wrote (no GPU)")
    ap.add_argument("--group-prefix", type=int, default=0, help="with --summarize: group by this many leading "
                                                                  "characters of the tag")
    args = ap.parse_args(argv)
    if args.summarize:
        summarize_file(args.summarize, args.group_prefix)
        return
    if not args.cell:
        raise SystemExit("--cell BACKEND:PROBLEM_KEY is required (or --summarize FILE)")

    suite = load_suite(args.suite)
    if args.cool is not None:
        suite = replace(suite, timing=replace(suite.timing, cool=args.cool))
    wanted = suite_cells(suite, args.cell, "repeat-cells")
    flusher = L2Flusher()
    cache = ProblemCache()
    spacers: list[torch.Tensor] = []
    rng = random.Random(args.tag)
    for r in range(args.rounds):
        if args.shift and r:
            cache = ProblemCache()
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            spacers.append(torch.empty(rng.randrange(1, 256) << 20, dtype=torch.uint8, device="cuda"))
        for c in wanted:
            with NvmlPoller(args.poll_ms / 1e3) as poll:
                report = measure_cell(c.backend, c.problem, suite.checks, suite.timing, "cuda", cache, flusher)
            timed = report.get(TimingObservation)
            s = timed.samples_ms if timed else []
            st = summarize(s) if s else None
            tare = timed.tare_ms if timed else 0.0
            clock = timed.clock if timed else None
            mhz = clock.mhz if clock else []
            kernel = timed.kernel_clock if timed else None  # with [timing] kernel_clock_calls > 0
            after = timed.clocks_after if timed else None
            row = {"tag": args.tag, "round": r, "backend": c.backend, "problem": c.problem.key(),
                   "status": report.status, "n": len(s), "median_ms": st.median - tare if st else None,
                   "p10_ms": st.p10 - tare if st else None, "p90_ms": st.p90 - tare if st else None,
                   **poll_summary(poll.samples),
                   "eff_mhz": round(median(mhz), 1) if mhz else None,
                   "eff_mhz_min": round(min(mhz), 1) if mhz else None,
                   "hold_ms": round(clock.hold_ms, 4) if clock else None,
                   "timing_s": round(timed.timing_s, 3) if timed and timed.timing_s is not None else None,
                   "kernel_ms": median(kernel.per_call_ms) if kernel and kernel.per_call_ms else None,
                   "power_after": after.power_w if after else None,
                   "temp_after": after.temp_c if after else None}
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
