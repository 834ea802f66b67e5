"""FlashInfer's prefill attention (``flashinfer-python``), the kernels SGLang and vLLM serve with.

Two backends, one per FlashInfer kernel template: ``flashinfer-fa3`` (its FlashAttention-3-style
template, sm90 only, ``backend="fa3"``) and ``flashinfer-fa2`` (its FlashAttention-2-style template,
``backend="fa2"``). Both run ``BatchPrefillWithRaggedKVCacheWrapper``, the wrapper the servers' prefill
path plans and runs, for every batch size (batch 1 included, so one compiled module serves each
dtype and head_dim); the bshd inputs are the wrapper's ragged NHD layout as they are (a view).

FlashInfer compiles its kernels on first use (JIT, the machine's nvcc, ninja) into
``$FLASHINFER_WORKSPACE_BASE/.cache/flashinfer`` (``~`` by default). ``prepare`` builds or loads the
module and plans, untimed; the timed callable is ``wrapper.run`` alone. The build time of each module
is kept in ``JIT_TIMES`` and written to the worker's log and to ``flashcore-jit-times.jsonl`` in the
JIT directory, so a run says how long the compile took and whether it came from the cache. A module
found prebuilt in FlashInfer's AOT directory (``flashinfer/data/aot/<uri>/<uri>.so``, or the
``flashinfer-jit-cache`` package) is loaded without compiling.
Useful environment: ``FLASHINFER_CUDA_ARCH_LIST="9.0a"`` (build for the H100/H200 only),
``MAX_JOBS`` (ninja's parallel jobs), ``FLASHINFER_JIT_VERBOSE=1``. (``FLASHINFER_DISABLE_JIT=1`` refuses
every module not in the AOT package ``flashinfer-jit-cache``, JIT-cached ones included: leave it unset.)

Causal masks: both templates keep key ``j`` for query ``i`` when ``j <= i + Sk - Sq``
(``include/flashinfer/attention/prefill.cuh``: ``kv_idx > q_idx + kv_len - qo_len`` is masked;
``hopper/mainloop_mma.cuh``: ``col_limit_right = qo_idx + 1 + kv_len - qo_len``), i.e. bottom-right
aligned as flashcore's problems, so no conversion is needed.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, ClassVar

import torch

from harness.backends.base import Backend, RunFn, Unsupported, cuda_unavailable, half_precision_unsupported
from harness.backends.metrics import MetricSpec
from harness.backends.registry import register
from harness.spec.problem import Problem

#: FlashInfer's recommended float workspace for the prefill wrappers (split-KV partial outputs)
WORKSPACE_BYTES = 128 * 2**20
#: uri -> {"template", "seconds", "cached": whether the module was already built on disk, "aot": prebuilt}
JIT_TIMES: dict[str, dict[str, Any]] = {}
_WRAPPERS: dict[tuple[str, str, str], Any] = {}
_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def module_args(problem: Problem) -> tuple[Any, ...]:
    """The arguments FlashInfer's ``get_batch_prefill_module`` takes after the template name, as the
    ragged wrapper's ``plan`` passes them: no RoPE, no fp16 QK reduction; a sliding window and a soft cap
    when the problem has them."""
    dt = _TORCH_DTYPES[problem.dtype]
    window = problem.window_left >= 0
    return (dt, dt, dt, torch.int32, problem.head_dim, problem.head_dim, 0, window, bool(problem.softcap), False)


def build_module(template: str, problem: Problem) -> dict[str, Any]:
    """Build (or load from the JIT cache) the batch-prefill module ``problem`` needs, once per process,
    and say how long it took. The wrapper's ``plan`` finds it in FlashInfer's own cache afterwards."""
    from flashinfer.jit.attention import gen_batch_prefill_module, get_batch_prefill_uri
    from flashinfer.jit.env import FLASHINFER_JIT_DIR
    from flashinfer.prefill import get_batch_prefill_module

    args = module_args(problem)
    uri = get_batch_prefill_uri(template, *args)
    if uri in JIT_TIMES:
        return JIT_TIMES[uri]
    spec = gen_batch_prefill_module(template, *args)
    cached, aot = bool(spec.is_compiled), bool(getattr(spec, "is_aot", False))
    t0 = time.perf_counter()
    get_batch_prefill_module(template, *args)
    entry = {"uri": uri, "template": template, "seconds": round(time.perf_counter() - t0, 3), "cached": cached,
             "aot": aot}
    JIT_TIMES[uri] = entry
    how = "loaded prebuilt (AOT)" if aot else "loaded from the JIT cache" if cached else "built"
    print(f"flashinfer JIT {uri}: {how} in {entry['seconds']} s", file=sys.stderr, flush=True)
    try:
        with open(FLASHINFER_JIT_DIR / "flashcore-jit-times.jsonl", "a") as f:
            f.write(json.dumps({**entry, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    except OSError:  # a read-only cache still runs; the log line above keeps the time
        pass
    return entry


def flashinfer_description() -> str:
    """FlashInfer's version and JIT cache directory, for ``flashcore env`` and the run's environment."""
    try:
        import flashinfer
        from flashinfer.jit.env import FLASHINFER_JIT_DIR
    except Exception as exc:  # missing, or a broken install raising anything at import
        return f"none (flashinfer not importable: {type(exc).__name__}: {str(exc)[:120]})"
    return f"flashinfer {flashinfer.__version__}, JIT cache {FLASHINFER_JIT_DIR}"


class _FlashInfer(Backend):
    template: ClassVar[str] = ""
    # varlen: the ragged wrapper with the sequences' cu_seqlens as qo and kv indptr; window_left and
    # logits_soft_cap from the problem (no right bound but causal's 0)
    kinds: ClassVar[tuple[str, ...]] = ("dense", "varlen")
    features: ClassVar[tuple[str, ...]] = ("window", "softcap")
    min_capability: ClassVar[tuple[int, int]] = (8, 0)
    head_dims: ClassVar[tuple[int, ...]] = (64, 128)
    #: the modules this process built or loaded for the template: uri, seconds, cached, aot
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("flashinfer_jit", "s", higher_is_better=False),)

    def unavailable(self) -> str | None:
        why = cuda_unavailable()
        if why:
            return why
        why = flashinfer_unavailable("BatchPrefillWithRaggedKVCacheWrapper")
        if why:
            return why
        cap = torch.cuda.get_device_capability()
        if cap < self.min_capability:
            return f"{self.name} needs compute capability {self.min_capability}, this GPU is {cap}"
        if self.template == "fa3" and cap[0] != 9:
            return f"{self.name}: FlashInfer's fa3 template is built for sm90 (Hopper) only, this GPU is {cap}"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        why = half_precision_unsupported(self.name, problem, self.head_dims)
        if why:
            return why
        if problem.heads_q % problem.heads_kv:
            return f"{self.name} needs heads_q a multiple of heads_kv, got {problem.heads_q} and {problem.heads_kv}"
        if problem.window_right > 0:
            return (f"{self.name}: FlashInfer has no right window bound but causal's 0 (window_right="
                    f"{problem.window_right})")
        return None

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        # the ragged layout is [tokens, heads, head_dim]: bshd is that already (a view); a bhsd view is copied
        # inside each call, so the copy is timed (one made here would freeze the inputs refilled per call)
        def ragged(t: torch.Tensor) -> torch.Tensor:
            return t.contiguous().view(-1, t.shape[-2], t.shape[-1])

        strided = not all(t.is_contiguous() for t in (q, k, v))
        q2, k2, v2 = (q, k, v) if strided else (ragged(t) for t in (q, k, v))
        try:
            build_module(self.template, problem)
        except Exception as exc:
            raise Unsupported(f"FlashInfer could not build its {self.template} prefill module: "
                              f"{type(exc).__name__}: {str(exc)[-300:]}") from None
        wrapper = self._planned(problem, q.device)
        shape = (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)
        if problem.kind == "varlen":  # packed [tokens, heads, d] already
            shape = tuple(q.shape)

        def run() -> torch.Tensor:
            if strided:
                return wrapper.run(ragged(q2), ragged(k2), ragged(v2)).view(shape)
            return wrapper.run(q2, k2, v2).view(shape)

        return run

    def _planned(self, problem: Problem, device: torch.device) -> Any:
        """One planned wrapper per problem, shared by every prepare of it: the harness prepares many input
        buffers (one per timing slot, more in sustained mode), and each wrapper holds 128 MiB of workspace
        and pinned host memory. The plan depends only on the problem, and calls on one stream run in order,
        so sharing its workspace is safe. Only the latest problem's wrapper is kept."""
        from flashinfer import BatchPrefillWithRaggedKVCacheWrapper

        key = (self.template, problem.key(), str(device))
        if key in _WRAPPERS:
            return _WRAPPERS[key]
        _WRAPPERS.clear()
        b, sq, sk = problem.batch, problem.seqlen_q, problem.seqlen_k
        qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sq
        kv_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sk
        if problem.kind == "varlen":
            from harness.measure.inputs_varlen import cu_seqlens

            qo_indptr, kv_indptr = cu_seqlens(problem, device), cu_seqlens(problem, device)
        serving: dict = {}
        if problem.window_left >= 0:
            serving["window_left"] = problem.window_left
        if problem.softcap:
            serving["logits_soft_cap"] = problem.softcap
        # (left, 0) without causal is the causal mask with a left bound (FlashInfer's causal is bottom-right too)
        causal = problem.causal or problem.window_right == 0
        wrapper = BatchPrefillWithRaggedKVCacheWrapper(
            torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device), "NHD", backend=self.template)
        dt = _TORCH_DTYPES[problem.dtype]
        try:
            wrapper.plan(qo_indptr, kv_indptr, problem.heads_q, problem.heads_kv, problem.head_dim,
                         causal=causal, sm_scale=problem.softmax_scale, q_data_type=dt, kv_data_type=dt, **serving)
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            if "out of memory" in str(exc):
                raise
            raise Unsupported(f"FlashInfer's {self.template} prefill refused the problem: "
                              f"{type(exc).__name__}: {str(exc)[:300]}") from None
        _WRAPPERS[key] = wrapper
        return wrapper

    def cell_extra(self) -> dict[str, Any]:
        """What this process compiled or loaded, for a cell's record."""
        return {"flashinfer_jit": [e for e in JIT_TIMES.values() if e["template"] == self.template]}


def flashinfer_unavailable(*names: str) -> str | None:
    """None if FlashInfer imports with ``names``, else why not and how to install it."""
    try:
        import flashinfer

        for name in names:
            getattr(flashinfer, name)
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        return (f"flashinfer not importable ({type(exc).__name__}: {str(exc)[:160]}); pip install "
                "flashinfer-python apache-tvm-ffi (compiles on first use: needs nvcc and ninja)")
    return None


@register
class FlashInferFA3(_FlashInfer):
    name = "flashinfer-fa3"
    description = "FlashInfer batch prefill, FA3 template (sm90; BatchPrefillWithRaggedKVCacheWrapper backend='fa3')"
    template = "fa3"
    min_capability = (9, 0)


@register
class FlashInferFA2(_FlashInfer):
    name = "flashinfer-fa2"
    description = "FlashInfer batch prefill, FA2 template (BatchPrefillWithRaggedKVCacheWrapper backend='fa2')"
    template = "fa2"
