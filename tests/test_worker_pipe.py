"""The worker pipe carries typed records both ways (CPU, a real worker process): the supervisor sends a job
per kind, the worker answers a cell with a ``CellReport`` of the stages' own observations, anything else
with its reply type, and a job that raised with a ``WorkerFailure``. The records pickle and rebuild from
JSON unchanged, and the supervisor alone turns a report into the stored row."""
from __future__ import annotations

import pickle

import pytest

from harness.analysis.verdict import to_result
from harness.records.observations import (
    CorrectnessObservation,
    DeterminismObservation,
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    NvmlClocks,
    TimingObservation,
)
from harness.records.report import CellReport
from harness.run.jobs import CellJob, EnvJob, PeakJob
from harness.run.plan import Cell
from harness.run.replies import EnvReply, PeakReply, Ready, WorkerFailure, ends_worker
from harness.run.supervisor import Worker
from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing
from harness.testing import EXPLOITS, FAULTS, registered

P = Problem(batch=1, heads_q=2, heads_kv=1, seqlen_q=16, seqlen_k=24, head_dim=8, dtype="float32", causal=True)
FAULTING = P.with_(seqlen_q=1024, seqlen_k=1024)  # the faulty backends fault from seqlen 1024 on
QUICK = Timing(min_samples=3, max_samples=3, time_cap_s=0.05, min_time_s=0.0, warmup=1)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    with registered(EXPLOITS, FAULTS):  # a worker reads the registered backends as it starts
        w = Worker(tmp_path_factory.mktemp("logs"))
        w.start()
        yield w
        w.stop()


def _job(backend: str, problem: Problem = P) -> CellJob:
    return CellJob(backend=backend, problem=problem, checks=Checks(), timing=QUICK)


def test_a_cell_comes_back_as_a_report_of_the_stages_own_observations(worker):
    report = worker.request(_job("naive"), 120)
    assert isinstance(report, CellReport) and report.status == "ok", report
    assert [type(o) for o in report.observations] == [CorrectnessObservation, DeterminismObservation,
                                                      TimingObservation]
    assert isinstance(report.clocks_before, NvmlClocks) and report.tamper is None and report.metrics == {}
    checked, timed = report.get(CorrectnessObservation), report.get(TimingObservation)
    assert checked.passed and report.get(DeterminismObservation).deterministic
    assert len(timed.samples_ms) == 3 and timed.outputs_ok and timed.method.startswith("cpu")
    # the timing's probes come typed: on the CPU a settle window and a clock reading with no clock in it
    assert timed.settle is not None and timed.clock is not None and not timed.clock.mhz
    assert isinstance(timed.clocks_after, NvmlClocks) and timed.timing_s is None and timed.sustained is None
    assert worker.alive()  # an honest cell leaves its worker for the next one


def test_a_backward_cell_reports_the_gradient_observations(worker):
    report = worker.request(_job("reference", P.with_(op="bwd")), 120)
    assert report.status == "ok", report.reason
    assert [type(o) for o in report.observations] == [GradientCorrectnessObservation,
                                                      GradientDeterminismObservation, TimingObservation]
    assert set(report.get(GradientCorrectnessObservation).per_output) == {"dq", "dk", "dv"}


def test_a_report_survives_pickle_and_json_unchanged(worker):
    report = worker.request(_job("naive"), 120)
    again = pickle.loads(pickle.dumps(report))
    assert again == report and [type(o) for o in again.observations] == [type(o) for o in report.observations]
    assert CellReport.model_validate_json(report.model_dump_json()) == report
    job = _job("naive", P.with_(op="fwd_bwd"))
    assert pickle.loads(pickle.dumps(job)) == job and pickle.loads(pickle.dumps(job)).problem == job.problem


def test_the_supervisor_reads_the_report_into_the_stored_row(worker):
    report = worker.request(_job("naive"), 120)
    row = to_result("r", "s", Cell("naive", P), report, None, 2.0)
    checked, timed = report.get(CorrectnessObservation), report.get(TimingObservation)
    assert (row.status, row.passed, row.deterministic, row.timed_outputs_ok) == ("ok", True, True, True)
    assert row.max_abs_err == checked.binding.max_abs_err and row.tolerance == checked.binding.tolerance
    assert row.torch_max_abs_err == checked.binding.torch_err and row.seed_bounds_ok == checked.seed_bounds_ok
    assert row.determinism_runs == report.get(DeterminismObservation).runs
    assert row.timing_method == timed.method and row.n_samples == 3
    # extra in the order the cell was measured: the clocks, the checks, the timing, then the supervisor's own
    assert list(row.extra)[:2] == ["clocks_before", "per_distribution"]
    assert row.extra["clocks_before"] == report.clocks_before.as_stored()
    assert row.extra["samples_ms"] == [round(x, 6) for x in timed.samples_ms]
    assert list(row.extra)[-9:] == ["cell_seconds", "binding_distribution", "samples_ms", "event_tare_ms",
                                    "round_sizes", "round_tares_ms", "raw_median_ms", "synced_ms", "enqueue_ms"]


def test_the_environment_and_the_peaks_have_replies_of_their_own(worker):
    assert isinstance(worker.ready, Ready) and worker.ready.device == "cpu" and worker.ready.gpu.name == "cpu"
    env = worker.request(EnvJob(), 120)
    assert isinstance(env, EnvReply) and env.device == "cpu" and env.env
    assert worker.request(PeakJob(), 120) == PeakReply(peak=None)  # no peaks on the CPU


def test_a_job_that_raises_is_a_failure_reply_and_the_worker_goes_on(worker):
    failure = worker.request(_job("no-such-backend"), 120)
    assert isinstance(failure, WorkerFailure) and "no-such-backend" in failure.error
    assert "Traceback" in failure.traceback and not (failure.oom or failure.fatal or failure.restart)
    assert not ends_worker(failure) and worker.alive()
    row = to_result("r", "s", Cell("no-such-backend", P), failure, None, 1.0)
    assert row.status == "failed" and row.reason == failure.reason and row.error_text == failure.traceback[-4000:]


def test_running_out_of_memory_is_a_failure_the_worker_survives(worker):
    failure = worker.request(_job("fault-oom", FAULTING), 120)
    assert isinstance(failure, WorkerFailure) and failure.oom and not failure.fatal
    assert failure.reason.startswith("out of memory: ") and not ends_worker(failure) and worker.alive()


def test_a_cuda_error_is_a_fatal_failure_and_its_worker_exits(worker):
    failure = worker.request(_job("fault-illegal-address", FAULTING), 120)  # simulated on the CPU
    assert isinstance(failure, WorkerFailure) and failure.fatal and ends_worker(failure)
    assert failure.reason.startswith("CUDA error (worker restarted): ") and not worker.alive()


def test_a_tampered_cell_is_rejected_with_what_it_said_kept_and_its_worker_retired(worker):
    report = worker.request(_job("exploit-patch-harness"), 120)
    assert report.status == "rejected" and "tampered with the harness" in report.reason
    assert "harness.measure.correctness.passes" in report.tamper.replaced and report.restart
    assert not worker.alive()  # the patch must not reach the next cell
    row = to_result("r", "s", Cell("exploit-patch-harness", P), report, None, 1.0)
    assert row.extra["status_before_tamper_check"] == [report.tamper.status_before, report.tamper.reason_before]
    assert worker.request(_job("naive"), 120).status == "ok"  # a fresh worker takes the next job
