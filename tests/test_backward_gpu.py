"""The backward on the GPU: every library backward passes its gradients or is skipped with the library's
reason, is timed with every timed gradient checked, in both timing modes; the deterministic variants are
bit-reproducible; a fast wrong backward is caught (needs a CUDA GPU)."""
from __future__ import annotations

import pytest

from harness.measure.cell import ProblemCache, measure_cell
from harness.records.observations import (
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    TimingObservation,
)
from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing

pytestmark = pytest.mark.gpu

LIBRARY = ["sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa-math", "flex", "fa2", "fa3", "fa4",
           "sdpa-flash-det", "sdpa-efficient-det", "fa2-det", "fa3-det", "fa4-det", "cudnn-frontend",
           "cudnn-frontend-det"]
T = Timing(time_cap_s=0.2, min_time_s=0.05, max_samples=50)
PROBLEMS = [
    Problem(batch=2, heads_q=8, seqlen_q=1024, head_dim=128, causal=True),
    Problem(batch=2, heads_q=8, heads_kv=2, seqlen_q=384, seqlen_k=512, head_dim=64, causal=True),  # GQA, Sq != Sk
]


@pytest.fixture(scope="module")
def flusher():
    from harness.measure.timing.l2 import L2Flusher

    return L2Flusher()


@pytest.mark.parametrize("op", ["bwd", "fwd_bwd"])
@pytest.mark.parametrize("backend", LIBRARY)
def test_a_library_backward_passes_and_is_timed_or_is_skipped_with_its_reason(backend, op, flusher):
    cache = ProblemCache()
    for p in PROBLEMS:
        report = measure_cell(backend, p.with_(op=op), Checks(distributions=("normal", "large_logits")), T, "cuda",
                              cache, flusher)
        if report.status == "skipped":
            assert report.reason and "\n" not in report.reason
            continue
        assert report.status == "ok", (p.key(), report.reason)
        grads, timed = report.get(GradientCorrectnessObservation), report.get(TimingObservation)
        assert grads.passed and timed.outputs_ok, report
        assert timed.method.startswith("cuda-events")
        assert {"dq", "dk", "dv"} <= set(report.get(GradientDeterminismObservation).per_output)
        for name in ("dq", "dk", "dv"):
            assert grads.per_output[name]["max_abs"] <= grads.per_output[name]["tolerance"]


@pytest.mark.parametrize("backend", ["sdpa-flash-det", "sdpa-efficient-det", "fa4-det", "cudnn-frontend-det"])
def test_the_deterministic_variants_are_bit_reproducible(backend, flusher):
    p = Problem(batch=2, heads_q=8, seqlen_q=2048, head_dim=128, op="bwd")
    report = measure_cell(backend, p, Checks(determinism_runs=20, require_deterministic=True),
                          Timing(enabled=False), "cuda", ProblemCache(), flusher)
    if report.status == "skipped":
        pytest.skip(report.reason)
    assert report.status == "ok" and report.get(GradientDeterminismObservation).deterministic, report.reason


def test_the_sustained_mode_times_a_backward(flusher):
    p = Problem(batch=4, heads_q=16, seqlen_q=2048, head_dim=128, op="bwd")
    report = measure_cell("sdpa-flash", p, Checks(), T, "cuda", ProblemCache(), flusher, timing_mode="sustained")
    assert report.status == "ok", report.reason
    timed = report.get(TimingObservation)
    assert timed.outputs_ok and timed.method.startswith("sustained-events")


def test_the_backward_exploits_are_caught_on_the_gpu(flusher):
    from harness.testing import EXPLOITS, registered

    p = Problem(batch=2, heads_q=8, heads_kv=2, seqlen_q=1024, head_dim=128, causal=True, op="bwd")
    with registered(EXPLOITS):
        stale = measure_cell("exploit-stale-grads", p, Checks(), T, "cuda", ProblemCache(), flusher)
        dq_only = measure_cell("exploit-dq-only", p, Checks(), T, "cuda", ProblemCache(), flusher)
    assert stale.status == "rejected" and "stale gradients" in stale.reason
    assert dq_only.status == "failed" and "dk max_abs_err" in dq_only.reason
