"""FlashAttention 2 (flash_attn), 3 (flash_attn_interface, else the forward-only fa3_fwd_interface) and
4 (flash_attn.cute), as installed.

They take bshd inputs natively and align causal masks bottom-right, like flashcore's problems.

Their ``flash_attn_func`` are autograd functions: the backward is the library's own backward kernel,
reached through ``harness.backends.autograd`` (forward untimed for ``bwd``). ``fa4-det`` (and ``fa2-det``,
``fa3-det``) pass ``deterministic=True``: the backward accumulates dQ in a fixed order instead of with
atomics. A backward the installed build cannot run (FA4's Hopper backward in versions without it, the
forward-only fa3-fwd wheel) is skipped with the library's own reason.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from harness.backends import autograd
from harness.backends.base import (
    Backend,
    FwdBwdFn,
    GradFn,
    RunFn,
    Unsupported,
    cuda_unavailable,
    half_precision_unsupported,
)
from harness.backends.registry import register
from harness.spec.problem import OPS, Problem


def _import_func(module: str) -> tuple[Callable[..., Any] | None, str]:
    """``module.flash_attn_func``, or None and why not (one line)."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken build raising anything at import
        return None, f"{module} not importable ({type(exc).__name__}: {str(exc)[:160]})"
    fn = getattr(mod, "flash_attn_func", None)
    if fn is None:
        return None, (f"{module} is importable but has no flash_attn_func (the name belongs to another "
                      f"package here: {getattr(mod, '__file__', '?')})")
    return fn, ""


