"""Naive eager attention: QKᵀ → softmax → PV as separate PyTorch ops in the input dtype.

This is the seeds' three-kernel "before" pipeline: the score and probability matrices go through
device memory, which is what fused kernels avoid.
"""
from __future__ import annotations

import torch

from harness.backends.base import Backend, RunFn
from harness.backends.registry import register
from harness.measure import kinds
from harness.spec.problem import Problem


@register
class Naive(Backend):
    name = "naive"
    description = "eager QKᵀ → softmax → PV in the input dtype (three+ kernels, S and P in memory)"
    devices = ("cuda", "cpu")
    kinds = ("dense", "decode", "varlen")  # decode: reads the paged cache through the table, timed
    features = ("window", "softcap", "fp8")

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        dt = q.dtype
        # one pass, no chunking: the whole score matrix goes through memory, as in the seeds' pipeline
        return lambda: kinds.attention(q, k, v, problem, dt, budget_bytes=float("inf"))
