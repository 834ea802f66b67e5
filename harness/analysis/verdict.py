"""From a worker's typed report to a stored Result: statistics, throughput, and the checks that
only the supervisor can make (physically impossible speed, work that escaped the timed stream).

Thresholds, and why:
  * TFLOPS above 1.05 × the matmul peak measured in the same run: attention cannot beat the GPU's own
    dense matmul rate (the 5% covers clock variation between the two measurements). For FP8 inputs the
    roof is twice the bf16 peak: the tensor cores' FP8 rate (harness.spec.kinds.fp8.tensor_roof).
  * a median below the memory floor (min_bytes / (1.15 × measured copy bandwidth)): the inputs cannot be
    read faster than the copy engine moves bytes.
  * the fastest device-synchronised call over 1.5 × the event median + 50 µs: work ran outside the events'
    stream; legitimate calls only add a synchronisation latency (on the H100 up to 24 µs over a 12 µs
    kernel, hence the 50 µs slack).
  * events that saw nothing beyond their own tare (under 0.5 µs left; no kernel launch is that short)
    while a device-wide sync sees at least 5 µs: the events bracket nothing, the work is elsewhere. This
    catches side streams whose work is shorter than the slack above.
"""
from __future__ import annotations

from statistics import median
from typing import Any

from harness.analysis.record import binding, record_report
from harness.analysis.stats import summarize
from harness.records.observations import TimingObservation
from harness.records.report import CellReport
from harness.records.result import Result
from harness.run.plan import Cell
from harness.run.replies import WorkerFailure
from harness.spec.kinds import fp8

PEAK_MARGIN = 1.05
BANDWIDTH_MARGIN = 1.15
ESCAPE_FACTOR, ESCAPE_SLACK_MS = 1.5, 0.05
MIN_SAMPLE_MS = 1e-6
EMPTY_EVENTS_MS, EMPTY_SYNCED_MS = 0.0005, 0.005


def to_result(run_id: str, suite: str, cell: Cell, reply: CellReport | WorkerFailure, peaks: dict[str, float] | None,
              elapsed_s: float, gpu_shared_by: int = 1) -> Result:
    """The stored row of one visit. ``gpu_shared_by`` > 1: other workers of the run measure on the same GPU
    at the same time, so a device-wide sync also waits for their work: the escaped-work check cannot tell
    this cell's work from theirs and is not applied (said in ``extra``), and the times are contended."""
    p = cell.problem
    if isinstance(reply, WorkerFailure):
        # one line for tables; the whole text is error_text
        res = Result.for_problem(run_id, suite, cell.backend, p, "failed", reply.reason[:1000], passed=False,
                                 error_text=(reply.traceback or reply.error)[-4000:], timing_mode=cell.mode, rounds=1)
        res.extra["cell_seconds"] = round(elapsed_s, 3)
        return res
    report = reply
    res = Result.for_problem(run_id, suite, cell.backend, p, report.status, report.reason, timing_mode=cell.mode,
                             rounds=1)
    record_report(report, res)
    extra = res.extra
    extra["cell_seconds"] = round(elapsed_s, 3)
    b = binding(report)
    if b is not None and b.binding_distribution:
        extra["binding_distribution"] = b.binding_distribution
    if res.status == "skipped":
        res.passed = None
    elif res.status in ("failed", "rejected"):
        res.passed = False
    timing = report.get(TimingObservation)
    raw_samples = timing.samples_ms if timing is not None else []
    tare = float(timing.tare_ms or 0.0) if timing is not None else 0.0
    # the event pair's own cost is not the call's: off every sample (floored, so a call that does nothing
    # reads as near-zero time, i.e. impossible speed, never as a division by zero)
    samples = [max(x - tare, MIN_SAMPLE_MS) for x in raw_samples]
    if timing is not None and samples:
        s = summarize(samples)
        res.median_ms, res.p10_ms, res.p90_ms, res.rel_spread, res.n_samples = (
            s.median, s.p10, s.p90, s.rel_spread, s.n)
        res.tflops = p.flops() / (s.median * 1e-3) / 1e12
        res.gbs = p.min_bytes() / (s.median * 1e-3) / 1e9
        if timing.wall_ms:
            res.wall_ms_per_call = median(timing.wall_ms)
        extra["samples_ms"] = [round(x, 6) for x in raw_samples]  # as measured, tare included
        extra["event_tare_ms"] = tare
        # the visits pooled into this row: how many samples each gave and the tare each subtracts
        extra["round_sizes"] = [len(raw_samples)]
        extra["round_tares_ms"] = [tare]
        extra["raw_median_ms"] = median(raw_samples)
        extra["synced_ms"] = timing.synced_ms
        extra["enqueue_ms"] = timing.enqueue_ms
        if peaks:
            res.pct_peak = 100.0 * res.tflops / fp8.tensor_roof(p.dtype, peaks["matmul_tflops"])
            if peaks.get("copy_gbs"):  # the roof of bandwidth-bound kinds (decode): % of the measured copy
                res.pct_bandwidth = 100.0 * res.gbs / peaks["copy_gbs"]
        if gpu_shared_by > 1:
            extra["gpu_shared_by"] = gpu_shared_by
            extra["escape_check"] = (f"not applied: the GPU is shared by {gpu_shared_by} workers of this run, "
                                     "whose work a device-wide sync also waits for; times are contended")
        if res.status in ("ok", "rejected"):
            why = impossible(res, timing, peaks, escape_check=gpu_shared_by <= 1)
            if why and res.status == "ok":
                res.status, res.reason, res.passed = "rejected", why, False
            elif why and why not in res.reason:  # e.g. a forged timer: name what it produced too
                res.reason = f"{res.reason}; and {why}"
    return res


