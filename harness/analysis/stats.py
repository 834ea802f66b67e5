"""Statistics over raw timing samples, kept apart from measuring (pyperf's split): the supervisor
computes these from the samples a worker returns, out of the measured code's reach."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median


def percentile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100] (numpy's default method)."""
    if not xs:
        raise ValueError("percentile of no samples")
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p10: float
    p90: float
    mean: float
    stdev: float

    @property
    def rel_spread(self) -> float:
        """(p90 − p10) / median: the noise measure reported next to every median."""
        return (self.p90 - self.p10) / self.median if self.median > 0 else math.inf

    @property
    def rel_stdev(self) -> float:
        return self.stdev / self.mean if self.mean > 0 else math.inf


def summarize(xs: Sequence[float]) -> Summary:
    if not xs:
        raise ValueError("no samples to summarize")
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return Summary(n=n, median=median(xs), p10=percentile(xs, 10), p90=percentile(xs, 90), mean=mean,
                   stdev=math.sqrt(var))


def resampled_medians(xs: Sequence[float], n_resamples: int = 1000, seed: int = 0):  # -> numpy.ndarray
    """The medians of ``n_resamples`` bootstrap resamples of ``xs`` (drawn with replacement, same size)."""
    import numpy as np

    x = np.asarray(xs, dtype=float)
    if x.size == 0:
        raise ValueError("a bootstrap needs samples")
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // len(x))  # bounded memory for long sample lists
    for lo in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - lo)
        out[lo:lo + k] = np.median(x[rng.integers(0, len(x), (k, len(x)))], axis=1)
    return out


def ratio_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, n_resamples: int = 1000,
             seed: int = 0, b_medians=None) -> tuple[float, float, float]:
    """median(a) / median(b) and its percentile bootstrap interval: the two sample sets resampled
    independently (they are not paired), ``n_resamples`` times; the method of
    ``scipy.stats.bootstrap((a, b), ..., paired=False, method="percentile")``, written in numpy so that one
    set of resampled baseline medians (``b_medians``) serves every backend's ratio. Seeds are fixed, so a
    stored interval is reproducible from the stored samples.
    ``b_medians``: ``resampled_medians(b, n_resamples, seed + 1)`` computed once for many ``a``."""
    import numpy as np

    if len(a) == 0 or len(b) == 0:
        raise ValueError("a ratio of medians needs samples on both sides")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence!r}: must be a fraction in (0, 1)")
    mb = resampled_medians(b, n_resamples, seed + 1) if b_medians is None else b_medians
    ratios = resampled_medians(a, n_resamples, seed) / mb
    alpha = (1 - confidence) / 2
    lo_q, hi_q = np.percentile(ratios, [100 * alpha, 100 * (1 - alpha)])
    return float(np.median(np.asarray(a, dtype=float)) / np.median(np.asarray(b, dtype=float))), float(lo_q), float(hi_q)
