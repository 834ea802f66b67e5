"""FlashInfer on a decode problem's KV cache: ``flashinfer-decode``.

One query token per sequence runs ``BatchDecodeWithPagedKVCacheWrapper`` (the decode kernel servers call
every step; its tensor-core variant, ``use_tensor_cores=True``, for a GQA group of 4 or more, as FlashInfer
recommends); 2–16 query tokens per sequence (speculative decoding, multi-token prediction) run
``BatchPrefillWithPagedKVCacheWrapper`` with ``qo_indptr``, causal among the new tokens (bottom-right, as
flashcore's masks). Both read the page pool through ``indptr``/``indices``/``last_page_len`` built from the
harness's page table (``harness.measure.inputs_decode``); a contiguous cache is handed over as pages in
order (a view, nothing copied) of the largest of 64, 32, …, 1 tokens that divides ``seqlen_k`` (FlashInfer
splits long sequences across SMs in whole pages, so one page per sequence would leave most SMs idle).

``plan`` (and the JIT build or load of the module it needs) runs in ``prepare``, untimed; the timed call is
``wrapper.run(q, (k_cache, v_cache))`` alone. ``window_left`` and ``logits_soft_cap`` are the problem's
``window_left`` and ``softcap``; FlashInfer has no right window bound other than causal's 0.
"""
from __future__ import annotations

import sys
import time
from typing import Any, ClassVar

import torch

from harness.backends.base import Backend, RunFn, Unsupported, cuda_unavailable, half_precision_unsupported
from harness.backends.flashinfer import flashinfer_unavailable
from harness.backends.metrics import MetricSpec
from harness.backends.registry import register
from harness.spec.problem import Problem

WORKSPACE_BYTES = 128 * 2**20
_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_WRAPPERS: dict[tuple[str, str], Any] = {}
PLAN_TIMES: list[dict[str, Any]] = []  # per planned problem: wrapper, seconds (the JIT build, if any, included)


def page_arrays(problem: Problem, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(indptr, indices, last_page_len, page_size) in FlashInfer's paged-KV format, from the harness's table."""
    from harness.measure.inputs_decode import paging

    b, sk = problem.batch, problem.seqlen_k
    if not problem.page_size:  # the contiguous cache as pages in order
        ps = contiguous_page(sk)
        n = sk // ps
        return (torch.arange(b + 1, dtype=torch.int32, device=device) * n,
                torch.arange(b * n, dtype=torch.int32, device=device),
                torch.full((b,), ps, dtype=torch.int32, device=device), ps)
    pg = paging(problem, device)
    table = pg.for_backend()["page_table"]
    indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * pg.pages_per_seq
    last = torch.full((b,), sk - (pg.pages_per_seq - 1) * pg.page_size, dtype=torch.int32, device=device)
    return indptr, table.reshape(-1).contiguous(), last, pg.page_size


def contiguous_page(seqlen_k: int) -> int:
    """The page a contiguous cache is viewed in: the largest of 64, 32, …, 1 tokens dividing seqlen_k."""
    return next(p for p in (64, 32, 16, 8, 4, 2, 1) if seqlen_k % p == 0)


def _window_args(problem: Problem) -> tuple[int, bool]:
    """(window_left, causal) for FlashInfer; Unsupported for a right bound it cannot express."""
    causal = problem.causal
    if problem.seqlen_q > 1 and problem.window_right >= 0 and not causal:
        if problem.window_right != 0:
            raise Unsupported(f"FlashInfer has no right window bound but causal's 0, got window_right={problem.window_right}")
        causal = True  # (left, 0) is the causal mask with a left bound
    return problem.window_left, causal


@register
class FlashInferDecode(Backend):
    name = "flashinfer-decode"
    description = ("FlashInfer paged-KV decode (BatchDecodeWithPagedKVCacheWrapper; 2-16 query tokens: "
                   "BatchPrefillWithPagedKVCacheWrapper), plan untimed")
    kinds: ClassVar[tuple[str, ...]] = ("decode",)
    features: ClassVar[tuple[str, ...]] = ("window", "softcap")
    head_dims: ClassVar[tuple[int, ...]] = (64, 128, 256)
    #: the last plan: its wrapper, seconds (a JIT build or load included) and problem
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("flashinfer_plan", "s", higher_is_better=False),)

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        return flashinfer_unavailable("BatchDecodeWithPagedKVCacheWrapper", "BatchPrefillWithPagedKVCacheWrapper")

    def unsupported(self, problem: Problem) -> str | None:
        return half_precision_unsupported(self.name, problem, self.head_dims)

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        wrapper = self._planned(problem, q.device)
        b, sq, hq, d = problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim
        if not problem.page_size:  # [b, sk, hkv, d] viewed as b·sk/P pages of P tokens, in order
            ps = contiguous_page(problem.seqlen_k)
            k, v = (t.view(b * problem.seqlen_k // ps, ps, problem.heads_kv, d) for t in (k, v))
        q2 = q.view(b * sq, hq, d) if sq > 1 else q.view(b, hq, d)
        shape = (b, sq, hq, d)
        kv = (k, v)

        def run() -> torch.Tensor:
            return wrapper.run(q2, kv).view(shape)

        return run

    def _planned(self, problem: Problem, device: torch.device) -> Any:
        """One planned wrapper per problem, shared by its prepares (as harness.backends.flashinfer)."""
        import flashinfer

        key = (problem.key(), str(device))
        if key in _WRAPPERS:
            return _WRAPPERS[key]
        _WRAPPERS.clear()
        dt = _TORCH_DTYPES[problem.dtype]
        indptr, indices, last, page_size = page_arrays(problem, device)
        window_left, causal = _window_args(problem)
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        common = dict(window_left=window_left, logits_soft_cap=problem.softcap or None, q_data_type=dt,
                      kv_data_type=dt, sm_scale=problem.softmax_scale)
        t0 = time.perf_counter()
        try:
            if problem.seqlen_q == 1:
                group = problem.heads_q // problem.heads_kv
                wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=group >= 4)
                wrapper.plan(indptr, indices, last, problem.heads_q, problem.heads_kv, problem.head_dim, page_size,
                             **common)
                which = f"BatchDecodeWithPagedKVCacheWrapper(use_tensor_cores={group >= 4})"
            else:
                qo_indptr = torch.arange(problem.batch + 1, dtype=torch.int32, device=device) * problem.seqlen_q
                wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
                wrapper.plan(qo_indptr, indptr, indices, last, problem.heads_q, problem.heads_kv, problem.head_dim,
                             page_size, causal=causal, **common)
                which = "BatchPrefillWithPagedKVCacheWrapper"
        except (ValueError, NotImplementedError, RuntimeError, TypeError) as exc:
            if "out of memory" in str(exc):
                raise
            raise Unsupported(f"FlashInfer refused the decode problem: {type(exc).__name__}: {str(exc)[:300]}") from None
        seconds = round(time.perf_counter() - t0, 3)
        PLAN_TIMES.append({"wrapper": which, "plan_s": seconds, "problem": problem.key()})
        print(f"flashinfer {which} plan (JIT build or load included): {seconds} s", file=sys.stderr, flush=True)
        _WRAPPERS[key] = wrapper
        return wrapper

    def cell_extra(self) -> dict[str, Any]:
        return {"flashinfer_plan": PLAN_TIMES[-1:]}
