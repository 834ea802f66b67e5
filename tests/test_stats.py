"""Statistics and stopping rules."""
import random

import pytest

from harness.analysis.noise import judge
from harness.analysis.stats import percentile, summarize
from harness.measure.timing.stopping import NoiseBelow, NoiseStable, Sampling


def test_percentiles_match_numpy_linear_interpolation():
    np = pytest.importorskip("numpy")
    xs = [random.Random(1).random() for _ in range(37)]
    for q in (0, 10, 50, 90, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_summary_reports_median_p10_p90_and_relative_spread():
    s = summarize([1.0] * 8 + [2.0, 3.0])
    assert s.median == 1.0 and s.p10 == 1.0
    assert s.rel_spread == pytest.approx((s.p90 - 1.0) / 1.0)


def test_stops_on_low_noise_only_after_min_samples():
    rule = Sampling(min_samples=10, max_noise=0.01, time_cap_s=100)
    assert rule.stop_reason([1.0] * 9, 0.1) is None
    assert "noise" in rule.stop_reason([1.0] * 10, 0.1)


def test_time_cap_wins_even_for_noisy_samples_but_not_below_three():
    rule = Sampling(min_samples=10, max_noise=0.001, time_cap_s=0.5)
    assert rule.stop_reason([1.0, 2.0], 0.6) is None
    assert "time cap" in rule.stop_reason([1.0, 2.0, 1.5], 0.6)


def test_noise_stable_stops_when_more_samples_stop_helping():
    rng = random.Random(0)
    xs = [1 + 0.1 * rng.random() for _ in range(400)]
    assert NoiseBelow(0.01).reason(xs, 0) is None
    assert NoiseStable(window=32, tolerance=0.1).reason(xs, 0) is not None


def test_mann_whitney_separates_shifted_samples_and_not_noise():
    rng = random.Random(2)
    a = [1 + 0.01 * rng.gauss(0, 1) for _ in range(50)]
    b = [1.1 + 0.01 * rng.gauss(0, 1) for _ in range(50)]
    same = random.Random(5)
    c = [1 + 0.01 * same.gauss(0, 1) for _ in range(50)]
    assert judge(a, b).p < 1e-6
    assert judge(a, c).p > 0.05


def test_quiet_samples_do_not_stop_before_the_minimum_sampled_time():
    rule = Sampling(min_samples=10, max_noise=0.01, time_cap_s=100, max_samples=10_000, min_time_s=0.1)
    assert rule.stop_reason([1.0] * 99, 0.5) is None  # 99 ms of samples: a moment of the GPU, not its state
    assert "noise" in rule.stop_reason([1.0] * 100, 0.5)


def test_max_samples_and_time_cap_end_sampling_before_the_minimum_time():
    assert Sampling(min_samples=10, max_samples=50, time_cap_s=100, min_time_s=1.0).stop_reason(
        [1.0] * 50, 0.1) == "50 samples"
    assert "time cap" in Sampling(min_samples=10, time_cap_s=0.5, min_time_s=1.0).stop_reason([1.0] * 20, 0.6)
