"""The SM clock read from a hold of known cycles (the arithmetic; the GPU side is in test_harness_gpu)."""
import pytest

from harness.measure.timing.sm_clock import Calibration, effective_mhz


def test_a_hold_of_known_cycles_gives_the_clock_once_the_event_offset_is_taken_off():
    cal = Calibration(offset_ms=0.002)
    # 198,000 cycles at 1980 MHz spin 0.1 ms; the events add 2 µs
    assert effective_mhz(198_000, 0.102, cal) == pytest.approx(1980.0)
    assert effective_mhz(198_000, 0.106, cal) == pytest.approx(1980.0 * 0.1 / 0.104)  # a slower clock


def test_a_hold_no_longer_than_the_offset_gives_no_clock_rather_than_a_wild_one():
    cal = Calibration(offset_ms=0.002)
    assert effective_mhz(198_000, 0.002, cal) is None
    assert effective_mhz(0, 0.1, cal) is None


def test_readings_above_the_gpus_maximum_clock_are_refused_as_a_probe_error(monkeypatch):
    from harness.measure.timing import sm_clock

    monkeypatch.setattr(sm_clock, "nominal_hz", lambda: 1.98e9)
    assert sm_clock.implausible([1975.0, 1979.0, 1981.0]) is None  # within the probe's resolution
    assert "above the GPU's maximum 1980 MHz" in sm_clock.implausible([2007.0, 2008.0, 2006.0])
    assert sm_clock.implausible([]) is None
