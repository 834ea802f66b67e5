"""Which kernels a call launched, and the rule that a custom kernel must not be a library in disguise.

A backend that declares ``custom_kernel = True`` claims its attention is its own code. Calling PyTorch's
SDPA, FlashAttention, cuDNN or a CUTLASS attention example behind that claim ("fallback to the library",
research note §8) produces right answers and library speed, so only the launched kernels give it away.
``check_custom`` runs the callable once under ``torch.profiler`` and matches every launched GPU kernel
name, and every PyTorch operator name (which also covers the CPU path, where no GPU kernel exists),
against the patterns below. The patterns name library namespaces and engines, not the word "flash":
the project's own kernels (``flashcore::…``) and a user's ``my_flash_fwd`` do not match.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: GPU kernel names (demangled) that belong to library attention implementations, with the reason
KERNEL_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"pytorch_flash::", "PyTorch's vendored FlashAttention-2 (SDPA flash backend: pytorch_flash::flash_fwd_kernel)"),
    (r"(?<![A-Za-z0-9_])flash::", ("the flash-attn package's FlashAttention-2/3 kernels (namespace flash::, "
                                   "e.g. flash::FlashAttnFwdSm90)")),
    (r"flash_attn|FlashAttention(Forward|Backward)", ("FlashAttention 4 CuTe-DSL kernels (flash_attn.cute, "
                                                      "FlashAttentionForwardSm90/Sm100) and flash_attn builds")),
    (r"fmha", ("fused multi-head attention engines: PyTorch's memory-efficient fmha_cutlassF_* (xFormers), "
               "TensorRT/cuDNN fmha kernels")),
    (r"cudnn", ("cuDNN engines (SDPA backend cudnn: cudnn_generated_fort_native_sdpa_*); an attention kernel "
                "under test has no business launching cuDNN")),
    (r"sdpa", "kernels named for scaled-dot-product attention (cuDNN's native_sdpa engines and others)"),
    (r"efficient_attention|MemEffAttention|mem_eff", ("PyTorch/xFormers memory-efficient attention "
                                                      "(PyTorchMemEffAttention::AttentionKernel)")),
    (r"AttentionKernel|attention_kernel_batched|cutlass\w*attention|fused_attn|fused_multihead_attention",
     "CUTLASS fused-attention examples (41_fused_multi_head_attention) and TransformerEngine fused_attn"),
)

#: PyTorch operator names (CPU-side profiler events) that call a library attention
OP_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^aten::(_?scaled_dot_product|_flash_attention|_efficient_attention|_cudnn_attention|_fused_sdp)",
     "PyTorch scaled_dot_product_attention and its kernels' operators"),
    (r"flash_attn", "the flash-attn package's operators (flash_attn::…, flash_attn_3::…)"),
    (r"flex_attention", "FlexAttention (a library attention generator)"),
)


@dataclass
class Trace:
    kernels: list[str] = field(default_factory=list)  # GPU kernels launched, in first-seen order
    ops: list[str] = field(default_factory=list)  # PyTorch operators called


def launched(fn: Callable[[], Any], device: str) -> Trace:
    """Run ``fn`` once under the profiler (CUDA activity where there is a GPU) and list what it launched."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if device == "cuda":
        acts.append(ProfilerActivity.CUDA)
    with profile(activities=acts) as prof:
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
    del out
    kernels: dict[str, None] = {}
    ops: dict[str, None] = {}
    for e in prof.events():
        if e.device_type == DeviceType.CPU:
            ops[e.name] = None
        else:
            kernels[e.name] = None
        for k in getattr(e, "kernels", None) or ():
            kernels[getattr(k, "name", str(k))] = None
    kernels = {k: None for k in kernels if not k.startswith(("Memcpy", "Memset"))}
    return Trace(list(kernels), list(ops))


def library_hits(trace: Trace) -> list[tuple[str, str]]:
    """(name, reason) for every launched kernel or called operator that is a library attention."""
    hits = []
    for names, patterns in ((trace.kernels, KERNEL_PATTERNS), (trace.ops, OP_PATTERNS)):
        for name in names:
            for pat, why in patterns:
                if re.search(pat, name, flags=re.IGNORECASE):
                    hits.append((name, why))
                    break
    return hits


def _short(name: str, n: int = 90) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def check_custom(fn: Callable[[], Any], device: str, extra: dict[str, Any]) -> str | None:
    """For a backend claiming ``custom_kernel``: None if ``fn`` launched no library attention kernel,
    else the rejection reason. Records what was launched in ``extra['kernels_launched']``."""
    trace = launched(fn, device)
    extra["kernels_launched"] = [_short(k, 160) for k in trace.kernels[:40]]
    extra["ops_called"] = trace.ops[:40]
    hits = library_hits(trace)
    if not hits:
        return None
    names = "; ".join(_short(n) for n, _ in hits[:4]) + (f" (+{len(hits) - 4} more)" if len(hits) > 4 else "")
    return f"launched library attention kernel(s): {names} — {hits[0][1]}"
