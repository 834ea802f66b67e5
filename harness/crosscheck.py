"""``flashcore crosscheck``: the same cells timed by three instruments in one run, and how well they agree.

* flashcore, both timing modes (``isolated``, ``sustained``), as ``flashcore run`` measures them (a run of
  its own, ``<id>-flashcore``, suite ``crosscheck-timing:<suite>``);
* ``triton.testing.do_bench`` (its defaults: 25 ms warm-up, 100 ms of calls, a 256 MB write flush before
  each, one event pair per call), its median (and mean), in a child process
  (``python -m harness.crosscheck dobench``) so a crash costs the cells left, not the run;
* Nsight Compute's ``gpu__time_duration`` summed over a call's kernels, ``--clock-control none``
  (``harness.profiling.ncu.profile_cell`` on ``harness.profile_target``, as ``flashcore profile``).

Expected agreement (docs/timing.md): ``sustained`` with do_bench's median, ``isolated`` with ncu. Each cell
is stored as one row of a run of suite ``crosscheck:<suite>`` with the times in ``extra.crosscheck``.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import typer

from harness.store import DEFAULT_DB

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

    from harness.profiling import ncu

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
    """``python -m harness.crosscheck dobench CELLS.json``: one ``CROSSCHECK {json}`` line per cell."""
    import torch
    import triton.testing

    from harness.backends import registry
    from harness.inputs import make_inputs
    from harness.problem import Problem

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
    from harness.profiling import proc

    cells = [{"backend": c.backend, "problem_key": c.problem.key(), "problem": c.problem.as_dict(),
              "longer_reps_ms": list(longer_reps_ms or [])} for c in plan]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    stalled = 0
    while cells:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cells, f)
        res = proc.run([sys.executable, "-m", "harness.crosscheck", "dobench", f.name], timeout_s)
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


# -- the command ------------------------------------------------------------------------------------------
def crosscheck(
    suite: str = typer.Option(..., "--suite", "-s", help="suite name (suites/NAME.toml) or path"),
    filter: str = typer.Option("", "--filter", "-f", help='e.g. "seqlen_q>=4096,head_dim=128"'),
    backends: str = typer.Option("", "--backends", "-b", help="comma-separated backends (default: the suite's)"),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="results database (SQLite)"),
    run_id: str | None = typer.Option(None, "--run-id", help="name the cross-check run"),
    ncu_calls: int = typer.Option(20, "--ncu-calls", help="profiled calls per cell under ncu"),
    within: float = typer.Option(WITHIN, "--within", help="agreement asked of the pairings"),
    min_ms: float = typer.Option(SUSTAINED_MIN_MS, "--min-ms", help="sustained/do_bench judged on cells this long"),
    out_dir: Path = typer.Option(Path("results/local/crosscheck"), "--out-dir", help="ncu output per cell"),
    cell_timeout: float = typer.Option(900.0, "--cell-timeout", help="seconds allowed per ncu run"),
    dobench_longer: str = typer.Option("", "--dobench-longer", help="also do_bench with these rep= values (ms), "
                                       "comma-separated, e.g. 2000: kept beside the default's 100 ms"),
) -> None:
    """One run timing the chosen cells with flashcore (both modes), triton's do_bench and Nsight Compute,
    and how well they agree per cell."""
    from harness.plan import FilterError, make_plan
    from harness.profiling import ncu
    from harness.result import Result
    from harness.runner import RunOptions, WorkerError, new_run_id, run_suite
    from harness.store import RunInfo, Store, StoreError, now
    from harness.suite import SuiteError, load_suite

    def fail(msg: str) -> typer.Exit:
        typer.echo(f"flashcore: error: crosscheck: {' '.join(msg.split())}", err=True)
        return typer.Exit(2)

    if not 0 < within < 1:
        raise fail(f"--within {within!r}: must be a fraction in (0, 1), e.g. 0.02 for 2%")
    if ncu_calls < 1:
        raise fail(f"--ncu-calls {ncu_calls}: must be at least 1")
    try:
        longer = [int(x) for x in dobench_longer.split(",") if x.strip()]
    except ValueError:
        longer = [-1]
    if any(not 100 < x <= 60_000 for x in longer):
        raise fail(f"--dobench-longer {dobench_longer!r}: allowed whole milliseconds from 101 to 60000, comma-separated")
    from harness.backends import registry

    try:
        s = load_suite(suite)
        names = [b.strip() for b in backends.split(",") if b.strip()] or None
        for b in names or []:
            registry.get(b)  # an unknown name fails here, naming the known ones
        suite_name = s.name
        s = replace(s, name=f"crosscheck-timing:{s.name}",
                    timing=replace(s.timing, modes=("isolated", "sustained"), rounds=1, baseline=""))
        plan = make_plan(s, names, filter)
    except (SuiteError, FilterError, registry.UnknownBackendError) as exc:
        raise fail(str(exc)) from None
    if not plan:
        raise fail(f"the filter {filter!r} leaves no problem of suite {suite!r}")
    missing = missing_tools()
    if missing:
        raise fail("needs an NVIDIA GPU, triton and Nsight Compute: " + "; ".join(missing))
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 240)
    exe = ncu.find_ncu()
    assert exe is not None
    rid = run_id or new_run_id()
    try:
        store = Store(db)
        t0 = time.perf_counter()
        timing_id = f"{rid}-flashcore"
        console.print(f"crosscheck: flashcore, both modes, {len(plan)} visits (run {timing_id})")
        run_suite(s, plan, store, RunOptions(run_id=timing_id, argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                             log_dir=out_dir / rid / "logs"))
        fc = {(r.backend, r.problem_key, r.timing_mode): r for r in store.iter_results(timing_id)}
        cells = list({(c.backend, c.problem.key()): c for c in plan}.values())
        console.print(f"crosscheck: do_bench of {len(cells)} cells")
        db_times = run_dobench(cells, timeout_s=max(600.0, 30.0 * len(cells) * (1 + len(longer))), longer_reps_ms=longer)
        from harness import envinfo

        env = envinfo.collect()
        # the run's lease (pid, host, heartbeat): renewed per cell, so the run never reads as interrupted
        store.create_run(RunInfo(run_id=rid, suite=f"{SUITE_PREFIX}{suite_name}", created_at=now(),
                                 git_commit=env.get("git_commit", ""), argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                 env=env, pid=os.getpid(), host=socket.gethostname(), heartbeat_at=now()))
        (out_dir / rid).mkdir(parents=True, exist_ok=True)
        rows = []
        for n, c in enumerate(cells, 1):
            key = c.problem.key()
            prof = ncu.profile_cell(exe, c.backend, c.problem, metrics=ncu.METRIC_SETS["time"], clock_control="none",
                                    calls=ncu_calls, timeout_s=cell_timeout, python=sys.executable)
            (out_dir / rid / f"{c.backend}__{key}.ncu.txt").write_text(prof.output)
            iso, sus = fc.get((c.backend, key, "isolated")), fc.get((c.backend, key, "sustained"))
            d = db_times.get((c.backend, key), {})
            notes = [f"{m}: {r.status} {r.reason[:60]}" for m, r in (("isolated", iso), ("sustained", sus))
                     if r is not None and r.status != "ok"]
            if d.get("error"):
                notes.append(f"do_bench: {d['error'][:80]}")
            for rep, ms in (d.get("longer") or {}).items():
                notes.append(f"do_bench rep={rep}ms: {ms:.4g} ms")
            if prof.status != "ok":
                notes.append(f"ncu: {prof.status} {prof.reason[:80]}")
            row = CrossRow(c.backend, key, iso.median_ms if iso and iso.status == "ok" else None,
                           sus.median_ms if sus and sus.status == "ok" else None, d.get("median_ms"),
                           d.get("mean_ms"), prof.call_ns / 1e6 if prof.call_ns is not None else None, "; ".join(notes))
            rows.append(row)
            complete = None not in (row.isolated_ms, row.sustained_ms, row.dobench_ms, row.ncu_ms)
            extra = {"crosscheck": {**asdict(row), "sustained_vs_dobench": row.sustained_vs_dobench,
                                    "isolated_vs_ncu": row.isolated_vs_ncu, "isolated_vs_dobench": row.isolated_vs_dobench,
                                    "dobench_calls": d.get("calls"), "ncu_calls": ncu_calls,
                                    "dobench_longer_median_ms": d.get("longer") or {},
                                    "ncu_clock_control": "none", "flashcore_run": timing_id,
                                    "ncu_command": shlex.join(prof.command)}}
            store.add_result(Result.for_problem(rid, f"{SUITE_PREFIX}{suite_name}", c.backend, c.problem,
                                                "ok" if complete else "failed", row.notes[:1000], extra=extra))
            store.heartbeat(rid)
            console.print(f"crosscheck [{n}/{len(cells)}] {c.backend} {key}: isolated {row.isolated_ms}, "
                          f"sustained {row.sustained_ms}, do_bench {row.dobench_ms}, ncu {row.ncu_ms}")
        store.update_run(rid, status="complete", finished_at=now())
    except (StoreError, WorkerError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(table(rows))
    for line in agreement_lines(rows, within, min_ms):
        console.print(line)
    console.print(f"crosscheck run {rid} (flashcore timings: {timing_id}) in {db}, "
                  f"{time.perf_counter() - t0:.0f} s; ncu output in {out_dir / rid}")


if __name__ == "__main__":  # the do_bench child
    if len(sys.argv) >= 3 and sys.argv[1] == "dobench":
        sys.exit(dobench_main(sys.argv[2:]))
    sys.exit("usage: python -m harness.crosscheck dobench CELLS.json")
