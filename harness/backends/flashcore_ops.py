"""flashcore's own kernels as backends: ``flashcore-phase4``, ``flashcore-phase4x`` and
``flashcore-bleeding-edge``, each calling ``torch.ops.flashcore.<op>`` (JIT-built by
``harness.tools.build.load_ops`` at first use, cached by source hash).

Layouts: phase4 and phase4x read contiguous ``[b, s, h, d]`` tensors, so a ``bhsd`` problem's inputs are
copied once, untimed, in ``prepare``. The bleeding-edge op reads q/k/v through their strides (TMA tensor
maps built from them): both layouts run as handed over, without a copy. What it cannot describe (a head_dim
stride other than 1; a batch/seq/head stride that is 0 or not a multiple of 8 elements; a base address not
16-byte aligned) never comes from the harness's two layouts at head_dim 64/128; the op refuses such tensors
with the reason."""
from __future__ import annotations

from typing import ClassVar

import torch

from harness.backends.base import Backend, RunFn, cuda_unavailable
from harness.backends.registry import register
from harness.spec.problem import Problem


class _FlashcoreOp(Backend):
    custom_kernel = True
    #: op name in torch.ops.flashcore and harness.tools.build.kernels
    op: ClassVar[str] = ""
    head_dims: ClassVar[tuple[int, ...]] = (64, 128)
    dtypes: ClassVar[tuple[str, ...]] = ("float16", "bfloat16")
    #: the op reads q/k/v through their batch/seq/head strides (head_dim contiguous); otherwise it needs
    #: contiguous bshd and ``prepare`` converts other layouts once, untimed
    strided_inputs: ClassVar[bool] = False

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        from harness.tools.build import kernels, toolchain

        spec = kernels.by_name(self.op)
        if not spec.exists():
            return f"kernel source {spec.source} is not in this checkout"
        if toolchain.find_nvcc() is None:
            return "nvcc not found (the op is compiled at first use): install the CUDA toolkit or set CUDA_HOME"
        cap = torch.cuda.get_device_capability()
        if cap != (9, 0):
            return f"built for sm_90a (Hopper, compute capability 9.0); this GPU is {cap[0]}.{cap[1]}"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        """What the problem's sizes and types rule out. Both layouts are supported (see the module
        docstring); strides the bleeding-edge op cannot describe are refused by the op itself, with the
        tensor, dimension and stride named, and never arise from the harness's inputs."""
        if problem.dtype not in self.dtypes:
            return f"dtype={problem.dtype} not supported by {self.name}: allowed {', '.join(self.dtypes)}"
        if problem.head_dim not in self.head_dims:
            return (f"head_dim={problem.head_dim} not supported by {self.name}: allowed "
                    f"{', '.join(map(str, self.head_dims))}")
        if problem.batch > 65535 or problem.heads_q > 65535:
            return (f"batch={problem.batch}, heads_q={problem.heads_q}: each must be <= 65535 for {self.name} "
                    f"(CUDA grid limit)")
        if max(problem.seqlen_q, problem.seqlen_k) > 2**31 - 1:
            return f"seqlens must fit in int32 for {self.name}"
        return None

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        from harness.tools.build import load_ops

        load_ops()
        fn = getattr(torch.ops.flashcore, self.op)
        scale, causal = float(problem.softmax_scale), bool(problem.causal)
        if not self.strided_inputs and not all(t.is_contiguous() for t in (q, k, v)):
            # phase4/phase4x read contiguous bshd: a bhsd view is copied inside each call, so the copy is
            # part of its time (a copy made once here would freeze the inputs the harness refills per call)
            def copied() -> torch.Tensor:
                return fn(q.contiguous(), k.contiguous(), v.contiguous(), scale, causal, False)[0]

            return copied

        def run() -> torch.Tensor:
            return fn(q, k, v, scale, causal, False)[0]

        return run


@register
class FlashcorePhase4(_FlashcoreOp):
    name = "flashcore-phase4"
    description = "flashcore phase 4: fused attention, online softmax, scalar FP32 FMA (seeds' Milestone 1)"
    op = "phase4"


@register
class FlashcorePhase4X(_FlashcoreOp):
    name = "flashcore-phase4x"
    description = "flashcore phase 4.X: WMMA 16x16x16 tensor cores, cp.async double buffer, 64x64 tiles"
    op = "phase4x"


@register
class FlashcoreBleedingEdge(_FlashcoreOp):
    name = "flashcore-bleeding-edge"
    description = "flashcore bleeding edge: TMA + wgmma + warp specialization for Hopper"
    op = "bleeding_edge"
    strided_inputs = True
