"""``varlen``: ``batch`` sequences of different lengths packed back to back (``cu_seqlens``), self-attention
within each (key and query lengths equal; causal or not, with any window). ``seqlen_q`` is the longest a
sequence may be; the lengths are drawn from ``lengths``, seeded by the problem itself (the same problem
always has the same lengths):

  uniform    each length uniform in [1, seqlen_q]
  long_tail  log-normal around seqlen_q / 16 (sigma 1.2), clipped to [1, seqlen_q]: many short chats, a few long
  one_long   one sequence of seqlen_q, the rest uniform in [1, max(1, seqlen_q // 16)]

Q, K, V and O are packed ``[total_tokens, heads, head_dim]``. FLOPs count real tokens only (the attended
pairs of each sequence), so a backend that pads the batch shows the padding as lost TFLOPS. Minimum
bytes: Q, K, V read and O written once over the real tokens, plus ``cu_seqlens`` (int32, batch + 1).
"""
from __future__ import annotations

import math
import random
import zlib
from functools import lru_cache

LENGTHS = ("uniform", "long_tail", "one_long")


@lru_cache(maxsize=256)
def seq_lengths(batch: int, max_len: int, dist: str) -> tuple[int, ...]:
    rng = random.Random(zlib.crc32(f"varlen|{dist}|{batch}|{max_len}".encode()))
    if dist == "uniform":
        return tuple(rng.randint(1, max_len) for _ in range(batch))
    if dist == "long_tail":
        mu = math.log(max(1.0, max_len / 16))
        return tuple(min(max_len, max(1, round(rng.lognormvariate(mu, 1.2)))) for _ in range(batch))
    if dist == "one_long":
        short = max(1, max_len // 16)
        return (max_len, *(rng.randint(1, short) for _ in range(batch - 1)))
    raise ValueError(f"lengths={dist!r}: allowed {', '.join(LENGTHS)}")


def cu_seqlens(lengths: tuple[int, ...]) -> list[int]:
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


def check(p) -> str | None:  # p: Problem
    if p.lengths not in LENGTHS:
        return f"lengths={p.lengths!r}: a varlen problem needs lengths, allowed {', '.join(LENGTHS)}"
    if p.seqlen_k is not None and p.seqlen_k != p.seqlen_q:
        return f"seqlen_k={p.seqlen_k}: a varlen problem is self-attention, seqlen_k equals seqlen_q (leave it out)"
    if p.layout != "bshd":
        return f"layout={p.layout!r}: varlen tokens are packed [tokens, heads, head_dim] (bshd) only"
    return None
