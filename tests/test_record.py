"""Where each typed observation of a cell's report lands in the stored row (``harness.analysis.record``,
applied by ``verdict.to_result``): its columns, its keys of ``extra``, in the order the cell was measured.
The database, exports and views read these names."""
from __future__ import annotations

import pytest

from harness.analysis.verdict import to_result
from harness.records.observations import (
    Binding,
    CorrectnessObservation,
    DeterminismObservation,
    Ending,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    KernelTrace,
    NvmlClocks,
    TimingObservation,
)
from harness.records.report import CellReport, TamperCheck
from harness.run.plan import Cell
from harness.run.replies import WorkerFailure
from harness.spec.problem import Problem

P = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=8, dtype="bfloat16")
CLOCKS = {"sm_mhz": 1980, "mem_mhz": 2619, "sm_max_mhz": 1980, "temp_c": 41, "power_w": 118.5, "throttle": []}
BINDING = Binding(max_abs_err=0.002, mean_abs_err=0.0001, rel_l2_err=0.003, nan_count=0, inf_count=0,
                  tolerance=0.01, torch_err=0.0015, binding_distribution="large_logits")
TRACE = KernelTrace(kernels_launched=["k"], ops_called=["aten::bmm"])
TIMED = TimingObservation(samples_ms=[1.0, 1.2, 1.1], method="cuda-events+hold", stop_reason="noise", synced_ms=[1.1],
                          wall_ms=[1.3, 1.5], enqueue_ms=0.02, tare_ms=0.1, worst_err_over_tol=0.5,
                          extra={"clocks_after": CLOCKS, "settle_calls": 4})


def _row(report):
    return to_result("r", "s", Cell("b", P), report, None, 3.14159)


def test_a_forward_cell_fills_its_columns_and_extra_in_the_order_it_was_measured():
    checked = CorrectnessObservation(per_distribution={"normal": {"max_abs": 0.001}}, kernel_trace=TRACE,
                                     weak_distributions={"uniform": "null output(s) zeros pass"},
                                     backend_metrics={"compile_s": 2.5}, binding=BINDING, seed_bounds_ok=True,
                                     passed=True)
    report = CellReport(clocks_before=NvmlClocks.of(CLOCKS), observations=[
        checked, DeterminismObservation(runs=4, mismatches=0), TIMED])
    row = _row(report)
    assert (row.max_abs_err, row.mean_abs_err, row.rel_l2_err, row.nan_count, row.inf_count, row.tolerance,
            row.torch_max_abs_err, row.seed_bounds_ok, row.passed) == (0.002, 0.0001, 0.003, 0, 0, 0.01, 0.0015,
                                                                      True, True)
    assert (row.determinism_runs, row.determinism_mismatches, row.deterministic) == (4, 0, True)
    assert (row.timing_method, row.stop_reason, row.timed_outputs_ok) == ("cuda-events+hold", "noise", True)
    assert row.median_ms == pytest.approx(1.0) and row.n_samples == 3 and row.wall_ms_per_call == pytest.approx(1.4)
    assert row.dq_max_err is None
    expected = {
        "clocks_before": CLOCKS, "kernels_launched": ["k"], "ops_called": ["aten::bmm"],
        "per_distribution": {"normal": {"max_abs": 0.001}}, "compile_s": 2.5,
        "weak_distributions": {"uniform": "null output(s) zeros pass"},
        "clocks_after": CLOCKS, "settle_calls": 4, "cell_seconds": 3.142, "binding_distribution": "large_logits",
        "samples_ms": [1.0, 1.2, 1.1], "event_tare_ms": 0.1, "round_sizes": [3], "round_tares_ms": [0.1],
        "raw_median_ms": 1.1, "synced_ms": [1.1], "enqueue_ms": 0.02}
    assert row.extra == expected and list(row.extra) == list(expected)  # the order is part of the stored JSON


def test_a_backward_cell_fills_the_gradient_columns():
    per_output = {name: {"max_abs": e, "rel_l2": rel, "tolerance": 0.01} for name, e, rel in
                  (("o", 0.001, 0.01), ("dq", 0.002, 0.02), ("dk", 0.003, 0.03), ("dv", 0.004, 0.04))}
    grads = GradientCorrectnessObservation(per_output=per_output, per_distribution={}, weak_distributions={},
                                           backend_metrics={}, binding=BINDING, binding_output="dv", passed=True)
    det = GradientDeterminismObservation(runs=3, repeats=2, mismatches=1, per_output={"dq": 1, "dk": 0, "dv": 0})
    row = _row(CellReport(observations=[grads, det]))
    assert (row.dq_max_err, row.dk_max_err, row.dv_max_err) == (0.002, 0.003, 0.004)
    assert (row.dq_rel_l2_err, row.dk_rel_l2_err, row.dv_rel_l2_err) == (0.02, 0.03, 0.04)
    assert row.seed_bounds_ok is None and row.deterministic is False and row.determinism_mismatches == 1
    assert row.extra["per_output"] == per_output and row.extra["binding_output"] == "dv"
    assert row.extra["determinism_per_output"] == {"dq": {"deterministic": False, "differ": 1, "of": 2},
                                                   "dk": {"deterministic": True, "differ": 0, "of": 2},
                                                   "dv": {"deterministic": True, "differ": 0, "of": 2}}
    assert "samples_ms" not in row.extra and row.median_ms is None


def test_what_a_verdict_carried_is_kept_and_the_status_decides_passed():
    rejected = CellReport(status="rejected", reason="launched library attention", observations=[TRACE])
    row = _row(rejected)
    assert (row.status, row.reason, row.passed) == ("rejected", "launched library attention", False)
    assert row.extra == {"kernels_launched": ["k"], "ops_called": ["aten::bmm"], "cell_seconds": 3.142}
    failed = CellReport(status="failed", reason="too far off", observations=[CorrectnessObservation(
        per_distribution={}, weak_distributions={}, backend_metrics={}, binding=BINDING, seed_bounds_ok=False,
        passed=False, fail_reason="too far off", ending=Ending(status="failed", reason="too far off"))])
    assert _row(failed).passed is False and "fail_reason" not in _row(failed).extra
    skipped = _row(CellReport(status="skipped", reason="no GPU"))
    assert skipped.passed is None and skipped.extra == {"cell_seconds": 3.142}


def test_the_clocks_as_nvml_gave_them_and_a_tampered_cells_earlier_verdict():
    assert _row(CellReport(clocks_before=NvmlClocks.of(None))).extra["clocks_before"] is None  # no NVML
    no_query = NvmlClocks.of({"error": "Not Supported"})
    assert _row(CellReport(clocks_before=no_query)).extra["clocks_before"] == {"error": "Not Supported"}
    tampered = CellReport(status="rejected", reason="tampered with the harness: replaced x",
                          tamper=TamperCheck(replaced=["x"], status_before="ok", reason_before=""))
    assert _row(tampered).extra["status_before_tamper_check"] == ["ok", ""]


def test_a_failure_reply_is_a_failed_row_with_one_line_of_reason_and_the_whole_text():
    row = _row(WorkerFailure(error="RuntimeError: CUDA error: misaligned address\nmore", traceback="Traceback...",
                             fatal=True))
    assert (row.status, row.passed) == ("failed", False)
    assert row.reason == "CUDA error (worker restarted): RuntimeError: CUDA error: misaligned address"
    assert row.error_text == "Traceback..." and row.extra == {"cell_seconds": 3.142}
    lost = _row(WorkerFailure(error="worker lost: node died", crashed=True))
    assert lost.reason == "worker lost: node died" and lost.error_text == "worker lost: node died"
