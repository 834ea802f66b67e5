"""What the timed calls of each operation take and return: the input buffers, how each call gets fresh
contents, and how its output is checked against the reference.

Every timed call must expect an answer of its own, so that one kept from another call is wrong:

* ``fwd``: V is multiplied per (batch, kv head, channel) by ±1 or ±2 (exact): O scales the same way
  (``harness.measure.guards``).
* ``bwd``: the forward and its saved state are made once per buffer in ``prepare_backward``, so q, k, v
  stay as they are; dO is multiplied per (batch, kv head) by s = ±1 or ±2, and every gradient is linear
  in dO: dQ, dK and dV scale by s (per kv head, over the query heads of its group).
* ``fwd_bwd``: q, k, v refreshed as well, V multiplied per (batch, kv head) by t = ±1 or ±2: O scales by
  t, dV by s (P does not depend on V), dQ and dK by s·t (dP = dO·Vᵀ and the row sums D = rowsum(dO∘O)
  both scale by s·t). The scale is per head, not per channel: a per-channel scale of V or dO would not
  carry through dP.
"""
from __future__ import annotations

from typing import Any

import torch

from harness.measure import guards, kinds
from harness.measure.problem_cache import InputSet
from harness.measure.stages.base import CellContext
from harness.spec.problem import OP_OUTPUTS


def _like(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)


def head_scales(batch: int, heads_kv: int, device: str | torch.device, gen: torch.Generator) -> torch.Tensor:
    """Random ±1/±2 per (batch, kv head), shaped [b, 1, h_kv, 1] to broadcast over a bshd tensor."""
    choices = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64, device=device)
    return choices[torch.randint(0, 4, (batch, 1, heads_kv, 1), generator=gen, device=device)]


class Forward:
    """The forward's timed calls (as they always were)."""

    def __init__(self, ctx: CellContext) -> None:
        self.ctx, self.problem = ctx, ctx.problem

    def source(self, i: int, contents: list[InputSet], buffers: int) -> InputSet:
        """The input set call ``i`` computes on (before its fresh scales)."""
        return contents[i % len(contents)]

    def set_bytes(self, src: InputSet) -> int:
        return sum(x.numel() * x.element_size() for x in (src.q, src.k, src.v))

    def buffer(self, src: InputSet) -> tuple[torch.Tensor, ...]:
        return tuple(_like(x) for x in (src.q, src.k, src.v))

    def prepare(self, buf: tuple[torch.Tensor, ...]) -> Any:
        return self.ctx.backend.prepare(self.problem, *buf)

    def fill(self, buf: tuple[torch.Tensor, ...], src: InputSet, gen: torch.Generator) -> Any:
        p = self.problem
        scales = guards.timing_scales(p.batch, p.heads_kv, p.head_dim, self.ctx.device, gen)
        buf[0].copy_(src.q)
        buf[1].copy_(src.k)
        kinds.apply_v_scales(p, buf[2], src.v, scales)  # wherever the problem's kind keeps V
        return scales

    def ratio(self, out: Any, src: InputSet, scales: Any) -> torch.Tensor | None:
        """The call's max error ÷ its tolerance (a 0-d tensor; NaN if the output has a NaN), or None
        without a reference."""
        o = src.oracle
        if o is None:
            return None
        return (kinds.unscale_output(self.problem, out, scales) - o.ref).abs().max() / max(o.tolerance, 1e-30)


class Backward(Forward):
    """The timed calls of ``bwd`` and ``fwd_bwd``: buffers (q, k, v, dO)."""

    def __init__(self, ctx: CellContext) -> None:
        super().__init__(ctx)
        self.refill_qkv = ctx.problem.op == "fwd_bwd"
        self.group = ctx.problem.heads_q // ctx.problem.heads_kv

    def source(self, i: int, contents: list[InputSet], buffers: int) -> InputSet:
        if self.refill_qkv:
            return contents[i % len(contents)]
        # bwd: a buffer keeps the q, k, v its forward was made on
        return contents[(i % buffers) % len(contents)]

    def set_bytes(self, src: InputSet) -> int:
        return sum(x.numel() * x.element_size() for x in src.tensors())

    def buffer(self, src: InputSet) -> tuple[torch.Tensor, ...]:
        buf = tuple(_like(x) for x in src.tensors())
        for dst, x in zip(buf, src.tensors()):
            dst.copy_(x)  # bwd: the forward in prepare_backward runs on these
        return buf

    def prepare(self, buf: tuple[torch.Tensor, ...]) -> Any:
        from harness.measure.stages.gradients import prepare_op

        return prepare_op(self.ctx.backend, self.problem, *buf)

    def _q_heads(self, s: torch.Tensor) -> torch.Tensor:
        return s.repeat_interleave(self.group, dim=2) if self.group > 1 else s

    def fill(self, buf: tuple[torch.Tensor, ...], src: InputSet, gen: torch.Generator) -> Any:
        p, dev = self.problem, self.ctx.device
        s = head_scales(p.batch, p.heads_kv, dev, gen)
        t = head_scales(p.batch, p.heads_kv, dev, gen) if self.refill_qkv else torch.ones_like(s)
        if self.refill_qkv:
            buf[0].copy_(src.q)
            buf[1].copy_(src.k)
            torch.mul(src.v, t.to(src.v.dtype), out=buf[2])
        torch.mul(src.do, self._q_heads(s).to(src.do.dtype), out=buf[3])
        return s, t

    def ratio(self, out: Any, src: InputSet, scales: Any) -> torch.Tensor | None:
        grads = src.grads
        if grads is None:
            return None
        s, t = scales
        factor = {"o": self._q_heads(t), "dq": self._q_heads(s * t), "dk": s * t, "dv": s}
        ratios = [((x.to(torch.float64) / factor[name]) - grads[name].ref).abs().max()
                  / max(grads[name].tolerance, 1e-30) for name, x in zip(OP_OUTPUTS[self.problem.op], out)]
        return torch.stack(ratios).max()


def work_for(ctx: CellContext) -> Forward:
    return Forward(ctx) if ctx.problem.op == "fwd" else Backward(ctx)
