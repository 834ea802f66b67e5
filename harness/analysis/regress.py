"""The regression gate over pytest-benchmark results (``benchmarks/``), and the pieces the benchmarks share.

pytest-benchmark's own ``--benchmark-compare-fail`` has two blind spots for a gate: a benchmark that is
missing from the baseline (a renamed cell, a backend that stopped loading) is silently never checked, and
it judges one statistic with no notion of noise. This checker closes both:

* every cell of the baseline must be in the current run and every current cell in the baseline
  (``--allow-new`` relaxes the second), else the gate FAILS naming the cell (and why it was skipped, when
  the benchmark recorded a skip);
* a cell counts as slower only if its median got worse by more than ``--threshold`` (relative) AND the
  Mann-Whitney U test on the raw per-round timings (``--benchmark-save-data`` / ``--benchmark-json`` keep
  them) gives p < ``--alpha``: a median shift inside overlapping noise cannot fail the gate (the rule of
  ``harness.analysis.noise``, which ``flashcore compare`` and the dashboards apply too);
* the baseline may be several runs (``nox -s bench`` records three): a cell is judged against its middle
  run (the run whose median is the median of the runs' medians; of two, the slower), so one run taken
  while the GPU sat in a faster or slower state than usual neither raises a false alarm nor hides a
  slowdown (docs/regression-gate.md, "How the thresholds were chosen");
* baseline and current must come from the same GPU model and driver, and the baseline must not have been
  recorded with the slowdown test hook active.

Usage::

    python -m harness.analysis.regress --baseline results/benchmarks/<gpu>-<driver>/<machine>/000[123]_baseline-<stamp>.json \\
                              --current results/benchmarks/<gpu>-<driver>/regress-latest.json
    python -m harness.analysis.regress --current cur.json          # baseline: the newest set of *_baseline*.json in storage
    python -m harness.analysis.regress --print-storage | --print-baseline

Exit status: 0 pass, 1 the gate failed, 2 the inputs are unusable (one line on stderr).

Test hook (for demonstrating the gate, never for measuring): ``FLASHCORE_SLOWDOWN="sdpa-flash=1.10"``
makes the benchmark of that backend do 10 % extra work, by calling the backend once more every 10 calls
(see ``Slowed``). The factor is recorded in the benchmark's ``extra_info["slowdown"]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.noise import DEFAULT_ALPHA, DEFAULT_THRESHOLD, judge

STORAGE_ROOT = Path("results/benchmarks")
SLUG_ENV = "FLASHCORE_BENCH_SLUG"
SLOWDOWN_ENV = "FLASHCORE_SLOWDOWN"
THRESHOLD_ENV = "FLASHCORE_REGRESS_THRESHOLD"
# DEFAULT_THRESHOLD and DEFAULT_ALPHA come from harness.analysis.noise, the rule compare and the dashboards
# share; how they were chosen: docs/regression-gate.md


class RegressError(ValueError):
    """Unusable input (missing file, not a pytest-benchmark JSON): reported in one line, exit status 2."""


# -- where results live ------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def nvidia_smi_gpu() -> tuple[str, str] | None:
    """(GPU model, driver version) of GPU 0 from nvidia-smi, or None without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    if "," not in first:
        return None
    name, driver = (s.strip() for s in first.split(",", 1))
    return name, driver


def machine_slug() -> str:
    """``<gpu model>-<driver>`` from nvidia-smi, e.g. ``nvidia-h100-80gb-hbm3-570.124.06``; ``cpu-<arch>``
    without a GPU. Timings from different GPUs or drivers never share a storage directory."""
    forced = os.environ.get(SLUG_ENV, "").strip()
    if forced:
        return _slug(forced)
    gpu = nvidia_smi_gpu()
    if gpu:
        return f"{_slug(gpu[0])}-{_slug(gpu[1])}"
    return f"cpu-{_slug(platform.machine() or 'unknown')}"


def storage_dir(root: Path = STORAGE_ROOT) -> Path:
    return root / machine_slug()


