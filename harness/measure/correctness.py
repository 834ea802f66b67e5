"""Is an output right? Errors against the float64 reference, the pass rule, and the guards that keep a
broken or cheating kernel from passing (untouched inputs, real output tensors,
null-kernel calibration of the tolerance).

Pass rule (FlashAttention's tests, hopper/test_flash_attn.py): the backend's max abs error must be at
most ``2 ×`` the max abs error of PyTorch's own computation in the input dtype, plus a rounding floor
``2·max|round(ref + 0.3) − 0.3 − ref|`` in that dtype. The same rule holds for each gradient of a
backward (dQ, dK, dV against float64 gradients, PyTorch's own gradients in the input dtype as the
yardstick), as FlashAttention's backward tests apply it. The seeds' absolute bounds (max < 2e-3,
mean < 1e-3) are reported beside it, not used to pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.measure import kinds
from harness.measure.guards import INT_VIEW
from harness.spec import attention_math
from harness.spec.problem import Problem

SEED_MAX_ABS = 2e-3
SEED_MEAN_ABS = 1e-3
RTOL_FACTOR = 2.0


@dataclass
class Errors:
    max_abs: float
    mean_abs: float
    rel_l2: float
    nan: int
    inf: int

    def worse(self, other: Errors) -> Errors:
        return Errors(max(self.max_abs, other.max_abs), max(self.mean_abs, other.mean_abs),
                      max(self.rel_l2, other.rel_l2), self.nan + other.nan, self.inf + other.inf)


@dataclass
class Oracle:
    """What a right answer looks like for one input set."""

    ref: torch.Tensor  # float64, bshd
    torch_err: float  # PyTorch's own max abs error in the input dtype
    floor: float
    weak: list[str] = field(default_factory=list)  # null kernels that would pass: the check is too weak

    @property
    def tolerance(self) -> float:
        return RTOL_FACTOR * self.torch_err + self.floor


def error_metrics(out: torch.Tensor, ref: torch.Tensor) -> Errors:
    o = out.detach().to(torch.float64)
    nan = int(torch.isnan(o).sum())
    inf = int(torch.isinf(o).sum())
    finite = torch.isfinite(o)
    diff = torch.where(finite, (o - ref).abs(), torch.zeros((), dtype=o.dtype, device=o.device))
    n_finite = int(finite.sum())
    max_abs = float(diff.max()) if n_finite else float("inf")
    mean_abs = float(diff.sum() / max(n_finite, 1)) if n_finite else float("inf")
    ref_norm = float(torch.linalg.vector_norm(ref))
    rel_l2 = float(torch.linalg.vector_norm(diff)) / ref_norm if ref_norm > 0 else float(max_abs > 0)
    return Errors(max_abs, mean_abs, rel_l2, nan, inf)


def passes(err: Errors, oracle: Oracle) -> bool:
    return err.nan == 0 and err.inf == 0 and err.max_abs <= oracle.tolerance


def failure_reason(err: Errors, oracle: Oracle) -> str:
    if err.nan or err.inf:
        return f"output has {err.nan} NaN and {err.inf} Inf elements"
    return (f"max_abs_err {err.max_abs:.3g} > tolerance {oracle.tolerance:.3g} "
            f"(2 × PyTorch's own error {oracle.torch_err:.3g} + floor {oracle.floor:.3g})")


def _null_outputs(problem: Problem, q: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs a non-kernel could return; each must fail, or the check cannot tell them from attention."""
    group = problem.heads_q // problem.heads_kv
    v_q = v.repeat_interleave(group, dim=2)  # [b, sk, hq, d]
    cands = {"zeros": torch.zeros_like(q), "mean(V)": v_q.mean(dim=1, keepdim=True).expand_as(q)}
    if problem.seqlen_q == problem.seqlen_k:
        cands["V"] = v_q
    cands["Q"] = q
    return cands


def _oracle(ref: torch.Tensor, low: torch.Tensor, dtype: torch.dtype) -> Oracle:
    """The tolerance of one output from its float64 reference and PyTorch's own result in ``dtype``."""
    torch_err = error_metrics(low, ref).max_abs
    rounded = (ref.to(dtype) + 0.3 - 0.3).to(torch.float64)
    floor = 2.0 * float((rounded - ref).abs().max())
    return Oracle(ref=ref, torch_err=torch_err, floor=floor)


