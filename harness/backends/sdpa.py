"""PyTorch scaled_dot_product_attention, each kernel forced with ``torch.nn.attention.sdpa_kernel``.

PyTorch's ``is_causal`` is top-left aligned; flashcore's problems are bottom-right aligned (as
FlashAttention). They agree when seqlen_q == seqlen_k; otherwise the lower-right ``CausalBias`` is used,
which only some kernels accept — the others are recorded as skipped with PyTorch's own reason.

The backward is autograd's (``harness.backends.autograd``): the forced kernel's own backward (the forward
op PyTorch chose records it). ``sdpa-flash-det`` and ``sdpa-efficient-det`` run both passes under
``torch.use_deterministic_algorithms(True)``, for which PyTorch's FlashAttention-2 and memory-efficient
backwards take their deterministic paths (no atomic dQ accumulation), so the cost of determinism is
measured beside them. There is no ``sdpa-cudnn-det``: PyTorch refuses the cuDNN kernel altogether under
deterministic algorithms (``check_cudnn_deterministic`` in sdp_utils.cpp).

GQA in the backward: where the forced kernel refuses ``enable_gqa`` (PyTorch documents it for the flash
and math kernels only), K and V are expanded to the query heads inside the differentiated forward, so the
kernel runs as multi-head attention and autograd sums dK and dV over each group (that reduction is part
of the timed backward, as it is of any PyTorch program running this kernel on GQA). The cell says so in
``extra.gqa_expanded``. The forward keeps its refusal (skipped with PyTorch's reason).
"""
from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from harness.backends import autograd, serving_baselines
from harness.backends.base import Backend, FwdBwdFn, GradFn, RunFn, Unsupported, cuda_unavailable
from harness.backends.metrics import MetricSpec
from harness.backends.registry import register
from harness.spec.problem import OPS, Problem


def _refusal(caught: list, exc: Exception) -> str:
    """PyTorch explains a refused kernel in warnings ("... not used because:" then the reason)."""
    lines = []
    for w in caught:
        for line in str(w.message).splitlines():
            line = re.sub(r"\s*\(Triggered internally at [^)]*\)\.?", "", line).strip()
            if line and "not used because" not in line and line not in lines:
                lines.append(line)
    return ("; ".join(lines) or str(exc).splitlines()[0])[:300]


def sdpa_kwargs(problem: Problem) -> dict[str, Any]:
    """``scaled_dot_product_attention`` keywords for a problem: its scale, GQA, and causal aligned bottom-right
    as flashcore's problems are (``is_causal`` where the two alignments agree, the lower-right bias elsewhere)."""
    kwargs: dict[str, Any] = {"scale": problem.softmax_scale}
    if problem.heads_q != problem.heads_kv:
        kwargs["enable_gqa"] = True
    if problem.causal and problem.seqlen_q == problem.seqlen_k:
        kwargs["is_causal"] = True
    elif problem.causal:
        from torch.nn.attention.bias import causal_lower_right

        kwargs["attn_mask"] = causal_lower_right(problem.seqlen_q, problem.seqlen_k)
    return kwargs


