"""FlashAttention 2 (flash_attn), 3 (flash_attn_interface) and 4 (flash_attn.cute), as installed.

They take bshd inputs natively and align causal masks bottom-right, like flashcore's problems.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from harness.backends.base import Backend, RunFn, cuda_unavailable
from harness.backends.registry import register
from harness.problem import Problem


class _FlashAttn(Backend):
    module = ""
    package_hint = ""
    min_capability = (8, 0)
    head_dims: tuple[int, ...] = (64, 96, 128, 192, 256)

    def _func(self) -> Callable[..., Any]:
        return importlib.import_module(self.module).flash_attn_func

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        try:
            self._func()
        except AttributeError:
            mod = importlib.import_module(self.module)
            return (f"{self.module} is importable but has no flash_attn_func (the name belongs to another "
                    f"package here: {getattr(mod, '__file__', '?')}); {self.package_hint}")
        except Exception as exc:  # ImportError, or a broken build raising anything at import
            return f"{self.module} not importable ({type(exc).__name__}: {str(exc)[:160]}); {self.package_hint}"
        cap = torch.cuda.get_device_capability()
        if cap < self.min_capability:
            return f"needs compute capability {self.min_capability}, this GPU is {cap}"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        if problem.dtype not in ("float16", "bfloat16"):
            return f"{self.name} needs float16 or bfloat16, got {problem.dtype}"
        if problem.head_dim not in self.head_dims:
            return f"head_dim={problem.head_dim} not supported by {self.name}: allowed {self.head_dims}"
        return None

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        fn = self._func()
        if problem.layout != "bshd":  # FA wants the last dim contiguous and bshd strides; convert untimed
            q, k, v = (t.contiguous() for t in (q, k, v))

        def run() -> torch.Tensor:
            out = fn(q, k, v, softmax_scale=problem.softmax_scale, causal=problem.causal)
            return out[0] if isinstance(out, tuple) else out

        return run


@register
class FA2(_FlashAttn):
    name = "fa2"
    description = "FlashAttention-2 (flash_attn.flash_attn_func)"
    module = "flash_attn"
    package_hint = "pip install flash-attn (builds against the installed torch; needs network)"


@register
class FA3(_FlashAttn):
    name = "fa3"
    description = "FlashAttention-3 for Hopper (flash_attn_interface.flash_attn_func)"
    module = "flash_attn_interface"
    package_hint = "build flash-attention/hopper from source (no wheel on PyPI)"
    min_capability = (9, 0)


@register
class FA4(_FlashAttn):
    name = "fa4"
    description = "FlashAttention-4, CuTe DSL (flash_attn.cute.flash_attn_func)"
    module = "flash_attn.cute"
    package_hint = "pip install flash-attn-4 (CuTe DSL; see shared/device/stage-fa4.sh offline)"
    min_capability = (9, 0)
    head_dims = (64, 96, 128)
