"""``flashcore profile`` / ``flashcore validate`` end to end on the CPU, with stand-in ncu and
compute-sanitizer executables (canned output) and the GPU check bypassed: what reaches the database."""
import json
import sqlite3
import stat
import textwrap

import pytest
from test_ncu_parse import RAW
from typer.testing import CliRunner

from harness.cli import app
from harness.cli import profile as cli

runner = CliRunner()


def fake_tool(path, body):
    path.write_text("#!/usr/bin/env python3\nimport sys\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def no_gpu_check(monkeypatch):
    monkeypatch.setattr(cli, "_require_gpu", lambda what: None)


@pytest.fixture
def canned_ncu(tmp_path, monkeypatch):
    """A stand-in ncu that prints the canned raw-page CSV of three profiled calls."""
    raw = RAW.replace("PROFILE_TARGET DONE calls=2", "PROFILE_TARGET DONE calls=3")
    monkeypatch.setenv("FLASHCORE_NCU", fake_tool(tmp_path / "ncu", f"""
        if "--query-metrics" in sys.argv:
            sys.exit(0)
        print({raw!r})
        """))


def profile_smoke(tmp_path, *args):
    return runner.invoke(app, ["profile", "--suite", "smoke", "--backends", "naive", "--filter",
                                   "seqlen_q=16,dtype=float16,causal=false", "--db", str(tmp_path / "r.db"),
                                   "--out-dir", str(tmp_path / "out"), *args])


def rows(db, suite):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute("select * from results where suite=? order by id", (suite,))]


def test_profile_stores_ncu_metrics_beside_the_harness_median(tmp_path, canned_ncu, no_gpu_check):
    db = tmp_path / "r.db"
    res = profile_smoke(tmp_path, "--calls", "3")
    assert res.exit_code == 0, res.output
    [row] = rows(db, "profile:smoke")
    extra = json.loads(row["extra"])
    assert row["status"] == "ok" and row["backend"] == "naive"
    assert set(extra["ncu"]) == {"gemm_kernel", "softmax_kernel"}
    assert extra["ncu"]["gemm_kernel"]["launches_per_call"] == pytest.approx(4 / 3)
    assert extra["ncu_call_ns"] == pytest.approx(900_000 / 3)
    # the harness timed the same cell first (a run of its own) and the ratio was stored
    [timed] = rows(db, "profile-timing:smoke")
    assert extra["harness"]["median_ms"] == timed["median_ms"] and timed["median_ms"] > 0
    assert extra["ncu_over_harness"] == pytest.approx(0.3 / timed["median_ms"])
    assert "ncu/harness" in res.output
    cmd = extra["ncu_command"]
    assert "--nvtx-include flashcore@naive:b1-hq2-hkv2-sq16-sk16-d64-float16-full-bshd/" in cmd


