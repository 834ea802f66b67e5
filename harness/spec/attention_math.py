"""Plain attention arithmetic, chunked so that the score matrix never exceeds a memory budget.

Used for the float64 reference, for "PyTorch's own computation in the input dtype" (the yardstick of
the pass rule), and by the naive/reference backends. Causal masking is bottom-right aligned; a query
row that attends no key gets output 0 (the FlashAttention convention). A local window and soft-capping
(``harness.spec.kinds.masks``) are applied when the problem has them: the scaled scores are capped, then
masked, then go through softmax.
"""
from __future__ import annotations

import torch

from harness.spec.kinds import masks
from harness.spec.problem import Problem

_BUDGET_BYTES = 1 << 30


def causal_keep(sq: int, sk: int, q0: int, q1: int, device: torch.device) -> torch.Tensor:
    """Boolean [q1-q0, sk] mask: True where query row i may attend key j (j <= i + sk - sq)."""
    rows = torch.arange(q0, q1, device=device).unsqueeze(1)
    cols = torch.arange(sk, device=device).unsqueeze(0)
    return cols <= rows + (sk - sq)


def window_keep(problem: Problem, sq: int, sk: int, q0: int, q1: int, device: torch.device) -> torch.Tensor:
    """Boolean [q1-q0, sk] mask of a local window (and causal): key j visible to row i iff
    ``i + lo <= j <= i + hi`` (``masks.bounds``)."""
    lo, hi = masks.bounds(sq, sk, problem.causal, problem.window_left, problem.window_right)
    rows = torch.arange(q0, q1, device=device).unsqueeze(1)
    cols = torch.arange(sk, device=device).unsqueeze(0)
    return (cols >= rows + lo) & (cols <= rows + hi)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, problem: Problem,
              compute_dtype: torch.dtype, out_dtype: torch.dtype | None = None,
              budget_bytes: float = _BUDGET_BYTES, p_round: torch.dtype | None = None) -> torch.Tensor:
    """O for bshd inputs, computed in ``compute_dtype``; returns bshd in ``out_dtype`` (default compute).
    Query rows are processed in chunks whose score matrices fit ``budget_bytes``. ``p_round``: the
    probabilities are rounded to this dtype before P·V (an FP8 kernel's e4m3 P)."""
    b, sq, hq, d = q.shape
    sk, hkv = k.shape[1], k.shape[2]
    group = hq // hkv
    # b h s d in the compute dtype; GQA by repeating kv heads
    qh = q.transpose(1, 2).to(compute_dtype)
    kh = k.transpose(1, 2).to(compute_dtype)
    vh = v.transpose(1, 2).to(compute_dtype)
    if group > 1:
        kh, vh = kh.repeat_interleave(group, dim=1), vh.repeat_interleave(group, dim=1)
    out = torch.empty((b, hq, sq, d), dtype=compute_dtype, device=q.device)
    elem = torch.empty((), dtype=compute_dtype).element_size()
    # softmax may upcast internally: budget for fp32 intermediates too
    per_row = b * hq * sk * max(elem, 4) * 3
    rows = sq if budget_bytes == float("inf") else int(min(sq, max(1, budget_bytes // per_row)))
    scale = problem.softmax_scale
    windowed = masks.windowed(problem.window_left, problem.window_right)
    cap = problem.softcap
    for q0 in range(0, sq, rows):
        q1 = min(sq, q0 + rows)
        scores = torch.matmul(qh[:, :, q0:q1] * scale, kh.transpose(-1, -2))
        if cap:
            scores = torch.tanh(scores / cap) * cap
        if windowed:
            scores = scores.masked_fill(~window_keep(problem, sq, sk, q0, q1, q.device), float("-inf"))
        elif problem.causal:
            keep = causal_keep(sq, sk, q0, q1, q.device)
            scores = scores.masked_fill(~keep, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if (problem.causal and sq > sk) or windowed:
            probs = torch.nan_to_num(probs, nan=0.0)  # rows with no key: softmax of all -inf
        if p_round is not None:
            probs = probs.to(p_round).to(compute_dtype)
        out[:, :, q0:q1] = torch.matmul(probs.to(compute_dtype), vh)
        del scores, probs
    o = out.transpose(1, 2)
    return o.to(out_dtype) if out_dtype is not None else o
