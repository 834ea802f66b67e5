"""Whether a timing change is beyond noise: the one rule behind ``flashcore compare``, the dashboards'
compare page and the regression gate (``harness.analysis.regress``).

A change counts only if the median moved by more than ``threshold`` (relative) AND the Mann-Whitney U
test (two-sided) on the raw samples gives p < ``alpha``: a shifted median inside overlapping noise is
not a change, nor is a significant but negligible shift. Rows recorded before raw samples were kept hold
only median, p10 and p90; for them the significance test is replaced by the spread rule (|ratio − 1|
beyond the two cells' combined relative p10–p90 spread), and the reason says so. How the defaults were
chosen: docs/regression-gate.md.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: relative median move that counts (with significance); see docs/regression-gate.md
DEFAULT_THRESHOLD = 0.05
#: significance level of the Mann-Whitney U test
DEFAULT_ALPHA = 0.01

Verdict = Literal["slower", "faster", "within noise", "no data"]
VERDICTS: tuple[Verdict, ...] = ("slower", "faster", "within noise", "no data")


@dataclass(frozen=True)
class Spread:
    """What a row without raw samples keeps of them: its median and relative (p90 − p10) / median."""

    median: float
    rel_spread: float | None = None

    @classmethod
    def of_percentiles(cls, median: float, p10: float | None, p90: float | None) -> Spread:
        ok = p10 is not None and p90 is not None and median > 0
        return cls(median, (p90 - p10) / median if ok else None)  # type: ignore[operator]

    @classmethod
    def of_samples(cls, samples: Sequence[float]) -> Spread:
        med, p10, p90 = np.percentile(np.asarray(samples, dtype=float), [50, 10, 90])
        return cls.of_percentiles(float(med), float(p10), float(p90))


#: one side of a comparison: raw samples, the summary an older row kept, or nothing
Side = Sequence[float] | Spread | None


@dataclass(frozen=True)
class Change:
    """The judgement of one cell's move from ``before`` to ``after``."""

    verdict: Verdict
    reason: str  # one line, for people
    ratio: float | None  # median after / median before
    p: float | None  # Mann-Whitney U, two-sided; None where the spread rule judged
    threshold: float
    alpha: float
    noise: float | None = None  # the combined relative spread, where the spread rule judged

    @property
    def beyond_noise(self) -> bool:
        return self.verdict in ("slower", "faster")


def _no_data(which: str, threshold: float, alpha: float) -> Change:
    return Change("no data", f"{which} without timings", None, None, threshold, alpha)


def _ratio(before: float, after: float) -> float:
    return after / before if before > 0 else math.inf


def judge(before: Side, after: Side, *, threshold: float = DEFAULT_THRESHOLD,
          alpha: float = DEFAULT_ALPHA) -> Change:
    """Slower, faster, within noise, or no data: raw samples on both sides are judged by the median move
    and Mann-Whitney; where a side has only a ``Spread``, by the median move and the spread rule."""
    missing = [w for w, s in (("before", before), ("after", after))
               if s is None or (not isinstance(s, Spread) and len(s) == 0)]
    if missing:
        return _no_data(" and ".join(missing), threshold, alpha)
    if isinstance(before, Spread) or isinstance(after, Spread):
        a = before if isinstance(before, Spread) else Spread.of_samples(before)  # type: ignore[arg-type]
        b = after if isinstance(after, Spread) else Spread.of_samples(after)  # type: ignore[arg-type]
        return _judge_spread(a, b, threshold=threshold, alpha=alpha)
    # imported here: scipy.stats takes most of a second, and every CLI start reads the defaults above
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    ratio = _ratio(float(np.median(x)), float(np.median(y)))
    p = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    if math.isnan(p):  # scipy's answer where nothing can be ranked apart
        p = 1.0
    shift = f"median {ratio - 1:+.1%}"
    moved = abs(ratio - 1) > threshold
    if moved and p < alpha:
        verdict: Verdict = "slower" if ratio > 1 else "faster"
        reason = f"{shift} beyond {threshold:.0%} and Mann-Whitney p={p:.2g} < {alpha:g}"
    elif moved:
        verdict, reason = "within noise", f"{shift} but Mann-Whitney p={p:.2g} >= {alpha:g}: not significant"
    else:
        verdict, reason = "within noise", f"{shift}, within {threshold:.0%}"
    return Change(verdict, reason, ratio, p, threshold, alpha)


def _judge_spread(before: Spread, after: Spread, *, threshold: float, alpha: float) -> Change:
    """The fallback for rows without raw samples: beyond the threshold AND beyond the two cells' combined
    relative p10–p90 spread (a missing spread counts as none, as the rows that lack one always did)."""
    ratio = _ratio(before.median, after.median)
    noise = (before.rel_spread or 0.0) + (after.rel_spread or 0.0)
    shift = f"median {ratio - 1:+.1%}"
    tail = "no raw samples: judged by the p10–p90 spread"
    moved = abs(ratio - 1) > threshold
    if moved and abs(ratio - 1) > noise:
        verdict: Verdict = "slower" if ratio > 1 else "faster"
        reason = f"{shift} beyond {threshold:.0%} and beyond the spread {noise:.1%} ({tail})"
    elif moved:
        verdict, reason = "within noise", f"{shift} but within the spread {noise:.1%} ({tail})"
    else:
        verdict, reason = "within noise", f"{shift}, within {threshold:.0%} ({tail})"
    return Change(verdict, reason, ratio, None, threshold, alpha, noise)
