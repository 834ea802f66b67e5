"""float64 reference: the oracle every correctness metric is measured against (also timeable)."""
from __future__ import annotations

import torch

from harness.backends.base import Backend, RunFn
from harness.backends.registry import register
from harness.measure import kinds
from harness.spec.problem import Problem


@register
class Reference(Backend):
    name = "reference"
    description = "float64 eager attention (chunked), the correctness oracle"
    devices = ("cuda", "cpu")
    kinds = ("dense", "decode", "varlen")
    features = ("window", "softcap", "fp8")

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        return lambda: kinds.attention(q, k, v, problem, torch.float64, q.dtype)
