"""FlashAttention 2/3/4 on serving shapes, through each version's own entry points, as installed:

* decode: FA2 and FA3 ``flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=…)`` with the page
  table as ``block_table`` (FA2; its pages must be a multiple of 256 tokens) or ``page_table`` (FA3); FA4
  (``flash_attn.cute``, which has no ``flash_attn_with_kvcache``) ``flash_attn_varlen_func`` with
  batch-shaped q, ``seqused_k`` and ``page_table``, or ``flash_attn_func`` on a contiguous cache.
* varlen: ``flash_attn_varlen_func(q, k, v, cu_seqlens_q=, cu_seqlens_k=, max_seqlen_q=, max_seqlen_k=)``.
* window and soft-capping: ``window_size=(left, right)`` (-1 unbounded in FA2/FA3, None in FA4) and
  ``softcap``, on every entry point.
* FP8 (FA3's full build only): ``flash_attn_func`` on the e4m3 inputs with ``q_descale``, ``k_descale``,
  ``v_descale`` float32 ``[batch, heads_kv]`` tensors holding the per-tensor descale; bfloat16 out.

An entry point or keyword the installed build lacks makes the cell skipped with that reason (the
signatures are read, not guessed). The page table, sequence lengths and ``cu_seqlens`` handed to a kernel
are copies of the harness's own.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch

from harness.backends.base import Unsupported
from harness.spec.kinds import masks
from harness.spec.problem import Problem


def _entry(module: str, name: str) -> Callable[..., Any]:
    fn = getattr(importlib.import_module(module), name, None)
    if fn is None:
        raise Unsupported(f"{module} has no {name} in this build")
    return fn


def _accepts(fn: Callable[..., Any], *names: str) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: let the call say
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    missing = [n for n in names if n not in params]
    if missing:
        raise Unsupported(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')} takes no "
                          f"{', '.join(missing)} in this build")


def options(problem: Problem, fa4: bool) -> dict[str, Any]:
    """softmax_scale, causal and, where the problem has them, window_size and softcap."""
    kw: dict[str, Any] = {"softmax_scale": problem.softmax_scale, "causal": problem.causal}
    if masks.windowed(problem.window_left, problem.window_right):
        left, right = problem.window_left, problem.window_right
        if problem.causal:
            right = 0
        kw["window_size"] = ((None if left < 0 else left, None if right < 0 else right) if fa4 else (left, right))
    if problem.softcap:
        kw["softcap"] = problem.softcap
    return kw


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def serving_run(module: str, version: int, problem: Problem, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The timed callable for ``problem`` (a serving kind, or dense with a window or soft cap)."""
    fa4 = version == 4
    kw = options(problem, fa4)
    if problem.kind == "varlen":
        from harness.measure.inputs_varlen import cu_seqlens

        fn = _entry(module, "flash_attn_varlen_func")
        cu = cu_seqlens(problem, q.device)
        longest = max(problem.seq_lengths())
        kw.update(cu_seqlens_q=cu, cu_seqlens_k=cu.clone(), max_seqlen_q=longest, max_seqlen_k=longest)
        _accepts(fn, *kw)
        return lambda: _first(fn(q, k, v, **kw))
    if problem.kind == "decode":
        return _decode_run(module, version, problem, q, k, v, kw)
    fn = _entry(module, "flash_attn_func")
    if problem.dtype.startswith("float8"):
        from harness.spec.kinds.fp8 import DESCALE

        for name in ("q_descale", "k_descale", "v_descale"):
            kw[name] = torch.full((problem.batch, problem.heads_kv), DESCALE, dtype=torch.float32, device=q.device)
    _accepts(fn, *kw)
    # a bhsd view goes in as it is (any outer strides, contiguous last dim): a copy made here would freeze
    # the inputs the harness refills before each timed call
    return lambda: _first(fn(q, k, v, **kw))


def _decode_run(module: str, version: int, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                kw: dict[str, Any]) -> Callable[[], torch.Tensor]:
    from harness.measure.inputs_decode import paging

    meta = paging(problem, q.device).for_backend()
    if version == 4:
        if not problem.page_size:
            fn = _entry(module, "flash_attn_func")
            _accepts(fn, *kw)
            return lambda: _first(fn(q, k, v, **kw))
        fn = _entry(module, "flash_attn_varlen_func")
        kw.update(seqused_k=meta["cache_seqlens"], page_table=meta["page_table"], max_seqlen_k=problem.seqlen_k)
        _accepts(fn, *kw)
        return lambda: _first(fn(q, k, v, **kw))
    fn = _entry(module, "flash_attn_with_kvcache")
    kw["cache_seqlens"] = meta["cache_seqlens"]
    if problem.page_size:
        if version == 2 and problem.page_size % 256:
            raise Unsupported(f"FlashAttention-2's paged KV cache needs pages of a multiple of 256 tokens, "
                              f"got page_size={problem.page_size}")
        kw["block_table" if version == 2 else "page_table"] = meta["page_table"]
    _accepts(fn, *kw)
    return lambda: _first(fn(q, k, v, **kw))


def try_once(run: Callable[[], torch.Tensor], what: str) -> None:
    """Call once, untimed: an argument check the build makes (an assert, a refusal) is unsupported, not a
    wrong kernel; a CUDA error or a wrong result is left to the harness."""
    try:
        run()
    except (AssertionError, NotImplementedError, TypeError, ValueError) as exc:
        raise Unsupported(f"{what} refused the problem: {type(exc).__name__}: {str(exc).splitlines()[0][:240] if str(exc) else ''}") from None
    except RuntimeError as exc:
        text = str(exc)
        if "out of memory" in text or "CUDA error" in text or "illegal" in text:
            raise
        if any(w in text.lower() for w in ("not support", "unsupported", "only support", "must be", "expected")):
            raise Unsupported(f"{what} refused the problem: {text.splitlines()[0][:240]}") from None
        raise