def find_baselines(storage: Path) -> list[Path]:
    """The newest baseline set under ``storage`` (pytest-benchmark nests files per machine id): the runs
    of one ``nox -s bench``, saved as ``NNNN_baseline-<stamp>.json`` with one stamp; an older single
    ``NNNN_baseline.json`` is a set of one. In pytest-benchmark's numbering order."""
    found = sorted(storage.glob("*/[0-9][0-9][0-9][0-9]_baseline*.json"),
                   key=lambda p: (p.stat().st_mtime, p.name))
    if not found:
        raise RegressError(f"no baseline (*_baseline*.json) under {storage}: record one with `nox -s bench`")
    newest = found[-1]
    return sorted((p for p in found if p.parent == newest.parent and p.name[5:] == newest.name[5:]),
                  key=lambda p: p.name)


# -- shared by the benchmarks --------------------------------------------------------------------------
def cuda_sync_timer() -> float:
    """pytest-benchmark timer: wait for the GPU, then read the host clock. The runner reads the timer once
    before and once after a round of ``iterations`` calls, so a round is the GPU time of those calls plus
    one synchronisation (microseconds), not the time to enqueue them."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def parse_slowdown(text: str | None = None) -> dict[str, float]:
    """``"sdpa-flash=1.10,flex=1.2"`` → ``{"sdpa-flash": 1.1, "flex": 1.2}`` (``FLASHCORE_SLOWDOWN``)."""
    text = os.environ.get(SLOWDOWN_ENV, "") if text is None else text
    out: dict[str, float] = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        name, sep, raw = term.partition("=")
        try:
            factor = float(raw)
        except ValueError:
            factor = math.nan
        if not sep or not name.strip() or not (math.isfinite(factor) and 1.0 <= factor <= 10.0):
            raise RegressError(f"{SLOWDOWN_ENV} term {term!r}: expected BACKEND=FACTOR with "
                               "1 <= FACTOR <= 10, e.g. sdpa-flash=1.10")
        out[name.strip()] = factor
    return out


class Slowed:
    """Calls ``fn`` and, on a fraction ``factor - 1`` of the calls, calls it once more: the same kernels
    on the same inputs, so the extra work is exactly proportional (10 % for 1.10 when a round has a
    multiple of 10 iterations) and independent of clocks. A TEST HOOK for demonstrating the gate."""

    def __init__(self, fn: Callable[[], Any], factor: float) -> None:
        self.fn, self.factor = fn, factor
        self.debt = 0.0
        self.calls = 0

    def __call__(self) -> Any:
        out = self.fn()
        self.calls += 1
        self.debt += self.factor - 1.0
        while self.debt >= 1.0 - 1e-9:
            self.fn()
            self.calls += 1
            self.debt -= 1.0
        return out


# -- the gate ------------------------------------------------------------------------------------------
FAILING = ("REGRESSED", "MISSING", "NEW", "NO-DATA")


@dataclass
class CellVerdict:
    cell: str  # pytest-benchmark fullname (node id): what both runs are matched on
    label: str  # backend and problem, for people
    status: str  # ok | faster | noise | REGRESSED | MISSING | NEW | NO-DATA
    note: str = ""
    base_ms: float | None = None
    cur_ms: float | None = None
    ratio: float | None = None  # current median / baseline median
    p: float | None = None  # Mann-Whitney U, two-sided, on the raw per-round timings
    verdict: str = ""  # the noise rule's (harness.analysis.noise): slower | faster | within noise
    n_base: int = 0
    n_cur: int = 0
    base_run_ms: list[float] = field(default_factory=list)  # each baseline run's median; base_ms is the middle one

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass
class GateResult:
    verdicts: list[CellVerdict]
    problems: list[str] = field(default_factory=list)  # run-level failures (machine, hook, empty)
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA

    @property
    def passed(self) -> bool:
        return not self.problems and not any(v.failed for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for v in self.verdicts:
            c[v.status] = c.get(v.status, 0) + 1
        return c


def load(path: Path | str) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise RegressError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegressError(f"{p}: not readable as JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise RegressError(f"{p}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data


def _label(bench: dict[str, Any]) -> str:
    info = bench.get("extra_info") or {}
    if info.get("backend") and info.get("problem_key"):
        return f"{info['backend']} {info['problem_key']}"
    return str(bench.get("name") or bench.get("fullname"))


def _samples(bench: dict[str, Any]) -> list[float] | None:
    data = (bench.get("stats") or {}).get("data")
    if not isinstance(data, list) or not data or not all(isinstance(x, (int, float)) for x in data):
        return None
    return [float(x) for x in data]


def _skips(run: dict[str, Any]) -> dict[str, str]:
    return {s["fullname"]: s.get("reason", "") for s in (run.get("flashcore") or {}).get("skipped", [])
            if isinstance(s, dict) and "fullname" in s}


def _middle(medians: Sequence[float]) -> int:
    """Index of the run whose median is the median of the runs' medians (of an even count, the slower
    middle one)."""
    return sorted(range(len(medians)), key=medians.__getitem__)[len(medians) // 2]


def compare(baseline: dict[str, Any] | Sequence[dict[str, Any]], current: dict[str, Any], *,
            threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA, allow_new: bool = False,
            allow_machine_mismatch: bool = False) -> GateResult:
    """Gate ``current`` against a baseline of one run or several (each cell against its middle run)."""
    baselines = [baseline] if isinstance(baseline, dict) else list(baseline)
    if not baselines:
        raise RegressError("no baseline run to compare with")
    res = GateResult([], threshold=threshold, alpha=alpha)
    base_runs = [{b["fullname"]: b for b in run["benchmarks"]} for run in baselines]
    base = {name: b for runs in reversed(base_runs) for name, b in runs.items()}  # any run's entry, for labels
    cur = {b["fullname"]: b for b in current["benchmarks"]}
    cur_skips = _skips(current)

    cm = current.get("machine_info") or {}
    for key in ("gpu", "driver"):
        seen = {(run.get("machine_info") or {}).get(key) for run in baselines}
        for value in sorted(seen - {cm.get(key)}, key=str):
            if not allow_machine_mismatch:
                res.problems.append(f"machine mismatch: baseline {key}={value!r}, "
                                    f"current {key}={cm.get(key)!r} (timings from different GPUs/drivers "
                                    "are not comparable; record a baseline on this machine with `nox -s bench`)")
    hooked = sorted({f"{_label(b)} ×{b['extra_info']['slowdown']}" for runs in base_runs for b in runs.values()
                     if float((b.get("extra_info") or {}).get("slowdown", 1.0)) != 1.0})
    if hooked:
        res.problems.append(f"the baseline was recorded with the {SLOWDOWN_ENV} test hook active: "
                            + ", ".join(hooked))

    for name in sorted(set(base) | set(cur)):
        b, c = base.get(name), cur.get(name)
        if c is None:
            why = cur_skips.get(name)
            note = f"skipped in the current run: {why}" if why is not None else "not in the current run"
            res.verdicts.append(CellVerdict(name, _label(b), "MISSING", note))
            continue
        if b is None:
            v = CellVerdict(name, _label(c), "NEW",
                            "not in the baseline: never gated; re-record the baseline")
            if allow_new:
                v.status, v.note = "ok", "not in the baseline (allowed by --allow-new)"
            res.verdicts.append(v)
            continue
        v = CellVerdict(name, _label(c), "ok")
        runs = [_samples(r[name]) for r in base_runs if name in r]
        ys = _samples(c)
        if None in runs or ys is None:
            which = " and ".join(w for w, missing in (("baseline", None in runs), ("current", ys is None))
                                 if missing)
            v.status, v.note = "NO-DATA", (f"{which} without raw timings: record with --benchmark-save-data "
                                           "(or --benchmark-json)")
            res.verdicts.append(v)
            continue
        run_ms = [float(np.median(xs)) * 1e3 for xs in runs]  # type: ignore[arg-type]
        middle = _middle(run_ms)
        xs = runs[middle]
        change = judge(xs, ys, threshold=threshold, alpha=alpha)
        v.base_ms, v.cur_ms = run_ms[middle], float(np.median(ys)) * 1e3
        v.n_base, v.n_cur = len(xs), len(ys)
        v.base_run_ms = run_ms
        v.ratio, v.p, v.verdict = change.ratio, change.p, change.verdict
        factor = float((c.get("extra_info") or {}).get("slowdown", 1.0))
        hook = f" [{SLOWDOWN_ENV} hook ×{factor:g} active]" if factor != 1.0 else ""
        against = (f" (against the middle of {len(run_ms)} baseline runs, {min(run_ms):.4f}–{max(run_ms):.4f} ms)"
                   if len(run_ms) > 1 else "")
        v.note = change.reason + against + hook
        if change.verdict == "slower":
            v.status = "REGRESSED"
        elif change.verdict == "faster":
            v.status, v.note = "faster", f"{change.reason}{against}: consider re-recording the baseline{hook}"
        elif v.ratio > 1 + threshold:  # slower by the median alone: noise, not a regression
            v.status = "noise"
        res.verdicts.append(v)
    if not any(v.ratio is not None or v.status == "NO-DATA" for v in res.verdicts):
        res.problems.append("no cell was measured in both runs: nothing was compared")
    return res


def format_result(res: GateResult) -> str:
    width = max([len(v.label) for v in res.verdicts] + [4])
    lines = [f"{'cell':<{width}}  {'base ms':>9}  {'cur ms':>9}  {'ratio':>6}  {'p':>8}  verdict"]

    def num(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "-"

    for v in res.verdicts:
        lines.append(f"{v.label:<{width}}  {num(v.base_ms, '9.4f')}  {num(v.cur_ms, '9.4f')}  "
                     f"{num(v.ratio, '6.3f')}  {num(v.p, '8.2g')}  {v.status}: {v.note}")
    for prob in res.problems:
        lines.append(f"FAIL: {prob}")
    compared = [v for v in res.verdicts if v.ratio is not None and v.status != "REGRESSED"]
    if compared:
        worst = max(compared, key=lambda v: abs(v.ratio - 1))
        lines.append(f"largest median shift among cells not judged regressed: {worst.ratio - 1:+.2%} "
                     f"({worst.label})")
    c = res.counts()
    summary = ", ".join(f"{c.get(s, 0)} {s.lower()}" for s in FAILING) + f" of {len(res.verdicts)} cells"
    verdict = "PASS" if res.passed else "FAIL"
    runs = max((len(v.base_run_ms) for v in res.verdicts), default=1)
    against = f" than the middle of {runs} baseline runs" if runs > 1 else ""
    lines.append(f"regress: {verdict}: {summary} (a slowdown counts when the median is more than "
                 f"{res.threshold:.0%} slower{against} and Mann-Whitney p < {res.alpha:g})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.analysis.regress", description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, nargs="+",
                    help="baseline JSON, one or several runs (default: the newest set of *_baseline*.json in "
                         "storage)")
    ap.add_argument("--current", type=Path, help="current JSON (pytest-benchmark --benchmark-json output)")
    ap.add_argument("--threshold", type=float,
                    default=float(os.environ.get(THRESHOLD_ENV, DEFAULT_THRESHOLD)),
                    help=f"relative median slowdown that counts (default {DEFAULT_THRESHOLD}, "
                         f"env {THRESHOLD_ENV})")
    ap.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA})")
    ap.add_argument("--allow-new", action="store_true", help="do not fail on cells absent from the baseline")
    ap.add_argument("--allow-machine-mismatch", action="store_true",
                    help="compare even if GPU model or driver differ")
    ap.add_argument("--report", type=Path, help="also write the per-cell verdicts as JSON here")
    ap.add_argument("--storage", type=Path,
                    help="storage directory (default results/benchmarks/<gpu>-<driver>)")
    ap.add_argument("--print-storage", action="store_true", help="print the storage directory and exit")
    ap.add_argument("--print-baseline", action="store_true",
                    help="print the newest baseline set's files, one per line, and exit")
    args = ap.parse_args(argv)
    try:
        storage = args.storage or storage_dir()
        if args.print_storage:
            print(storage)
            return 0
        if args.print_baseline:
            print("\n".join(str(p) for p in find_baselines(storage)))
            return 0
        if args.current is None:
            raise RegressError("--current FILE is required")
        if not (0 < args.threshold < 1) or not (0 < args.alpha < 1):
            raise RegressError(f"--threshold {args.threshold} / --alpha {args.alpha}: both must be in (0, 1)")
        base_paths = args.baseline or find_baselines(storage)
        baselines, current = [load(p) for p in base_paths], load(args.current)
    except RegressError as exc:
        print(f"regress: error: {exc}", file=sys.stderr)
        return 2
    res = compare(baselines, current, threshold=args.threshold, alpha=args.alpha, allow_new=args.allow_new,
                  allow_machine_mismatch=args.allow_machine_mismatch)
    print("\n".join(f"baseline: {p}" for p in base_paths) + f"\ncurrent:  {args.current}")
    print(format_result(res))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({
            "baseline": [str(p) for p in base_paths], "current": str(args.current), "passed": res.passed,
            "threshold": res.threshold, "alpha": res.alpha, "problems": res.problems,
            "cells": [asdict(v) for v in res.verdicts]}, indent=2))
    return 0 if res.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
