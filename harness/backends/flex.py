"""Compiled FlexAttention with a block mask for causal (bottom-right aligned); its backward is autograd's
through the compiled ``flex_attention`` (Inductor generates the backward kernel, compiled untimed in
``prepare_backward``)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from harness.backends import autograd, serving_baselines
from harness.backends.base import Backend, FwdBwdFn, GradFn, RunFn, Unsupported, cuda_unavailable
from harness.backends.registry import register
from harness.spec.problem import OPS, Problem


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention

    # every problem shape is its own specialised kernel: no fallback to eager after 8 shapes,
    # and no switch to a slower dynamic-shape kernel after the second shape
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    torch._dynamo.config.automatic_dynamic_shapes = False
    return torch.compile(flex_attention, dynamic=False)


@register
class Flex(Backend):
    name = "flex"
    description = "torch.compile'd FlexAttention (block mask for causal)"
    operations: ClassVar[frozenset[str]] = frozenset(OPS)
    # serving shapes through harness.backends.serving_baselines: decode on the gathered cache, varlen with a
    # document mask, a window as mask_mod, soft-capping as score_mod
    kinds = ("dense", "decode", "varlen")
    features = ("window", "softcap")

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        try:
            import torch.nn.attention.flex_attention  # noqa: F401
        except ImportError as exc:
            return f"FlexAttention not in this torch ({torch.__version__}): {exc}"
        return None

    @staticmethod
    def _kwargs(problem: Problem, device: torch.device) -> dict:
        from torch.nn.attention.flex_attention import create_block_mask

        kwargs: dict = {"scale": problem.softmax_scale}
        if problem.heads_q != problem.heads_kv:
            kwargs["enable_gqa"] = True
        if problem.causal and not serving_baselines.is_serving(problem):  # serving shapes make their own masks
            offset = problem.seqlen_k - problem.seqlen_q

            def bottom_right(b, h, q_idx, kv_idx):
                return kv_idx <= q_idx + offset

            kwargs["block_mask"] = create_block_mask(bottom_right, None, None, problem.seqlen_q,
                                                     problem.seqlen_k, device=device)
        return kwargs

    def _forward(self, problem: Problem, device: torch.device) -> autograd.Forward:
        flex, kwargs = _compiled_flex(), self._kwargs(problem, device)

        def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
            return flex(qh, kh, vh, **kwargs).transpose(1, 2)

        return forward

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        flex, kwargs = _compiled_flex(), self._kwargs(problem, q.device)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))

        def run() -> torch.Tensor:
            return flex(qh, kh, vh, **kwargs).transpose(1, 2)

        if serving_baselines.is_serving(problem):
            run = serving_baselines.flex_run(problem, q, k, v, flex)

        _lowered(run)  # compile now, untimed
        return run

    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        return _lowered(lambda: autograd.backward_call(self._forward(problem, q.device), q, k, v, do))

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        return _lowered(lambda: autograd.fwd_bwd_call(self._forward(problem, q.device), q, k, v, do))


def _lowered(make: Callable[[], Any]) -> Any:
    """``make()``; a shape Inductor cannot lower is unsupported, not a wrong kernel."""
    try:
        return make()
    except Exception as exc:
        if "NoValidChoices" in f"{type(exc).__name__}{exc}" or "LoweringException" in type(exc).__name__:
            raise Unsupported(f"Inductor cannot lower FlexAttention here: {str(exc).splitlines()[0][:200]}") from None
        raise
