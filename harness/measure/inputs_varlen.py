"""A varlen problem's packed inputs: the sequences' tokens back to back, ``[total_tokens, heads, head_dim]``,
with ``cu_seqlens`` (int32, batch + 1) marking where each starts. Drawn like dense inputs (the same
distributions), one sequence after another."""
from __future__ import annotations

from functools import lru_cache

import torch

from harness.measure.inputs import TORCH_DTYPES, draw
from harness.spec.distributions import DISTRIBUTIONS
from harness.spec.kinds.varlen import cu_seqlens as _cu
from harness.spec.problem import Problem


@lru_cache(maxsize=8)
def _cu_seqlens(lengths: tuple[int, ...], device: str) -> torch.Tensor:
    return torch.tensor(_cu(lengths), dtype=torch.int32, device=device)


def cu_seqlens(problem: Problem, device: str | torch.device) -> torch.Tensor:
    """A copy a backend may hand to a kernel."""
    return _cu_seqlens(problem.seq_lengths(), str(torch.device(device))).clone()


def token_seq(problem: Problem, device: str | torch.device) -> torch.Tensor:
    """int64 [total_tokens]: the sequence each packed token belongs to (made once per problem and device:
    the timed loop maps V's scales through it before every call, with no host-to-device copy)."""
    return _token_seq(problem.seq_lengths(), str(torch.device(device)))


@lru_cache(maxsize=8)
def _token_seq(lengths: tuple[int, ...], device: str) -> torch.Tensor:
    n = torch.tensor(lengths, device=device)
    return torch.arange(len(lengths), device=device).repeat_interleave(n)


def make_varlen_inputs(problem: Problem, seed: int, distribution: str,
                       device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution {distribution!r}: allowed {', '.join(DISTRIBUTIONS)}")
    total = sum(problem.seq_lengths())
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for which, heads in zip("qkv", (problem.heads_q, problem.heads_kv, problem.heads_kv)):
        base = draw((total, heads, problem.head_dim), which, distribution, gen, device)
        out.append(base.to(TORCH_DTYPES[problem.dtype]))
    return out[0], out[1], out[2]


def pad(problem: Problem, packed: torch.Tensor) -> torch.Tensor:
    """``[batch, seqlen_q, heads, d]`` with each sequence at the start of its row and zeros after it."""
    out = packed.new_zeros((problem.batch, problem.seqlen_q, *packed.shape[1:]))
    at = 0
    for i, n in enumerate(problem.seq_lengths()):
        out[i, :n] = packed[at:at + n]
        at += n
    return out


def pad_index(problem: Problem, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch index, position) of every packed token, to scatter into and gather from a padded batch."""
    lengths = problem.seq_lengths()
    b = token_seq(problem, device)
    starts = torch.tensor(_cu(lengths)[:-1], device=device)
    pos = torch.arange(sum(lengths), device=device) - starts[b]
    return b, pos
