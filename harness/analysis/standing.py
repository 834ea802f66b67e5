"""Where one backend stands against the best of named peers, per configuration of one stored run: the
figure kernel authors report. For each problem of the run (in one timing mode), the ratio best peer
median / backend median (> 1: the backend is faster), which peer was best, and every TFLOPS; over the
ranked problems, the geometric mean of the ratios, the worst problem, and how many fall below a floor.

Only rows with status ``ok`` and a median are ranked, and never a row whose correctness failed (``passed``
false): a fast but wrong kernel does not rank, as the backend or as a peer. A problem where the backend has
no such row, or where no peer has one, is listed with the reason and left out of the geometric mean.

Rows are read as the run stored them, one per backend, problem and timing mode: a run of interleaved rounds
pools the visits of a cell into that one row (``harness.analysis.verdict.pool``; ``Result.rounds`` says
how many), and its median is the median over the pooled samples, as ``harness.analysis.compare`` reads it.
In the sustained mode a host-bound cell is replayed as a CUDA graph by default; where it was timed *gated*
instead (``harness.measure.timing.sustained.time_gated``: the suite asked for it, or the capture failed),
its batches of calls ran behind holds in which the GPU idles, so its clock runs cooler than a back-to-back
cell's. A ratio between a gated row and an ungated one compares two duty cycles; such rows are counted
(``Standing.mixed_duty``), with each gated row's busy fraction.

Read-only; nothing here prints."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field

from harness.records.result import Result
from harness.store.database import Store

#: a ratio below this counts as a configuration where the backend falls short of its best peer
DEFAULT_FLOOR = 0.95
#: the timing mode picked when the run has it and none is asked for
DEFAULT_MODE = "isolated"


class StandingError(ValueError):
    """A request the stored run cannot answer (a backend, peer or mode it does not have); one line."""


@dataclass
class PeerTime:
    """One peer's row for one configuration. ``note`` is empty for a row that can be best, else why it
    cannot: ``no row``, ``wrong`` (correctness failed) or its status and reason."""
    backend: str
    median_ms: float | None = None
    tflops: float | None = None
    note: str = ""
    duty: float | None = None  # sustained mode, timed gated: the fraction of the window the GPU was busy

    @property
    def usable(self) -> bool:
        return not self.note


@dataclass
class StandingRow:
    """One configuration (problem) of the run. ``ratio`` = best peer median / backend median, None where the
    configuration is not ranked; ``excluded`` then says why (``BACKEND: …`` or ``no peer``)."""
    problem_key: str
    median_ms: float | None  # the backend's
    tflops: float | None
    peers: list[PeerTime]
    best_peer: str | None = None
    best_ms: float | None = None
    ratio: float | None = None
    excluded: str = ""
    note: str = ""  # why the backend's own row cannot be ranked ('' when it can), as ``PeerTime.note``
    wrong: bool = False  # the backend's row failed correctness: listed as wrong, never ranked
    rounds: int = 1  # visits of the interleaved rotation pooled into the backend's row
    duty: float | None = None  # the backend's row, timed gated: as ``PeerTime.duty``
    mixed_duty: bool = False  # ranked, and one of the backend's and the best peer's rows was gated, not both

    @property
    def ranked(self) -> bool:
        return self.ratio is not None


@dataclass
class Standing:
    """The answer for one run, backend, peer list and timing mode."""
    run_id: str
    backend: str
    peers: list[str]
    mode: str
    modes: list[str]  # the timing modes the run has
    floor: float
    run_status: str = "complete"  # as the store reads it: complete, interrupted or running
    rows: list[StandingRow] = field(default_factory=list)
    geomean: float | None = None  # of the ranked rows' ratios; None when none is ranked
    worst_problem: str | None = None
    worst_ratio: float | None = None
    below_floor: int = 0  # ranked rows with a ratio < floor
    excluded_backend: int = 0  # rows where the backend has no ok row (no row, failed, skipped, rejected)
    excluded_wrong: int = 0  # rows where the backend's row failed correctness
    excluded_no_peer: int = 0  # rows where no peer has an ok, correct row
    peer_rows_wrong: int = 0  # peer rows set aside because their correctness failed
    max_rounds: int = 1  # the most visits any row used here pools
    mixed_duty: int = 0  # ranked rows whose ratio compares a gated row with an ungated one (sustained mode)

    @property
    def ranked(self) -> list[StandingRow]:
        return [r for r in self.rows if r.ranked]

    @property
    def excluded(self) -> int:
        return self.excluded_backend + self.excluded_wrong + self.excluded_no_peer

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def _unranked(r: Result | None) -> str:
    """Why a row cannot be ranked ('' when it can): missing, wrong, or not ok (with its reason)."""
    if r is None:
        return "no row"
    if r.passed is False:
        return "wrong"
    if r.status != "ok" or not r.median_ms or r.median_ms <= 0:
        last = r.error_text.strip().splitlines()[-1:]
        why = r.reason or (last[0] if last else "")
        status = r.status if r.status != "ok" else "ok without a median"
        return f"{status}: {why}" if why else status
    return ""


def gated_duty(r: Result | None) -> float | None:
    """A sustained row timed gated: the fraction of its window the GPU was busy, one batch of calls over the
    batch plus its hold (from what the row stored); None for a row that ran back to back."""
    if r is None or not r.extra.get("sustained_gated"):
        return None
    batch, gate, call = (r.extra.get(k) for k in ("sustained_batch", "sustained_gate_ms", "sustained_probe_ms"))
    if not (batch and call and gate is not None):
        return None
    busy = batch * call
    return busy / (busy + gate)


def _ordered(values) -> list[str]:
    return list(dict.fromkeys(values))


def pick_mode(modes: list[str], mode: str | None, run_id: str) -> str:
    """The timing mode asked for, which the run must have; else isolated where the run has it, else its only one."""
    if mode is not None:
        if mode not in modes:
            raise StandingError(f"--mode {mode!r}: run {run_id} has no rows in that timing mode; it has "
                                f"{', '.join(modes)}")
        return mode
    if DEFAULT_MODE in modes:
        return DEFAULT_MODE
    if len(modes) == 1:
        return modes[0]
    raise StandingError(f"run {run_id} has the timing modes {', '.join(modes)} and not {DEFAULT_MODE}: "
                        "choose one with --mode")


def check_request(run_id: str, backends: list[str], backend: str, peers: list[str]) -> None:
    """StandingError unless the backend and every peer have rows in the run, and the peers are not the backend."""
    have = ", ".join(backends)
    if backend not in backends:
        raise StandingError(f"backend {backend!r} is not in run {run_id}; the run has {have}")
    if not peers:
        raise StandingError("--peers: name at least one peer backend (comma-separated), e.g. sdpa-cudnn,fa4")
    if backend in peers:
        raise StandingError(f"--peers names {backend}, the backend being ranked: leave it out of the peers")
    missing = [p for p in peers if p not in backends]
    if missing:
        which = f"peer {missing[0]!r} is" if len(missing) == 1 else f"peers {', '.join(map(repr, missing))} are"
        raise StandingError(f"{which} not in run {run_id}; the run has {have}")


def standing(store: Store, run_id: str, backend: str, peers: list[str], mode: str | None = None,
             floor: float = DEFAULT_FLOOR) -> Standing:
    """Where ``backend`` stands against the per-configuration best of ``peers`` in run ``run_id``."""
    if not (math.isfinite(floor) and floor > 0):
        raise StandingError(f"--floor {floor!r}: must be a finite ratio > 0, e.g. {DEFAULT_FLOOR}")
    peers = _ordered(p.strip() for p in peers if p.strip())
    info = store.get_run(run_id)  # StoreError naming the run for an unknown id
    results = list(store.iter_results(run_id))
    if not results:
        raise StandingError(f"run {run_id} has no results")
    check_request(run_id, _ordered(r.backend for r in results), backend, peers)
    modes = _ordered(r.timing_mode for r in results)
    mode = pick_mode(modes, mode, run_id)
    wanted = {backend, *peers}
    # one row per backend, problem and timing mode, as the store keeps it (rounds pooled into it)
    rows = [r for r in results if r.timing_mode == mode and r.backend in wanted]
    cell = {(r.backend, r.problem_key): r for r in rows}
    out = Standing(run_id=run_id, backend=backend, peers=peers, mode=mode, modes=modes, floor=floor,
                   run_status=info.status)
    for key in _ordered(r.problem_key for r in rows):
        x = cell.get((backend, key))
        times = []
        for p in peers:
            r = cell.get((p, key))
            note = _unranked(r)
            out.peer_rows_wrong += note == "wrong"
            times.append(PeerTime(p, r.median_ms if r else None, r.tflops if r else None, note, gated_duty(r)))
        usable = [t for t in times if t.usable]
        best = min(usable, key=lambda t: t.median_ms) if usable else None
        row = StandingRow(key, x.median_ms if x else None, x.tflops if x else None, times,
                          best.backend if best else None, best.median_ms if best else None,
                          rounds=(x.rounds or 1) if x else 1, duty=gated_duty(x))
        why = row.note = _unranked(x)
        if why == "wrong":
            detail = f": {x.reason}" if x.reason else ""
            row.wrong, row.excluded = True, f"{backend}: wrong (correctness failed{detail})"
            out.excluded_wrong += 1
        elif why:
            row.excluded = f"{backend}: {why}"
            out.excluded_backend += 1
        elif best is None:
            row.excluded = "no peer"
            out.excluded_no_peer += 1
        else:
            row.ratio = best.median_ms / x.median_ms
            row.mixed_duty = (row.duty is None) != (best.duty is None)
            out.mixed_duty += row.mixed_duty
        out.rows.append(row)
    out.max_rounds = max([r.rounds or 1 for r in rows], default=1)
    ranked = out.ranked
    if ranked:
        out.geomean = statistics.geometric_mean(r.ratio for r in ranked)
        worst = min(ranked, key=lambda r: r.ratio)
        out.worst_problem, out.worst_ratio = worst.problem_key, worst.ratio
        out.below_floor = sum(r.ratio < floor for r in ranked)
    return out
