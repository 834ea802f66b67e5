"""Faults are contained to their cell (CPU path: the CUDA faults are simulated with PyTorch's own error
text; crashes, hangs and out-of-memory are real): each faulting cell is recorded ``failed`` with the
reason and the error text, the worker is replaced where it must be, and every other cell is ``ok``.
Then: ``kill -9`` of a whole run leaves the database readable and ``--resume`` finishes exactly the
missing cells."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.store.database import Store
from harness.testing import FAULTS, TOOLS, registered

cli = CliRunner()
FAULT_AT = 1024  # faulty.DEFAULT_MIN_SEQLEN: the middle problem below faults, the others do not

SUITE = """
[suite]
name = "faults-cpu"
backends = ["reference", {faults}, "sdpa-math"]

[[grid]]
batch = 1
heads_q = 1
seqlen_q = [16, 1024, 32]
head_dim = 16
dtype = "bfloat16"

[timing]
min_samples = 3
max_samples = 5
time_cap_s = 0.05
warmup = 1
cell_timeout_s = 4
"""

EXPECTED = {  # backend: (reason must contain, error_text must contain)
    "fault-illegal-address": ("CUDA error (worker restarted): AcceleratorError: CUDA error: an illegal memory access",
                              "Traceback"),
    "fault-misaligned": ("CUDA error (worker restarted): AcceleratorError: CUDA error: misaligned address", "Traceback"),
    "fault-launch-failure": ("CUDA error (worker restarted): AcceleratorError: CUDA error: unspecified launch failure",
                             "Traceback"),
    "fault-hang": ("timed out after 4s (worker killed)", "timed out"),
    "fault-oom": ("out of memory: ", "allocate"),  # CPU: "can't allocate memory"; GPU: "Tried to allocate"
    "fault-abort": ("worker crashed (signal SIGABRT)", "Fatal Python error: Aborted"),  # faulthandler's
    "fault-segfault": ("worker crashed (signal SIGSEGV)", "Fatal Python error: Segmentation fault"),  # stack
}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    suite = tmp / "faults.toml"
    suite.write_text(SUITE.format(faults=", ".join(f'"{n}"' for n in FAULTS)))
    db, logs = tmp / "r.db", tmp / "logs"
    with registered(FAULTS):
        t0 = time.perf_counter()
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--log-dir", str(logs)])
        elapsed = time.perf_counter() - t0
        shown = cli.invoke(app, ["show", "--db", str(db)])
    assert res.exit_code == 0, res.output
    with Store(db, create=False) as store:
        rid = store.latest_run_id()
        rows = {(r.backend, r.seqlen_q): r for r in store.iter_results(rid)}
        info = store.get_run(rid)
    return {"rows": rows, "info": info, "show": shown.output, "logs": logs, "elapsed": elapsed}


def test_every_cell_is_recorded_and_only_the_faulting_ones_fail(fault_run):
    rows = fault_run["rows"]
    assert len(rows) == 3 * (len(FAULTS) + 2)
    assert fault_run["info"].status == "complete"
    for (backend, sq), r in rows.items():
        if backend in FAULTS and sq >= FAULT_AT:
            assert r.status == "failed", (backend, r.status, r.reason)
        else:  # before and after the faults, on the same and on replaced workers
            assert r.status == "ok", (backend, sq, r.status, r.reason)
            assert r.passed and r.n_samples and r.median_ms > 0


@pytest.mark.parametrize("backend", list(FAULTS))
def test_each_fault_names_its_reason_and_keeps_the_error_text(fault_run, backend):
    r = fault_run["rows"][(backend, FAULT_AT)]
    reason, text = EXPECTED[backend]
    assert r.status == "failed" and not r.passed
    assert reason in r.reason, r.reason
    assert "\n" not in r.reason  # one line for tables; the whole text is error_text
    assert text in r.error_text, r.error_text[-800:]
    if "crashed" in reason:  # the Python stack of the crash names the faulting call
        assert 'testing/faulty.py", line' in r.error_text and "in fault" in r.error_text, r.error_text


def test_workers_are_replaced_exactly_when_they_must_be(fault_run):
    # one worker at the start, and a fresh one after each sticky CUDA error, hang and crash; an
    # out-of-memory is recovered in place (the worker frees its memory and measures on)
    restarts = [n for n in FAULTS if n != "fault-oom"]
    logs = sorted(fault_run["logs"].glob("worker-*.log"))
    assert len(logs) == 1 + len(restarts), [p.name for p in logs]


def test_show_prints_each_failed_cell_with_its_reason(fault_run):
    out = " ".join(fault_run["show"].split())  # rich wraps long lines
    for backend in EXPECTED:
        assert f"failed {backend} b1-hq1-hkv1-sq1024" in out, backend
    if not torch.cuda.is_available():  # reasons are printed verbatim, brackets included
        assert "out of memory: RuntimeError: [enforce fail at alloc_cpu.cpp" in out
    assert f"totals: ok {3 * 9 - len(FAULTS)}, skipped 0, failed {len(FAULTS)}, rejected 0" in out


def test_sticky_and_oom_classification():
    from harness.run.worker import is_oom, is_sticky_cuda_error

    for msg in ("CUDA error: an illegal memory access was encountered", "CUDA error: misaligned address",
                "CUDA error: unspecified launch failure", "CUDA error: device-side assert triggered",
                "CUDA error: an illegal instruction was encountered"):
        assert is_sticky_cuda_error(RuntimeError(msg)), msg
    assert not is_sticky_cuda_error(ValueError("shapes do not match"))
    assert is_oom(MemoryError()) and is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert not is_oom(RuntimeError("illegal memory access"))


# -- kill -9 and --resume --------------------------------------------------------------------------
KILL_SUITE = """
[suite]
name = "kill-resume"
backends = ["test-slow", "reference"]

