"""The regression gate (harness/analysis/regress.py) over pytest-benchmark JSON, and the slowdown test hook."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis import regress

MACHINE = {"gpu": "NVIDIA H100 80GB HBM3", "driver": "570.124.06", "torch": "2.11.0"}
CELL = "benchmarks/test_attention.py::test_attention[{}]"


def bench(name, data, **extra):
    info = {"backend": name.split("-b")[0], "problem_key": "b8-hq16-sq2048-d128", "slowdown": 1.0, **extra}
    return {"name": f"test_attention[{name}]", "fullname": CELL.format(name), "extra_info": info,
            "stats": {"median": sorted(data)[len(data) // 2], "data": list(data)}}


def run(*benches, machine=MACHINE, skipped=()):
    return {"machine_info": dict(machine), "benchmarks": list(benches),
            "flashcore": {"skipped": [{"fullname": CELL.format(n), "reason": r} for n, r in skipped]}}


def noisy(center, spread, n=30, seed=0):
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def verdict_of(result, name):
    [v] = [v for v in result.verdicts if v.cell == CELL.format(name)]
    return v


def test_a_cell_missing_from_the_current_run_fails_and_says_why():
    base = run(bench("sdpa-flash-b8", noisy(1e-3, 0.01)), bench("fa4-b8", noisy(1e-3, 0.01, seed=1)))
    cur = run(bench("sdpa-flash-b8", noisy(1e-3, 0.01, seed=2)), skipped=[("fa4-b8", "flash_attn.cute not importable")])
    res = regress.compare(base, cur)
    v = verdict_of(res, "fa4-b8")
    assert not res.passed and v.status == "MISSING"
    assert "skipped in the current run: flash_attn.cute not importable" in v.note
    assert verdict_of(res, "sdpa-flash-b8").status == "ok"


def test_a_cell_missing_from_the_baseline_fails_unless_allowed():
    base = run(bench("sdpa-flash-b8", noisy(1e-3, 0.01)))
    cur = run(bench("sdpa-flash-b8", noisy(1e-3, 0.01, seed=1)), bench("sdpa-flash-renamed-b8", noisy(1e-3, 0.01)))
    res = regress.compare(base, cur)
    assert not res.passed and verdict_of(res, "sdpa-flash-renamed-b8").status == "NEW"
    assert regress.compare(base, cur, allow_new=True).passed


def test_noise_within_the_threshold_passes():
    base = run(bench("sdpa-flash-b8", noisy(1e-3, 0.03, seed=1)))
    cur = run(bench("sdpa-flash-b8", noisy(1.02e-3, 0.03, seed=2)))
    res = regress.compare(base, cur, threshold=0.05)
    assert res.passed, regress.format_result(res)
    assert verdict_of(res, "sdpa-flash-b8").status == "ok"


def test_a_real_ten_percent_slowdown_with_disjoint_samples_fails():
    base = run(bench("sdpa-flash-b8", noisy(1e-3, 0.01, seed=1)))
    cur = run(bench("sdpa-flash-b8", noisy(1.10e-3, 0.01, seed=2)))
    res = regress.compare(base, cur, threshold=0.05, alpha=0.01)
    v = verdict_of(res, "sdpa-flash-b8")
    assert not res.passed and v.status == "REGRESSED"
    assert v.ratio == pytest.approx(1.10, abs=0.01) and v.p < 1e-6
    assert "REGRESSED" in regress.format_result(res) and "regress: FAIL" in regress.format_result(res)


def test_a_median_shift_inside_overlapping_noise_does_not_fail():
    # the median moves by 8 % (more than the threshold) but the two sample sets overlap almost completely
    xs = [1.0 + 0.1 * i for i in range(10)]
    ys = [x * 1.08 for x in xs]
    res = regress.compare(run(bench("flex-b8", [x * 1e-3 for x in xs])), run(bench("flex-b8", [y * 1e-3 for y in ys])),
                          threshold=0.05, alpha=0.01)
    v = verdict_of(res, "flex-b8")
    assert v.ratio == pytest.approx(1.08, abs=0.01) and v.p > 0.01
    assert v.status == "noise" and res.passed


def test_a_significant_shift_below_the_threshold_passes():
    base = run(bench("sdpa-cudnn-b8", noisy(1e-3, 0.002, seed=1)))
    cur = run(bench("sdpa-cudnn-b8", noisy(1.03e-3, 0.002, seed=2)))
    res = regress.compare(base, cur, threshold=0.05)
    assert verdict_of(res, "sdpa-cudnn-b8").p < 1e-6 and res.passed


def test_faster_is_reported_not_failed():
    res = regress.compare(run(bench("fa4-b8", noisy(1e-3, 0.01, seed=1))), run(bench("fa4-b8", noisy(0.8e-3, 0.01))))
    assert res.passed and verdict_of(res, "fa4-b8").status == "faster"


def test_without_raw_timings_there_is_no_significance_test_so_it_fails():
    b = bench("sdpa-flash-b8", noisy(1e-3, 0.01))
    del b["stats"]["data"]
    res = regress.compare(run(b), run(bench("sdpa-flash-b8", noisy(1e-3, 0.01))))
    assert not res.passed and verdict_of(res, "sdpa-flash-b8").status == "NO-DATA"


def test_a_baseline_of_several_runs_judges_each_cell_against_its_middle_run():
    # the day's states: one baseline run 8 % slow, two at the usual speed
    runs = [run(bench("be-b16", noisy(1.08e-3, 0.005, seed=s))) if s == 0 else run(bench("be-b16", noisy(1e-3, 0.005, seed=s)))
            for s in range(3)]
    usual = run(bench("be-b16", noisy(1e-3, 0.005, seed=9)))
    slowed = run(bench("be-b16", noisy(1.08e-3, 0.005, seed=9), slowdown=1.08))
    # against the slow run alone the 8 % slowdown is invisible; against the middle run it is caught
    assert verdict_of(regress.compare(runs[0], slowed), "be-b16").status != "REGRESSED"
    v = verdict_of(regress.compare(runs, slowed), "be-b16")
    assert v.status == "REGRESSED" and len(v.base_run_ms) == 3
    assert v.base_ms == pytest.approx(1.0, rel=0.01) and "middle of 3 baseline runs" in v.note
    assert regress.compare(runs, usual).passed


def test_one_fast_baseline_run_among_three_raises_no_false_alarm():
    runs = [run(bench("cudnn-b8", noisy(0.93e-3 if s == 0 else 1e-3, 0.005, seed=s))) for s in range(3)]
    cur = run(bench("cudnn-b8", noisy(1.0e-3, 0.005, seed=7)))
    assert verdict_of(regress.compare(runs[0], cur), "cudnn-b8").status == "REGRESSED"  # a one-run gate's alarm
    assert regress.compare(runs, cur).passed


def test_of_two_baseline_runs_the_slower_is_the_middle():
    runs = [run(bench("fa4-b8", noisy(c, 0.005, seed=i))) for i, c in enumerate((1.0e-3, 1.1e-3))]
    assert verdict_of(regress.compare(runs, run(bench("fa4-b8", noisy(1.1e-3, 0.005, seed=5)))), "fa4-b8").status == "ok"


def test_every_baseline_run_must_come_from_this_gpu_and_be_free_of_the_hook():
    other = {**MACHINE, "driver": "580.159.04"}
    runs = [run(bench("sdpa-flash-b8", noisy(1e-3, 0.01))), run(bench("sdpa-flash-b8", noisy(1e-3, 0.01)), machine=other)]
    res = regress.compare(runs, run(bench("sdpa-flash-b8", noisy(1e-3, 0.01, seed=3))))
    assert not res.passed and any("driver='580.159.04'" in p for p in res.problems)
    hooked = [run(bench("sdpa-flash-b8", noisy(1e-3, 0.01))), run(bench("sdpa-flash-b8", noisy(1e-3, 0.01), slowdown=1.1))]
    assert any("test hook" in p for p in regress.compare(hooked, run(bench("sdpa-flash-b8", noisy(1e-3, 0.01)))).problems)


def test_the_newest_baseline_set_is_the_runs_of_one_stamp(tmp_path):
    machine = tmp_path / "Linux-CPython-3.12-64bit"
    machine.mkdir()
    names = ["0001_baseline.json", "0002_baseline-20261207T120000Z.json", "0003_baseline-20261207T120000Z.json",
             "0004_baseline-20261207T130000Z.json", "0005_baseline-20261207T130000Z.json",
             "0006_baseline-20261207T130000Z.json"]
    for i, n in enumerate(names):
        (machine / n).write_text("{}")
        os.utime(machine / n, (1000 + i, 1000 + i))
    assert [p.name for p in regress.find_baselines(tmp_path)] == names[3:]
    (machine / names[0]).touch()  # an older single-file baseline recorded again is a set of one
    assert [p.name for p in regress.find_baselines(tmp_path)] == names[:1]


def test_another_gpu_or_driver_fails():
    other = {**MACHINE, "driver": "580.00.00"}
    res = regress.compare(run(bench("sdpa-flash-b8", noisy(1e-3, 0.01))),
                          run(bench("sdpa-flash-b8", noisy(1e-3, 0.01)), machine=other))
    assert not res.passed and "machine mismatch: baseline driver='570.124.06'" in res.problems[0]


def test_a_baseline_recorded_with_the_test_hook_fails():
    res = regress.compare(run(bench("sdpa-flash-b8", noisy(1e-3, 0.01), slowdown=1.1)),
                          run(bench("sdpa-flash-b8", noisy(1e-3, 0.01))))
    assert not res.passed and "FLASHCORE_SLOWDOWN test hook active" in res.problems[0]


def test_nothing_compared_fails():
    res = regress.compare(run(bench("a-b8", noisy(1e-3, 0.01))), run(bench("b-b8", noisy(1e-3, 0.01))), allow_new=True)
    assert not res.passed and "nothing was compared" in res.problems[-1]


def test_the_command_line_exit_codes(tmp_path, capsys):
    base = tmp_path / "results" / "Linux-CPython-3.12-64bit" / "0001_baseline.json"
    base.parent.mkdir(parents=True)
    base.write_text(json.dumps(run(bench("sdpa-flash-b8", noisy(1e-3, 0.01, seed=1)))))
    same, slow = tmp_path / "same.json", tmp_path / "slow.json"
    same.write_text(json.dumps(run(bench("sdpa-flash-b8", noisy(1e-3, 0.01, seed=2)))))
    slow.write_text(json.dumps(run(bench("sdpa-flash-b8", noisy(1.1e-3, 0.01, seed=2), slowdown=1.1))))
    storage = ["--storage", str(tmp_path / "results")]
    assert regress.main([*storage, "--current", str(same)]) == 0  # baseline found in storage
    assert "regress: PASS" in capsys.readouterr().out
    report = tmp_path / "verdict.json"
    assert regress.main(["--baseline", str(base), "--current", str(slow), "--report", str(report)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "FLASHCORE_SLOWDOWN hook ×1.1 active" in out
    assert json.loads(report.read_text())["cells"][0]["status"] == "REGRESSED"
    assert regress.main(["--baseline", str(tmp_path / "nope.json"), "--current", str(same)]) == 2
    assert "regress: error:" in capsys.readouterr().err
    assert regress.main(["--storage", str(tmp_path / "empty"), "--current", str(same)]) == 2
    assert "no baseline" in capsys.readouterr().err
    assert regress.main([*storage, "--print-baseline"]) == 0 and capsys.readouterr().out.strip() == str(base)
    second = base.with_name("0002_baseline.json")
    second.write_text(base.read_text())
    assert regress.main(["--baseline", str(base), str(second), "--current", str(same)]) == 0
    assert capsys.readouterr().out.count("baseline: ") == 2
    (tmp_path / "notbench.json").write_text("{}")
    assert regress.main(["--baseline", str(base), "--current", str(tmp_path / "notbench.json")]) == 2


def test_storage_is_keyed_by_gpu_and_driver(monkeypatch):
    monkeypatch.setenv(regress.SLUG_ENV, "NVIDIA H100 80GB HBM3-570.124.06")
    assert regress.storage_dir() == Path("results/benchmarks/nvidia-h100-80gb-hbm3-570.124.06")


@pytest.mark.parametrize(("factor", "calls", "want"), [(1.10, 10, 11), (1.10, 100, 110), (1.25, 40, 50), (2.0, 3, 6)])
def test_the_slowdown_hook_adds_exactly_its_fraction_of_calls(factor, calls, want):
    n = []
    slowed = regress.Slowed(lambda: n.append(1) or "out", factor)
    outs = [slowed() for _ in range(calls)]
    assert len(n) == want and slowed.calls == want and outs == ["out"] * calls


def test_slowdown_specs():
    assert regress.parse_slowdown("sdpa-flash=1.10, flex=1.5") == {"sdpa-flash": 1.1, "flex": 1.5}
    assert regress.parse_slowdown("") == {}
    for bad in ("sdpa-flash", "sdpa-flash=fast", "sdpa-flash=0.9", "=1.1"):
        with pytest.raises(regress.RegressError, match="BACKEND=FACTOR"):
            regress.parse_slowdown(bad)


@pytest.mark.slow
def test_end_to_end_with_real_pytest_benchmark_output(tmp_path):
    """pytest-benchmark's own files (CPU cells): a renamed/removed cell is not silently ignored."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "FLASHCORE_BENCH_DEVICE": "cpu", "FLASHCORE_BENCH_ROUNDS": "3",
           "FLASHCORE_BENCH_ROUND_MS": "0.5"}
    env.pop(regress.SLOWDOWN_ENV, None)
    storage = tmp_path / "store"

    def pytest_bench(backends, *args):
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks",
                              "--benchmark-only", f"--benchmark-storage=file://{storage}", *args],
                             cwd=root, env={**env, "FLASHCORE_BENCH_BACKENDS": backends},
                             capture_output=True, text=True, timeout=600, check=False)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res

    pytest_bench("sdpa-math,naive", "--benchmark-save=baseline", "--benchmark-save-data")
    [baseline] = storage.glob("*/0001_baseline.json")
    data = json.loads(baseline.read_text())
    assert {"gpu", "driver", "torch", "cuda", "packages", "storage_slug"} <= set(data["machine_info"])
    b = data["benchmarks"][0]
    assert b["stats"]["data"] and b["extra_info"]["backend"] in ("sdpa-math", "naive")
    assert b["extra_info"]["iterations"] % 10 == 0 and b["extra_info"]["tflops"] > 0
    current = tmp_path / "cur.json"
    pytest_bench("sdpa-math,warp-drive", f"--benchmark-json={current}")
    cur = json.loads(current.read_text())
    assert next(s["reason"] for s in cur["flashcore"]["skipped"]).startswith("unknown backend 'warp-drive'")
    res = regress.compare(data, cur, threshold=0.99)  # CPU timings: only the bookkeeping is under test
    statuses = {v.label.split()[0]: v.status for v in res.verdicts}
    assert statuses == {"sdpa-math": "ok", "naive": "MISSING"} and not res.passed
