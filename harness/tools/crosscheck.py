"""``flashcore crosscheck``: the same cells timed by three instruments in one run (the rows and their
agreement: ``harness.analysis.crosscheck``).

* flashcore, both timing modes (``isolated``, ``sustained``), as ``flashcore run`` measures them (a run of
  its own, ``<id>-flashcore``, suite ``crosscheck-timing:<suite>``);
* ``triton.testing.do_bench`` (its defaults: 25 ms warm-up, 100 ms of calls, a 256 MB write flush before
  each, one event pair per call), its median (and mean), in a child process
  (``python -m harness.tools.crosscheck dobench``) so a crash costs the cells left, not the run;
* Nsight Compute's ``gpu__time_duration`` summed over a call's kernels, ``--clock-control none``
  (``harness.tools.profiling.ncu.profile_cell`` on ``harness.tools.profile_target``, as ``flashcore profile``).

Each cell is stored the moment its three instruments are done, so a run cut short keeps what it measured
and ``resume`` measures only the cells it lacks (and resumes or reuses its flashcore run).
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.analysis.crosscheck import SUITE_PREFIX, CrossRow, rows_of

if TYPE_CHECKING:
    from harness.run.plan import Cell
    from harness.spec.suite import Suite
    from harness.store.database import Store

_TAG = "CROSSCHECK "


class CrosscheckError(Exception):
    """A cross-check that cannot start as asked (one line, naming what to change)."""


@dataclass
class DoBenchTiming:
    """What ``triton.testing.do_bench`` gave one cell in the child process (one ``CROSSCHECK`` JSON line), or
    why it gave nothing (``error``)."""
    backend: str
    problem_key: str
    median_ms: float | None = None  # return_mode="median": torch.median, the lower middle value
    mean_ms: float | None = None
    calls: int | None = None
    #: do_bench's median with a longer stretch of calls, by its ``rep`` in ms ("2000")
    longer_median_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def line(self) -> str:
        return _TAG + json.dumps(asdict(self))

    @classmethod
    def from_line(cls, line: str) -> DoBenchTiming | None:
        """The record of a ``CROSSCHECK`` line; None for any other line or a malformed one."""
        if not line.startswith(_TAG):
            return None
        try:
            d = json.loads(line[len(_TAG):])
            return cls(**{k: d[k] for k in d if k in _DOBENCH_FIELDS})
        except (json.JSONDecodeError, TypeError):
            return None


_DOBENCH_FIELDS = set(DoBenchTiming.__dataclass_fields__)


def timing_suite(suite: Suite) -> Suite:
    """The suite as flashcore times it for a cross-check: both modes, one visit, no baseline."""
    return replace(suite, name=f"crosscheck-timing:{suite.name}",
                   timing=replace(suite.timing, modes=("isolated", "sustained"), rounds=1, baseline=""))


@dataclass(frozen=True)
class CrosscheckRequest:
    suite_name: str  # the suite as named (its rows are stored under crosscheck:<suite_name>)
    timing: Suite  # timing_suite(the suite)
    plan: list[Cell]  # flashcore's visits of the timing suite (both modes of every cell)
    run_id: str
    argv: str
    ncu_calls: int = 20
    cell_timeout_s: float = 900.0
    dobench_longer_ms: tuple[int, ...] = ()
    out_dir: Path = Path("results/local/crosscheck")
    resume: bool = False

    @property
    def timing_run_id(self) -> str:
        return f"{self.run_id}-flashcore"

    @property
    def stored_suite(self) -> str:
        return f"{SUITE_PREFIX}{self.suite_name}"

    def cells(self) -> list[Cell]:
        """One per (backend, problem), in plan order."""
        from harness.run.plan import one_per_problem

        return one_per_problem(self.plan)


@dataclass
class Instruments:
    """How each instrument is run: flashcore's run of the plan, do_bench of some cells, ncu of one cell
    (the defaults measure; tests pass stand-ins)."""
    flashcore: Callable[[CrosscheckRequest, Store], None] = field(default=lambda req, store: _time_with_flashcore(req, store))
    dobench: Callable[[list[Cell], float, list[int]], dict[tuple[str, str], DoBenchTiming]] = field(
        default=lambda cells, timeout_s, longer: run_dobench(cells, timeout_s, longer))
    ncu: Callable[[Cell, CrosscheckRequest], Any] = field(default=lambda cell, req: _profile_with_ncu(cell, req))


def _time_with_flashcore(req: CrosscheckRequest, store: Store) -> None:
    """flashcore's run of the plan, both modes: started, resumed where cut short, or left as it is when
    it is complete."""
    from harness.run.supervisor import RunOptions, run_suite

    existing = store.run_status(req.timing_run_id)
    if existing == "complete":
        return
    run_suite(req.timing, req.plan, store, RunOptions(run_id=req.timing_run_id, argv=req.argv, resume=existing is not None,
                                                 log_dir=req.out_dir / req.run_id / "logs"))


def _profile_with_ncu(cell: Cell, req: CrosscheckRequest) -> Any:
    from harness.tools.profiling import ncu

    exe = ncu.find_ncu()
    prof = ncu.profile_cell(exe, cell.backend, cell.problem, metrics=ncu.METRIC_SETS["time"], clock_control="none",
                            calls=req.ncu_calls, timeout_s=req.cell_timeout_s, python=sys.executable)
    (req.out_dir / req.run_id).mkdir(parents=True, exist_ok=True)
    (req.out_dir / req.run_id / f"{cell.backend}__{cell.problem.key()}.ncu.txt").write_text(prof.output)
    return prof


def _row(cell: Cell, iso: Any, sus: Any, dobench: DoBenchTiming, prof: Any) -> CrossRow:
    """One cell's numbers from its instruments, and a note for each that has none."""
    notes = [f"{m}: {r.status} {r.reason[:60]}" for m, r in (("isolated", iso), ("sustained", sus))
             if r is not None and r.status != "ok"]
    if dobench.error:
        notes.append(f"do_bench: {dobench.error[:80]}")
    for rep, ms in dobench.longer_median_ms.items():
        notes.append(f"do_bench rep={rep}ms: {ms:.4g} ms")
    if prof.status != "ok":
        notes.append(f"ncu: {prof.status} {prof.reason[:80]}")
    return CrossRow(cell.backend, cell.problem.key(), iso.median_ms if iso and iso.status == "ok" else None,
                    sus.median_ms if sus and sus.status == "ok" else None, dobench.median_ms, dobench.mean_ms,
                    prof.call_ns / 1e6 if prof.call_ns is not None else None, "; ".join(notes))


