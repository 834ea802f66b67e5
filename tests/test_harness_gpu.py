"""The harness on a real GPU (run on a Hopper GPU; skipped elsewhere)."""
import pytest

from harness.records.observations import CorrectnessObservation, DeterminismObservation, TimingObservation

pytestmark = pytest.mark.gpu


def test_l2_flush_buffer_is_at_least_twice_the_l2():
    import torch

    from harness.measure.timing.l2 import L2Flusher

    f = L2Flusher()
    assert f.bytes >= 2 * torch.cuda.get_device_properties(0).L2_cache_size


def test_both_l2_flush_modes_run_and_the_read_mode_never_writes_its_buffer():
    import torch

    from harness.measure.timing.l2 import L2Flusher

    f = L2Flusher()
    f.buf[:4] = 0
    f("write")
    f("read")
    torch.cuda.synchronize()
    assert int(f.buf.count_nonzero()) == 0 and int(f._sink) == 0
    with pytest.raises(ValueError, match="allowed read, write"):
        f("clean")


def test_measured_peaks_are_physically_plausible_for_a_hopper_gpu():
    from harness.measure import peak
    p = peak.measure(n=4096, copy_bytes=1 << 30, reps=5)
    assert 200 < p.matmul_tflops < 1000  # dense bf16: ~790 on an H100 SXM
    assert 1000 < p.copy_gbs < 5000


def test_a_library_backend_passes_correctness_and_gets_timed(tmp_path):
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.measure.timing.l2 import L2Flusher
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    p = Problem(batch=2, heads_q=8, seqlen_q=1024, head_dim=128, causal=True)
    report = measure_cell("sdpa-flash", p, Checks(distributions=("normal", "large_logits")),
                          Timing(time_cap_s=0.3), "cuda", ProblemCache(), L2Flusher())
    assert report.status == "ok", report.reason
    timed = report.get(TimingObservation)
    assert report.get(CorrectnessObservation).passed and report.get(DeterminismObservation).deterministic
    assert timed.outputs_ok
    assert timed.method == "cuda-events+l2flush-read+hold+settle-tare"
    assert len(timed.samples_ms) >= 10 and min(timed.samples_ms) > 0
    assert timed.settle.samples_ms  # the first 0.2 s of samples were set aside


def test_each_sample_records_the_sm_clock_and_cooling_idles_the_gpu_as_long_as_the_call():
    from statistics import median

    import torch

    from harness.measure.cell import ProblemCache, measure_cell
    from harness.measure.timing.l2 import L2Flusher
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    top_mhz = torch.cuda.get_device_properties(0).clock_rate / 1e3
    p = Problem(batch=4, heads_q=16, seqlen_q=2048, head_dim=128)
    cache, flusher = ProblemCache(), L2Flusher()
    reports = [measure_cell("sdpa-flash", p, Checks(), Timing(time_cap_s=0.3, cool=1), "cuda", cache, flusher),
               measure_cell("sdpa-flash", p, Checks(), Timing(time_cap_s=0.3), "cuda", cache, flusher)]
    assert [r.status for r in reports] == ["ok", "ok"], [r.reason for r in reports]
    cooled, hot = (r.get(TimingObservation) for r in reports)
    for timed in (cooled, hot):
        mhz = timed.clock.mhz
        assert len(mhz) == len(timed.samples_ms)
        assert 0.3 * top_mhz < min(mhz) <= median(mhz) < 1.02 * top_mhz  # a clock, not noise
    assert cooled.clock.hold_ms >= 0.9 * median(cooled.samples_ms)  # idle at least as long as busy
    # without cooling, just the hold that queues the call: twice the host's enqueue time, plus 20 µs
    assert hot.clock.hold_ms <= 2 * hot.enqueue_ms + 0.021 < cooled.clock.hold_ms
    assert "+cool" not in hot.method


def test_the_kernel_clock_sums_the_calls_kernels_and_leaves_out_the_event_overhead():
    from statistics import median

    from harness.measure.cell import ProblemCache, measure_cell
    from harness.measure.timing.l2 import L2Flusher
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    p = Problem(batch=4, heads_q=16, seqlen_q=2048, head_dim=128)
    report = measure_cell("sdpa-flash", p, Checks(), Timing(time_cap_s=0.3, kernel_clock_calls=8), "cuda",
                          ProblemCache(), L2Flusher())
    assert report.status == "ok", report.reason
    timed = report.get(TimingObservation)
    k = timed.kernel_clock
    assert not k.error, k.error
    assert len(k.per_call_ms) == 8 and max(k.kernels_per_call) >= 1
    events = median(timed.samples_ms)
    # the flush, hold and output check launched around the calls are not counted: the kernel time is
    # the event time less a few microseconds of overhead, not more
    assert 0.9 * events < median(k.per_call_ms) < 1.1 * events


def test_a_wrong_kernel_is_failed_even_though_it_is_fast():
    import torch

    from harness.backends import registry
    from harness.backends.base import Backend
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    @registry.register
    class Wrong(Backend):  # right shape, wrong numbers: softmax without the scale
        name = "test-wrong-scale"

        def prepare(self, problem, q, k, v):
            import torch.nn.functional as F

            return lambda: F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)),
                                                          scale=1.0).transpose(1, 2)

    p = Problem(batch=1, heads_q=4, seqlen_q=256, head_dim=64)
    report = measure_cell("test-wrong-scale", p, Checks(), Timing(), "cuda", ProblemCache(), None)
    assert report.status == "failed" and "tolerance" in report.reason
    assert report.get(TimingObservation) is None  # never timed, never shown as fast
    torch.cuda.synchronize()


def test_cuda_graph_mode_times_replays_and_checks_their_outputs():
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.measure.timing.l2 import L2Flusher
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    p = Problem(batch=1, heads_q=4, seqlen_q=128, head_dim=64)
    report = measure_cell("sdpa-flash", p, Checks(), Timing(mode="graph", time_cap_s=0.2), "cuda", ProblemCache(),
                          L2Flusher())
    assert report.status == "ok", report.reason
    timed = report.get(TimingObservation)
    assert timed.method.startswith("cuda-graph") and timed.outputs_ok
