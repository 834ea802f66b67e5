"""Verdicts: each claim checked for internal consistency, then against measurement or formula.

Rules (the numbers a reader needs to reproduce a verdict):
  * consistency: a latency L ms and a rate T TFLOPS at one problem imply T·1e12 · L·1e-3 FLOPs; within 5% of
    the problem's FLOPs (FlashAttention's count, harness/spec/problem.py) is "consistent", else
    "inconsistent ×N" with N = max(implied/actual, actual/implied).
  * measured: the latest run holding a passed, timed cell of that backend on that problem (any layout).
    A claim about a server (``measured_on``) is decided by the first of its listed backends that has one,
    and the verdict names it and why the ones before it had none.
    A TFLOPS or latency claim is confirmed if the measurement is within 10% of it, either way (a range
    claim: within 10% of the range). Otherwise refuted ×N, with the direction: "measured slower" (the claim
    overstates) or "measured faster" (it understates, which inflates every "N× faster than" built on it).
  * untested: no such backend in the database, no cell at that problem, or the latest cell skipped, failed,
    rejected, did not pass correctness, or was not timed — with the reason stored.
  * untestable: the source does not say which problem the number is for.
  * formula claims: the recomputed value must match within the claim's tolerance (default 5%), or, with
    compare = "at_most" (an achieved figure against a theoretical bound), not exceed it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.audit.formulas import BYTE_UNITS, FLOP_UNITS, FormulaError, evaluate, occupancy, traffic
from harness.records.result import Result
from harness.spec.claims import Claim, ClaimsError, Range
from harness.spec.problem import Problem

CONSISTENCY_TOL = 0.05
CONFIRM_FRACTION = 0.9
VERDICTS = ("confirmed", "refuted", "untested", "untestable")


@dataclass
class Verdict:
    claim: Claim
    verdict: str  # confirmed | refuted | untested | untestable
    detail: str
    factor: float | None = None  # how far off a refuted claim is (>= 1)
    consistency: str = "—"  # consistent | inconsistent ×N | cannot check: … | — (a single figure)
    consistency_factor: float | None = None
    computed: float | None = None  # formula value, in the claim's unit
    measured_tflops: float | None = None
    measured_ms: float | None = None
    measured_run: str = ""
    measured_cell: Result | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fmt_factor(f: float) -> str:
    if math.isinf(f):
        return "×∞"
    return f"×{f:.0f}" if f >= 100 else f"×{f:.1f}"


def ratio(a: float, b: float) -> float:
    """max(a/b, b/a) for positive numbers: how many times apart two values are."""
    if a <= 0 or b <= 0:
        return math.inf
    return max(a / b, b / a)


def problem_label(p: Problem | None) -> str:
    if p is None:
        return "unknown"
    short = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float8_e4m3": "e4m3"}.get(p.dtype, p.dtype)
    h = f"H{p.heads_q}" + (f"/{p.heads_kv}" if p.heads_kv != p.heads_q else "")
    s = f"S{p.seqlen_q}" + (f"/{p.seqlen_k}" if p.seqlen_k != p.seqlen_q else "")
    return f"B{p.batch}·{h}·{s}·D{p.head_dim} {short}{' causal' if p.causal else ''}"


# -- measurements ------------------------------------------------------------------------------
class Measurements:
    """Every stored cell, newest run last, indexed by backend."""

    def __init__(self, results: Iterable[Result], run_order: list[str], source: str = "") -> None:
        order = {r: i for i, r in enumerate(run_order)}
        self.source = source
        self.by_backend: dict[str, list[Result]] = {}
        for r in results:
            self.by_backend.setdefault(r.backend, []).append(r)
        for rows in self.by_backend.values():
            rows.sort(key=lambda r: order.get(r.run_id, -1))  # stable: store order within a run

    @classmethod
    def empty(cls, source: str) -> Measurements:
        return cls([], [], source)

    def cells(self, backend: str, p: Problem) -> list[Result]:
        return [r for r in self.by_backend.get(backend, []) if _same_problem(r, p)]

    @staticmethod
    def usable(r: Result) -> bool:
        return r.status == "ok" and r.passed is True and r.median_ms is not None and r.median_ms > 0

    def latest(self, backend: str, p: Problem) -> tuple[Result | None, str]:
        """The newest passed timed cell, or None and why there is none."""
        if not self.by_backend:
            return None, f"no measurements: {self.source}" if self.source else "no measurements"
        if backend not in self.by_backend:
            have = ", ".join(sorted(self.by_backend)) or "none"
            return None, f"no backend {backend!r} in the database (backends there: {have})"
        rows = self.cells(backend, p)
        if not rows:
            return None, f"{backend} has no cell at {problem_label(p)} in the database"
        good = [r for r in rows if self.usable(r)]
        if good:
            return good[-1], ""
        return None, why_unusable(rows[-1])


def why_unusable(r: Result) -> str:
    reason = (r.reason or r.error_text or "no reason recorded").strip().splitlines()[0][:300]
    if r.status == "skipped":
        return f"{r.backend} skipped in run {r.run_id}: {reason}"
    if r.status in ("failed", "rejected"):
        return f"{r.backend} {r.status} in run {r.run_id}: {reason}"
    if r.passed is not True:
        return f"{r.backend} did not pass correctness in run {r.run_id}"
    return f"{r.backend} was not timed in run {r.run_id}"


def _same_problem(r: Result, p: Problem) -> bool:
    return (r.batch, r.heads_q, r.heads_kv, r.seqlen_q, r.seqlen_k, r.head_dim, r.dtype, bool(r.causal)) == (
        p.batch,
        p.heads_q,
        p.heads_kv,
        p.seqlen_q,
        p.seqlen_k,
        p.head_dim,
        p.dtype,
        p.causal,
    ) and abs((r.softmax_scale or 0.0) - p.softmax_scale) <= 1e-9 * p.softmax_scale and (r.op or "fwd") == p.op


def load_measurements(db: str | Path | None) -> Measurements:
    """Every cell of a results database; an empty set (and why) when there is none."""
    from harness.store.database import Store, StoreError

    if db is None:
        return Measurements.empty("none given")
    db = Path(db)
    if not db.is_file():
        return Measurements.empty(f"{db} does not exist")
    try:
        with Store(db, readonly=True) as store:
            runs = [r.run_id for r in store.list_runs()]
            results = list(store.iter_results())
    except StoreError as exc:  # a file that is there but is no results database: the audit cannot stand
        raise ClaimsError(f"--db {exc}") from None
    if not results:
        return Measurements.empty(f"{db} holds no results")
    return Measurements(results, runs, str(db))


# -- checks ------------------------------------------------------------------------------------
def check(claim: Claim, m: Measurements) -> Verdict:
    fn = {
        "measured": _measured,
        "speedup": _speedup,
        "occupancy": _occupancy,
        "traffic": _traffic,
        "flops": _flops,
        "arithmetic": _arithmetic,
    }[claim.kind]
    return fn(claim, m)


def consistency(claim: Claim) -> tuple[str, float | None]:
    if claim.tflops is None or claim.latency_ms is None:
        return "—", None
    lo = claim.tflops.lo * 1e12 * claim.latency_ms.lo * 1e-3
    hi = claim.tflops.hi * 1e12 * claim.latency_ms.hi * 1e-3
    if claim.problem is None:
        return f"cannot check: problem unknown (the figures imply {lo / 1e9:.3g} GFLOP)", None
    actual = claim.problem.flops()
    if lo / (1 + CONSISTENCY_TOL) <= actual <= hi * (1 + CONSISTENCY_TOL):
        return "consistent", ratio(min(max(actual, lo), hi), actual)
    f = ratio(lo if actual < lo else hi, actual)
    at = actual / (claim.latency_ms.lo * 1e-3) / 1e12
    return (
        f"inconsistent {fmt_factor(f)}: {claim.latency_ms} ms at {problem_label(claim.problem)} "
        f"({actual / 1e9:.3g} GFLOP) is {at:.3g} TFLOPS, not {claim.tflops}"
    ), f


def _measured(claim: Claim, m: Measurements) -> Verdict:
    cons, cf = consistency(claim)
    v = Verdict(claim, "untested", "", consistency=cons, consistency_factor=cf)
    if claim.problem is None:
        v.verdict, v.detail = (
            "untestable",
            "the source does not state the problem shape, so no cell can be compared",
        )
        return v
    r, why, stand_in = _latest_standing_for(claim, m)
    if r is None:
        v.detail = why
        return v
    assert r.median_ms is not None
    flops = claim.problem.flops()
    mt = flops / (r.median_ms * 1e-3) / 1e12
    v.measured_tflops, v.measured_ms, v.measured_run, v.measured_cell = mt, r.median_ms, r.run_id, r
    parts, refuted, factors = [], False, []
    if claim.tflops is not None:
        lo, hi = CONFIRM_FRACTION * claim.tflops.lo, claim.tflops.hi / CONFIRM_FRACTION
        if lo <= mt <= hi:
            parts.append(f"measured {mt:.4g} TFLOPS is within 10% of claimed {claim.tflops}")
        elif mt < lo:
            f = claim.tflops.lo / mt
            refuted = True
            factors.append(f)
            parts.append(f"claimed {claim.tflops} TFLOPS is {fmt_factor(f)} the measured {mt:.4g} (measured slower)")
        else:
            f = mt / claim.tflops.hi
            refuted = True
            factors.append(f)
            parts.append(f"measured {mt:.4g} TFLOPS is {fmt_factor(f)} the claimed {claim.tflops} (measured faster: "
                         "the claim understates it)")
    if claim.latency_ms is not None:
        lo, hi = claim.latency_ms.lo * CONFIRM_FRACTION, claim.latency_ms.hi / CONFIRM_FRACTION
        if lo <= r.median_ms <= hi:
            parts.append(f"measured {r.median_ms:.4g} ms is within 10% of claimed {claim.latency_ms} ms")
        elif r.median_ms > hi:
            f = r.median_ms / claim.latency_ms.hi
            refuted = True
            factors.append(f)
            parts.append(f"measured {r.median_ms:.4g} ms is {fmt_factor(f)} slower than claimed {claim.latency_ms} ms")
        else:
            f = claim.latency_ms.lo / r.median_ms
            refuted = True
            factors.append(f)
            parts.append(f"measured {r.median_ms:.4g} ms is {fmt_factor(f)} faster than claimed {claim.latency_ms} ms")
    v.verdict = "refuted" if refuted else "confirmed"
    v.factor = max(factors) if factors else None
    v.detail = (
        "; ".join(parts) + f" (run {r.run_id}, p10–p90 {r.p10_ms:.4g}–{r.p90_ms:.4g} ms)"
        if r.p10_ms is not None and r.p90_ms is not None
        else "; ".join(parts) + f" (run {r.run_id})"
    )
    if stand_in:
        v.detail = stand_in + v.detail
    return v


def _latest_standing_for(claim: Claim, m: Measurements) -> tuple[Result | None, str, str]:
    """The cell that decides a measured claim, why there is none, and (for a claim about a server,
    ``measured_on``) a prefix saying which backend stood for it and why the ones before it did not."""
    assert claim.problem is not None
    if not claim.measured_on:
        r, why = m.latest(claim.backend, claim.problem)
        return r, why, ""
    passed_over: list[str] = []
    for i, backend in enumerate(claim.measured_on):
        r, why = m.latest(backend, claim.problem)
        if r is not None:
            role = "its first choice" if i == 0 else f"choice {i + 1} of {len(claim.measured_on)}"
            before = f" ({'; '.join(passed_over)})" if passed_over else ""
            return r, "", f"{claim.backend} measured as {backend}, {role}{before}: "
        passed_over.append(f"{backend}: {why}")
    return None, f"none of the backends {claim.backend} runs on has a passed, timed cell: " + "; ".join(passed_over), ""


def _understated(better: float) -> str:
    # a baseline claimed far slower than it measures inflates every "N× faster" built on it
    return f" — the claim understates it {fmt_factor(better)}" if better >= 2 else ""


def _speedup(claim: Claim, m: Measurements) -> Verdict:
    assert claim.problem is not None and claim.claimed is not None
    v = Verdict(claim, "untested", "")
    a, why_a = m.latest(claim.backend, claim.problem)
    b, why_b = m.latest(claim.baseline, claim.problem)
    if a is None or b is None:
        v.detail = "; ".join(dict.fromkeys(w for w in (why_a, why_b) if w))
        return v
    assert a.median_ms and b.median_ms
    s = b.median_ms / a.median_ms
    v.computed = s
    v.measured_ms, v.measured_run, v.measured_cell = a.median_ms, a.run_id, a
    v.measured_tflops = claim.problem.flops() / (a.median_ms * 1e-3) / 1e12
    base = (
        f"{claim.baseline} {b.median_ms:.4g} ms / {claim.backend} {a.median_ms:.4g} ms = {s:.3g}× "
        f"(runs {b.run_id}, {a.run_id})"
    )
    if s >= CONFIRM_FRACTION * claim.claimed.lo:
        v.verdict, v.detail = "confirmed", f"measured {base} >= 0.9 × claimed {claim.claimed}×"
    else:
        v.verdict, v.factor = "refuted", claim.claimed.lo / s if s > 0 else math.inf
        v.detail = f"claimed {claim.claimed}× is {fmt_factor(v.factor)} the measured {base}"
    return v


def _judge(v: Verdict, claimed: Range, computed: float, what: str, unit: str = "", name: str = "") -> Verdict:
    """Formula verdict: match within tolerance, or (at_most) not above the computed bound."""
    c = v.claim
    v.computed = computed
    u = "%" if unit == "%" else (f" {unit}" if unit else "")
    head = f"{what} → {name} " if name else f"{what} "
    if c.compare == "at_most":
        ok = claimed.lo <= computed * (1 + c.tolerance)
        rel = f"at most {computed:.4g}{u}"
        f = claimed.lo / computed if computed > 0 else math.inf
    else:
        ok = claimed.lo * (1 - c.tolerance) <= computed <= claimed.hi * (1 + c.tolerance)
        rel = f"= {computed:.4g}{u}"
        nearest = claimed.lo if computed < claimed.lo else claimed.hi
        f = ratio(nearest, computed) if computed > 0 else math.inf
    if ok:
        v.verdict, v.detail = "confirmed", f"{head}{rel}; claimed {claimed}{u}"
    else:
        v.verdict, v.factor = "refuted", f
        v.detail = f"{head}{rel}; claimed {claimed}{u} is off {fmt_factor(f)}"
    return v


def _occupancy(claim: Claim, m: Measurements) -> Verdict:
    assert claim.claimed is not None
    v = Verdict(claim, "refuted", "")
    i = claim.inputs
    occ = occupancy(**i)
    v.extra["occupancy"] = occ
    what = (
        f"H100 formula for {i['regs_per_thread']} regs × {i['threads_per_block']} threads, "
        f"{i['smem_bytes'] / 1024:g} KiB smem: {occ.blocks_per_sm} block(s)/SM (limits: registers "
        f"{occ.blocks_by_regs}, smem {occ.blocks_by_smem}, threads {occ.blocks_by_threads}, cap "
        f"{occ.blocks_cap}; bound by {occ.limiter()}), "
        f"{occ.warps_per_sm}/{occ.max_warps_per_sm} warps = {occ.occupancy_pct:.1f}%"
    )
    return _judge(
        v,
        claim.claimed,
        float(getattr(occ, claim.quantity)),
        what,
        "%" if claim.quantity == "occupancy_pct" else "",
        claim.quantity,
    )


def _traffic(claim: Claim, m: Measurements) -> Verdict:
    assert claim.problem is not None and claim.claimed is not None
    v = Verdict(claim, "refuted", "")
    b = traffic(claim.problem, claim.quantity, claim.score_dtype)
    value = b / BYTE_UNITS[claim.unit]
    v = _judge(
        v,
        claim.claimed,
        value,
        f"{claim.quantity} at {problem_label(claim.problem)} = {_bytes(b)}",
        claim.unit,
        "in " + claim.unit if claim.unit else "",
    )
    if v.verdict == "refuted" and claim.unit in ("KB", "MB", "GB", "TB"):
        # "GB" in the sources may mean GiB; say how far off the claim is on that reading too
        alt = {"KB": "KiB", "MB": "MiB", "GB": "GiB", "TB": "TiB"}[claim.unit]
        f2 = ratio(claim.claimed.lo * BYTE_UNITS[alt], b)
        v.detail += f" ({fmt_factor(f2)} if {claim.unit} meant {alt})"
    return v


def _bytes(b: float) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if b >= BYTE_UNITS[unit]:
            return f"{b:,.0f} B = {b / BYTE_UNITS[unit]:.4g} {unit}"
    return f"{b:,.0f} B"


def _flops(claim: Claim, m: Measurements) -> Verdict:
    assert claim.problem is not None and claim.claimed is not None
    v = Verdict(claim, "refuted", "")
    value = claim.problem.flops() / FLOP_UNITS[claim.unit]
    return _judge(
        v,
        claim.claimed,
        value,
        f"FLOPs (4·B·H·attended pairs·D) at {problem_label(claim.problem)}",
        claim.unit,
        "in " + claim.unit,
    )


def _arithmetic(claim: Claim, m: Measurements) -> Verdict:
    assert claim.claimed is not None
    v = Verdict(claim, "refuted", "")
    try:
        value = evaluate(claim.expr)
    except FormulaError as exc:  # parse-time checked; a domain error (sqrt of a negative) lands here
        v.verdict, v.detail = "untestable", str(exc)
        return v
    return _judge(v, claim.claimed, value, f"{claim.expr}")
