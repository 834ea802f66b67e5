"""The attention problem: shapes, dtype, masking, and the FLOP and byte counts every report uses.

FLOPs follow FlashAttention's ``flops()`` convention (hopper/benchmark_attn.py): two matmuls of
``2·Sq·Sk_eff·D`` each per (batch, head), where ``Sk_eff`` is the average number of keys a query
row attends. Non-causal: ``Sk_eff = Sk``. Causal (bottom-right aligned, as FlashAttention >= 2.1):
row ``i`` attends ``min(Sk, max(0, i + 1 + Sk - Sq))`` keys; we count that exactly, which for
``Sq == Sk`` is ``(Sk + 1) / 2`` per row, i.e. the usual "half" up to the diagonal term.

Minimum bytes: Q, K and V read once and O written once, in the problem's dtype.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

DTYPES = ("float16", "bfloat16", "float32")
LAYOUTS = ("bshd", "bhsd")
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


class ProblemError(ValueError):
    """A problem description that cannot be run."""


@dataclass(frozen=True)
class Problem:
    batch: int
    heads_q: int
    seqlen_q: int
    head_dim: int
    heads_kv: int = 0  # 0: same as heads_q
    seqlen_k: int = 0  # 0: same as seqlen_q
    dtype: str = "bfloat16"
    causal: bool = False
    softmax_scale: float = 0.0  # 0: 1/sqrt(head_dim)
    layout: str = "bshd"

    def __post_init__(self) -> None:
        if self.heads_kv == 0:
            object.__setattr__(self, "heads_kv", self.heads_q)
        if self.seqlen_k == 0:
            object.__setattr__(self, "seqlen_k", self.seqlen_q)
        if self.softmax_scale == 0.0:
            object.__setattr__(self, "softmax_scale", 1.0 / math.sqrt(self.head_dim))
        self.validate()

    def validate(self) -> None:
        for name in ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProblemError(f"{name}={value!r}: must be a positive integer")
        if self.heads_q % self.heads_kv:
            raise ProblemError(
                f"heads_q={self.heads_q} is not a multiple of heads_kv={self.heads_kv}: "
                "grouped-query attention needs heads_q % heads_kv == 0"
            )
        if self.dtype not in DTYPES:
            raise ProblemError(f"dtype={self.dtype!r}: allowed {', '.join(DTYPES)}")
        if self.layout not in LAYOUTS:
            raise ProblemError(f"layout={self.layout!r}: allowed {', '.join(LAYOUTS)}")
        if not isinstance(self.causal, bool):
            raise ProblemError(f"causal={self.causal!r}: must be true or false")
        if not (isinstance(self.softmax_scale, (int, float)) and math.isfinite(self.softmax_scale)
                and self.softmax_scale > 0):
            raise ProblemError(f"softmax_scale={self.softmax_scale!r}: must be a positive finite number")

    # -- counts -----------------------------------------------------------------------------
    def attended_pairs(self) -> int:
        """Number of unmasked (query, key) pairs per (batch, head)."""
        sq, sk = self.seqlen_q, self.seqlen_k
        if not self.causal:
            return sq * sk
        # bottom-right alignment: row i attends clamp(i + 1 + offset, 0, sk) keys
        offset = sk - sq
        first_partial = min(sq, max(0, -offset))  # rows before this attend nothing
        first_full = min(sq, max(first_partial, sk - 1 - offset))  # rows from here attend all sk
        n = first_full - first_partial
        partial = n * (first_partial + 1 + offset) + n * (n - 1) // 2
        return partial + (sq - first_full) * sk

    def flops(self) -> float:
        """Forward FLOPs: 2 matmuls × 2 FLOPs per multiply-add, over attended pairs."""
        return 4.0 * self.batch * self.heads_q * self.attended_pairs() * self.head_dim

    def min_bytes(self) -> int:
        """Read Q, K, V once; write O once."""
        e = DTYPE_BYTES[self.dtype]
        q = self.batch * self.seqlen_q * self.heads_q * self.head_dim
        kv = 2 * self.batch * self.seqlen_k * self.heads_kv * self.head_dim
        return e * (2 * q + kv)

    # -- identity ---------------------------------------------------------------------------
    def key(self) -> str:
        """Stable short id used in tables, filters and NVTX ranges."""
        s = f"b{self.batch}-hq{self.heads_q}-hkv{self.heads_kv}-sq{self.seqlen_q}-sk{self.seqlen_k}-d{self.head_dim}"
        s += f"-{self.dtype}-{'causal' if self.causal else 'full'}-{self.layout}"
        if abs(self.softmax_scale - 1.0 / math.sqrt(self.head_dim)) > 1e-12:
            s += f"-scale{self.softmax_scale:g}"
        return s

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    def with_(self, **changes: Any) -> Problem:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        allowed = set(cls.__dataclass_fields__)
        unknown = set(d) - allowed
        if unknown:
            raise ProblemError(f"unknown problem key(s) {sorted(unknown)}: allowed {sorted(allowed)}")
        return cls(**d)
