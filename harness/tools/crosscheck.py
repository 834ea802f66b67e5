"""``flashcore crosscheck``: the same cells timed by three instruments in one run, and how well they agree.

* flashcore, both timing modes (``isolated``, ``sustained``), as ``flashcore run`` measures them (a run of
  its own, ``<id>-flashcore``, suite ``crosscheck-timing:<suite>``);
* ``triton.testing.do_bench`` (its defaults: 25 ms warm-up, 100 ms of calls, a 256 MB write flush before
  each, one event pair per call), its median (and mean), in a child process
  (``python -m harness.tools.crosscheck dobench``) so a crash costs the cells left, not the run;
* Nsight Compute's ``gpu__time_duration`` summed over a call's kernels, ``--clock-control none``
  (``harness.tools.profiling.ncu.profile_cell`` on ``harness.tools.profile_target``, as ``flashcore profile``).

Expected agreement (docs/timing.md): ``sustained`` with do_bench's median, ``isolated`` with ncu. Each cell
is stored as one row of a run of suite ``crosscheck:<suite>`` with the times in ``extra.crosscheck``.
"""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE_PREFIX = "crosscheck:"
WITHIN = 0.02  # the agreement asked: 2%
SUSTAINED_MIN_MS = 0.1  # sustained vs do_bench is judged on cells of at least 100 µs
ISOLATED_MIN_MS = 0.02  # isolated vs ncu on kernels of at least 20 µs
_TAG = "CROSSCHECK "


@dataclass
class CrossRow:
    backend: str
    problem_key: str
    isolated_ms: float | None = None
    sustained_ms: float | None = None
    dobench_ms: float | None = None  # median
    dobench_mean_ms: float | None = None
    ncu_ms: float | None = None
    notes: str = ""  # why an instrument has no number

    @staticmethod
    def _ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b is not None and b > 0 else None

    @property
    def sustained_vs_dobench(self) -> float | None:
        return self._ratio(self.sustained_ms, self.dobench_ms)

    @property
    def isolated_vs_ncu(self) -> float | None:
        return self._ratio(self.isolated_ms, self.ncu_ms)

    @property
    def isolated_vs_dobench(self) -> float | None:
        return self._ratio(self.isolated_ms, self.dobench_ms)


def _count(ratios: list[float], within: float) -> tuple[int, int, float]:
    moves = [abs(r - 1) for r in ratios]
    return sum(m <= within for m in moves), len(moves), max(moves, default=0.0)


def agreement(rows: list[CrossRow], within: float = WITHIN, sustained_min_ms: float = SUSTAINED_MIN_MS,
              isolated_min_ms: float = ISOLATED_MIN_MS) -> dict[str, tuple[int, int, float]]:
    """(within, judged, worst |ratio − 1|) for the two pairings the modes are meant to match: sustained
    with do_bench on cells of at least ``sustained_min_ms`` (by do_bench's median), isolated with ncu on
    kernels of at least ``isolated_min_ms`` (by ncu's time); and isolated with do_bench, for reference."""
    s = [r.sustained_vs_dobench for r in rows if r.dobench_ms is not None and r.dobench_ms >= sustained_min_ms]
    i = [r.isolated_vs_ncu for r in rows if r.ncu_ms is not None and r.ncu_ms >= isolated_min_ms]
    d = [r.isolated_vs_dobench for r in rows if r.dobench_ms is not None and r.dobench_ms >= sustained_min_ms]
    return {"sustained/do_bench": _count([x for x in s if x is not None], within),
            "isolated/ncu": _count([x for x in i if x is not None], within),
            "isolated/do_bench": _count([x for x in d if x is not None], within)}


def agreement_lines(rows: list[CrossRow], within: float = WITHIN, sustained_min_ms: float = SUSTAINED_MIN_MS,
                    isolated_min_ms: float = ISOLATED_MIN_MS) -> list[str]:
    a = agreement(rows, within, sustained_min_ms, isolated_min_ms)
    floors = {"sustained/do_bench": f">= {sustained_min_ms * 1e3:g} µs (do_bench)",
              "isolated/ncu": f">= {isolated_min_ms * 1e3:g} µs (ncu)",
              "isolated/do_bench": f">= {sustained_min_ms * 1e3:g} µs (do_bench), for reference"}
    return [f"{name}: {ok} of {n} cells {floors[name]} within {within:.0%} (worst {worst:.2%})"
            if n else f"{name}: no cell {floors[name]} has both numbers"
            for name, (ok, n, worst) in a.items()]


def table(rows: list[CrossRow]):  # -> rich.table.Table
    from rich.table import Table

    def f(x: float | None, spec: str = ".4f") -> str:
        return "" if x is None else format(x, spec)

    t = Table(title="cross-check: ms per call; ratios flashcore / other instrument")
    for c in ("backend", "problem", "isolated", "sustained", "do_bench median", "do_bench mean", "ncu",
              "sustained/do_bench", "isolated/ncu", "isolated/do_bench", "notes"):
        t.add_column(c, justify="left" if c in ("backend", "problem", "notes") else "right", overflow="fold")
    for r in rows:
        t.add_row(r.backend, r.problem_key, f(r.isolated_ms), f(r.sustained_ms), f(r.dobench_ms),
                  f(r.dobench_mean_ms), f(r.ncu_ms), f(r.sustained_vs_dobench), f(r.isolated_vs_ncu),
                  f(r.isolated_vs_dobench), r.notes)
    return t


