"""The same cells measured on different GPUs of one run, side by side: a GPU slower than its peers in a
node is a finding of its own (cooling, power capping, a bad board), and one that silently skews every
cell it measures.

A cell has a row per GPU that measured it: its current row and its earlier rows kept as superseded (a
problem handed over from a GPU that was lost, ``--retry-failed``, or ``flashcore run --remeasure --gpus``
on another GPU). For each cell measured on two GPUs or more, the others are judged against the first of
them in the run's order (the GPU that measured most cells first) by the one noise rule
(``harness.analysis.noise``), exactly as ``flashcore compare`` judges two runs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from harness.analysis.compare import CellDiff, _clock, _reading, timings
from harness.analysis.noise import DEFAULT_ALPHA, DEFAULT_THRESHOLD, judge
from harness.records.result import Result
from harness.store.database import Store

GpuKey = tuple[int | None, str]  # (index as given, UUID)


def gpu_key(r: Result) -> GpuKey:
    return (r.gpu_index, r.gpu_uuid or "")


def gpu_text(key: GpuKey, name: str) -> str:
    index = "?" if key[0] is None else str(key[0])
    return f"GPU {index} ({name}{', ' + key[1] if key[1] else ''})"


@dataclass
class GpuPair:
    """Every cell measured on both ``a`` (the reference) and ``b``."""

    a: GpuKey
    b: GpuKey
    a_name: str
    b_name: str
    diffs: list[CellDiff] = field(default_factory=list)

    @property
    def slower(self) -> int:
        return sum(d.judged.verdict == "slower" for d in self.diffs)

    @property
    def faster(self) -> int:
        return sum(d.judged.verdict == "faster" for d in self.diffs)

    @property
    def median_ratio(self) -> float | None:
        ratios = sorted(d.ratio for d in self.diffs)
        return ratios[len(ratios) // 2] if ratios else None


def rows_by_gpu(store: Store, run_id: str) -> dict[tuple[str, str, str], dict[GpuKey, Result]]:
    """Per cell (backend, problem, mode): its latest ok, timed row on each GPU that measured it."""
    out: dict[tuple[str, str, str], dict[GpuKey, Result]] = {}
    for r in [*store.iter_superseded(run_id), *store.iter_results(run_id)]:  # the later row of a GPU wins
        if r.status == "ok" and r.median_ms:
            out.setdefault((r.backend, r.problem_key, r.timing_mode), {})[gpu_key(r)] = r
    return out


def across_gpus(store: Store, run_id: str, *, threshold: float = DEFAULT_THRESHOLD,
                alpha: float = DEFAULT_ALPHA) -> list[GpuPair]:
    """Each pair of GPUs that measured the same cells, with every such cell judged (b against a)."""
    store.get_run(run_id)  # a clear error for an unknown id
    cells = rows_by_gpu(store, run_id)
    many = Counter(k for per in cells.values() for k in per)
    order = sorted(many, key=lambda k: (-many[k], k[0] is None, k[0] or 0, k[1]))
    pairs: dict[tuple[GpuKey, GpuKey], GpuPair] = {}
    for (backend, problem_key, mode), per in cells.items():
        if len(per) < 2:
            continue
        ref, *others = sorted(per, key=order.index)
        a = per[ref]
        for key in others:
            b = per[key]
            pair = pairs.setdefault((ref, key), GpuPair(ref, key, a.gpu_name, b.gpu_name))
            pair.diffs.append(CellDiff(backend, problem_key, a.median_ms, b.median_ms,
                                       (a.rel_spread or 0.0) + (b.rel_spread or 0.0), a.timing_method or "",
                                       b.timing_method or "", _clock(a.extra), _clock(b.extra), _reading(a.extra),
                                       _reading(b.extra), mode,
                                       change=judge(timings(a), timings(b), threshold=threshold, alpha=alpha)))
    return sorted(pairs.values(), key=lambda p: (order.index(p.a), order.index(p.b)))