def test_profile_profiles_each_backend_and_problem_once_whatever_the_suites_timing_modes(tmp_path, canned_ncu,
                                                                                         no_gpu_check):
    # fa-paper times every cell in two modes; ncu's numbers do not depend on the mode
    db = tmp_path / "r.db"
    res = runner.invoke(app, ["profile", "--suite", "fa-paper", "--backends", "naive", "--filter",
                              "seqlen_q=512,head_dim=64,causal=false", "--timing", "none", "--db", str(db),
                              "--out-dir", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    [row] = rows(db, "profile:fa-paper")
    assert row["backend"] == "naive" and "sq512" in row["problem_key"]
    assert "profile [1/1]" in res.output


def test_profile_records_a_cell_ncu_could_not_profile_and_exits_1(tmp_path, monkeypatch, no_gpu_check):
    ncu = fake_tool(tmp_path / "ncu", """
        if "--query-metrics" in sys.argv:
            sys.exit(0)
        print("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU counters")
        sys.exit(1)
        """)
    monkeypatch.setenv("FLASHCORE_NCU", ncu)
    db = tmp_path / "r.db"
    res = runner.invoke(app, ["profile", "--suite", "smoke", "--backends", "naive", "--filter",
                                  "seqlen_q=16,dtype=float16,causal=false", "--db", str(db), "--timing", "none",
                                  "--out-dir", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    [row] = rows(db, "profile:smoke")
    assert row["status"] == "failed" and "ERR_NVGPUCTRPERM" in row["reason"]


SANITIZER = """
    import os
    # the target must run without PyTorch's caching allocator, or memcheck cannot see a tensor's bounds
    assert os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING") == "1"
    tool = sys.argv[sys.argv.index("--tool") + 1]
    backends = sys.argv[sys.argv.index("harness.tools.sanitize_target") + 1].split(",")
    print("========= COMPUTE-SANITIZER")
    bad = tool == "racecheck" and "flashcore-phase4x" in backends
    for b in backends:
        for key in ("b1-hq2-hkv2-sq1-sk1-d64-float16-full-bshd", "b1-hq2-hkv2-sq17-sk17-d64-float16-full-bshd"):
            print(f"SANITIZE BEGIN {b} {key}")
            if bad and b == "flashcore-phase4x" and "sq17" in key:
                print("========= Error: Race reported between Write access at k(...)+0x10 in a.cu:1")
                print("=========     and Read access at k(...)+0x20 in a.cu:2 [4 hazards]")
                print("=========")
            print(f"SANITIZE END {b} {key} ok")
    print("SANITIZE DONE calls=2 skipped=0 errors=0")
    if tool == "racecheck":
        n = 1 if bad else 0
        print(f"========= RACECHECK SUMMARY: {n} hazards displayed ({n} errors, 0 warnings)")
    else:
        print("========= ERROR SUMMARY: 0 errors")
    """


def test_validate_pins_a_race_on_its_backend_and_passes_the_others(tmp_path, monkeypatch, no_gpu_check):
    monkeypatch.setenv("FLASHCORE_COMPUTE_SANITIZER", fake_tool(tmp_path / "compute-sanitizer", SANITIZER))
    db = tmp_path / "r.db"
    res = runner.invoke(app, ["validate", "--backends", "flashcore-phase4,flashcore-phase4x",
                                  "--tools", "memcheck,racecheck", "--db", str(db),
                                  "--out-dir", str(tmp_path / "logs")])
    assert res.exit_code == 1, res.output
    got = {(r["backend"], r["problem_key"]): r for r in rows(db, "validate")}
    assert set(got) == {(b, f"compute-sanitizer:{t}") for b in ("flashcore-phase4", "flashcore-phase4x")
                        for t in ("memcheck", "racecheck")}
    assert got[("flashcore-phase4", "compute-sanitizer:memcheck")]["status"] == "ok"
    assert got[("flashcore-phase4", "compute-sanitizer:racecheck")]["status"] == "ok"  # re-run alone: clean
    race = got[("flashcore-phase4x", "compute-sanitizer:racecheck")]
    assert race["status"] == "failed" and race["passed"] == 0
    assert "Race reported between Write access" in race["error_text"]
    assert json.loads(race["extra"])["isolated"] is True
    assert "re-running each backend alone" in res.output


def test_the_time_metric_set_asks_ncu_for_the_duration_and_clock_only(tmp_path, canned_ncu, no_gpu_check):
    res = profile_smoke(tmp_path, "--timing", "none", "--metric-set", "time")
    assert res.exit_code == 0, res.output
    [row] = rows(tmp_path / "r.db", "profile:smoke")
    extra = json.loads(row["extra"])
    assert "--metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second " in extra["ncu_command"]
    # a duration compared with a median wants more than 3 calls: ncu's mean of 3 moved by up to 3%
    assert extra["ncu_calls"] == 20 and "--calls 20" in extra["ncu_command"]


def test_the_full_metric_set_profiles_three_calls_unless_told(tmp_path, canned_ncu, no_gpu_check):
    res = profile_smoke(tmp_path, "--timing", "none")
    assert res.exit_code == 0, res.output
    [row] = rows(tmp_path / "r.db", "profile:smoke")
    assert json.loads(row["extra"])["ncu_calls"] == 3


def test_an_unknown_metric_set_is_one_line_naming_the_allowed_sets(tmp_path, no_gpu_check):
    res = runner.invoke(app, ["profile", "--suite", "smoke", "--db", str(tmp_path / "r.db"),
                                  "--metric-set", "most"])
    assert res.exit_code == 2 and "--metric-set 'most': allowed full, time" in res.output
