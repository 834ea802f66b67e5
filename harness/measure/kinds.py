"""What differs between problem kinds on the measuring side, in one place: how inputs are made and laid
out, the reference arithmetic, the output's shape, the null outputs that calibrate the tolerance, and how
the timed calls' per-call V scales (``harness.measure.guards``) reach a kind's V and come back off its
output. Dense problems go through exactly the functions they always did.

  dense   q [b, sq, hq, d], k/v [b, sk, hkv, d] (as problem.layout says); O [b, sq, hq, d]
  decode  q [b, sq, hq, d], k/v the cache: [b, sk, hkv, d] or a page pool (harness.measure.inputs_decode)
  varlen  q [tokens, hq, d], k/v [tokens, hkv, d] packed (harness.measure.inputs_varlen); O [tokens, hq, d]
"""
from __future__ import annotations

import torch

from harness.measure import inputs_decode, inputs_varlen
from harness.measure.inputs import make_inputs as _dense_inputs
from harness.spec import attention_math
from harness.spec.kinds import fp8
from harness.spec.problem import Problem

FP8_TORCH = torch.float8_e4m3fn


def out_dtype(problem: Problem, input_dtype: torch.dtype) -> torch.dtype:
    """The dtype of a right output: the inputs' own, bfloat16 for FP8 inputs."""
    return torch.bfloat16 if fp8.is_fp8(problem.dtype) else input_dtype


def dequantize(t: torch.Tensor) -> torch.Tensor:
    """An FP8 input's real values (float32): stored · the per-tensor descale."""
    return t.to(torch.float32) * fp8.DESCALE


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float32 values to the stored e4m3 (x / descale, clipped to the headroom), layout kept."""
    return (x / fp8.DESCALE).clamp_(-fp8.HEADROOM, fp8.HEADROOM).to(FP8_TORCH)


def make_inputs(problem: Problem, seed: int, distribution: str,
                device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if problem.kind == "decode":
        return inputs_decode.make_decode_inputs(problem, seed, distribution, device)
    if problem.kind == "varlen":
        return inputs_varlen.make_varlen_inputs(problem, seed, distribution, device)
    if fp8.is_fp8(problem.dtype):  # drawn as float32 exactly as other dtypes, then stored in e4m3
        q, k, v = _dense_inputs(problem.with_(dtype="float32"), seed, distribution, device)
        return quantize(q), quantize(k), quantize(v)
    return _dense_inputs(problem, seed, distribution, device)


def out_shape(problem: Problem) -> tuple[int, ...]:
    if problem.kind == "varlen":
        return (sum(problem.seq_lengths()), problem.heads_q, problem.head_dim)
    return (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)


def _dense_view(problem: Problem) -> Problem:
    """The dense problem the same arithmetic computes (masks and soft cap kept)."""
    return problem.with_(kind="dense", page_size=0, lengths="")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, problem: Problem, compute_dtype: torch.dtype,
              out_dtype: torch.dtype | None = None, budget_bytes: float | None = None) -> torch.Tensor:
    """``attention_math.attention`` for any kind, in the kind's output layout."""
    kw = {} if budget_bytes is None else {"budget_bytes": budget_bytes}
    if fp8.is_fp8(problem.dtype):
        # from the dequantised inputs; "the input dtype" is the FP8-aware computation (float32, e4m3 P)
        q, k, v = dequantize(q), dequantize(k), dequantize(v)
        out_dtype = torch.bfloat16 if out_dtype is not None else None
        if compute_dtype == FP8_TORCH:
            return attention_math.attention(q, k, v, problem, torch.float32, torch.bfloat16, p_round=FP8_TORCH, **kw)
        return attention_math.attention(q.to(compute_dtype), k.to(compute_dtype), v.to(compute_dtype), problem,
                                        compute_dtype, out_dtype, **kw)
    if problem.kind == "decode":
        k, v = inputs_decode.gather(problem, k), inputs_decode.gather(problem, v)
        return attention_math.attention(q, k, v, problem, compute_dtype, out_dtype, **kw)
    if problem.kind == "varlen":
        outs, at = [], 0
        for n in problem.seq_lengths():
            sub = _dense_view(problem).with_(batch=1, seqlen_q=n, seqlen_k=n)
            outs.append(attention_math.attention(q[None, at:at + n], k[None, at:at + n], v[None, at:at + n], sub,
                                                 compute_dtype, out_dtype, **kw)[0])
            at += n
        return torch.cat(outs)
    return attention_math.attention(q, k, v, problem, compute_dtype, out_dtype, **kw)


def null_outputs(problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs a non-kernel could return (zeros, mean(V), V, Q), in the kind's output layout."""
    from harness.measure.correctness import _null_outputs

    if fp8.is_fp8(problem.dtype):
        return _null_outputs(problem, dequantize(q).to(torch.bfloat16), dequantize(v).to(torch.bfloat16))
    if problem.kind == "decode":
        return _null_outputs(problem, q, inputs_decode.gather(problem, v))
    if problem.kind == "varlen":
        group = problem.heads_q // problem.heads_kv
        seq = inputs_varlen.token_seq(problem, q.device)
        v_q = v.repeat_interleave(group, dim=1)
        sums = torch.zeros((problem.batch, *v_q.shape[1:]), dtype=torch.float64, device=v.device)
        sums.index_add_(0, seq, v_q.to(torch.float64))
        lengths = torch.tensor(problem.seq_lengths(), dtype=torch.float64, device=v.device)
        means = (sums / lengths[:, None, None]).to(v.dtype)[seq]
        return {"zeros": torch.zeros_like(q), "mean(V)": means, "V": v_q, "Q": q}
    return _null_outputs(problem, q, v)


def apply_v_scales(problem: Problem, dst_v: torch.Tensor, src_v: torch.Tensor, scales: torch.Tensor) -> None:
    """dst_v = src_v · the per-(sequence, kv head, channel) ``scales`` [b, 1, hkv, d], wherever the kind keeps
    a sequence's values (a pool page scales by its owner's factors, a packed token by its sequence's)."""
    from harness.measure import guards

    if problem.kind == "decode" and problem.page_size:
        scales = scales[inputs_decode.paging(problem, scales.device).owner]
    elif problem.kind == "varlen":
        scales = scales[:, 0][inputs_varlen.token_seq(problem, scales.device)]
    if fp8.is_fp8(problem.dtype):  # no e4m3 arithmetic: through float32, exact (±1, ±2 within the headroom)
        dst_v.copy_((src_v.to(torch.float32) * scales.to(torch.float32)).to(dst_v.dtype))
        return
    guards.apply_scales(dst_v, src_v, scales)


def unscale_output(problem: Problem, out: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """A timed output mapped back (float64) to what the unscaled inputs give."""
    from harness.measure import guards

    if problem.kind == "varlen":
        group = problem.heads_q // problem.heads_kv
        s = scales[:, 0][inputs_varlen.token_seq(problem, scales.device)]
        return out.to(torch.float64) / (s.repeat_interleave(group, dim=1) if group > 1 else s)
    return guards.unscale_output(out, scales, problem.heads_q)
