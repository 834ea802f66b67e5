"""The attention problem: shapes, dtype, masking, and the FLOP and byte counts every report uses.

FLOPs follow FlashAttention's ``flops()`` convention (hopper/benchmark_attn.py): two matmuls of
``2·Sq·Sk_eff·D`` each per (batch, head), where ``Sk_eff`` is the average number of keys a query
row attends. Non-causal: ``Sk_eff = Sk``. Causal (bottom-right aligned, as FlashAttention >= 2.1):
row ``i`` attends ``min(Sk, max(0, i + 1 + Sk - Sq))`` keys; we count that exactly, which for
``Sq == Sk`` is ``(Sk + 1) / 2`` per row, i.e. the usual "half" up to the diagonal term.

Operations (``op``): ``fwd`` (O from Q, K, V), ``bwd`` (dQ, dK, dV from dO, the forward's saved
state given) and ``fwd_bwd`` (both, as a training step runs them). Their FLOPs follow FlashAttention's
convention too: the backward is 2.5 × the forward (five matmuls to the forward's two), forward +
backward 3.5 ×; causal masking counts the attended pairs exactly, as for the forward.

Minimum bytes, in the problem's dtype: ``fwd`` reads Q, K, V once and writes O once; ``bwd`` reads Q, K,
V, O and dO once and writes dQ, dK, dV once (the softmax statistics the forward saves, one float per
query row, are left out: under 1% of the bytes at head_dim 64); ``fwd_bwd`` is the sum of the two (O
written by the forward and read again by the backward, as the two passes of a training step do).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.spec.kinds import KINDS
from harness.spec.kinds import decode as _decode
from harness.spec.kinds import fp8 as _fp8
from harness.spec.kinds import masks as _masks
from harness.spec.kinds import varlen as _varlen

DTYPES = ("float16", "bfloat16", "float32", "float8_e4m3")  # float8_e4m3: harness.spec.kinds.fp8
#: the operations a problem times: the forward, the backward alone, or both
OPS = ("fwd", "bwd", "fwd_bwd")
#: FLOPs of each operation as a multiple of the forward's (FlashAttention's convention)
OP_FLOPS = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}
#: what a call of each operation returns, in order
OP_OUTPUTS = {"fwd": ("o",), "bwd": ("dq", "dk", "dv"), "fwd_bwd": ("o", "dq", "dk", "dv")}
LAYOUTS = ("bshd", "bhsd")
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float8_e4m3": 1}


class ProblemError(ValueError):
    """A problem description that cannot be run."""


#: the sizes; heads_kv and seqlen_k may be left out (None), meaning heads_q and seqlen_q
SIZE_FIELDS = ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim")
#: what leaving an optional key out means, said in its error
DEFAULTS = {"heads_kv": "heads_q", "seqlen_k": "seqlen_q", "softmax_scale": "1/sqrt(head_dim)"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True is an int in Python, not a size


def _default_hint(name: str) -> str:
    return f" (leave {name} out for the default, {DEFAULTS[name]})" if name in DEFAULTS else ""


def check_size(name: str, value: Any) -> None:
    """ProblemError unless ``value`` is a positive integer (not a bool, not a float like 64.0)."""
    if not _is_int(value) or value < 1:
        raise ProblemError(f"{name}={_short(value)}: must be a positive integer{_default_hint(name)}")


def check_scale(value: Any) -> None:
    """ProblemError unless ``value`` is a positive finite number (not a bool)."""
    try:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and value > 0)
    except OverflowError:  # an int too large for a float
        ok = False
    if not ok:
        raise ProblemError(f"softmax_scale={_short(value)}: must be a positive finite number"
                           f"{_default_hint('softmax_scale')}")


def _short(value: Any, n: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= n else r[: n - 5] + "…" + r[-4:]


@dataclass(frozen=True)
class Problem:
    """One attention problem. ``heads_kv``, ``seqlen_k`` and ``softmax_scale`` given as None (left out)
    take their defaults (heads_q, seqlen_q, 1/sqrt(head_dim)); once constructed every field holds a value."""

    batch: int
    heads_q: int
    seqlen_q: int
    head_dim: int
    heads_kv: int | None = None  # None: same as heads_q
    seqlen_k: int | None = None  # None: same as seqlen_q
    dtype: str = "bfloat16"
    causal: bool = False
    softmax_scale: float | None = None  # None: 1/sqrt(head_dim)
    layout: str = "bshd"
    op: str = "fwd"  # fwd | bwd | fwd_bwd
    # serving shapes (harness.spec.kinds); the defaults are the plain dense problem
    kind: str = "dense"
    page_size: int = 0  # decode: 0 a contiguous cache, else tokens per page of a shuffled page pool
    lengths: str = ""  # varlen: the length distribution (harness.spec.kinds.varlen.LENGTHS)
    window_left: int = -1  # local attention, FlashAttention's window_size; -1: unbounded
    window_right: int = -1
    softcap: float = 0.0  # > 0: scores become softcap·tanh(score/softcap) before softmax

    def __post_init__(self) -> None:
        # every given value is checked before any default is derived from another one (a head_dim of 0
        # must be named, not met as a division by zero)
        self.validate()
        if self.heads_kv is None:
            object.__setattr__(self, "heads_kv", self.heads_q)
        if self.seqlen_k is None:
            object.__setattr__(self, "seqlen_k", self.seqlen_q)
        if self.softmax_scale is None:
            object.__setattr__(self, "softmax_scale", 1.0 / math.sqrt(self.head_dim))
        else:
            object.__setattr__(self, "softmax_scale", float(self.softmax_scale))
        if _is_int(self.softcap):
            object.__setattr__(self, "softcap", float(self.softcap))
        self.validate()

    def validate(self) -> None:
        for name in SIZE_FIELDS:
            value = getattr(self, name)
            if value is None and name in DEFAULTS:
                continue  # left out: the default, derived once the rest is known to be valid
            check_size(name, value)
        if self.heads_kv is not None and self.heads_q % self.heads_kv:
            raise ProblemError(
                f"heads_q={self.heads_q} is not a multiple of heads_kv={self.heads_kv}: "
                "grouped-query attention needs heads_q % heads_kv == 0"
            )
        if not isinstance(self.dtype, str) or self.dtype not in DTYPES:
            raise ProblemError(f"dtype={_short(self.dtype)}: allowed {', '.join(DTYPES)}")
        if not isinstance(self.layout, str) or self.layout not in LAYOUTS:
            raise ProblemError(f"layout={_short(self.layout)}: allowed {', '.join(LAYOUTS)}")
        if not isinstance(self.op, str) or self.op not in OPS:
            raise ProblemError(f"op={_short(self.op)}: allowed {', '.join(OPS)}")
        if not isinstance(self.causal, bool):
            raise ProblemError(f"causal={_short(self.causal)}: must be true or false")
        if self.softmax_scale is not None:
            check_scale(self.softmax_scale)
        self._validate_serving()

    def _validate_serving(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ProblemError(f"kind={_short(self.kind)}: allowed {', '.join(KINDS)}")
        for name in ("window_left", "window_right"):
            value = getattr(self, name)
            if not _is_int(value) or value < -1:
                raise ProblemError(f"{name}={_short(value)}: must be an integer >= 0, or -1 for unbounded")
        if self.causal and self.window_right > 0:
            raise ProblemError(f"window_right={self.window_right} with causal=true: causal is the right bound 0; "
                               "give window_right 0 or -1, or causal=false")
        sc = self.softcap
        if isinstance(sc, bool) or not isinstance(sc, (int, float)) or not math.isfinite(sc) or sc < 0:
            raise ProblemError(f"softcap={_short(sc)}: must be a finite number >= 0 (0: no soft-capping)")
        if not _is_int(self.page_size) or self.page_size not in _decode.PAGE_SIZES:
            raise ProblemError(f"page_size={_short(self.page_size)}: allowed "
                               f"{', '.join(map(str, _decode.PAGE_SIZES))} (0: a contiguous cache)")
        if self.page_size and self.kind != "decode":
            raise ProblemError(f"page_size={self.page_size}: only a decode problem has a paged cache (kind=decode)")
        if self.lengths and self.kind != "varlen":
            raise ProblemError(f"lengths={_short(self.lengths)}: only a varlen problem has lengths (kind=varlen)")
        why = {"decode": _decode.check, "varlen": _varlen.check}.get(self.kind, lambda p: None)(self) or _fp8.check(self)
        if why:
            raise ProblemError(why)
        if self.op != "fwd" and (self.kind != "dense" or _fp8.is_fp8(self.dtype) or self.softcap
                                 or _masks.windowed(self.window_left, self.window_right)):
            # the gradients' reference and checks are those of plain dense attention
            raise ProblemError(f"op={self.op}: the backward is measured on plain dense problems only "
                               "(kind=dense, no window, no softcap, not float8); use op=fwd for serving shapes")

    # -- counts -----------------------------------------------------------------------------
    def attended_pairs(self) -> int:
        """Number of unmasked (query, key) pairs per (batch, head); for varlen, summed over the sequences
        (per head)."""
        sq, sk = self.seqlen_q, self.seqlen_k
        if self.kind == "varlen":
            return sum(_masks.attended_pairs(n, n, self.causal, self.window_left, self.window_right)
                       for n in self.seq_lengths())
        if _masks.windowed(self.window_left, self.window_right):
            return _masks.attended_pairs(sq, sk, self.causal, self.window_left, self.window_right)
        if not self.causal:
            return sq * sk
        # bottom-right alignment: row i attends clamp(i + 1 + offset, 0, sk) keys
        offset = sk - sq
        first_partial = min(sq, max(0, -offset))  # rows before this attend nothing
        first_full = min(sq, max(first_partial, sk - 1 - offset))  # rows from here attend all sk
        n = first_full - first_partial
        partial = n * (first_partial + 1 + offset) + n * (n - 1) // 2
        return partial + (sq - first_full) * sk

    def forward_flops(self) -> float:
        """Forward FLOPs: 2 matmuls × 2 FLOPs per multiply-add, over attended pairs."""
        per_batch = 1 if self.kind == "varlen" else self.batch  # varlen's pairs are summed over its sequences
        return 4.0 * per_batch * self.heads_q * self.attended_pairs() * self.head_dim

    def seq_lengths(self) -> tuple[int, ...]:
        """The sequences' lengths: varlen's drawn ones, else ``batch`` times seqlen_q."""
        if self.kind == "varlen":
            return _varlen.seq_lengths(self.batch, self.seqlen_q, self.lengths)
        return (self.seqlen_q,) * self.batch

    @property
    def bandwidth_bound(self) -> bool:
        """Whether the headline number is GB/s of the copy bandwidth rather than TFLOPS (decode)."""
        return self.kind == "decode"

    def flops(self) -> float:
        """FLOPs of the problem's operation: the forward's × 1 (fwd), 2.5 (bwd) or 3.5 (fwd_bwd)."""
        return OP_FLOPS[self.op] * self.forward_flops()

    def min_bytes(self) -> int:
        """fwd: read Q, K, V, write O; bwd: read Q, K, V, O, dO, write dQ, dK, dV; fwd_bwd: both (decode:
        the cached tokens and the page table; varlen: the real tokens and cu_seqlens; both forward only)."""
        e = DTYPE_BYTES[self.dtype]
        if _fp8.is_fp8(self.dtype):
            return _fp8.min_bytes(self)
        if self.kind == "decode":
            return _decode.min_bytes(self, e)
        if self.kind == "varlen":
            total = sum(self.seq_lengths())
            return e * total * self.head_dim * (2 * self.heads_q + 2 * self.heads_kv) + 4 * (self.batch + 1)
        q = self.batch * self.seqlen_q * self.heads_q * self.head_dim
        kv = 2 * self.batch * self.seqlen_k * self.heads_kv * self.head_dim
        fwd = 2 * q + kv  # Q, K, V in; O out
        bwd = 4 * q + 2 * kv  # Q, K, V, O, dO in; dQ, dK, dV out
        return e * {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[self.op]

    def output_shapes(self) -> dict[str, tuple[int, int, int, int]]:
        """The bshd shape of each output of the operation: O and dQ like Q, dK and dV like K and V."""
        qs = (self.batch, self.seqlen_q, self.heads_q, self.head_dim)
        ks = (self.batch, self.seqlen_k, self.heads_kv, self.head_dim)
        shapes = {"o": qs, "dq": qs, "dk": ks, "dv": ks}
        return {name: shapes[name] for name in OP_OUTPUTS[self.op]}

    # -- identity ---------------------------------------------------------------------------
    def key(self) -> str:
        """Stable short id used in tables, filters and NVTX ranges; a forward's key names no operation
        (as before operations existed), the others end in ``-bwd`` / ``-fwd_bwd``."""
        s = self.inputs_key()
        return s if self.op == "fwd" else f"{s}-{self.op}"

    def inputs_key(self) -> str:
        """The key of the problem's inputs, the same for every operation (the seeds are derived from it,
        so the forward and backward of one shape are measured on the same Q, K, V)."""
        s = f"b{self.batch}-hq{self.heads_q}-hkv{self.heads_kv}-sq{self.seqlen_q}-sk{self.seqlen_k}-d{self.head_dim}"
        s += f"-{self.dtype}-{'causal' if self.causal else 'full'}-{self.layout}"
        if abs(self.softmax_scale - 1.0 / math.sqrt(self.head_dim)) > 1e-12:
            s += f"-scale{self.softmax_scale:g}"
        # serving shapes: only a problem that has them gets these parts (a plain dense key is unchanged)
        if self.kind == "decode":
            s = f"decode-{s}-" + (f"page{self.page_size}" if self.page_size else "contig")
        elif self.kind == "varlen":
            s = f"varlen-{self.lengths}-{s}"
        if _masks.windowed(self.window_left, self.window_right):
            s += f"-win{self.window_left}_{self.window_right}"
        if self.softcap:
            s += f"-softcap{self.softcap:g}"
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
