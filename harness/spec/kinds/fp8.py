"""FP8 inputs: ``dtype = "float8_e4m3"`` (e4m3, PyTorch's ``float8_e4m3fn``), dense problems only.

Q, K and V are stored in e4m3 with one per-tensor descale factor each, ``DESCALE`` = 2^-4: the stored value
is ``x / DESCALE`` clipped to ±``HEADROOM`` (224, half of e4m3's 448, so the timing's per-call ×2 scales of
V stay exact and finite), and the real input is ``stored · DESCALE``. The output is bfloat16. The float64
reference is computed from the dequantised inputs; the pass rule's yardstick is an FP8-aware PyTorch
computation: float32 scores and softmax from the dequantised inputs, the probabilities rounded to e4m3
before P·V (as FP8 attention kernels do), output rounded to bfloat16.

FLOPs as dense. Minimum bytes: Q, K, V read once at 1 byte an element, O written once in bfloat16.

The tensor roof of an FP8 problem is ``TENSOR_RATE_VS_BF16`` × the bf16 matmul peak the run measures: the
tensor cores' dense FP8 rate is twice their BF16 rate on Hopper (H100/H200 SXM: 1979 vs 989 TFLOPS), so an
FP8 kernel may honestly run faster than the bf16 matmul. The impossible-speed check and "% of peak" of FP8
cells use that roof (the ratio is the datasheet's; the bf16 peak under it is measured).
"""
from __future__ import annotations

FP8_DTYPES = ("float8_e4m3",)
DESCALE = 2.0 ** -4
HEADROOM = 224.0
OUT_DTYPE = "bfloat16"
#: dense FP8 tensor throughput over dense BF16 (Hopper; Ada and Blackwell alike)
TENSOR_RATE_VS_BF16 = 2.0


def is_fp8(dtype: str) -> bool:
    return dtype in FP8_DTYPES


def tensor_roof(dtype: str, bf16_matmul_tflops: float) -> float:
    """The tensor-core roof of a problem in ``dtype``, from the bf16 matmul peak measured in the run."""
    return bf16_matmul_tflops * (TENSOR_RATE_VS_BF16 if is_fp8(dtype) else 1.0)


def check(p) -> str | None:  # p: Problem
    if is_fp8(p.dtype) and p.kind != "dense":
        return f"dtype={p.dtype!r}: FP8 inputs are measured on dense problems only (kind={p.kind!r})"
    return None


def min_bytes(p) -> int:
    q = p.batch * p.seqlen_q * p.heads_q * p.head_dim
    kv = 2 * p.batch * p.seqlen_k * p.heads_kv * p.head_dim
    return (q + kv) * 1 + q * 2