class _FlashAttn(Backend):
    module = ""
    version = 2
    # serving shapes through harness.backends.flash_attn_serving (with_kvcache / varlen entry points)
    kinds = ("dense", "decode", "varlen")
    features = ("window", "softcap")
    package_hint = ""
    min_capability = (8, 0)
    head_dims: tuple[int, ...] = (64, 96, 128, 192, 256)
    operations: ClassVar[frozenset[str]] = frozenset(OPS)
    #: pass deterministic=True (the deterministic backward)
    deterministic: ClassVar[bool] = False

    def _func(self) -> Callable[..., Any]:
        fn, why = _import_func(self.module)
        if fn is None:
            raise ImportError(why)
        return fn

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        fn, why = _import_func(self.module)
        if fn is None:
            return f"{why}; {self.package_hint}"
        cap = torch.cuda.get_device_capability()
        if cap < self.min_capability:
            return f"needs compute capability {self.min_capability}, this GPU is {cap}"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        return half_precision_unsupported(self.name, problem, self.head_dims)

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        fn = self._func()
        from harness.backends import flash_attn_serving, serving_baselines

        if serving_baselines.is_serving(problem):
            run = flash_attn_serving.serving_run(self.module, self.version, problem, q, k, v)
            flash_attn_serving.try_once(run, self.name)
            return run
        # a bhsd view goes in as it is: FlashAttention's interfaces take any batch/seq/head strides with a
        # contiguous last dim. (A copy made here, untimed, would be a snapshot of the buffers' contents at
        # prepare time: every later timed call would compute on stale inputs, which the harness rejects.)

        def run() -> torch.Tensor:
            out = fn(q, k, v, softmax_scale=problem.softmax_scale, causal=problem.causal)
            return out[0] if isinstance(out, tuple) else out

        return run

    def _forward(self, problem: Problem) -> autograd.Forward:
        fn = self._func()
        kwargs: dict[str, Any] = {"softmax_scale": problem.softmax_scale, "causal": problem.causal}
        if self.deterministic:
            params = inspect.signature(fn).parameters
            if "deterministic" not in params and not any(x.kind is x.VAR_KEYWORD for x in params.values()):
                raise Unsupported(f"{self.module}.flash_attn_func here has no deterministic argument")
            kwargs["deterministic"] = True

        def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            out = fn(q, k, v, **kwargs)
            return out[0] if isinstance(out, tuple) else out

        return forward

    def _contiguous(self, problem: Problem, *ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # FA wants the last dim contiguous and bshd strides: a bhsd view is converted untimed, and only
        # for bwd, whose q, k, v stay as they are between calls (fwd_bwd reads them afresh: views only)
        return tuple(t.contiguous() for t in ts) if problem.layout != "bshd" else ts

    def _tried(self, make: Callable[[], Any]) -> Any:
        """``make()`` (the forward and a first backward, untimed): a backward this build refuses or cannot
        compile for this GPU is Unsupported, in the library's own words; a CUDA fault or an out-of-memory
        stays a failure of the cell."""
        try:
            return make()
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # FA4's CuTe DSL raises its own types when it has no kernel for the GPU
            text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if "CUDA error" in text or "out of memory" in text or "illegal" in text.lower():
                raise
            raise Unsupported(f"{self.name} backward: {text[:240]}") from None

    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        forward = self._forward(problem)
        q, k, v = self._contiguous(problem, q, k, v)
        return self._tried(lambda: autograd.backward_call(forward, q, k, v, do))

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        forward = self._forward(problem)
        if problem.layout != "bshd":  # the conversion is part of each call: the harness refills q, k, v
            inner = forward
            forward = lambda q, k, v: inner(q.contiguous(), k.contiguous(), v.contiguous())  # noqa: E731
        return self._tried(lambda: autograd.fwd_bwd_call(forward, q, k, v, do))


@register
class FA2(_FlashAttn):
    name = "fa2"
    description = "FlashAttention-2 (flash_attn.flash_attn_func)"
    module = "flash_attn"
    package_hint = "pip install flash-attn (builds against the installed torch; needs network)"


#: FlashAttention-3's modules in order of preference: the full upstream build (flash-attention/hopper,
#: fp16 and bf16, forward and backward), then the PyPI wheel fa3-fwd, the same forward kernels built
#: with FLASHATTENTION_DISABLE_FP16 (its fa3_fwd_config.CONFIG says so), renamed to fa3_fwd_interface
FA3_MODULES = ("flash_attn_interface", "fa3_fwd_interface")
#: dtypes each FA3 module was built for
FA3_DTYPES = {"flash_attn_interface": ("float16", "bfloat16", "float8_e4m3"), "fa3_fwd_interface": ("bfloat16",)}
FA3_DISTRIBUTIONS = {"flash_attn_interface": "flash_attn_3", "fa3_fwd_interface": "fa3-fwd"}


def fa3_module() -> tuple[str | None, str]:
    """The FA3 module this process would use (the first of ``FA3_MODULES`` that imports with a
    flash_attn_func), or None and why neither does."""
    whys = []
    for module in FA3_MODULES:
        fn, why = _import_func(module)
        if fn is not None:
            return module, ""
        whys.append(why)
    return None, "; ".join(whys)


def fa3_description() -> str:
    """Which FA3 build is in use, for ``flashcore env`` and the run's environment, e.g.
    ``fa3_fwd_interface (fa3-fwd 0.0.3, forward only, bfloat16 only)``."""
    from importlib import metadata

    module, why = fa3_module()
    if module is None:
        return f"none ({why})"
    try:
        version = f" {metadata.version(FA3_DISTRIBUTIONS[module])}"
    except metadata.PackageNotFoundError:
        version = ""
    kind = ", forward only, bfloat16 only" if module == "fa3_fwd_interface" else ""
    return f"{module} ({FA3_DISTRIBUTIONS[module]}{version}{kind})"


@register
class FA3(_FlashAttn):
    name = "fa3"
    description = ("FlashAttention-3 for Hopper (flash_attn_interface.flash_attn_func; else the forward-only "
                   "wheel fa3-fwd, fa3_fwd_interface.flash_attn_func)")
    module = "flash_attn_interface"  # resolved per process by fa3_module()
    version = 3
    package_hint = ("pip install fa3-fwd (forward only, bfloat16 only), or build flash-attention/hopper "
                    "from source for fp16 too")
    min_capability = (9, 0)

    def __init__(self) -> None:
        found, _ = fa3_module()
        self.module = found or FA3_MODULES[0]
        self._found = found is not None
        if self._found:  # `flashcore env` shows which build this process uses
            self.description = f"FlashAttention-3 via {fa3_description()}"
        if "float8_e4m3" in FA3_DTYPES.get(self.module, ()):  # e4m3 with descales (harness.spec.kinds.fp8)
            self.features = (*_FlashAttn.features, "fp8")

    def op_unsupported(self, op: str) -> str | None:
        if op != "fwd" and self._found and self.module == "fa3_fwd_interface":
            return (f"{self.name}: no backward kernel here: fa3_fwd_interface is the forward-only fa3-fwd wheel; "
                    "build flash-attention/hopper (flash_attn_interface) for the backward")
        return super().op_unsupported(op)

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        if not self._found:
            return f"{fa3_module()[1]}; {self.package_hint}"
        return super().unavailable()

    def unsupported(self, problem: Problem) -> str | None:
        dtypes = FA3_DTYPES.get(self.module, ("float16", "bfloat16"))
        if self._found and problem.dtype not in dtypes:
            return (f"fa3 here is {self.module} (the fa3-fwd wheel, built without fp16): allowed dtype "
                    f"{', '.join(dtypes)}, got {problem.dtype}; build flash-attention/hopper for float16")
        if problem.dtype == "float8_e4m3":
            return None if problem.head_dim in self.head_dims else (
                f"head_dim={problem.head_dim} not supported by {self.name}: allowed {self.head_dims}")
        return super().unsupported(problem)


@register
class FA4(_FlashAttn):
    name = "fa4"
    description = "FlashAttention-4, CuTe DSL (flash_attn.cute.flash_attn_func)"
    module = "flash_attn.cute"
    version = 4
    package_hint = "pip install flash-attn-4 (CuTe DSL; see shared/device/stage-fa4.sh offline)"
    min_capability = (9, 0)
    head_dims = (64, 96, 128)


@register
class FA4Det(FA4):
    name = "fa4-det"
    description = "FlashAttention-4's deterministic backward (flash_attn.cute.flash_attn_func, deterministic=True)"
    operations: ClassVar[frozenset[str]] = frozenset({"bwd", "fwd_bwd"})
    deterministic = True


@register
class FA3Det(FA3):
    name = "fa3-det"
    description = "FlashAttention-3's deterministic backward (flash_attn_interface.flash_attn_func, deterministic=True)"
    operations: ClassVar[frozenset[str]] = frozenset({"bwd", "fwd_bwd"})
    deterministic = True

    def __init__(self) -> None:
        super().__init__()
        self.description = FA3Det.description


@register
class FA2Det(FA2):
    name = "fa2-det"
    description = "FlashAttention-2's deterministic backward (flash_attn.flash_attn_func, deterministic=True)"
    operations: ClassVar[frozenset[str]] = frozenset({"bwd", "fwd_bwd"})
    deterministic = True
