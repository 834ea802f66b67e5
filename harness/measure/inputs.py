"""Random attention inputs: fresh per trial, reproducible from a recorded seed, in several distributions.

Distributions (each chosen because a known shortcut or bug hides under one of the others):
  normal        q, k, v ~ N(0, 1)
  uniform       q, k, v ~ U(0, 1): all-positive values, where returning mean(V) is nearly right
  large_logits  q, k ~ N(0, 1)·4: logits with std ~ 16, a near-one-hot softmax (max-subtraction bugs)
  large         q, k ~ N(0, 1)·2, v ~ N(0, 1)·30: large-magnitude values and logits (fp16 accumulator
                range, unnormalised exp); larger logits would make PyTorch's own low-precision error, and
                so the tolerance, too loose for null-kernel calibration to pass

The backward's output gradient dO is N(0, 1) in every distribution (as FlashAttention's tests draw it),
from its own seed, in the input dtype and the problem's layout.
"""
from __future__ import annotations

import torch

from harness.spec.distributions import DISTRIBUTIONS
from harness.spec.problem import Problem

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def torch_dtype(problem: Problem) -> torch.dtype:
    return TORCH_DTYPES[problem.dtype]


def empty_like_layout(problem: Problem, seqlen: int, heads: int, device: str | torch.device) -> torch.Tensor:
    """A [b, s, h, d] tensor laid out in memory as the problem's layout says."""
    b, d, dt = problem.batch, problem.head_dim, torch_dtype(problem)
    if problem.layout == "bhsd":
        return torch.empty((b, heads, seqlen, d), dtype=dt, device=device).transpose(1, 2)
    return torch.empty((b, seqlen, heads, d), dtype=dt, device=device)


def make_inputs(problem: Problem, seed: int, distribution: str = "normal",
                device: str | torch.device = "cuda") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution {distribution!r}: allowed {', '.join(DISTRIBUTIONS)}")
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for which, (seqlen, heads) in zip("qkv", [(problem.seqlen_q, problem.heads_q),
                                            (problem.seqlen_k, problem.heads_kv),
                                            (problem.seqlen_k, problem.heads_kv)]):
        t = empty_like_layout(problem, seqlen, heads, device)
        t.copy_(draw(t.shape, which, distribution, gen, device))
        out.append(t)
    return out[0], out[1], out[2]


def draw(shape: tuple[int, ...] | torch.Size, which: str, distribution: str, gen: torch.Generator,
         device: str | torch.device) -> torch.Tensor:
    """Values of q, k or v (``which``) from ``distribution``, drawn in float32: each dtype then rounds
    the same underlying values once."""
    base = torch.empty(tuple(shape), dtype=torch.float32, device=device)
    if distribution == "uniform":
        base.uniform_(0.0, 1.0, generator=gen)
    else:
        base.normal_(0.0, 1.0, generator=gen)
        if distribution == "large_logits" and which in "qk":
            base.mul_(4.0)
        elif distribution == "large":
            base.mul_(30.0 if which == "v" else 2.0)
    return base


def make_grad_output(problem: Problem, seed: int, device: str | torch.device = "cuda") -> torch.Tensor:
    """dO for the backward: N(0, 1), shaped like O (``[b, sq, hq, d]`` in the problem's layout)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    t = empty_like_layout(problem, problem.seqlen_q, problem.heads_q, device)
    base = torch.empty(t.shape, dtype=torch.float32, device=device)
    base.normal_(0.0, 1.0, generator=gen)
    t.copy_(base)
    return t
