"""Where each typed observation of a cell's report lands in the stored row (``harness.analysis.record``,
applied by ``verdict.to_result``): its columns, its keys of ``extra``, in the order the cell was measured.
The database, exports and views read these names."""
from __future__ import annotations

import pytest

from harness.analysis.record import record
from harness.analysis.verdict import to_result
from harness.records.observations import (
    Binding,
    CorrectnessObservation,
    DeterminismObservation,
    Ending,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    KernelTime,
    KernelTrace,
    NvmlClocks,
    SettleWindow,
    SmClockReading,
    SustainedDetails,
    SustainedGate,
    TimingObservation,
)
from harness.records.report import CellReport, TamperCheck
from harness.records.result import Result
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
                          clocks_after=NvmlClocks.of(CLOCKS), settle=SettleWindow(samples_ms=[1.5, 1.4, 1.3, 1.2]))


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
        "clocks_after": CLOCKS, "timed_worst_err_over_tol": 0.5, "settle_calls": 4, "settle_first_ms": 1.4,
        "settle_last_ms": 1.3, "cell_seconds": 3.142, "binding_distribution": "large_logits",
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


def _timing_extra(**fields) -> dict:
    """The keys of ``extra`` a timing observation fills, alone in its row."""
    res = Result.for_problem("r", "s", "b", P, "ok")
    obs = TimingObservation(samples_ms=[1.0], method="m", stop_reason="", synced_ms=[], wall_ms=[], enqueue_ms=0.0123456789,
                            tare_ms=0.0, **{"worst_err_over_tol": 0.25, **fields})
    record(obs, res)
    return res.extra


def _same(got: dict, expected: dict) -> None:
    assert got == expected and list(got) == list(expected)


def test_an_isolated_timing_on_a_gpu_records_its_throttling_clocks_and_probes_in_order():
    got = _timing_extra(throttled_ms={"power": 0.0, "thermal": 1.25}, timing_s=0.3004567,
                        clocks_after=NvmlClocks.of(CLOCKS), settle=SettleWindow(samples_ms=[1.4, 1.3, 1.25, 1.2, 1.1]),
                        clock=SmClockReading(mhz=[1975.3333, 1980.04, 1962.55], hold_ms=0.612345678),
                        kernel_clock=KernelTime(per_call_ms=[0.91234567, 0.9, 0.95], kernels_per_call=[1, 2, 1],
                                                names=[f"k{i}" for i in range(25)]))
    _same(got, {"throttled_ms": {"power": 0.0, "thermal": 1.25}, "timing_s": 0.3, "clocks_after": CLOCKS,
                "timed_worst_err_over_tol": 0.25, "settle_calls": 5, "settle_first_ms": 1.3, "settle_last_ms": 1.2,
                "hold_ms": 0.6123, "sm_mhz": 1975.3, "sm_mhz_min": 1962.5, "sm_mhz_samples": [1975.3, 1980.0, 1962.5],
                "kernel_ms": 0.91234567, "kernel_samples_ms": [0.912346, 0.9, 0.95], "kernels_per_call": 2,
                "kernel_clock_names": [f"k{i}" for i in range(20)]})


def test_an_isolated_timing_without_a_clock_reading_or_nvml_keeps_the_hold_and_nulls():
    got = _timing_extra(throttled_ms=None, timing_s=1.0, clocks_after=NvmlClocks.of(None),
                        settle=SettleWindow(samples_ms=[]), clock=SmClockReading(mhz=[], hold_ms=0.05))
    _same(got, {"throttled_ms": None, "timing_s": 1.0, "clocks_after": None, "timed_worst_err_over_tol": 0.25,
                "settle_calls": 0, "hold_ms": 0.05})


def test_a_clock_reading_in_error_keeps_its_suspect_reading_and_a_kernel_clock_its_error():
    error = "the SM clock reads 2175.8 MHz, above the GPU's maximum"
    got = _timing_extra(throttled_ms={"power": 2.5, "thermal": 0.0}, timing_s=0.25,
                        clocks_after=NvmlClocks.of({"error": "Not Supported"}), settle=SettleWindow(samples_ms=[2.0]),
                        clock=SmClockReading(mhz=[], hold_ms=0.6, error=error, suspect=2175.8123),
                        kernel_clock=KernelTime(error="no kernels seen"))
    _same(got, {"throttled_ms": {"power": 2.5, "thermal": 0.0}, "timing_s": 0.25,
                "clocks_after": {"error": "Not Supported"}, "timed_worst_err_over_tol": 0.25, "settle_calls": 1,
                "settle_first_ms": 2.0, "settle_last_ms": 2.0, "hold_ms": 0.6, "sm_mhz_error": error,
                "sm_mhz_suspect": 2175.8, "kernel_clock_error": "no kernels seen"})
    no_suspect = _timing_extra(clock=SmClockReading(mhz=[], hold_ms=0.6, error="no reading"))
    _same(no_suspect, {"timed_worst_err_over_tol": 0.25, "hold_ms": 0.6, "sm_mhz_error": "no reading"})