def _calibrate(oracle: Oracle, nulls: dict[str, torch.Tensor], prefix: str = "") -> None:
    for name, out in nulls.items():
        err = error_metrics(out, oracle.ref)
        # a "null" output that is the exact answer (V when every row attends a single key) is not a
        # shortcut: the problem is trivial there, and any right kernel returns it
        if passes(err, oracle) and err.max_abs > oracle.floor / 2:
            oracle.weak.append(prefix + name)


def build_oracle(problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 calibrate: bool = True) -> Oracle:
    ref = kinds.attention(q, k, v, problem, torch.float64)
    low = kinds.attention(q, k, v, problem, q.dtype)
    oracle = _oracle(ref, low, kinds.out_dtype(problem, q.dtype))
    if calibrate:
        _calibrate(oracle, kinds.null_outputs(problem, q, k, v))
    return oracle


def build_grad_oracles(problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor,
                       calibrate: bool = True) -> dict[str, Oracle]:
    """An oracle per output of a backward operation (``o``, ``dq``, ``dk``, ``dv``; bwd checks the last
    three): float64 gradients, and PyTorch's own gradients in the input dtype for the tolerance.
    Calibrated with zero gradients (and, for O, the forward's null outputs): a null that passes makes
    the check too weak."""
    ref = attention_math.attention_grads(q, k, v, do, problem, torch.float64)
    low = attention_math.attention_grads(q, k, v, do, problem, q.dtype)
    oracles = {}
    for name, r, lo in zip(("o", "dq", "dk", "dv"), ref, low):
        oracles[name] = o = _oracle(r, lo, q.dtype)
        if calibrate:
            nulls = _null_outputs(problem, q, v) if name == "o" else {}
            nulls["zeros"] = torch.zeros_like(lo)
            _calibrate(o, nulls, prefix=f"{name}=")
    return oracles


def output_problem(out: object, problem: Problem, like: torch.Tensor) -> str | None:
    """None if ``out`` is a real, plainly stored output tensor of the right kind, else why not."""
    return tensor_problem(out, kinds.out_shape(problem), like, want_dtype=kinds.out_dtype(problem, like.dtype))


def tensor_problem(out: object, want_shape: tuple[int, ...], like: torch.Tensor, what: str = "output",
                   want_dtype: torch.dtype | None = None) -> str | None:
    """None if ``out`` is a real, plainly stored tensor of ``want_shape`` and ``want_dtype`` (default:
    ``like``'s) on ``like``'s device, else why not (``what`` names it: ``output``, ``dq``, ...)."""
    want_dtype = like.dtype if want_dtype is None else want_dtype
    if type(out) is not torch.Tensor:
        return f"{what} is a {type(out).__module__}.{type(out).__qualname__}, not a plain torch.Tensor"
    if tuple(out.shape) != tuple(want_shape):
        return f"{what} shape {tuple(out.shape)}, expected {tuple(want_shape)}"
    if out.dtype != want_dtype:
        return f"{what} dtype {out.dtype}, expected {want_dtype}"
    if out.device != like.device:
        return f"{what} on {out.device}, expected {like.device}"
    if out.is_meta or out.untyped_storage().nbytes() == 0 and out.numel() > 0:
        return f"{what} has no real storage"
    if any(s == 0 for s, n in zip(out.stride(), out.shape) if n > 1):
        return f"{what} strides {out.stride()} broadcast one value over many elements"
    if out.untyped_storage().nbytes() < out.numel() * out.element_size():
        return f"{what} storage is smaller than its elements"
    return None


class InputGuard:
    """Keeps an exact copy of the inputs to prove a call left them unchanged."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.copies = [t.clone() for t in tensors]

    def changed(self) -> list[int]:
        return [i for i, (t, c) in enumerate(zip(self.tensors, self.copies)) if not bit_equal(t, c)]


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN payloads included), unlike ``torch.equal``."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    ints = INT_VIEW[a.element_size()]
    return torch.equal(a.contiguous().view(ints), b.contiguous().view(ints))
