"""``flashcore run --executor ray`` against a local Ray cluster of two nodes with CPU workers: the same
workers as Ray actors on both nodes, every cell measured once and stored by the supervisor, and an
interrupted run resumed through Ray. Without Ray, asking for it is a one-line error."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.store.database import Store
from harness.testing import tiny_suite

cli = CliRunner()

def test_without_ray_asking_for_it_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    suite = tmp_path / "ray.toml"
    suite.write_text(tiny_suite("ray", ["reference", "naive"], [8, 16, 24, 32], cell_timeout_s=None))
    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(tmp_path / "r.db"), "--executor", "ray"])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'flashcore[ray]'" in lines[0], res.output


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'flashcore[ray]')")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    c.add_node(num_cpus=1, num_gpus=0)
    c.wait_for_nodes()
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def test_a_run_on_a_two_node_ray_cluster_is_stored_once_and_resumes(tmp_path, cluster):
    from harness.run.executors.ray import RayExecutor
    from harness.run.plan import make_plan
    from harness.run.supervisor import RunOptions, run_suite
    from harness.spec.suite import load_suite

    suite = tmp_path / "ray.toml"
    suite.write_text(tiny_suite("ray", ["reference", "naive"], [8, 16, 24, 32], cell_timeout_s=None))
    db = tmp_path / "r.db"
    s = load_suite(str(suite))
    executor = RayExecutor(cluster.address)
    slots = executor.slots("2")  # no GPU in the cluster: two CPU workers (num_gpus=0, num_cpus=1)

    def stop_after_three(result, n, total):
        if n >= 3:
            raise KeyboardInterrupt

    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        run_suite(s, make_plan(s), store, RunOptions(run_id="ray", executor=executor, slots=slots,
                                                     on_result=stop_after_three))
    with Store(db, readonly=True) as store:
        before = {(r.backend, r.problem_key): r.created_at for r in store.iter_results("ray")}
        assert store.get_run("ray").status == "interrupted"
    assert 3 <= len(before) < 8

    res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db), "--resume", "--run-id", "ray",
                           "--executor", "ray", "--address", cluster.address, "--gpus", "2"])
    assert res.exit_code == 0, res.output
    with Store(db, readonly=True) as store:
        rows = list(store.iter_results("ray"))
        info = store.get_run("ray")
    assert info.status == "complete"
    assert len(rows) == 8 and len({(r.backend, r.problem_key) for r in rows}) == 8
    assert all(r.status == "ok" and r.gpu_name == "cpu" and r.gpu_index is None for r in rows)
    assert all(before[k] == r.created_at for r in rows if (k := (r.backend, r.problem_key)) in before)
    by_problem: dict[str, set] = {}  # the problems measured after the cut: each on one worker
    for r in rows:
        if not any(k[1] == r.problem_key for k in before):
            by_problem.setdefault(r.problem_key, set()).add(r.extra["worker"]["shard"])
    assert by_problem and all(len(v) == 1 for v in by_problem.values())
    gpus = info.env["gpus"]
    assert info.env["executor"] == "ray" and len(gpus) == 2 and all(g["device"] == "cpu" for g in gpus)
    assert len({g["host"] for g in gpus}) == 2, json.dumps(gpus)  # one actor on each node
