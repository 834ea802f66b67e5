"""Guards the measuring side keeps around a candidate's calls (worker-side, used by ``measure``):

* ``poison_free_memory`` fills soon-to-be-reused allocator blocks with a *marked* NaN (a payload no
  arithmetic produces: hardware NaNs are canonical), and ``poisoned`` counts output elements that still
  hold it. An element with the mark was never written by the call: the output is a stale buffer
  (``torch.empty`` handed back a freed block) or only partly written. A NaN a kernel computes is
  canonical and is reported by the error metrics instead.
* ``fingerprint`` of the cached inputs, checked after every cell: a backend that changes the harness's
  inputs (directly, or later through references it kept) would make every later backend on the same
  problem look wrong; the cell is rejected and the cache rebuilt.
* ``timing_scales`` / ``apply_scales``: fresh contents for every timed call. V is multiplied per
  (batch, kv head, channel) by ±1 or ±2 — exact in floating point, so the right output is the reference
  multiplied the same way (O = P·V is linear in each channel of V). No two timed calls then expect the
  same output, so an answer kept from an earlier call (cached by pointer or by the contents of Q and K,
  or computed for all calls at once) is wrong and caught by the per-call check.
"""
from __future__ import annotations

import torch

#: integer dtypes of each element size, to compare or write floating-point bit patterns exactly
INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
#: marked NaNs: quiet NaNs with a payload that no arithmetic produces (canonical: 0x7E00, 0x7FC0, 0x7FC00000)
POISON_BITS = {torch.float16: 0x7E5A, torch.bfloat16: 0x7FDA, torch.float32: 0x7FD5A5A5, torch.float64: 0x7FF5A5A5A5A5A5A5}


def _signed(bits: int, nbytes: int) -> int:
    return bits - (1 << (8 * nbytes)) if bits >= 1 << (8 * nbytes - 1) else bits


def poison_free_memory(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
                       copies: int = 2) -> None:
    """Fill soon-to-be-reused allocator blocks of the output's size with the marked NaN."""
    bits = POISON_BITS.get(dtype)
    if bits is None:
        return
    n = torch.empty((), dtype=dtype).element_size()
    blocks = [torch.full(shape, _signed(bits, n), dtype=INT_VIEW[n], device=device) for _ in range(copies)]
    del blocks


def poisoned(out: torch.Tensor) -> int:
    """How many elements of ``out`` still hold the marked NaN (were never written by the call)."""
    bits = POISON_BITS.get(out.dtype)
    if bits is None or out.numel() == 0:
        return 0
    n = out.element_size()
    return int((out.detach().view(INT_VIEW[n]) == _signed(bits, n)).sum())


def fingerprint(*tensors: torch.Tensor) -> tuple[int, ...]:
    """Cheap identity of tensors' contents: per tensor, the sum and a position-weighted sum of its bit
    patterns (wrapping integer arithmetic; changing any single element changes the pair)."""
    out: list[int] = []
    chunk = 1 << 24
    for t in tensors:
        x = t.detach().reshape(-1).view(INT_VIEW[t.element_size()])
        total, weighted = 0, 0
        for i in range(0, x.numel(), chunk):
            c = x[i:i + chunk].to(torch.int64)
            w = torch.arange(i + 1, i + 1 + c.numel(), dtype=torch.int64, device=c.device) % 65521
            total += int(c.sum())
            weighted += int((c * w).sum())
        out += [total, weighted]
    return tuple(out)


def timing_scales(batch: int, heads_kv: int, head_dim: int, device: str | torch.device,
                  gen: torch.Generator) -> torch.Tensor:
    """Random ±1/±2 per (batch, kv head, channel), shaped [b, 1, h_kv, d] to broadcast over V."""
    choices = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64, device=device)
    idx = torch.randint(0, 4, (batch, 1, heads_kv, head_dim), generator=gen, device=device)
    return choices[idx]


def apply_scales(dst_v: torch.Tensor, src_v: torch.Tensor, scales: torch.Tensor) -> None:
    """dst_v = src_v · scales, exactly (powers of two), in dst_v's layout."""
    torch.mul(src_v, scales.to(src_v.dtype), out=dst_v)


def unscale_output(out: torch.Tensor, scales: torch.Tensor, heads_q: int) -> torch.Tensor:
    """The output of scaled V mapped back (float64) to what the unscaled inputs give."""
    group = heads_q // scales.shape[2]
    s = scales.repeat_interleave(group, dim=2) if group > 1 else scales
    return out.to(torch.float64) / s
