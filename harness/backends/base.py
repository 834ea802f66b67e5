"""The one interface every attention backend implements.

A backend answers three questions and does one thing per operation it declares (``operations``):
  * ``unavailable()``: ``None`` if it can run in this process, else the reason (missing package, no GPU);
  * ``unsupported(problem)``: ``None`` if it supports the problem, else the reason;
  * ``prepare(problem, q, k, v)`` (``fwd``): returns a zero-argument callable that computes attention and
    returns O as a ``[batch, seqlen_q, heads_q, head_dim]`` tensor (a view is fine);
  * ``prepare_backward(problem, q, k, v, do)`` (``bwd``): runs the forward and keeps what it saves,
    untimed, and returns a zero-argument callable returning ``(dq, dk, dv)`` for the output gradient
    ``do`` (shaped like q, k, v; a GQA kv head's gradients summed over its query heads). The harness may
    refill ``do`` in place between calls (never q, k, v): each call must read it afresh;
  * ``prepare_fwd_bwd(problem, q, k, v, do)`` (``fwd_bwd``): a callable returning ``(o, dq, dk, dv)``,
    forward and backward both in the call. The harness may refill q, k, v and ``do`` between calls.

The harness owns the inputs: q is ``[batch, seqlen_q, heads_q, head_dim]``, k and v are
``[batch, seqlen_k, heads_kv, head_dim]``, in the problem's dtype on the problem's device, laid out in
memory as ``problem.layout`` says ("bshd": contiguous as shaped; "bhsd": a transposed view of a
contiguous ``[b, h, s, d]`` tensor). ``prepare`` may do untimed work (compile, plan, convert layout);
the callable it returns is what gets timed, so it should do only the backend's real work.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from harness.backends.metrics import MetricSpec

if TYPE_CHECKING:
    import torch

    from harness.spec.problem import Problem

RunFn = Callable[[], "torch.Tensor"]
#: a prepared backward: () -> (dq, dk, dv)
GradFn = Callable[[], "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"]
#: a prepared forward + backward: () -> (o, dq, dk, dv)
FwdBwdFn = Callable[[], "tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]"]
#: what a backend that lacks an operation lacks, for the skip reason
_LACKS = {"fwd": "forward of its own", "bwd": "backward kernel", "fwd_bwd": "backward kernel"}


class Unsupported(Exception):
    """Raised by ``prepare`` when the backend finds out only by trying that it cannot run a problem
    (e.g. PyTorch refusing a forced SDPA kernel). The cell is recorded as skipped with this reason."""


class Backend(abc.ABC):
    #: registry name, e.g. "sdpa-flash"
    name: ClassVar[str] = ""
    #: one line for `flashcore env`
    description: ClassVar[str] = ""
    #: devices this backend can run on, in order of preference
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    #: True for backends written in this project or by the user whose kernels are under test.
    #: Such backends must not launch library attention kernels (checked when asked).
    custom_kernel: ClassVar[bool] = False
    #: the operations it runs (harness.spec.problem.OPS); a cell of another is skipped with the reason
    operations: ClassVar[frozenset[str]] = frozenset({"fwd"})
    #: problem kinds (harness.spec.kinds) this backend's prepare understands; a problem of another kind is
    #: recorded as skipped without calling it (a backend written for dense inputs never sees a page pool)
    kinds: ClassVar[tuple[str, ...]] = ("dense",)
    #: problem options it implements: "window" (local attention), "softcap" (logit soft-capping), "fp8" (e4m3
    #: inputs with per-tensor descales, harness.spec.kinds.fp8)
    features: ClassVar[tuple[str, ...]] = ()
    #: the metrics ``cell_extra`` may report (name, unit, whether higher is better); any other name fails
    #: the cell, so a cell's ``extra`` holds only the harness's keys and these
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    def unavailable(self) -> str | None:
        """None if usable here, else a one-line reason."""
        return None

    def unsupported(self, problem: Problem) -> str | None:
        """None if this problem can run, else a one-line reason naming what is allowed."""
        return None

    def op_unsupported(self, op: str) -> str | None:
        """None if this backend runs operation ``op``, else the one-line reason."""
        if op in self.operations:
            return None
        return f"{self.name}: no {_LACKS.get(op, op)} (supports {', '.join(sorted(self.operations))})"

    def cell_extra(self) -> dict[str, object]:
        """Observations of the untimed work so far (e.g. compile time), stored in each cell's ``extra``;
        each name declared in ``metrics``."""
        return {}

    @abc.abstractmethod
    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        """Return the callable to validate and time."""

    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        """The forward run and its state kept, untimed; return the backward to validate and time."""
        raise Unsupported(self.op_unsupported("bwd") or f"{self.name}: no backward kernel")

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        """Return forward + backward in one callable, to validate and time."""
        raise Unsupported(self.op_unsupported("fwd_bwd") or f"{self.name}: no backward kernel")


def serving_unsupported(backend: Backend, problem: Problem) -> str | None:
    """Why ``backend`` cannot run ``problem``'s kind or options (its ``kinds`` and ``features``), or None."""
    kind = getattr(problem, "kind", "dense")
    if kind not in backend.kinds:
        return f"{backend.name} has no {kind} entry: it runs kinds {', '.join(backend.kinds)}"
    needs = []
    if getattr(problem, "window_left", -1) >= 0 or getattr(problem, "window_right", -1) >= 0:
        needs.append("window")
    if getattr(problem, "softcap", 0.0):
        needs.append("softcap")
    if str(getattr(problem, "dtype", "")).startswith("float8"):
        needs.append("fp8")
    missing = [f for f in needs if f not in backend.features]
    if missing:
        return (f"{backend.name} does not implement {' or '.join(missing)} (of window: local attention, softcap: "
                f"logit soft-capping, fp8: e4m3 inputs with descales): it supports "
                f"{', '.join(backend.features) or 'none of them'}")
    return None


def half_precision_unsupported(name: str, problem: Problem, head_dims: tuple[int, ...]) -> str | None:
    """The common refusal of the fused 16-bit kernels: float16/bfloat16 only, and a fixed set of head dims."""
    if problem.dtype not in ("float16", "bfloat16"):
        return f"{name} needs float16 or bfloat16, got {problem.dtype}"
    if problem.head_dim not in head_dims:
        return f"head_dim={problem.head_dim} not supported by {name}: allowed {head_dims}"
    return None


def cuda_unavailable() -> str | None:
    """Common availability check for GPU backends."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    return None
