"""The kernel clock: kernels are assigned to the call whose host range launched them, and summed."""
from pytest import approx

from harness.measure.timing.kernel_clock import MARK, per_call


def annotation(i, ts, dur):
    return {"ph": "X", "cat": "user_annotation", "name": f"{MARK}{i}", "ts": ts, "dur": dur}


def launch(corr, ts, cat="cuda_runtime", name="cudaLaunchKernel"):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": 2.0, "args": {"correlation": corr}}


def kernel(corr, ts, dur, cat="kernel", stream=7):
    return {"ph": "X", "cat": cat, "name": f"k{corr}", "ts": ts, "dur": dur,
            "args": {"correlation": corr, "stream": stream}}


def test_each_call_gets_the_kernels_it_launched_and_nothing_the_harness_launched():
    events = [
        launch(1, 5.0), kernel(1, 100.0, 40.0),  # flush, before the first range
        annotation(0, 10.0, 20.0), launch(2, 12.0), kernel(2, 150.0, 25.5),
        launch(3, 35.0), kernel(3, 180.0, 3.0),  # output check, between ranges
        annotation(1, 40.0, 20.0), launch(4, 41.0), kernel(4, 200.0, 20.0),
        launch(5, 45.0, cat="cuda_driver", name="cuLaunchKernel"), kernel(5, 221.0, 6.0),
    ]
    k = per_call(events, 2)
    assert not k.error
    assert k.per_call_ms == approx([0.0255, 0.026])
    assert k.kernels_per_call == [1, 2]
    assert k.names == ["kernel: k2", "kernel: k4", "kernel: k5"]  # not the flush k1 nor the check k3


def test_work_on_another_stream_counts_for_the_call_that_launched_it():
    events = [annotation(0, 10.0, 20.0), launch(1, 11.0), kernel(1, 100.0, 1.0),
              launch(2, 12.0), kernel(2, 90.0, 50.0, stream=99)]
    assert per_call(events, 1).per_call_ms == approx([0.051])


def test_copies_and_memsets_inside_a_call_count_too():
    events = [annotation(0, 10.0, 20.0), launch(1, 11.0, name="cudaMemcpyAsync"),
              kernel(1, 100.0, 4.0, cat="gpu_memcpy"), launch(2, 12.0, name="cudaMemsetAsync"),
              kernel(2, 105.0, 1.0, cat="gpu_memset")]
    assert per_call(events, 1).per_call_ms == approx([0.005])


def test_a_trace_without_the_call_ranges_or_without_kernels_gives_a_reason_not_zeros():
    missing = per_call([annotation(0, 10.0, 20.0)], 2)
    assert missing.per_call_ms == [] and "1 of the 2 call ranges" in missing.error
    empty = per_call([annotation(0, 10.0, 20.0), launch(1, 50.0), kernel(1, 100.0, 4.0)], 1)
    assert empty.per_call_ms == [] and "no kernel" in empty.error


def test_a_gpu_side_annotation_of_the_same_name_is_not_taken_for_the_host_range():
    events = [annotation(0, 10.0, 20.0),
              {"ph": "X", "cat": "gpu_user_annotation", "name": f"{MARK}0", "ts": 95.0, "dur": 60.0},
              launch(1, 11.0), kernel(1, 100.0, 4.0)]
    assert per_call(events, 1).per_call_ms == approx([0.004])
