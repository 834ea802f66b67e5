"""Two runs side by side: per-cell median ratio, whether the change is beyond noise (the rule of
``harness.analysis.noise``, on the stored samples), and whether the SM clock (``harness.measure.timing.sm_clock``) moved with it. Cells are matched by backend, problem
and timing mode (isolated or sustained). Where the runs hold ratios to a baseline backend (``[timing]
baseline``), each cell's ratio in both runs with its bootstrap interval, and whether the two agree."""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.analysis.noise import DEFAULT_ALPHA, DEFAULT_THRESHOLD, Change, Spread, judge
from harness.measure.timing.clock_bound import above_max
from harness.records.result import Result
from harness.store.database import Store


@dataclass
class CellDiff:
    backend: str
    problem_key: str
    a_ms: float
    b_ms: float
    noise: float  # combined relative spread (p90-p10)/median of both cells
    a_method: str = ""
    b_method: str = ""
    a_mhz: float | None = None  # effective SM clock during the samples, where recorded
    b_mhz: float | None = None
    a_read: float | None = None  # the probe's reading as read: the clock, or one set aside as suspect
    b_read: float | None = None
    mode: str = "isolated"  # the timing mode both cells were measured in
    a_base: dict | None = None  # ratio to the baseline backend in run a: {"baseline", "ratio", "lo", "hi"}
    b_base: dict | None = None
    change: Change | None = None  # the noise rule's judgement; ``diff_runs`` fills it from the samples

    @property
    def base_move(self) -> float | None:
        """How far the ratio to the baseline moved between the runs (b / a − 1), where both have one."""
        if not (self.a_base and self.b_base) or self.a_base.get("baseline") != self.b_base.get("baseline"):
            return None
        return self.b_base["ratio"] / self.a_base["ratio"] - 1

    @property
    def ratio(self) -> float:
        return self.b_ms / self.a_ms

    @property
    def clock_ratio(self) -> float | None:
        """The time ratio the clocks alone predict (a kernel's cycle count stays put): baseline / new clock."""
        return self.a_mhz / self.b_mhz if self.a_mhz and self.b_mhz else None

    @property
    def follows_clock(self) -> bool:
        """The clock moved the same way as the time, by at least half as much: the GPU changed, not the code."""
        c = self.clock_ratio
        t = self.ratio - 1
        return c is not None and t != 0 and (c - 1) / t >= 0.5

    @property
    def normalised_ratio(self) -> float | None:
        """The time ratio with each run's time scaled by its probe reading (suspect ones included): what
        is left of the move if the kernel's time had followed the reading exactly."""
        return self.ratio * self.b_read / self.a_read if self.a_read and self.b_read else None

    @property
    def judged(self) -> Change:
        """The noise rule's judgement; a diff built without one has only the combined spread to go by."""
        return self.change or judge(Spread(self.a_ms, self.noise), Spread(self.b_ms, 0.0))

    @property
    def beyond_noise(self) -> bool:
        return self.judged.beyond_noise


def _clock(extra: dict) -> float | None:
    """The cell's effective SM clock, unless it reads above the maximum NVML gave for the GPU (the
    probe's calibration is 1-2% off at times; see ``harness.measure.timing.sm_clock``)."""
    mhz = extra.get("sm_mhz")
    top = (extra.get("clocks_before") or {}).get("sm_max_mhz")
    return None if mhz and top and above_max(mhz, top) else mhz


def _reading(extra: dict) -> float | None:
    """The probe's median reading, a suspect one included (``sm_mhz_suspect``; runs recorded before that
    field kept it only in the text of ``sm_mhz_error``)."""
    mhz = extra.get("sm_mhz") or extra.get("sm_mhz_suspect")
    if mhz is None and (m := re.search(r"read (\d+(?:\.\d+)?) MHz", extra.get("sm_mhz_error") or "")):
        mhz = float(m.group(1))
    return mhz


def _base_ratios(results: list, baseline: str | None) -> dict[tuple[str, str, str], dict]:
    """Per (backend, problem, mode): the ratio to the baseline, as stored by the run (``extra.ratio_to_baseline``)
    or, for another baseline than the stored one, bootstrapped now from the stored samples."""
    from harness.analysis.verdict import baseline_ratios

    out: dict[tuple[str, str, str], dict] = {}
    groups: dict[tuple[str, str], list] = {}
    for r in results:
        stored = r.extra.get("ratio_to_baseline")
        if stored and (baseline is None or stored.get("baseline") == baseline):
            out[(r.backend, r.problem_key, r.timing_mode)] = stored
        groups.setdefault((r.problem_key, r.timing_mode), []).append(r)
    if baseline:
        for (key, mode), rows in groups.items():
            if any((r.backend, key, mode) in out for r in rows):
                continue
            for backend, ratio in baseline_ratios(rows, baseline).items():
                out[(backend, key, mode)] = ratio
    return out