def impossible(res: Result, timing: TimingObservation, peaks: dict[str, float] | None,
               escape_check: bool = True) -> str | None:
    if timing.method.startswith("cpu"):
        return None
    synced = (timing.synced_ms or []) if escape_check else []
    # the fastest synced call: host hiccups (GC, scheduling) only ever add time to the others
    if synced and res.median_ms is not None and min(synced) > ESCAPE_FACTOR * res.median_ms + ESCAPE_SLACK_MS:
        return (f"work escaped the timed stream: {min(synced):.4g} ms with a device-wide sync vs "
                f"{res.median_ms:.4g} ms between events")
    if synced and res.median_ms is not None and res.median_ms < EMPTY_EVENTS_MS and min(synced) > EMPTY_SYNCED_MS:
        events_us = res.extra.get("raw_median_ms", res.median_ms) * 1e3
        return (f"work escaped the timed stream: the events bracket nothing ({events_us:.2f} µs, their own "
                f"tare being {float(timing.tare_ms or 0.0) * 1e3:.2f} µs) while a device-wide sync sees "
                f"{min(synced):.4g} ms")
    roof = fp8.tensor_roof(res.dtype, peaks["matmul_tflops"]) if peaks else None
    if roof and res.tflops is not None and res.tflops > PEAK_MARGIN * roof:
        if fp8.is_fp8(res.dtype):
            return (f"impossible speed: {res.tflops:.1f} TFLOPS exceeds the FP8 tensor roof {roof:.1f} TFLOPS "
                    f"({fp8.TENSOR_RATE_VS_BF16:g} × the measured bf16 matmul peak {peaks['matmul_tflops']:.1f})")
        return (f"impossible speed: {res.tflops:.1f} TFLOPS exceeds the measured matmul peak "
                f"{peaks['matmul_tflops']:.1f} TFLOPS")
    if peaks and res.median_ms is not None:
        floor_ms = res.min_bytes / (BANDWIDTH_MARGIN * peaks["copy_gbs"] * 1e9) * 1e3
        if res.median_ms < floor_ms:
            return (f"impossible speed: {res.median_ms:.4g} ms is below the memory floor {floor_ms:.4g} ms "
                    f"({res.min_bytes} bytes at {peaks['copy_gbs']:.0f} GB/s)")
    return None


# -- interleaved rounds: visits of one cell pooled into one row -------------------------------------
def net_samples(res: Result) -> list[float]:
    """The row's samples less the event tare of the visit each came from (floored as in ``to_result``)."""
    raw = [float(x) for x in res.extra.get("samples_ms") or []]
    sizes = res.extra.get("round_sizes") or [len(raw)]
    tares = res.extra.get("round_tares_ms") or [float(res.extra.get("event_tare_ms") or 0.0)] * len(sizes)
    out: list[float] = []
    at = 0
    for n, tare in zip(sizes, tares, strict=False):
        out += [max(x - float(tare), MIN_SAMPLE_MS) for x in raw[at:at + int(n)]]
        at += int(n)
    return out


def _visit(res: Result) -> dict[str, Any]:
    """What one visit gave, kept in the pooled row (``extra.visits``)."""
    return {"status": res.status, "median_ms": res.median_ms, "n": res.n_samples, "stop_reason": res.stop_reason,
            "sm_mhz": res.extra.get("sm_mhz"), "cell_seconds": res.extra.get("cell_seconds")}


