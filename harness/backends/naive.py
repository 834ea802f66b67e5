"""Naive eager attention: QKᵀ → softmax → PV as separate PyTorch ops in the input dtype.

This is the seeds' three-kernel "before" pipeline: the score and probability matrices go through
device memory, which is what fused kernels avoid. Its backward is autograd's through the same ops.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from harness.backends import autograd
from harness.backends.base import Backend, FwdBwdFn, GradFn, RunFn
from harness.backends.registry import register
from harness.measure import kinds
from harness.spec import attention_math
from harness.spec.problem import OPS, Problem


@register
class Naive(Backend):
    name = "naive"
    description = "eager QKᵀ → softmax → PV in the input dtype (three+ kernels, S and P in memory)"
    devices = ("cuda", "cpu")
    operations: ClassVar[frozenset[str]] = frozenset(OPS)
    kinds = ("dense", "decode", "varlen")  # decode: reads the paged cache through the table, timed
    features = ("window", "softcap", "fp8")

    @staticmethod
    def _forward(problem: Problem) -> autograd.Forward:
        # one pass, no chunking: the whole score matrix goes through memory, as in the seeds' pipeline
        return lambda q, k, v: attention_math.attention(q, k, v, problem, q.dtype, budget_bytes=float("inf"))

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        dt = q.dtype
        # one pass, no chunking: the whole score matrix goes through memory, as in the seeds' pipeline
        return lambda: kinds.attention(q, k, v, problem, dt, budget_bytes=float("inf"))

    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        return autograd.backward_call(self._forward(problem), q, k, v, do)

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        return autograd.fwd_bwd_call(self._forward(problem), q, k, v, do)