def run_crosscheck(req: CrosscheckRequest, store: Store, instruments: Instruments | None = None,
                   on_cell: Callable[[int, int, CrossRow], None] | None = None) -> list[CrossRow]:
    """Time every cell of the request with the three instruments and store one row per cell as it is done;
    the run's rows (the stored ones of a resumed run first) are returned.

    A new run refuses an id already in the store; ``resume`` continues that run (refusing one whose
    process still lives), or one cut before its first row: its flashcore run is resumed or reused, and
    do_bench and ncu measure only the cells without a row."""
    from harness.measure import environment
    from harness.records.result import Result
    from harness.store.database import RunInfo, now

    inst = instruments or Instruments()
    status = store.run_status(req.run_id)
    if not req.resume and status is not None:
        raise CrosscheckError(f"--run-id {req.run_id!r}: a run of that id is already in {store.path}: pick another, "
                              "or add --resume")
    if req.resume and status is None and store.run_status(req.timing_run_id) is None:
        raise CrosscheckError(f"--resume: no cross-check run {req.run_id!r} (nor its {req.timing_run_id!r}) in "
                              f"{store.path}")
    if status is not None:
        info = store.get_run(req.run_id)
        if info.suite != req.stored_suite:
            raise CrosscheckError(f"--resume: run {req.run_id!r} is of suite {info.suite!r}, not {req.stored_suite!r}")
        store.claim_run(req.run_id)  # refuses a run whose process still lives
    inst.flashcore(req, store)
    fc = {(r.backend, r.problem_key, r.timing_mode): r for r in store.iter_results(req.timing_run_id)}
    done = store.done_cells(req.run_id) if status is not None else set()
    todo = [c for c in req.cells() if (c.backend, c.problem.key()) not in done]
    longer = list(req.dobench_longer_ms)
    db_times = inst.dobench(todo, max(600.0, 30.0 * len(todo) * (1 + len(longer))), longer) if todo else {}
    if status is None:  # created once flashcore and do_bench are done: a run cut before resumes from them
        env = environment.collect()
        # the run's lease (pid, host, heartbeat): renewed per cell, so the run never reads as interrupted
        store.create_run(RunInfo(run_id=req.run_id, suite=req.stored_suite, created_at=now(),
                                 git_commit=env.get("git_commit", ""), argv=req.argv, env=env, pid=os.getpid(),
                                 host=socket.gethostname(), heartbeat_at=now()))
    try:
        for n, c in enumerate(todo, 1):
            key = c.problem.key()
            prof = inst.ncu(c, req)
            d = db_times.get((c.backend, key)) or DoBenchTiming(c.backend, key, error="no do_bench line")
            row = _row(c, fc.get((c.backend, key, "isolated")), fc.get((c.backend, key, "sustained")), d, prof)
            extra = {"crosscheck": row.stored(dobench_calls=d.calls, ncu_calls=req.ncu_calls,
                                              dobench_longer_median_ms=d.longer_median_ms, ncu_clock_control="none",
                                              flashcore_run=req.timing_run_id,
                                              ncu_command=shlex.join(getattr(prof, "command", []) or []))}
            store.add_result(Result.for_problem(req.run_id, req.stored_suite, c.backend, c.problem,
                                                "ok" if row.complete else "failed", row.notes[:1000], extra=extra))
            store.heartbeat(req.run_id)
            if on_cell:
                on_cell(n, len(todo), row)
    except BaseException:  # cut (a time limit's SIGINT, an error): what was stored stays, --resume goes on
        store.update_run(req.run_id, status="interrupted")
        raise
    store.update_run(req.run_id, status="complete", finished_at=now())
    return rows_of(store.iter_results(req.run_id))


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
        out = DoBenchTiming(c["backend"], c["problem_key"])
        try:
            problem = Problem.from_dict(c["problem"])
            backend = registry.get(c["backend"])
            why = backend.unavailable() or backend.unsupported(problem)
            if why:
                out.error = f"skipped: {why}"
            else:
                q, k, v = make_inputs(problem, 1234, "normal", "cuda")
                fn = backend.prepare(problem, q, k, v)
                for rep in c.get("longer_reps_ms") or []:
                    # do_bench with a longer stretch of calls: does its median move towards the sustained mode's
                    # power-limited state?
                    out.longer_median_ms[str(rep)] = float(
                        triton.testing.do_bench(fn, warmup=max(25, rep // 4), rep=rep, return_mode="median"))
                try:
                    times = triton.testing.do_bench(fn, return_mode="all")
                    # what return_mode="median" returns: torch.median, the lower middle value
                    out.median_ms = float(torch.tensor(times).median().item())
                    out.mean_ms = float(sum(times) / len(times))
                    out.calls = len(times)
                except (TypeError, ValueError):  # a triton without return_mode="all"
                    out.median_ms = float(triton.testing.do_bench(fn, return_mode="median"))
                del q, k, v, fn
                torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - one cell's failure, reported, the rest go on
            out.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        print(out.line(), flush=True)
    return 0


def parse_dobench(output: str) -> dict[tuple[str, str], DoBenchTiming]:
    """The do_bench child's records by (backend, problem key); other lines and malformed ones are passed over."""
    found = {}
    for line in output.splitlines():
        if (t := DoBenchTiming.from_line(line)) is not None:
            found[(t.backend, t.problem_key)] = t
    return found


def run_dobench(plan: list[Any], timeout_s: float, longer_reps_ms: list[int] | None = None
                ) -> dict[tuple[str, str], DoBenchTiming]:
    """do_bench of every cell (and, with ``longer_reps_ms``, again with those longer stretches of calls); a
    child that dies is replaced and goes on from the cell after the one it died on (that one is reported as
    the crash)."""
    from harness.tools.profiling import proc

    cells = [{"backend": c.backend, "problem_key": c.problem.key(), "problem": c.problem.as_dict(),
              "longer_reps_ms": list(longer_reps_ms or [])} for c in plan]
    found: dict[tuple[str, str], DoBenchTiming] = {}
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
                found[(c["backend"], c["problem_key"])] = DoBenchTiming(
                    c["backend"], c["problem_key"], error=f"do_bench process: {tail[0][:200] if tail else 'no output'}")
            break
        crashed = left[0]
        found[(crashed["backend"], crashed["problem_key"])] = DoBenchTiming(
            crashed["backend"], crashed["problem_key"],
            error=f"do_bench process died (exit {res.returncode}{', timed out' if res.timed_out else ''})")
        cells = left[1:]
    return found


if __name__ == "__main__":  # the do_bench child
    if len(sys.argv) >= 3 and sys.argv[1] == "dobench":
        sys.exit(dobench_main(sys.argv[2:]))
    sys.exit("usage: python -m harness.tools.crosscheck dobench CELLS.json")