def pool(prev: Result, new: Result) -> Result:
    """The row after another visit of the same cell: ``new``'s verdict and correctness, the samples of every
    visit so far, statistics over all of them. A visit that failed or was rejected decides the row (the
    backend is not reliable there), and the earlier visits' samples stay in ``extra.earlier_visits``."""
    visits = list(prev.extra.get("visits") or [_visit(prev)]) + [_visit(new)]
    rounds = (prev.rounds or 1) + 1
    if new.status != "ok" or prev.status != "ok" or not new.extra.get("samples_ms"):
        new.rounds = rounds
        new.extra["visits"] = visits
        new.extra["earlier_visits"] = {k: prev.extra.get(k) for k in ("samples_ms", "round_sizes", "round_tares_ms")}
        return new
    extra = dict(new.extra)
    extra["samples_ms"] = list(prev.extra.get("samples_ms") or []) + list(new.extra.get("samples_ms") or [])
    extra["round_sizes"] = list(prev.extra.get("round_sizes") or []) + list(new.extra.get("round_sizes") or [])
    extra["round_tares_ms"] = list(prev.extra.get("round_tares_ms") or []) + list(new.extra.get("round_tares_ms") or [])
    extra["raw_median_ms"] = median(extra["samples_ms"])
    extra["visits"] = visits
    extra["cell_seconds"] = round(sum(float(v.get("cell_seconds") or 0.0) for v in visits), 3)
    new.extra = extra
    new.rounds = rounds
    samples = net_samples(new)
    s = summarize(samples)
    peak = 100.0 * new.tflops / new.pct_peak if new.tflops and new.pct_peak else None  # this run's matmul peak
    bw = 100.0 * new.gbs / new.pct_bandwidth if new.gbs and new.pct_bandwidth else None  # and copy bandwidth
    new.median_ms, new.p10_ms, new.p90_ms, new.rel_spread, new.n_samples = s.median, s.p10, s.p90, s.rel_spread, s.n
    new.tflops = new.flops / (s.median * 1e-3) / 1e12
    new.gbs = new.min_bytes / (s.median * 1e-3) / 1e9
    if peak:
        new.pct_peak = 100.0 * new.tflops / peak
    if bw:
        new.pct_bandwidth = 100.0 * new.gbs / bw
    stops = dict.fromkeys(str(v.get("stop_reason") or "") for v in visits)
    new.stop_reason = "; ".join(x for x in stops if x)[:500]
    return new


def baseline_ratios(rows: list[Result], baseline: str, n_resamples: int = 1000) -> dict[str, dict[str, Any]]:
    """Each ok row's ratio of medians to the baseline backend's row (same problem and timing mode), with a
    95% bootstrap interval over the two sets of samples: ``{backend: {"ratio", "lo", "hi", ...}}``."""
    from harness.analysis.stats import ratio_ci, resampled_medians

    base = next((r for r in rows if r.backend == baseline and r.status == "ok" and r.extra.get("samples_ms")), None)
    if base is None:
        return {}
    b = net_samples(base)
    b_medians = resampled_medians(b, n_resamples, 1)  # the baseline's resamples, shared by every backend
    out = {}
    for r in rows:
        if r.status != "ok" or not r.extra.get("samples_ms"):
            continue
        if r is base:  # the baseline itself: exactly 1 (a bootstrap against itself would show only noise)
            out[r.backend] = {"baseline": baseline, "ratio": 1.0, "lo": 1.0, "hi": 1.0, "confidence": 0.95}
            continue
        ratio, lo, hi = ratio_ci(net_samples(r), b, n_resamples=n_resamples, seed=0, b_medians=b_medians)
        out[r.backend] = {"baseline": baseline, "ratio": ratio, "lo": lo, "hi": hi, "confidence": 0.95}
    return out


def visit_todo(cell: Any, visits: dict[tuple[str, str, str], tuple[str, int]]) -> bool:
    """Whether a visit of the plan still has to run (``--resume``): its cell has no row in its timing mode
    yet, or an ok row that pools fewer visits than this one's index. A cell that failed, was rejected or
    skipped in an earlier visit is not visited again."""
    got = visits.get(cell.key)
    if got is None:
        return True
    status, rounds = got
    return cell.round > 0 and status == "ok" and rounds <= cell.round


def attach_ratios(store: Any, run_id: str, problem_key: str, mode: str, baseline: str) -> int:
    """Store in each ok row of one problem and timing mode its ratio to the baseline backend's row
    (``extra.ratio_to_baseline``: ratio, lo, hi of a 95% bootstrap interval); how many rows got one."""
    rows = [r for r in store.iter_results(run_id, problem_key=problem_key) if r.timing_mode == mode]
    ratios = baseline_ratios(rows, baseline)
    for r in rows:
        if r.backend in ratios:
            r.extra["ratio_to_baseline"] = ratios[r.backend]
            store.add_result(r)
    return len(ratios)
