"""Local (sliding-window) attention and logit soft-capping: the semantics every kind shares.

Window (FlashAttention's ``window_size=(left, right)``, -1 meaning unbounded on that side): with
``offset = Sk - Sq`` (bottom-right alignment), key ``j`` is visible to query ``i`` iff
``i + offset - left <= j <= i + offset + right``. ``causal`` is the right bound 0 (a causal problem with
a window takes ``min(right, 0)``, i.e. ``right`` must be -1 or 0). Soft-capping: the scaled score
``s = scale · q·k`` becomes ``cap · tanh(s / cap)`` before masking and softmax (Gemma 2, Grok).
"""
from __future__ import annotations


def bounds(sq: int, sk: int, causal: bool, left: int, right: int) -> tuple[int, int]:
    """(lo, hi) such that row i attends keys ``max(0, i + lo) .. min(sk - 1, i + hi)``; unbounded sides are
    pushed past the ends of the key range."""
    offset = sk - sq
    if causal:
        right = 0 if right < 0 else min(right, 0)
    hi = offset + right if right >= 0 else sk + sq
    lo = offset - left if left >= 0 else -(sk + sq)
    return lo, hi


def _clamped_sum(n: int, c: int, cap: int) -> int:
    """sum over i in [0, n) of clamp(i + c, 0, cap)."""
    lo_i = min(n, max(0, -c))  # rows before this clamp to 0
    hi_i = min(n, max(lo_i, cap - c))  # rows from here clamp to cap
    m = hi_i - lo_i
    return m * c + (lo_i + hi_i - 1) * m // 2 + (n - hi_i) * cap


def attended_pairs(sq: int, sk: int, causal: bool, left: int = -1, right: int = -1) -> int:
    """Unmasked (query, key) pairs of one (batch, head): row i attends
    ``clamp(i + hi + 1, 0, sk) - clamp(i + lo, 0, sk)`` keys (never negative: lo <= hi + 1)."""
    lo, hi = bounds(sq, sk, causal, left, right)
    if lo > hi + 1:
        return 0
    return _clamped_sum(sq, hi + 1, sk) - _clamped_sum(sq, lo, sk)


def windowed(left: int, right: int) -> bool:
    return left >= 0 or right >= 0
