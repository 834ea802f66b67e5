"""A run over several workers (``flashcore run --gpus``), on the CPU: every cell measured exactly once, a
problem's backends all on one worker, problems handed out longest first from one queue, each worker
pinned with its own CUDA_VISIBLE_DEVICES, a sharded run resumed, and a worker lost for good handing its
problem over to the others."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.run import executors
from harness.run.jobs import CellJob, EnvJob
from harness.run.plan import make_plan
from harness.run.replies import Ready
from harness.run.shards import GpuSpecError, Slot, parse_gpus, units
from harness.run.supervisor import RunOptions, Worker, WorkerError, run_suite
from harness.spec.suite import load_suite
from harness.store.database import Store
from harness.testing import FAULTS, registered, tiny_suite

cli = CliRunner()

def _suite(tmp_path: Path, name: str, backends: list[str], seqlens: list[int], rounds: int = 1) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(tiny_suite(name, backends, seqlens, rounds))
    return p


def _rows(db: Path, run_id: str | None = None) -> list:
    with Store(db, readonly=True) as s:
        return list(s.iter_results(run_id or s.latest_run_id()))


def _run_env(db: Path) -> dict:
    with Store(db, readonly=True) as s:
        return s.get_run(s.latest_run_id()).env or {}


# -- --gpus --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,visible,expected", [
    ("all", ["0", "1", "2"], [(0, "0"), (1, "1"), (2, "2")]),
    ("2", ["0", "1", "2"], [(0, "0"), (1, "1")]),
    ("0,2", ["0", "1", "2"], [(0, "0"), (2, "2")]),
    ("2,", ["0", "1", "2"], [(2, "2")]),  # one GPU named by its index
    ("0,0", ["0"], [(0, "0"), (0, "0")]),  # two workers on one GPU
    ("1,0", ["4", "6"], [(1, "6"), (0, "4")]),  # indices count the GPUs this process sees
    ("0,1", [], [(0, "0"), (1, "1")]),  # no GPU: the workers run on the CPU (tests)
    ("3", [], [(0, "0"), (1, "1"), (2, "2")]),
])
def test_gpus_names_the_workers_and_what_each_is_pinned_to(spec, visible, expected):
    assert [(s.index, s.visible) for s in parse_gpus(spec, visible)] == expected


@pytest.mark.parametrize("spec,visible,says", [
    ("all", [], "no GPU is visible"),
    ("0", ["0"], "a count N >= 1"),
    ("-1", ["0"], "a count N >= 1"),
    ("two", ["0"], "a count N >= 1"),
    ("3", ["0", "1"], "only 2 GPU(s) visible"),
    ("0,x", ["0"], "non-negative integers"),
    ("0,,1", ["0", "1"], "non-negative integers"),
    ("0,5", ["0", "1"], "no GPU 5"),
])
def test_a_bad_gpus_is_a_one_line_error(spec, visible, says):
    with pytest.raises(GpuSpecError) as err:
        parse_gpus(spec, visible)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_bad_gpus_on_the_command_line_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    suite = _suite(tmp_path, "tiny", ["reference"], [8])
    db = tmp_path / "r.db"
    for args, says in ((["--gpus", "0,7"], "--gpus '0,7': no GPU 7"), (["--gpus", "x"], "--gpus 'x'"),
                       (["--executor", "slurm"], "--executor 'slurm': allowed local, ray"),
                       (["--address", "auto"], "--address is for --executor ray")):
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), *args])
        assert res.exit_code != 0
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and says in lines[0], res.output
    assert not db.exists()


def test_units_are_problems_longest_first_by_flops_each_in_the_plan_order(tmp_path):
    s = load_suite(str(_suite(tmp_path, "order", ["reference", "naive"], [16, 64, 32, 64], rounds=2)))
    plan = make_plan(s)
    got = units(plan)
    assert [u.cells[0].problem.seqlen_q for u in got] == [64, 32, 16]  # the repeated problem is one unit
    assert [u.work for u in got] == sorted((u.work for u in got), reverse=True)
    for u in got:  # every visit of the problem, in the plan's rotation: A B A B
        assert [(c.backend, c.round) for c in u.cells] == [("reference", 0), ("naive", 0), ("reference", 1),
                                                            ("naive", 1)]
    assert [u.cells[0].problem.seqlen_q for u in units(plan, longest_first=False)] == [16, 64, 32]


def test_a_worker_that_comes_back_on_another_device_is_lost():
    class Fake:
        def alive(self):
            return False

        def start(self):
            return Ready(pid=1, host="h", device="cpu", gpu={})

        def kill(self):
            self.killed = True

    fake = Fake()
    out = executors.attempt(fake, EnvJob(), 1, expect_device="cuda")
    assert "not 'cuda'" in out.lost and out.ran is False and fake.killed


# -- end to end on the CPU -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharded")
    suite = _suite(tmp, "sharded", ["reference", "naive", "sdpa-math"], [8, 40, 24, 32], rounds=2)
    db = tmp / "r.db"
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--gpus", "0,1", "--run-id", "two"])
    return {"res": res, "db": db, "suite": suite}


def test_every_cell_is_measured_once_and_each_problem_on_one_worker(sharded):
    assert sharded["res"].exit_code == 0, sharded["res"].output
    rows = _rows(sharded["db"], "two")
    assert len(rows) == 12 and len({(r.backend, r.problem_key) for r in rows}) == 12
    assert all(r.status == "ok" and r.rounds == 2 for r in rows)  # both visits pooled, none twice
    by_problem: dict[str, set] = {}
    for r in rows:
        by_problem.setdefault(r.problem_key, set()).add((r.extra["worker"]["shard"], r.gpu_index))
    assert all(len(v) == 1 for v in by_problem.values()), by_problem
    assert {next(iter(v)) for v in by_problem.values()} == {(0, 0), (1, 1)}  # both workers did some
    assert all(r.gpu_name == "cpu" and r.gpu_uuid == "" for r in rows)  # on the CPU the stamp says so


def test_check_shards_passes_a_sharded_run_and_fails_one_whose_problem_was_split(sharded, tmp_path):
    ok = cli.invoke(app, ["db", "check-shards", "two", "--db", str(sharded["db"])])
    assert ok.exit_code == 0, ok.output
    assert "ok   each problem's cells on one worker" in ok.output and "FAIL" not in ok.output
    # one row moved to the other worker: a problem split across workers, which the supervisor never does
    from harness.store.copy import copy_database

    db = tmp_path / "split.db"
    copy_database(sharded["db"], db)
    con = sqlite3.connect(db)
    rid, extra = con.execute("SELECT id, extra FROM results WHERE run_id='two' LIMIT 1").fetchone()
    moved = json.loads(extra)
    moved["worker"]["shard"] = 1 - moved["worker"]["shard"]
    con.execute("UPDATE results SET extra=? WHERE id=?", (json.dumps(moved), rid))
    con.commit()
    con.close()
    bad = cli.invoke(app, ["db", "check-shards", "two", "--db", str(db)])
    assert bad.exit_code == 1 and "FAIL each problem's cells on one worker" in bad.output
    missing = cli.invoke(app, ["db", "check-shards", "nope", "--db", str(db)])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_each_worker_is_pinned_with_its_own_cuda_visible_devices(sharded):
    gpus = _run_env(sharded["db"])["gpus"]
    # what each worker process found in its own environment
    assert [(g["shard"], g["index"], g["visible"], g["device"]) for g in gpus] == [(0, 0, "0", "cpu"),
                                                                                  (1, 1, "1", "cpu")]


def test_show_names_the_gpu_of_each_cell_when_a_run_used_several(sharded):
    res = cli.invoke(app, ["show", "--db", str(sharded["db"]), "--run", "two"])
    assert res.exit_code == 0, res.output
    assert "gpu" in res.output and "2 GPUs:" in res.output


def test_a_sharded_run_without_a_gpu_reports_a_cpu_run_and_the_default_run_is_not_pinned(tmp_path):
    suite = _suite(tmp_path, "one", ["reference"], [8])
    db = tmp_path / "r.db"
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db)])
    assert res.exit_code == 0, res.output
    (row,) = _rows(db)
    assert (row.gpu_index, row.gpu_name) == (None, "cpu") and "worker" not in row.extra
    assert "gpus" not in _run_env(db)


def test_one_worker_takes_the_problems_longest_first(tmp_path):
    suite = _suite(tmp_path, "longest", ["reference", "naive"], [8, 40, 24])
    db = tmp_path / "r.db"
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--gpus", "1"])
    assert res.exit_code == 0, res.output
    assert [r.seqlen_q for r in _rows(db)] == [40, 40, 24, 24, 8, 8]


def test_a_sharded_run_interrupted_resumes_with_only_the_missing_cells(tmp_path):
    suite_path = _suite(tmp_path, "resume", ["reference", "naive"], [8, 16, 24, 32, 40])
    db = tmp_path / "r.db"
    s = load_suite(str(suite_path))
    plan = make_plan(s)

    def stop_after_three(result, n, total):
        if n >= 3:
            raise KeyboardInterrupt

    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        run_suite(s, plan, store, RunOptions(run_id="cut", slots=[Slot(0, "0"), Slot(1, "1")],
                                             on_result=stop_after_three))
    before = {(r.backend, r.problem_key): r.created_at for r in _rows(db, "cut")}
    assert 3 <= len(before) < 10
    with Store(db, readonly=True) as store:
        assert store.get_run("cut").status == "interrupted"
    res = cli.invoke(app, ["run", "--suite", str(suite_path), "--db", str(db), "--resume", "--run-id", "cut",
                           "--gpus", "2,3"])  # other workers than before: the half-done problems move
    assert res.exit_code == 0, res.output
    after = _rows(db, "cut")
    assert len(after) == 10 and len({(r.backend, r.problem_key) for r in after}) == 10
    assert all(r.status == "ok" for r in after)
    # a problem left half done is measured again whole on the GPU that finishes it (its backends' ratios
    # never mix GPUs), the earlier rows kept; every other row stored before the cut is untouched
    gpus: dict[str, set] = {}
    for r in after:
        gpus.setdefault(r.problem_key, set()).add(r.gpu_index)
    assert all(len(g) == 1 for g in gpus.values()), gpus
    with Store(db, readonly=True) as store:
        again = {(r.backend, r.problem_key) for r in store.iter_superseded("cut")}
    assert all(before[k] == r.created_at for r in after if (k := (r.backend, r.problem_key)) in before
               and k not in again)
    assert again and all(k in before for k in again)
    with Store(db, readonly=True) as store:
        assert store.get_run("cut").status == "complete"


# -- a worker lost: its cell failed, its problem handed over ------------------------------------------
@pytest.mark.parametrize("gpu_survives", [True, False])
def test_a_crashed_worker_is_replaced_or_its_problem_goes_to_the_other_worker(tmp_path, monkeypatch, gpu_survives):
    """A segfault in a cell fails that cell. Where a fresh worker starts on its GPU, the problem goes on
    there; where none can (the GPU is gone), the worker is lost: the rest of its problem is measured again
    from its first cell by the other worker, the lost GPU's rows kept as superseded, and the faulting cell
    is not tried elsewhere."""
    if not gpu_survives:
        real_start = Worker.start

        def start_once(self):
            if self.started:  # a second start on this slot: the GPU fell off the bus
                raise WorkerError("worker did not start within 300s (exit code 1)")
            return real_start(self)

        monkeypatch.setattr(Worker, "start", start_once)
    suite = _suite(tmp_path, "lost", ["reference", "fault-segfault", "naive"], [8, 1024, 16, 24])
    db = tmp_path / "r.db"
    with registered(FAULTS):
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--gpus", "0,1", "--run-id", "lost"])
    assert res.exit_code == 0, res.output
    rows = {(r.backend, r.seqlen_q): r for r in _rows(db, "lost")}
    assert len(rows) == 12
    crashed = rows[("fault-segfault", 1024)]
    assert crashed.status == "failed" and "worker crashed (signal SIGSEGV)" in crashed.reason
    assert all(r.status == "ok" for k, r in rows.items() if k != ("fault-segfault", 1024))
    big = {r.extra["worker"]["shard"] for k, r in rows.items() if k[1] == 1024 and k[0] != "fault-segfault"}
    assert len(big) == 1  # the problem's good cells on one worker
    with Store(db, readonly=True) as store:
        old = [r for r in store.superseded_frame("lost").itertuples()]
        gpus = store.get_run("lost").env["gpus"]
    if gpu_survives:
        assert big == {crashed.extra["worker"]["shard"]} and not old
        assert not any(g.get("lost") for g in gpus)
    else:
        assert big != {crashed.extra["worker"]["shard"]}  # measured again by the other worker
        assert [(o.backend, o.seqlen_q) for o in old] == [("reference", 1024)]  # from the lost GPU, kept
        assert [g["shard"] for g in gpus if g.get("lost")] == [crashed.extra["worker"]["shard"]]
        assert "goes to the other workers" in res.output


def test_a_run_whose_every_worker_is_lost_stops_interrupted(tmp_path, monkeypatch):
    real_start = Worker.start

    def start_once(self):
        if self.started:
            raise WorkerError("worker did not start within 300s (exit code 1)")
        return real_start(self)

    monkeypatch.setattr(Worker, "start", start_once)
    suite = _suite(tmp_path, "all-lost", ["fault-segfault", "reference"], [1024, 1025])
    db = tmp_path / "r.db"
    with registered(FAULTS):
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--gpus", "0,1", "--run-id", "gone"])
    assert res.exit_code != 0
    assert "every worker was lost" in res.output
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs WHERE run_id='gone'").fetchone()[0] == "interrupted"
    con.close()


def test_the_run_page_shows_which_gpu_ran_what(sharded, tmp_path):
    out = tmp_path / "dash"
    res = cli.invoke(app, ["report", "--db", str(sharded["db"]), "--run", "two", "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = (out / "run-two.html").read_text()
    assert 'id="gpus"' in html and "Which GPU ran what" in html
    section = html[html.index('id="gpus"'):html.index("</section>", html.index('id="gpus"'))]
    assert section.count("<tr>") == 1 + 2 + 1 + 4  # two workers, four problems (and two header rows)
    assert "0 (cpu)" in section and "1 (cpu)" in section


@pytest.mark.gpu
def test_two_workers_pinned_to_one_gpu_run_a_suite_on_it(tmp_path):
    """On a GPU machine: ``--gpus 0,0`` runs two workers on GPU 0, each stamping its cells with the GPU's
    UUID and name; every cell once, each problem on one worker (for function, not for timing)."""
    suite = _suite(tmp_path, "gpu-shards", ["sdpa-math", "naive", "sdpa-flash"], [64, 128, 256, 512])
    db = tmp_path / "r.db"
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--gpus", "0,0", "--run-id", "g"])
    assert res.exit_code == 0, res.output
    rows = _rows(db, "g")
    assert len({(r.backend, r.problem_key) for r in rows}) == len(rows) == 12
    assert {(r.gpu_index, r.gpu_name) for r in rows} == {(0, rows[0].gpu_name)} and rows[0].gpu_name != "cpu"
    assert len({r.gpu_uuid for r in rows}) == 1 and rows[0].gpu_uuid.startswith(("GPU-", "MIG-"))
    gpus = _run_env(db)["gpus"]
    assert len(gpus) == 2 and len({g["visible"] for g in gpus}) == 1 and all(g["device"] == "cuda" for g in gpus)
    assert {r.extra["worker"]["shard"] for r in rows} == {0, 1}


def test_export_has_the_gpu_of_every_cell(sharded, tmp_path):
    import csv

    out = tmp_path / "x.csv"
    res = cli.invoke(app, ["export", "--db", str(sharded["db"]), "--run", "two", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and {(r["gpu_index"], r["gpu_name"]) for r in rows} == {("0", "cpu"), ("1", "cpu")}
    assert all("gpu_uuid" in r for r in rows)


def test_a_host_that_dies_mid_cell_fails_that_cell_and_hands_its_problem_over(tmp_path):
    """The way a Ray actor goes with its node: the job's future raises. The cell in flight is failed
    (``worker lost``), the rest of its problem is measured by the other worker, the run completes."""
    from concurrent.futures import Future

    from harness.run.executors.local import LocalExecutor

    class DyingHost(LocalExecutor):
        cells = 0

        def submit(self, host, job, timeout_s):
            if isinstance(job, CellJob) and host.label.startswith("worker 1"):
                self.cells += 1
                if self.cells == 2:  # its second cell: the host is gone
                    fut: Future = Future()
                    fut.set_exception(RuntimeError("ActorDiedError: the node running this actor died"))
                    return fut
            return super().submit(host, job, timeout_s)

    s = load_suite(str(_suite(tmp_path, "dying", ["reference", "naive", "sdpa-math"], [8, 16, 24])))
    db = tmp_path / "r.db"
    events: list[str] = []
    with Store(db) as store:
        run_suite(s, make_plan(s), store, RunOptions(run_id="d", executor=DyingHost(), on_event=events.append,
                                                     slots=[Slot(0, "0"), Slot(1, "1")]))
    rows = {(r.backend, r.seqlen_q): r for r in _rows(db, "d")}
    failed = [r for r in rows.values() if r.status == "failed"]
    assert len(rows) == 9 and len(failed) == 1
    assert failed[0].reason.startswith("worker lost: RuntimeError: ActorDiedError")
    assert failed[0].gpu_index == 1
    rest = [r for r in rows.values() if r.seqlen_q == failed[0].seqlen_q and r.status == "ok"]
    assert len(rest) == 2 and {r.gpu_index for r in rest} == {0}  # measured again by worker 0
    assert all(r.status == "ok" for r in rows.values() if r.seqlen_q != failed[0].seqlen_q)
    assert len(events) == 1 and "worker 1 (GPU 1) lost" in events[0]
    with Store(db, readonly=True) as store:
        assert store.get_run("d").status == "complete"
        assert [g.get("lost", "")[:30] for g in store.get_run("d").env["gpus"]] == ["", "RuntimeError: ActorDiedError: "]
