"""Environment facts recorded with every measurement: NVML's throttle counters (faked here: no GPU in CI)."""
from types import SimpleNamespace

from harness import envinfo


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
    monkeypatch.setattr(envinfo, "_nvml", lambda: nv)
    before = envinfo.throttle_ns()
    nv.ns[0] += 12_500_000  # 12.5 ms held below clocks by the power limit
    assert envinfo.throttled_ms(before, envinfo.throttle_ns()) == {"power": 12.5, "thermal": 0.0}


def test_without_nvml_nothing_is_claimed(monkeypatch):
    monkeypatch.setattr(envinfo, "_nvml", lambda: None)
    assert envinfo.throttle_ns() is None and envinfo.throttled_ms(None, None) is None