def timings(r: Result) -> list[float] | Spread:
    """What the noise rule judges a row on: its samples less the event tare, or, for a row recorded
    without samples, its median and spread."""
    from harness.analysis.verdict import net_samples

    return net_samples(r) or Spread(r.median_ms or 0.0, r.rel_spread)


def diff_runs(store: Store, run_a: str, run_b: str, baseline: str | None = None, *,
              threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA) -> list[CellDiff]:
    store.get_run(run_a), store.get_run(run_b)  # clear error for an unknown id
    rows_a, rows_b = list(store.iter_results(run_a)), list(store.iter_results(run_b))
    a = {(r.backend, r.problem_key, r.timing_mode): r for r in rows_a if r.status == "ok" and r.median_ms}
    ra, rb = _base_ratios(rows_a, baseline), _base_ratios(rows_b, baseline)
    out = []
    for r in rows_b:
        k = (r.backend, r.problem_key, r.timing_mode)
        base = a.get(k)
        if base is None or r.status != "ok" or not r.median_ms:
            continue
        out.append(CellDiff(r.backend, r.problem_key, base.median_ms, r.median_ms,
                            (base.rel_spread or 0.0) + (r.rel_spread or 0.0),
                            base.timing_method or "", r.timing_method or "",
                            _clock(base.extra), _clock(r.extra), _reading(base.extra), _reading(r.extra),
                            r.timing_mode, ra.get(k), rb.get(k),
                            judge(timings(base), timings(r), threshold=threshold, alpha=alpha)))
    return out


def _judged(diffs: list[CellDiff], min_ms: float) -> list[CellDiff]:
    """The cells agreement is judged on: at least ``min_ms`` in both runs."""
    return [d for d in diffs if min(d.a_ms, d.b_ms) >= min_ms]


def _tally(moves: list[float], within: float) -> tuple[int, int, float]:
    """(how many of the relative moves are within ``within``, how many there are, the largest)."""
    return sum(1 for x in moves if x <= within), len(moves), max(moves, default=0.0)


def agreement(diffs: list[CellDiff], min_ms: float = 0.1, within: float = 0.01) -> tuple[int, int, float]:
    """(cells of at least ``min_ms`` that agree within ``within``, such cells, worst |ratio−1| among them)."""
    return _tally([abs(d.ratio - 1) for d in _judged(diffs, min_ms)], within)


def ratio_agreement(diffs: list[CellDiff], min_ms: float = 0.1, within: float = 0.01) -> tuple[int, int, float]:
    """As ``agreement``, on the ratios to the baseline: of the cells of at least ``min_ms`` with a ratio in
    both runs (the baseline itself left out), how many moved by at most ``within``, and the worst move."""
    return _tally([abs(d.base_move) for d in _judged(diffs, min_ms)
                   if d.base_move is not None and d.backend != (d.a_base or {}).get("baseline")], within)


def clock_attribution(diffs: list[CellDiff], min_ms: float = 0.1, within: float = 0.01) -> tuple[int, int, int]:
    """Of the judged cells outside ``within``: (how many, how many moved with the clock, how many have no
    usable clock)."""
    off = [d for d in _judged(diffs, min_ms) if abs(d.ratio - 1) > within]
    return len(off), sum(d.follows_clock for d in off), sum(d.clock_ratio is None for d in off)


def normalised_agreement(diffs: list[CellDiff], min_ms: float = 0.1, within: float = 0.01) -> tuple[int, int, float]:
    """As ``agreement``, on the judged cells with a reading in both runs, each time scaled by its reading.
    A diagnostic of how much of the disagreement the probe accounts for, not a measurement: the probe
    reads 1-2% off at times (readings above the GPU's maximum), and before a long kernel it does not see
    the clock the kernel ran at."""
    return _tally([abs(d.normalised_ratio - 1) for d in _judged(diffs, min_ms) if d.normalised_ratio is not None],
                  within)


def method_mismatches(diffs: list[CellDiff]) -> list[CellDiff]:
    """Cells timed differently in the two runs (e.g. with and without the event tare): their ratio mixes
    a change of method into the change of speed."""
    return [d for d in diffs if d.a_method != d.b_method]
