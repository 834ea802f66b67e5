"""``flashcore warm`` prepares each (backend, problem) of a suite once in child processes, measuring and storing
nothing, and says per entry whether it was prepared, skipped (with the backend's reason) or failed."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.run.plan import make_plan
from harness.spec.suite import load_suite
from harness.testing import tiny_suite
from harness.tools.warm import warm


def _suite(tmp_path: Path, backends: list[str]) -> Path:
    path = tmp_path / "warm.toml"
    path.write_text(tiny_suite("warm", backends, [16, 32]))
    return path


def test_each_distinct_cell_is_prepared_once_and_reported(tmp_path: Path) -> None:
    plan = make_plan(load_suite(str(_suite(tmp_path, ["naive", "sdpa-math", "sdpa-flash"]))))
    seen = []
    results = warm(plan, jobs=2, on_done=seen.append)
    assert seen == results
    assert sorted((w.backend, w.problem_key) for w in results) == sorted(
        {(c.backend, c.problem.key()) for c in plan})
    by = {(w.backend, w.problem_key): w for w in results}
    assert all(by[(b, c.problem.key())].status == "ok" for c in plan for b in ("naive", "sdpa-math")
               if c.backend == b)
    # a GPU-only backend on this CPU machine: skipped with the reason, not failed
    flash = [w for w in results if w.backend == "sdpa-flash"]
    assert flash and all(w.status == "skipped" and w.reason for w in flash)


def test_command_prints_a_summary_and_stores_nothing(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["warm", "--suite", str(_suite(tmp_path, ["naive"])), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "warmed 2: 2 ok, 0 skipped, 0 failed" in res.output
    assert not list(tmp_path.glob("*.db"))


def test_several_suites_are_warmed_in_one_pool(tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(tiny_suite("other", ["naive"], [8]))
    res = CliRunner().invoke(app, ["warm", "--suite", str(_suite(tmp_path, ["naive"])), "--suite", str(other)])
    assert res.exit_code == 0, res.output
    assert "warmed 3: 3 ok, 0 skipped, 0 failed" in res.output


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    suite = str(_suite(tmp_path, ["naive"]))
    for args, words in ((["-b", "no-such"], "unknown backend 'no-such'"),
                        (["-f", "seqlen_q=7"], "leaves no problem")):
        res = CliRunner().invoke(app, ["warm", "--suite", suite, *args])
        assert res.exit_code == 2
        assert words in res.output and "Traceback" not in res.output
