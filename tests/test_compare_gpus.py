"""``flashcore compare --across-gpus RUN``: the same cells measured on different GPUs of one run, judged by
the one noise rule; and ``flashcore run --remeasure --gpus N,`` that measures a run's cells again on
another GPU, keeping the first results."""
from __future__ import annotations

import random

from typer.testing import CliRunner

from harness.analysis.gpus import across_gpus
from harness.cli import app
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store, now

cli = CliRunner()
PROBLEMS = [Problem(batch=1, heads_q=2, seqlen_q=s, head_dim=64) for s in (256, 512, 1024)]
GPUS = {0: ("GPU-aaaa", 1.0), 1: ("GPU-bbbb", 1.0), 2: ("GPU-cccc", 1.3)}  # GPU 2 runs 30% slow


def _row(p: Problem, backend: str, gpu: int, seed: int) -> Result:
    uuid, slow = GPUS[gpu]
    rnd = random.Random(seed)
    samples = [slow * (1.0 + 0.01 * rnd.random()) for _ in range(30)]
    med = sorted(samples)[15]
    return Result.for_problem("r", "s", backend, p, "ok", median_ms=med, p10_ms=min(samples), p90_ms=max(samples),
                              rel_spread=(max(samples) - min(samples)) / med, gpu_index=gpu, gpu_uuid=uuid,
                              gpu_name="NVIDIA H100", extra={"samples_ms": samples, "event_tare_ms": 0.0})


def _db(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        s.create_run(RunInfo(run_id="r", suite="s", created_at=now()))
        seed = 0
        for p in PROBLEMS:
            for b in ("sdpa", "fa2"):
                s.add_result(_row(p, b, 0, seed := seed + 1))  # first on GPU 0 ...
                s.add_result(_row(p, b, 2 if p.seqlen_q == 1024 else 1, seed := seed + 1), keep_previous=True)
        s.create_run(RunInfo(run_id="once", suite="s", created_at=now()))
        s.add_result(Result.for_problem("once", "s", "sdpa", PROBLEMS[0], "ok", median_ms=1.0, gpu_index=0))
    return db


def test_each_gpu_is_judged_against_the_first_on_the_cells_both_measured(tmp_path):
    with Store(_db(tmp_path), readonly=True) as s:
        pairs = across_gpus(s, "r")
    got = {(p.a[0], p.b[0]): (len(p.diffs), p.slower, p.faster) for p in pairs}
    assert got == {(0, 1): (4, 0, 0), (0, 2): (2, 2, 0)}  # GPU 2's cells are slower beyond noise
    slow = next(p for p in pairs if p.b[0] == 2)
    assert all(d.judged.p is not None and d.judged.p < 0.01 for d in slow.diffs)  # Mann-Whitney on samples
    assert 1.25 < slow.median_ratio < 1.35


def test_compare_across_gpus_prints_each_pair_and_says_when_there_is_none(tmp_path):
    db = _db(tmp_path)
    res = cli.invoke(app, ["compare", "--across-gpus", "r", "--db", str(db)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "GPU 2 (NVIDIA H100, GPU-cccc) against GPU 0 (NVIDIA H100, GPU-aaaa): 2 cells" in out
    assert "2 slower and 0 faster beyond their noise" in out
    assert "GPU 1 (NVIDIA H100, GPU-bbbb) against GPU 0 (NVIDIA H100, GPU-aaaa): 4 cells" in out
    none = cli.invoke(app, ["compare", "--across-gpus", "once", "--db", str(db)])
    assert none.exit_code == 2 and "no ok cell measured on two GPUs" in none.output
    two = cli.invoke(app, ["compare", "--across-gpus", "r", "once", "--db", str(db)])
    assert two.exit_code == 2 and "give one run id" in two.output


def test_remeasure_on_another_gpu_keeps_the_first_rows_for_the_comparison(tmp_path):
    suite = tmp_path / "re.toml"
    suite.write_text('[suite]\nname = "re"\nbackends = ["reference", "naive"]\n[[grid]]\nbatch = 1\nheads_q = 1\n'
                     'seqlen_q = [8, 16]\nhead_dim = 8\ndtype = "float32"\n[timing]\nmin_samples = 5\n'
                     'max_samples = 5\ntime_cap_s = 0.05\nmin_time_s = 0\nwarmup = 1\n')
    db = tmp_path / "r.db"
    first = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--gpus", "0,", "--run-id", "x"])
    assert first.exit_code == 0, first.output
    again = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--remeasure", "--run-id", "x",
                             "--gpus", "1,"])
    assert again.exit_code == 0, again.output
    assert "measuring 4 recorded cell(s) again" in again.output
    with Store(db, readonly=True) as s:
        assert {r.gpu_index for r in s.iter_results("x")} == {1}
        assert sorted(r.gpu_index for r in s.iter_superseded("x")) == [0, 0, 0, 0]
        assert s.get_run("x").status == "complete"
    res = cli.invoke(app, ["compare", "--across-gpus", "x", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "GPU 1 (cpu) against GPU 0 (cpu): 4 cells" in " ".join(res.output.split())