class _Sdpa(Backend):
    kernel_name = ""  # member of torch.nn.attention.SDPBackend
    operations: ClassVar[frozenset[str]] = frozenset(OPS)
    #: what every pass runs under (the deterministic variants: deterministic algorithms)
    context: ClassVar[autograd.Context] = contextlib.nullcontext
    # serving shapes through harness.backends.serving_baselines (decode on the gathered cache, varlen padded,
    # a window as an explicit mask); SDPA has no soft-capping
    kinds = ("dense", "decode", "varlen")
    features = ("window",)
    metrics = (MetricSpec("gqa_expanded"),)  # a note: a GQA backward ran on K and V expanded, and why

    def unavailable(self) -> str | None:
        if "cpu" not in self.devices:
            return cuda_unavailable()
        return None

    def unsupported(self, problem: Problem) -> str | None:
        if problem.dtype not in ("float16", "bfloat16") and self.kernel_name in ("FLASH_ATTENTION", "CUDNN_ATTENTION"):
            return f"{self.name} needs float16 or bfloat16, got {problem.dtype}"
        return None

    def _forward(self, problem: Problem, expand: bool = False) -> autograd.Forward:
        """SDPA forced to this backend's kernel, bshd in and out (views); ``expand``: GQA's K and V repeated
        to the query heads first (differentiably), for a kernel that takes no ``enable_gqa``."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, self.kernel_name)
        kwargs = sdpa_kwargs(problem)
        group = problem.heads_q // problem.heads_kv
        if expand:
            kwargs.pop("enable_gqa", None)

        def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            if expand:
                k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
            qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # views: b h s d
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(qh, kh, vh, **kwargs).transpose(1, 2)

        return forward

    def cell_extra(self) -> dict[str, object]:
        return dict(getattr(self, "_extra", {}))

    def _backward(self, problem: Problem, make: Callable[[autograd.Forward], Any]) -> Any:
        """``make(forward)`` of a backward; for GQA the kernel refuses, again with K and V expanded."""
        try:
            return self._refused_or(lambda: make(self._forward(problem)))
        except Unsupported as refused:
            if problem.heads_q == problem.heads_kv:
                raise
            try:
                fn = self._refused_or(lambda: make(self._forward(problem, expand=True)))
            except Unsupported:
                raise refused from None
            self._extra = {"gqa_expanded": f"{refused}; ran with K and V expanded to the query heads, dK and "
                                           "dV summed over each group by autograd (timed)"}
            return fn

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, self.kernel_name)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # views: b h s d
        kwargs = sdpa_kwargs(problem)

        def run() -> torch.Tensor:
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(qh, kh, vh, **kwargs).transpose(1, 2)

        if serving_baselines.is_serving(problem):
            def forced(*a, **kw) -> torch.Tensor:
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(*a, **kw)

            # memory-efficient and cuDNN take no enable_gqa: a serving user repeats K and V heads (timed)
            run = serving_baselines.sdpa_run(problem, q, k, v, forced,
                                             expand_gqa=self.kernel_name in ("EFFICIENT_ATTENTION", "CUDNN_ATTENTION"))

        # PyTorch decides per call whether the forced kernel can run; find out now, untimed.
        self._refused_or(run)
        return run

    def _refused_or(self, make: Callable[[], Any]) -> Any:
        """``make()``, with PyTorch refusing the forced kernel (forward or backward) turned into
        Unsupported with PyTorch's own reason."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return make()
            except RuntimeError as exc:
                if "out of memory" in str(exc):
                    raise  # a real failure of this problem, not a kernel that declines it
                raise Unsupported(f"PyTorch refused {self.kernel_name}: {_refusal(caught, exc)}") from None

    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        return self._backward(problem, lambda f: autograd.backward_call(f, q, k, v, do, self.context))

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        return self._backward(problem, lambda f: autograd.fwd_bwd_call(f, q, k, v, do, self.context))


@register
class SdpaFlash(_Sdpa):
    name = "sdpa-flash"
    description = "PyTorch SDPA forced to its FlashAttention-2 kernel"
    kernel_name = "FLASH_ATTENTION"


@register
class SdpaCudnn(_Sdpa):
    name = "sdpa-cudnn"
    description = "PyTorch SDPA forced to the cuDNN attention kernel"
    kernel_name = "CUDNN_ATTENTION"


@register
class SdpaEfficient(_Sdpa):
    name = "sdpa-efficient"
    description = "PyTorch SDPA forced to the memory-efficient (xFormers) kernel"
    kernel_name = "EFFICIENT_ATTENTION"


@register
class SdpaMath(_Sdpa):
    name = "sdpa-math"
    description = "PyTorch SDPA forced to the math (unfused, reference-style) path"
    kernel_name = "MATH"
    devices = ("cuda", "cpu")


class _Deterministic(_Sdpa):
    """A kernel's deterministic backward: the same forward, both passes under deterministic algorithms."""

    operations: ClassVar[frozenset[str]] = frozenset({"bwd", "fwd_bwd"})
    context: ClassVar[autograd.Context] = staticmethod(autograd.deterministic_algorithms)


@register
class SdpaFlashDet(_Deterministic):
    name = "sdpa-flash-det"
    description = "sdpa-flash's backward under torch.use_deterministic_algorithms(True) (its deterministic path)"
    kernel_name = "FLASH_ATTENTION"


@register
class SdpaEfficientDet(_Deterministic):
    name = "sdpa-efficient-det"
    description = "sdpa-efficient's backward under torch.use_deterministic_algorithms(True) (its deterministic path)"
    kernel_name = "EFFICIENT_ATTENTION"
