"""float64 reference: the oracle every correctness metric is measured against (also timeable).

Its backward is ``attention_math.attention_grads`` (autograd in float64, a chunk of query rows at a
time, so its memory stays bounded): each call recomputes the forward of every chunk, so its ``bwd`` time
includes a forward (the reference is the oracle, not a contender)."""
from __future__ import annotations

from typing import ClassVar

import torch

from harness.backends.base import Backend, FwdBwdFn, GradFn, RunFn
from harness.backends.registry import register
from harness.measure import kinds
from harness.spec import attention_math
from harness.spec.problem import OPS, Problem


@register
class Reference(Backend):
    name = "reference"
    description = "float64 eager attention (chunked), the correctness oracle"
    devices = ("cuda", "cpu")
    operations: ClassVar[frozenset[str]] = frozenset(OPS)
    kinds = ("dense", "decode", "varlen")
    features = ("window", "softcap", "fp8")

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        return lambda: kinds.attention(q, k, v, problem, torch.float64, q.dtype)

    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            _, dq, dk, dv = attention_math.attention_grads(q, k, v, do, problem, torch.float64, q.dtype)
            return dq, dk, dv

        return run

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            o, dq, dk, dv = attention_math.attention_grads(q, k, v, do, problem, torch.float64, q.dtype)
            return o, dq, dk, dv

        return run
