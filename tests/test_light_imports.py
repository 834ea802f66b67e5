"""The command line and the supervisor start without torch and plotly: each entry point is imported in a
fresh interpreter and the modules it pulled in are checked. A control proves the probe sees an import."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "plotly")

#: entry point -> (code run in a fresh interpreter, modules it must really have imported)
ENTRY_POINTS = {
    "import harness.cli": ("import harness.cli", ["harness.cli", "harness.cli.run", "harness.cli.report"]),
    "build the app": ("import typer; from harness.cli import app; typer.main.get_command(app)",
                      ["harness.cli", "harness.cli.errors"]),
    "flashcore --help": (
        "import sys; from harness.cli import app; sys.argv = ['flashcore', '--help']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code == 0, e.code",
        ["harness.cli"]),
    "flashcore run --help": (
        "import sys; from harness.cli import app; sys.argv = ['flashcore', 'run', '--help']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code == 0, e.code",
        ["harness.cli.run"]),
    "the supervisor": ("import harness.run.supervisor", ["harness.run.supervisor", "harness.run.plan",
                                                         "harness.spec.suite", "harness.run.jobs",
                                                         "harness.records.report", "harness.analysis.record"]),
    "the plan": ("import harness.run.plan", ["harness.run.plan"]),
    "the executors and shards": ("import harness.run.executors.local, harness.run.executors.ray, harness.run.shards",
                                 ["harness.run.executors.local", "harness.run.executors.ray", "harness.run.shards"]),
    "the suite": ("import harness.spec.suite", ["harness.spec.suite", "harness.spec.distributions"]),
    "the backend registry": ("from harness.backends import registry",
                             ["harness.backends.registry"]),
}


def imported_after(code: str) -> set[str]:
    """The top-level and dotted names in sys.modules after ``code`` ran in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_an_entry_point_imports_neither_torch_nor_plotly(name):
    code, expected = ENTRY_POINTS[name]
    mods = imported_after(code)
    missing = [m for m in expected if m not in mods]
    assert not missing, f"{name}: the probe did not import {missing}: it tests nothing"
    for heavy in HEAVY:
        assert heavy not in mods, f"{name} imports {heavy}"


def test_a_cells_report_is_read_back_without_torch():
    # what a worker sends over the pipe, its timing probes included: the supervisor unpickles it without
    # importing torch
    import pickle

    from harness.records import observations as o
    from harness.records.report import CellReport

    sustained = o.SustainedDetails(sets=3, set_bytes=1, l2_bytes=1, covers_l2=True, warmup_calls=1, calls=2,
                                   window_ms=1.0, batch_mean_ms=1.0, lead=2, probe_ms=1.0,
                                   gate=o.SustainedGate(batch=8, gate_ms=0.5))
    report = CellReport(observations=[
        o.CorrectnessObservation(per_distribution={}, weak_distributions={}, backend_metrics={}, passed=True),
        o.TimingObservation(samples_ms=[1.0], method="cuda-events", stop_reason="", synced_ms=[], wall_ms=[],
                            enqueue_ms=0.0, tare_ms=0.0, worst_err_over_tol=0.0, throttled_ms={"power": 0.0},
                            timing_s=1.0, clocks_after=o.NvmlClocks(sm_mhz=1980),
                            settle=o.SettleWindow(samples_ms=[1.0]), clock=o.SmClockReading(mhz=[1980.0], hold_ms=0.5),
                            kernel_clock=o.KernelTime(per_call_ms=[0.9]), sustained=sustained)])
    code = (f"import pickle; r = pickle.loads(bytes.fromhex({pickle.dumps(report).hex()!r}))\n"
            "assert type(r).__name__ == 'CellReport' and len(r.observations) == 2")
    mods = imported_after(code)
    assert "harness.records.observations" in mods and "torch" not in mods


def test_the_probe_sees_a_heavy_import():
    # the control: a module that does need torch is seen to import it
    assert "torch" in imported_after("import harness.measure.inputs")


def test_flashcore_run_imports_no_plotly(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('[suite]\nname = "tiny"\nbackends = ["reference"]\n[[grid]]\nbatch = 1\nheads_q = 1\n'
                     'seqlen_q = 8\nhead_dim = 8\ndtype = "float32"\n[timing]\nmin_samples = 3\nmax_samples = 3\n'
                     'time_cap_s = 0.05\nmin_time_s = 0\nwarmup = 1\n')
    code = ("import sys; from harness.cli import app; "
            f"sys.argv = ['flashcore', 'run', '--suite', {str(suite)!r}, '--db', {str(tmp_path / 'r.db')!r}]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert e.code == 0, e.code")
    mods = imported_after(code)
    assert "harness.run.supervisor" in mods
    assert "plotly" not in mods