def test_a_timing_on_the_cpu_records_neither_throttling_nor_its_seconds():
    got = _timing_extra(clocks_after=NvmlClocks.of(None), settle=SettleWindow(samples_ms=[]),
                        clock=SmClockReading(mhz=[], hold_ms=0.0))
    _same(got, {"clocks_after": None, "timed_worst_err_over_tol": 0.25, "settle_calls": 0, "hold_ms": 0.0})


SUSTAINED = SustainedDetails(sets=5, set_bytes=50331648, l2_bytes=52428800, covers_l2=True, warmup_calls=40, calls=400,
                             window_ms=150.123456, batch_mean_ms=0.45, lead=12, probe_ms=0.41234567891)


def test_a_sustained_timing_records_its_rotation_window_and_probe():
    got = _timing_extra(throttled_ms={"power": 0.0, "thermal": 0.0}, timing_s=0.2512345,
                        clocks_after=NvmlClocks.of(CLOCKS), sustained=SUSTAINED)
    assert not SUSTAINED.host_bound
    _same(got, {"throttled_ms": {"power": 0.0, "thermal": 0.0}, "timing_s": 0.251, "clocks_after": CLOCKS,
                "timed_worst_err_over_tol": 0.25, "sustained_sets": 5, "sustained_set_bytes": 50331648,
                "l2_bytes": 52428800, "sustained_covers_l2": True, "sustained_warmup_calls": 40,
                "sustained_calls": 400, "sustained_window_ms": 150.123456, "sustained_batch_mean_ms": 0.45,
                "sustained_lead": 12, "sustained_host_bound": False, "sustained_probe_ms": 0.412346,
                "sustained_enqueue_ms": 0.012346})


def test_a_gated_sustained_timing_records_its_gate_first():
    gated = SUSTAINED.model_copy(update={"covers_l2": False, "lead": 16,
                                        "gate": SustainedGate(batch=16, gate_ms=0.93456789)})
    got = _timing_extra(throttled_ms=None, timing_s=0.3, clocks_after=NvmlClocks.of(None), sustained=gated)
    _same(got, {"sustained_gated": True, "sustained_gate_ms": 0.9346, "sustained_batch": 16, "throttled_ms": None,
                "timing_s": 0.3, "clocks_after": None, "timed_worst_err_over_tol": 0.25, "sustained_sets": 5,
                "sustained_set_bytes": 50331648, "l2_bytes": 52428800, "sustained_covers_l2": False,
                "sustained_warmup_calls": 40, "sustained_calls": 400, "sustained_window_ms": 150.123456,
                "sustained_batch_mean_ms": 0.45, "sustained_lead": 16, "sustained_host_bound": True,
                "sustained_probe_ms": 0.412346, "sustained_enqueue_ms": 0.012346})


def test_a_host_bound_cell_replayed_as_a_graph_records_its_batch_and_is_not_gated():
    replayed = SUSTAINED.model_copy(update={"graph_batch": 25})
    assert replayed.host_bound
    got = _timing_extra(throttled_ms=None, timing_s=0.3, clocks_after=NvmlClocks.of(None), sustained=replayed)
    assert got["sustained_graph_batch"] == 25 and got["sustained_host_bound"] is True
    assert "sustained_gated" not in got and "sustained_graph_error" not in got


def test_a_capture_that_failed_is_recorded_beside_the_gate_it_fell_back_to():
    fell_back = SUSTAINED.model_copy(update={"gate": SustainedGate(batch=16, gate_ms=0.5),
                                            "graph_error": "RuntimeError: operation not permitted when stream is capturing"})
    got = _timing_extra(throttled_ms=None, timing_s=0.3, clocks_after=NvmlClocks.of(None), sustained=fell_back)
    assert got["sustained_gated"] is True and "sustained_graph_batch" not in got
    assert got["sustained_graph_error"].startswith("RuntimeError: operation not permitted")


def test_a_failure_reply_is_a_failed_row_with_one_line_of_reason_and_the_whole_text():
    row = _row(WorkerFailure(error="RuntimeError: CUDA error: misaligned address\nmore", traceback="Traceback...",
                             fatal=True))
    assert (row.status, row.passed) == ("failed", False)
    assert row.reason == "CUDA error (worker restarted): RuntimeError: CUDA error: misaligned address"
    assert row.error_text == "Traceback..." and row.extra == {"cell_seconds": 3.142}
    lost = _row(WorkerFailure(error="worker lost: node died", crashed=True))
    assert lost.reason == "worker lost: node died" and lost.error_text == "worker lost: node died"
