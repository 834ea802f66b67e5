"""The backward through PyTorch's autograd, for every backend whose forward is differentiable (naive,
SDPA, FlexAttention, FlashAttention's autograd functions).

``backward_call`` runs the forward once, untimed, on leaves that require grad (detached aliases of the
harness's q, k, v: the harness's own tensors never require grad), and returns the timed backward:
``torch.autograd.grad(out, (q, k, v), do, retain_graph=True)``, so the same saved state serves every
timed call, and each call reads ``do`` afresh. ``fwd_bwd_call`` puts both passes in the timed call.
GQA needs nothing here: a backend that expands K and V to the query heads has the expansion's
backward sum dK and dV over each group.

A backward that the library refuses for this problem raises in the untimed first call; ``prepare``
helpers turn the library's refusals into ``Unsupported`` (skipped with its reason).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from harness.backends.base import FwdBwdFn, GradFn

#: the forward as a function autograd differentiates: bshd q, k, v -> bshd O
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: a context every pass runs under (e.g. deterministic algorithms)
Context = Callable[[], contextlib.AbstractContextManager[Any]]


def _leaves(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.detach().requires_grad_(True) for t in (q, k, v))


def backward_call(forward: Forward, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor,
                  context: Context = contextlib.nullcontext) -> GradFn:
    """The forward now (untimed) and one backward to find out whether it runs; the timed backward."""
    leaves = _leaves(q, k, v)
    with context(), torch.enable_grad():
        out = forward(*leaves)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with context():
            dq, dk, dv = torch.autograd.grad(out, leaves, do, retain_graph=True)
        return dq, dk, dv

    run()
    return run


def fwd_bwd_call(forward: Forward, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor,
                 context: Context = contextlib.nullcontext) -> FwdBwdFn:
    """Forward and backward in the timed call (q, k, v read afresh by each); one untimed call first."""

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        leaves = _leaves(q, k, v)
        with context(), torch.enable_grad():
            out = forward(*leaves)
            dq, dk, dv = torch.autograd.grad(out, leaves, do)
        return out.detach(), dq, dk, dv

    run()
    return run


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the duration (restored after), without its filling
    of uninitialised memory (which would add work to the timed call and hide unwritten outputs from the
    harness's poison check)."""
    import torch.utils.deterministic as det

    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
        det.fill_uninitialized_memory = fill
