"""Environment facts recorded with every measurement: NVML's throttle counters (faked here: no GPU in CI)."""
from types import SimpleNamespace

from harness.measure import environment


class FakeNvml:
    NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL = 0, 1

    def __init__(self):
        self.ns = {0: 5_000_000, 1: 0}

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetViolationStatus(self, handle, policy):
        return SimpleNamespace(referenceTime=0, violationTime=self.ns[policy])


def test_power_throttling_during_a_measurement_is_the_difference_of_the_counters(monkeypatch):
    nv = FakeNvml()
    monkeypatch.setattr(environment, "_nvml", lambda: nv)
    before = environment.throttle_ns()
    nv.ns[0] += 12_500_000  # 12.5 ms held below clocks by the power limit
    assert environment.throttled_ms(before, environment.throttle_ns()) == {"power": 12.5, "thermal": 0.0}


def test_without_nvml_nothing_is_claimed(monkeypatch):
    monkeypatch.setattr(environment, "_nvml", lambda: None)
    assert environment.throttle_ns() is None and environment.throttled_ms(None, None) is None


def test_the_nvml_poller_reads_clock_reasons_temperature_and_power_until_the_block_ends(monkeypatch):
    import time

    fake = SimpleNamespace(
        NVML_CLOCK_SM=0, NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetHandleByIndex=lambda i: "gpu0",
        nvmlDeviceGetClockInfo=lambda h, which: 1905,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x4,
        nvmlDeviceGetTemperature=lambda h, which: 71,
        nvmlDeviceGetPowerUsage=lambda h: 690_000,  # mW
    )
    monkeypatch.setattr(environment, "_nvml", lambda: fake)
    with environment.NvmlPoller(0.001) as poll:
        time.sleep(0.05)
    n = len(poll.samples)
    assert n >= 2 and poll.samples[0].t <= poll.samples[-1].t
    assert (poll.samples[0].sm_mhz, poll.samples[0].reasons, poll.samples[0].temp_c, poll.samples[0].power_w) == \
        (1905, 0x4, 71, 690.0)
    time.sleep(0.01)
    assert len(poll.samples) == n  # the thread stopped with the block


def test_the_nvml_poller_reads_nothing_without_nvml_or_with_a_zero_period(monkeypatch):
    monkeypatch.setattr(environment, "_nvml", lambda: None)
    with environment.NvmlPoller(0.001) as poll:
        pass
    assert poll.samples == []
    with environment.NvmlPoller(0.0) as poll:
        pass
    assert poll.samples == []


def test_nvml_reads_the_gpu_the_worker_is_pinned_to(monkeypatch):
    """NVML counts every GPU of the machine: a worker pinned to GPU 2 (``--gpus``) reads GPU 2's clocks."""
    asked = []
    nv = SimpleNamespace(nvmlDeviceGetHandleByIndex=lambda i: asked.append(i) or f"gpu{i}",
                               nvmlDeviceGetHandleByUUID=lambda u: asked.append(u) or u)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert [environment.nvml_handle(nv, 0), environment.nvml_handle(nv, 1)] == ["gpu2", "gpu3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5bd5b1d8")
    assert environment.nvml_handle(nv, 0) == "GPU-5bd5b1d8"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert environment.nvml_handle(nv, 0) == "gpu0"
    assert asked == [2, 3, "GPU-5bd5b1d8", 0]