def missing_tools() -> list[str]:
    """What this machine lacks for a cross-check (empty: nothing)."""
    import importlib.util

    from harness.tools.profiling import ncu

    missing = []
    try:
        import torch

        if not torch.cuda.is_available():
            missing.append("no CUDA GPU visible to torch")
    except ImportError:
        missing.append("torch is not importable")
    if importlib.util.find_spec("triton") is None:
        missing.append("triton is not importable (triton.testing.do_bench)")
    if ncu.find_ncu() is None:
        missing.append(f"ncu not found on PATH (or {ncu.NCU_ENV})")
    return missing


# -- do_bench, in a child process -------------------------------------------------------------------
def dobench_main(argv: list[str]) -> int:
    """``python -m harness.tools.crosscheck dobench CELLS.json``: one ``CROSSCHECK {json}`` line per cell."""
    import torch
    import triton.testing

    from harness.backends import registry
    from harness.measure.inputs import make_inputs
    from harness.spec.problem import Problem

    cells = json.loads(Path(argv[0]).read_text())
    for c in cells:
        out: dict[str, Any] = {"backend": c["backend"], "problem_key": c["problem_key"]}
        try:
            problem = Problem.from_dict(c["problem"])
            backend = registry.get(c["backend"])
            why = backend.unavailable() or backend.unsupported(problem)
            if why:
                out["error"] = f"skipped: {why}"
            else:
                q, k, v = make_inputs(problem, 1234, "normal", "cuda")
                fn = backend.prepare(problem, q, k, v)
                for rep in c.get("longer_reps_ms") or []:
                    # do_bench with a longer stretch of calls: does its median move towards the sustained mode's
                    # power-limited state?
                    out.setdefault("longer", {})[str(rep)] = float(
                        triton.testing.do_bench(fn, warmup=max(25, rep // 4), rep=rep, return_mode="median"))
                try:
                    times = triton.testing.do_bench(fn, return_mode="all")
                    # what return_mode="median" returns: torch.median, the lower middle value
                    out["median_ms"] = float(torch.tensor(times).median().item())
                    out["mean_ms"] = float(sum(times) / len(times))
                    out["calls"] = len(times)
                except (TypeError, ValueError):  # a triton without return_mode="all"
                    out["median_ms"] = float(triton.testing.do_bench(fn, return_mode="median"))
                del q, k, v, fn
                torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - one cell's failure, reported, the rest go on
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        print(_TAG + json.dumps(out), flush=True)
    return 0


def parse_dobench(output: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for line in output.splitlines():
        if line.startswith(_TAG):
            try:
                d = json.loads(line[len(_TAG):])
            except json.JSONDecodeError:
                continue
            found[(d.get("backend"), d.get("problem_key"))] = d
    return found


def run_dobench(plan: list[Any], timeout_s: float, longer_reps_ms: list[int] | None = None
                ) -> dict[tuple[str, str], dict[str, Any]]:
    """do_bench of every cell (and, with ``longer_reps_ms``, again with those longer stretches of calls); a
    child that dies is replaced and goes on from the cell after the one it died on (that one is reported as
    the crash)."""
    from harness.tools.profiling import proc

    cells = [{"backend": c.backend, "problem_key": c.problem.key(), "problem": c.problem.as_dict(),
              "longer_reps_ms": list(longer_reps_ms or [])} for c in plan]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    stalled = 0
    while cells:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cells, f)
        res = proc.run([sys.executable, "-m", "harness.tools.crosscheck", "dobench", f.name], timeout_s)
        Path(f.name).unlink(missing_ok=True)
        got = parse_dobench(res.output)
        found.update(got)
        left = [c for c in cells if (c["backend"], c["problem_key"]) not in got]
        stalled = stalled + 1 if len(left) == len(cells) else 0
        if not left or res.returncode == 0 or stalled >= 2:
            # done; or a clean exit that left some out, or two children in a row that reported nothing (one
            # that cannot start): the rest are reported with the child's last line
            tail = [ln for ln in res.output.strip().splitlines() if ln.strip()][-1:]
            for c in left:
                found[(c["backend"], c["problem_key"])] = {"error": f"do_bench process: {tail[0][:200] if tail else 'no output'}"}
            break
        crashed = left[0]
        found[(crashed["backend"], crashed["problem_key"])] = {
            "error": f"do_bench process died (exit {res.returncode}{', timed out' if res.timed_out else ''})"}
        cells = left[1:]
    return found


if __name__ == "__main__":  # the do_bench child
    if len(sys.argv) >= 3 and sys.argv[1] == "dobench":
        sys.exit(dobench_main(sys.argv[2:]))
    sys.exit("usage: python -m harness.tools.crosscheck dobench CELLS.json")
