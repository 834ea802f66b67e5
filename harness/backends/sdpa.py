"""PyTorch scaled_dot_product_attention, each kernel forced with ``torch.nn.attention.sdpa_kernel``.

PyTorch's ``is_causal`` is top-left aligned; flashcore's problems are bottom-right aligned (as
FlashAttention). They agree when seqlen_q == seqlen_k; otherwise the lower-right ``CausalBias`` is used,
which only some kernels accept — the others are recorded as skipped with PyTorch's own reason.
"""
from __future__ import annotations

import re
import warnings

import torch
import torch.nn.functional as F

from harness.backends import serving_baselines
from harness.backends.base import Backend, RunFn, Unsupported, cuda_unavailable
from harness.backends.registry import register
from harness.spec.problem import Problem


def _refusal(caught: list, exc: Exception) -> str:
    """PyTorch explains a refused kernel in warnings ("... not used because:" then the reason)."""
    lines = []
    for w in caught:
        for line in str(w.message).splitlines():
            line = re.sub(r"\s*\(Triggered internally at [^)]*\)\.?", "", line).strip()
            if line and "not used because" not in line and line not in lines:
                lines.append(line)
    return ("; ".join(lines) or str(exc).splitlines()[0])[:300]


class _Sdpa(Backend):
    kernel_name = ""  # member of torch.nn.attention.SDPBackend
    # serving shapes through harness.backends.serving_baselines (decode on the gathered cache, varlen padded,
    # a window as an explicit mask); SDPA has no soft-capping
    kinds = ("dense", "decode", "varlen")
    features = ("window",)

    def unavailable(self) -> str | None:
        if "cpu" not in self.devices:
            return cuda_unavailable()
        return None

    def unsupported(self, problem: Problem) -> str | None:
        if problem.dtype not in ("float16", "bfloat16") and self.kernel_name in ("FLASH_ATTENTION", "CUDNN_ATTENTION"):
            return f"{self.name} needs float16 or bfloat16, got {problem.dtype}"
        return None

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, self.kernel_name)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # views: b h s d
        kwargs: dict = {"scale": problem.softmax_scale}
        if problem.heads_q != problem.heads_kv:
            kwargs["enable_gqa"] = True
        if problem.causal and problem.seqlen_q == problem.seqlen_k:
            kwargs["is_causal"] = True
        elif problem.causal:
            from torch.nn.attention.bias import causal_lower_right

            kwargs["attn_mask"] = causal_lower_right(problem.seqlen_q, problem.seqlen_k)

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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run()
            except RuntimeError as exc:
                if "out of memory" in str(exc):
                    raise  # a real failure of this problem, not a kernel that declines it
                raise Unsupported(f"PyTorch refused {self.kernel_name}: {_refusal(caught, exc)}") from None
        return run


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
