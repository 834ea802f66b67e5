"""Plain attention arithmetic, chunked so that the score matrix never exceeds a memory budget.

Used for the float64 reference, for "PyTorch's own computation in the input dtype" (the yardstick of
the pass rule), and by the naive/reference backends. ``attention_grads`` gives O, dQ, dK and dV the
same way, by autograd over one chunk of query rows at a time (rows are independent in the backward too:
dQ of a chunk needs only that chunk's dO; dK and dV are sums over the chunks). Causal masking is
bottom-right aligned; a query row that attends no key gets output 0 (the FlashAttention convention). A
local window and soft-capping (``harness.spec.kinds.masks``) are applied when the problem has them: the
scaled scores are capped, then masked, then go through softmax.
"""
from __future__ import annotations

import torch

from harness.spec.kinds import masks
from harness.spec.problem import Problem

_BUDGET_BYTES = 1 << 30
#: the gradients' chunks keep their forward for the backward: a larger budget, so that long sequences
#: are not cut into thousands of thin chunks (each repeats K and V over the query heads for GQA)
_GRAD_BUDGET_BYTES = 4 << 30


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
    for q0 in range(0, sq, rows):
        q1 = min(sq, q0 + rows)
        out[:, :, q0:q1] = _rows(qh[:, :, q0:q1], kh, vh, problem, q0, sq, compute_dtype, p_round)
    o = out.transpose(1, 2)
    return o.to(out_dtype) if out_dtype is not None else o


def _rows(qc: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, problem: Problem, q0: int, sq: int,
          compute_dtype: torch.dtype, p_round: torch.dtype | None = None) -> torch.Tensor:
    """Output rows ``q0 : q0 + len`` (b h s d) of queries ``qc`` against all keys (kv heads already
    repeated to the query heads)."""
    sk = kh.shape[2]
    q1 = q0 + qc.shape[2]
    windowed = masks.windowed(problem.window_left, problem.window_right)
    scores = torch.matmul(qc * problem.softmax_scale, kh.transpose(-1, -2))
    if problem.softcap:
        scores = torch.tanh(scores / problem.softcap) * problem.softcap
    if windowed:
        scores = scores.masked_fill(~window_keep(problem, sq, sk, q0, q1, qc.device), float("-inf"))
    elif problem.causal:
        keep = causal_keep(sq, sk, q0, q1, qc.device)
        scores = scores.masked_fill(~keep, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if (problem.causal and sq > sk) or windowed:
        probs = torch.nan_to_num(probs, nan=0.0)  # rows with no key: softmax of all -inf
    if p_round is not None:
        probs = probs.to(p_round).to(compute_dtype)
    return torch.matmul(probs.to(compute_dtype), vh)


def attention_grads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, problem: Problem,
                    compute_dtype: torch.dtype, out_dtype: torch.dtype | None = None,
                    budget_bytes: float = _GRAD_BUDGET_BYTES) -> tuple[torch.Tensor, ...]:
    """(O, dQ, dK, dV) for bshd inputs and the output gradient ``do``, each computed in ``compute_dtype``
    and returned bshd in ``out_dtype`` (default compute). dK and dV of a GQA kv head sum its query heads
    (autograd through the repeat). Chunked like ``attention``; the chunks' dK and dV are summed in at
    least float32, so a 16-bit computation rounds them once, as one unchunked pass would."""
    b, sq, hq, d = q.shape
    sk, hkv = k.shape[1], k.shape[2]
    group = hq // hkv
    acc = torch.float64 if compute_dtype == torch.float64 else torch.float32
    with torch.enable_grad():
        kh = k.detach().transpose(1, 2).to(compute_dtype).requires_grad_(True)
        vh = v.detach().transpose(1, 2).to(compute_dtype).requires_grad_(True)
        doh = do.detach().transpose(1, 2).to(compute_dtype)
        out = torch.empty((b, hq, sq, d), dtype=compute_dtype, device=q.device)
        dq = torch.empty((b, hq, sq, d), dtype=compute_dtype, device=q.device)
        dk = torch.zeros((b, hkv, sk, d), dtype=acc, device=q.device)
        dv = torch.zeros((b, hkv, sk, d), dtype=acc, device=q.device)
        elem = torch.empty((), dtype=compute_dtype).element_size()
        per_row = b * hq * sk * max(elem, 4) * 6  # the forward's intermediates, kept for the backward
        rows = sq if budget_bytes == float("inf") else int(min(sq, max(1, budget_bytes // per_row)))
        qh = q.detach().transpose(1, 2).to(compute_dtype)
        for q0 in range(0, sq, rows):
            q1 = min(sq, q0 + rows)
            qc = qh[:, :, q0:q1].detach().requires_grad_(True)
            kr, vr = (kh, vh) if group == 1 else (kh.repeat_interleave(group, dim=1), vh.repeat_interleave(group, dim=1))
            oc = _rows(qc, kr, vr, problem, q0, sq, compute_dtype)
            gq, gk, gv = torch.autograd.grad(oc, (qc, kh, vh), doh[:, :, q0:q1])
            out[:, :, q0:q1] = oc.detach()
            dq[:, :, q0:q1] = gq
            dk += gk
            dv += gv
            del oc, gq, gk, gv, kr, vr
    res = (out, dq, dk.to(compute_dtype), dv.to(compute_dtype))
    return tuple(t.transpose(1, 2).to(out_dtype if out_dtype is not None else compute_dtype) for t in res)