[[grid]]
batch = 1
heads_q = 1
seqlen_q = [8, 9, 10, 11, 12, 13]
head_dim = 8
dtype = "float32"

[timing]
min_samples = 3
max_samples = 3
time_cap_s = 0.05
warmup = 1
"""


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_mid_run_then_resume_completes_only_the_missing_cells(tmp_path):
    suite = tmp_path / "kill.toml"
    suite.write_text(KILL_SUITE)
    db = tmp_path / "r.db"
    with registered(TOOLS):
        env = {**os.environ, "FLASHCORE_SLOW_S": "0.15", "FLASHCORE_BACKENDS": os.environ["FLASHCORE_BACKENDS"]}
        cmd = [sys.executable, "-c", "from harness.cli import app; app()", "run", "--suite", str(suite),
               "--db", str(db), "--run-id", "killed"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=Path(__file__).resolve().parents[1])
        deadline = time.time() + 120
        n = 0
        while time.time() < deadline and proc.poll() is None:  # wait until some cells are stored
            time.sleep(0.05)
            if db.exists():
                try:
                    con = sqlite3.connect(db, timeout=1)
                    n = con.execute("SELECT count(*) FROM results").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    n = 0
            if n >= 3:
                break
        workers = _children(proc.pid)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert workers, "the run had a worker process"
        for _ in range(100):  # the worker dies with its supervisor (PR_SET_PDEATHSIG): nothing left on the GPU
            if not any(_alive(w) for w in workers):
                break
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers)

        # the database opens, is intact, and keeps every cell stored before the kill
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = con.execute("SELECT id, backend, problem_key, status, created_at FROM results ORDER BY id").fetchall()
        assert con.execute("SELECT status FROM runs WHERE run_id='killed'").fetchone()[0] == "running"
        con.close()
        assert 3 <= len(before) < 12 and all(r[3] == "ok" for r in before)

        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--resume", "--run-id", "killed"])
        assert res.exit_code == 0, res.output
        assert f"resuming: {len(before)} of 12 cells already recorded" in res.output
    con = sqlite3.connect(db)
    after = con.execute("SELECT id, backend, problem_key, status, created_at FROM results ORDER BY id").fetchall()
    assert after[: len(before)] == before  # untouched: same rows, same ids
    assert len(after) == 12 and len({(r[1], r[2]) for r in after}) == 12  # each missing cell once, no repeats
    assert min(r[0] for r in after[len(before):]) > max(r[0] for r in before)
    assert all(r[3] == "ok" for r in after)
    assert con.execute("SELECT status FROM runs WHERE run_id='killed'").fetchone()[0] == "complete"
