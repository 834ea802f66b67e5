"""When to stop sampling: each criterion a small class (nvbench's split).

``Sampling`` asks every criterion after each sample; the first one that says stop names the reason,
which is stored with the result. A minimum sample count must be met first, except by the time cap.

The noise criteria also wait for a minimum sampled time (the sum of the samples, nvbench's
``--min-time``). A low spread over a few milliseconds says the GPU was steady for those milliseconds,
not that it is in the state it will be in a second later: on an H100 (clocks not locked) the power
limiter moves a kernel's time by several percent over a second of load. In two back-to-back runs of
fa-paper, 6 of the 7 cells (of 239) that moved more than 1% had samples adding up to under 30 ms in
one of the runs; the 60 cells with at least 100 ms in both moved by 0.02% at the median.

Which noise criteria run is chosen by name (``CRITERIA``, as nvbench registers its stopping criteria):
a suite's ``[timing] stop`` names one; the default, ``noise``, stops on either noise rule.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.analysis.stats import summarize


class Criterion(Protocol):
    def reason(self, samples: Sequence[float], elapsed_s: float) -> str | None: ...


@dataclass
class NoiseBelow:
    """Stop once the relative spread (p90−p10)/median is under ``max_noise``."""

    max_noise: float = 0.01

    def reason(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        s = summarize(samples)
        if s.rel_spread <= self.max_noise:
            return f"noise {s.rel_spread:.2%} <= {self.max_noise:.2%}"
        return None


@dataclass
class NoiseStable:
    """Stop when the noise stops improving: the spread over the last ``window`` samples is within
    ``tolerance`` (relative) of the spread ``window`` samples earlier."""

    window: int = 32
    tolerance: float = 0.05

    def reason(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        if len(samples) < 2 * self.window:
            return None
        now = summarize(samples).rel_spread
        before = summarize(samples[: -self.window]).rel_spread
        if before > 0 and abs(now - before) / before <= self.tolerance:
            return f"noise stable at {now:.2%}"
        return None


@dataclass
class MinTime:
    """Not a reason to stop but a condition on the noise criteria: the samples add up to ``seconds``."""

    seconds: float = 0.0

    def reached(self, samples: Sequence[float]) -> bool:
        return sum(samples) * 1e-3 >= self.seconds  # samples are in ms


@dataclass
class MaxSamples:
    n: int = 200

    def reason(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        return f"{self.n} samples" if len(samples) >= self.n else None


@dataclass
class TimeCap:
    seconds: float = 1.0

    def reason(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        return f"time cap {self.seconds:g}s" if elapsed_s >= self.seconds else None


def _noise_below(s: Sampling) -> list[Criterion]:
    return [NoiseBelow(s.max_noise)]


def _noise_stable(s: Sampling) -> list[Criterion]:
    return [NoiseStable(s.stable_window)]


def _noise(s: Sampling) -> list[Criterion]:
    return [*_noise_below(s), *_noise_stable(s)]


#: the noise criteria by name; each entry builds fresh criteria from the sampling parameters
CRITERIA: dict[str, Callable[[Sampling], list[Criterion]]] = {
    "noise": _noise,  # either rule below: the harness's behaviour before criteria had names
    "noise-below": _noise_below,
    "noise-stable": _noise_stable,
}
DEFAULT_STOP = "noise"


def criteria_named(name: str, sampling: Sampling) -> list[Criterion]:
    try:
        build = CRITERIA[name]
    except KeyError:
        raise ValueError(f"stopping criterion {name!r}: allowed {', '.join(CRITERIA)}") from None
    return build(sampling)


@dataclass
class Sampling:
    min_samples: int = 10
    max_noise: float = 0.01
    max_samples: int = 200
    time_cap_s: float = 1.0
    stable_window: int = 32
    min_time_s: float = 0.0  # the noise criteria wait until the samples add up to this (seconds)
    stop: str = DEFAULT_STOP  # which noise criteria (a name in CRITERIA)

    def __post_init__(self) -> None:
        criteria_named(self.stop, self)  # an unknown name fails here, before any sample is taken

    def criteria(self) -> list[Criterion]:
        return criteria_named(self.stop, self)

    #: the time cap ends sampling below min_samples, but never before this many (a median of one is noise)
    floor_samples: int = 3

    def stop_reason(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        if len(samples) >= min(self.floor_samples, self.min_samples) and elapsed_s >= self.time_cap_s:
            return TimeCap(self.time_cap_s).reason(samples, elapsed_s)
        if len(samples) < self.min_samples:
            return None
        full = MaxSamples(self.max_samples).reason(samples, elapsed_s)
        if full:
            return full
        if not MinTime(self.min_time_s).reached(samples):
            return None
        for c in self.criteria():
            why = c.reason(samples, elapsed_s)
            if why:
                return why
        return None
