"""FP8 (e4m3) forward attention through cuDNN's own Python graph API (``nvidia-cudnn-frontend``,
``import cudnn``): the graph's ``sdpa_fp8`` node on flashcore's FP8 problems (``harness.spec.kinds.fp8``),
cuDNN's counterpart of FA3's FP8 forward. FP8 problems only; the 16-bit ones are ``cudnn-frontend``'s.

The graph. Q, K and V are read in e4m3, in place through their strides (bshd and bhsd alike); GQA is K/V
with fewer heads. cuDNN's FP8 attention computes ``S = Q·Kᵀ · attn_scale · descale_q · descale_k``,
``P = softmax(S)``, rounds ``P · scale_s`` to e4m3 and writes
``O = (P_e4m3 · V) · descale_s · descale_v · scale_o``. Its six per-tensor factors are float32
``[1, 1, 1, 1]`` tensors on the GPU, made once with the graph (never per call):

* ``descale_q = descale_k = descale_v`` = the problem's ``DESCALE`` (2^-4: a stored e4m3 value times it is
  the real input);
* ``scale_s`` = 2^8, ``descale_s`` = 2^-8: P ∈ [0, 1] goes through e4m3 as P · 256, e4m3's largest value
  (448) rounded down to a power of two, as cuDNN's FP8 guidance rounds scale factors;
* ``scale_o`` = 1 (below).

``attn_scale`` is the problem's softmax scale; no softmax statistics are made. ``Amax_O`` (the absolute
maximum of O) is written to a float32 buffer made with the graph. ``Amax_S`` is left virtual, as frontend
1.32 documents (declaring it is deprecated, and keeps the frontend's own FP8 engines for Blackwell out); a
cuDNN that refuses the graph so is asked once more with ``Amax_S`` declared, into a buffer of its own
(``cell_extra`` says which).

The output. cuDNN writes a bfloat16 O from FP8 inputs only on Blackwell (compute capability 10 or newer)
with cuDNN 9.13 or newer (the frontend's own support check, ``cudnn_frontend/node/sdpa_support_surface.h``);
there the timed callable is the graph's execution alone. On Hopper O can only be FP8: the graph writes O in
e4m3 with ``scale_o = 1``, which keeps it in range (``|O| ≤ max |V| ≤ 448 · 2^-4 = 28``, e4m3 reaches 448)
and makes the dequantisation an exact cast, and the timed callable converts it to bfloat16 after the
execution. **That conversion (one elementwise kernel over O, 1 byte in and 2 out an element) is part of the
timed cost**; the e4m3 O is allocated per call, like the bfloat16 one.

Can an FP8-rounded O pass? The pass rule is unchanged (``harness.measure.correctness``): the max abs error
against the float64 reference must be at most twice that of the yardstick (float32 scores and softmax from
the dequantised inputs, P rounded to e4m3, O rounded to bfloat16; ``harness.measure.kinds``) plus a bfloat16
rounding floor. Rounding O to e4m3 (3 mantissa bits) adds up to 2^-4 of ``|O|`` per element (at most 2^-10
absolute below e4m3's smallest normal, 2^-6), the same order as the yardstick's own e4m3 rounding of P, so it
can pass, with less margin than a bfloat16 O: a float32 CPU emulation of this arithmetic (P · 2^8 and O in
e4m3) stayed within the tolerance on the ``correctness`` suite's fp8 shapes in every input distribution,
closest (about 0.9 of it) with all-positive uniform inputs at 128 keys. The GPU cells say whether cuDNN's
kernels do as well.

Causal masks are bottom-right aligned in flashcore. With ``seqlen_q == seqlen_k`` that is the top-left
diagonal, which every FP8 engine takes (``diagonal_alignment=TOP_LEFT, right_bound=0``: ``sdpa_fp8``'s
names, not ``sdpa``'s ``diagonal_band_right_bound``). cuDNN takes a bottom-right FP8 mask only on Blackwell
(and cuDNN 9.7+), so a causal problem with ``seqlen_q != seqlen_k`` is unsupported on Hopper, with that
reason.

Availability: a CUDA GPU of compute capability 9.0 or newer, the frontend importable, and cuDNN 9.1.0 or
newer but not 9.10.0 (the versions the frontend's support check refuses for FP8 attention). A graph cuDNN
refuses is a skip with cuDNN's message; an error of this adapter itself (a wrong argument name, which the
frontend reports as ``TypeError``) fails the cell instead.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from harness.backends.base import Backend, RunFn, Unsupported
from harness.backends.cudnn_frontend import (
    _bhsd_dims_strides,
    _handle,
    _import_cudnn,
    build_graph,
    frontend_unavailable,
)
from harness.backends.metrics import MetricSpec
from harness.backends.registry import register
from harness.spec.kinds import fp8
from harness.spec.problem import Problem

_UID_Q, _UID_K, _UID_V, _UID_O = 1, 2, 3, 4
_UID_DESCALE_Q, _UID_DESCALE_K, _UID_DESCALE_V, _UID_DESCALE_S, _UID_SCALE_S, _UID_SCALE_O = 5, 6, 7, 8, 9, 10
_UID_AMAX_S, _UID_AMAX_O = 11, 12

#: P's scale on its way through e4m3 (P ∈ [0, 1]; 448 rounded down to a power of two) and O's
SCALE_S = 2.0 ** 8
SCALE_O = 1.0
#: the six factors of cuDNN's FP8 attention, in sdpa_fp8's argument order: name, uid, value
FACTORS = (("descale_q", _UID_DESCALE_Q, fp8.DESCALE), ("descale_k", _UID_DESCALE_K, fp8.DESCALE),
           ("descale_v", _UID_DESCALE_V, fp8.DESCALE), ("descale_s", _UID_DESCALE_S, 1.0 / SCALE_S),
           ("scale_s", _UID_SCALE_S, SCALE_S), ("scale_o", _UID_SCALE_O, SCALE_O))
#: cuDNN versions (backend_version(): major·10000 + minor·100 + patch) with an FP8 attention forward
MIN_CUDNN, BROKEN_CUDNN = 90100, (91000,)
#: cuDNN writes a bfloat16 O from FP8 inputs from this version, on Blackwell only
BF16_OUT_CUDNN, BF16_OUT_CAPABILITY = 91300, (10, 0)
#: a bottom-right aligned FP8 mask: Blackwell only
BOTTOM_RIGHT_CAPABILITY = (10, 0)
MIN_CAPABILITY = (9, 0)


def cudnn_version_str(v: int) -> str:
    return f"{v // 10000}.{v % 10000 // 100}.{v % 100}"


def cudnn_unavailable(version: int) -> str | None:
    """Why this cuDNN has no FP8 attention forward, or None."""
    if version < MIN_CUDNN or version in BROKEN_CUDNN:
        return (f"cuDNN {cudnn_version_str(version)} has no FP8 attention forward: it needs cuDNN "
                f"{cudnn_version_str(MIN_CUDNN)} or newer, not 9.10.0")
    return None


def output_dtype(capability: tuple[int, int], version: int) -> torch.dtype:
    """The O cuDNN can write from FP8 inputs here: bfloat16 on Blackwell with cuDNN 9.13+, else e4m3."""
    if capability >= BF16_OUT_CAPABILITY and version >= BF16_OUT_CUDNN:
        return torch.bfloat16
    return torch.float8_e4m3fn


def causal_unsupported(problem: Problem, capability: tuple[int, int]) -> str | None:
    """Why cuDNN cannot mask this problem as flashcore does (bottom-right) on this GPU, or None."""
    if problem.causal and problem.seqlen_q != problem.seqlen_k and capability < BOTTOM_RIGHT_CAPABILITY:
        return (f"cuDNN's FP8 attention has no bottom-right causal mask before Blackwell (compute capability "
                f"{BOTTOM_RIGHT_CAPABILITY}, this GPU is {tuple(capability)}), and with seqlen_q={problem.seqlen_q} "
                f"!= seqlen_k={problem.seqlen_k} top-left is another mask")
    return None


def mask_kwargs(cudnn: Any, problem: Problem, capability: tuple[int, int]) -> dict[str, Any]:
    """sdpa_fp8's mask arguments for the problem: bottom-right causal, as top-left where the two agree."""
    if not problem.causal:
        return {}
    why = causal_unsupported(problem, capability)
    if why:
        raise Unsupported(why)
    same = problem.seqlen_q == problem.seqlen_k
    align = cudnn.diagonal_alignment.TOP_LEFT if same else cudnn.diagonal_alignment.BOTTOM_RIGHT
    return {"diagonal_alignment": align, "right_bound": 0}


@dataclass
class Fp8Graph:
    """A built sdpa_fp8 graph and what every execution of it hands over besides Q, K, V and O."""

    graph: Any
    workspace: torch.Tensor
    out_dtype: torch.dtype
    #: the factors' tensors, then Amax_O's buffer (and Amax_S's, when declared), with their uids
    fixed: list[torch.Tensor]
    fixed_uids: tuple[int, ...]
    amax_o: torch.Tensor
    amax_s: torch.Tensor | None


#: (problem key, device, q/k/v strides, O dtype) -> its graph: the harness prepares many input buffers of
#: one problem; one graph, workspace and set of factors serve them all (executions on one stream run in
#: order). Only the latest problem's graph is kept.
_GRAPHS: dict[tuple[Any, ...], Fp8Graph] = {}


@register
class CudnnFrontendFp8(Backend):
    name: ClassVar[str] = "cudnn-frontend-fp8"
    description: ClassVar[str] = ("cuDNN's FP8 (e4m3) SDPA forward through its own graph API (sdpa_fp8); "
                                  "an FP8 O is dequantised to bfloat16 in the timed call (Hopper)")
    features: ClassVar[tuple[str, ...]] = ("fp8",)
    #: which O data type cuDNN wrote and whether Amax_S had to be declared (a note, not a score)
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("cudnn_fp8"),)
    #: cuDNN's FP8 forward takes head dims that are multiples of 16 up to 256 on Hopper (up to 128 on
    #: Blackwell before cuDNN 9.26, where cuDNN refuses 256 with its reason)
    head_dims: ClassVar[tuple[int, ...]] = (64, 128, 256)

    def __init__(self) -> None:
        self._extra: dict[str, Any] = {}

    def unavailable(self) -> str | None:
        why = frontend_unavailable()
        if why:
            return why
        why = cudnn_unavailable(int(_import_cudnn().backend_version()))
        if why:
            return why
        cap = torch.cuda.get_device_capability()
        if cap < MIN_CAPABILITY:
            return (f"cuDNN's FP8 attention needs compute capability {MIN_CAPABILITY} (Hopper) or newer, "
                    f"this GPU is {cap}")
        return None

    def unsupported(self, problem: Problem) -> str | None:
        if not fp8.is_fp8(problem.dtype):
            return (f"{self.name} runs FP8 problems only ({', '.join(fp8.FP8_DTYPES)}), got {problem.dtype}; "
                    "cudnn-frontend runs float16/bfloat16")
        if problem.head_dim not in self.head_dims:
            return f"head_dim={problem.head_dim} not supported by {self.name}: allowed {self.head_dims}"
        if torch.cuda.is_available():
            return causal_unsupported(problem, torch.cuda.get_device_capability())
        return None

    def cell_extra(self) -> dict[str, Any]:
        return dict(self._extra)

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        cudnn = _import_cudnn()
        handle = _handle(cudnn, q.device)
        cap = tuple(torch.cuda.get_device_capability(q.device))
        entry = self._graph(cudnn, handle, problem, q, k, v, cap)
        self._extra = {"cudnn_fp8": {"o_dtype": str(entry.out_dtype).replace("torch.", ""),
                                     "amax_s_declared": entry.amax_s is not None}}
        out_shape = (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)
        g, workspace, out_dtype = entry.graph, entry.workspace, entry.out_dtype
        ins, uids = [q, k, v, *entry.fixed], (_UID_Q, _UID_K, _UID_V, *entry.fixed_uids, _UID_O)
        # the frontend's fast path (1.32): buffers by uid, metadata cached; older frontends take a dict
        by_uid = "tensor_uids" in inspect.signature(g.execute).parameters

        def run() -> torch.Tensor:
            stream = torch.cuda.current_stream().cuda_stream
            if cudnn.get_stream(handle) != stream:  # a few µs per set: only when the stream changed
                cudnn.set_stream(handle=handle, stream=stream)
            o = torch.empty(out_shape, dtype=out_dtype, device=q.device)
            if by_uid:
                g.execute([*ins, o], workspace, handle=handle, tensor_uids=uids)
            else:
                g.execute(dict(zip(uids, (*ins, o))), workspace, handle=handle)
            # Hopper: the e4m3 O (scale_o = 1) to the bfloat16 the problem wants, exact, in the timed call
            return o if out_dtype == torch.bfloat16 else o.to(torch.bfloat16)

        return run

    def _graph(self, cudnn: Any, handle: Any, problem: Problem, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor, cap: tuple[int, int]) -> Fp8Graph:
        out_dtype = output_dtype(cap, int(cudnn.backend_version()))
        key = (problem.key(), str(q.device), q.stride(), k.stride(), v.stride(), out_dtype)
        if key in _GRAPHS:
            return _GRAPHS[key]
        mask = mask_kwargs(cudnn, problem, cap)
        _GRAPHS.clear()
        refusals = []
        for declare_amax_s in (False, True):
            try:
                entry = _build(cudnn, handle, problem, q, k, v, out_dtype, mask, declare_amax_s)
            except (TypeError, AttributeError, NameError):  # this adapter's mistake, not cuDNN's refusal
                raise
            except Exception as exc:  # cudnn raises its own error types for a graph it cannot run
                if "out of memory" in str(exc).lower():
                    raise
                refusals.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                continue
            _GRAPHS[key] = entry
            return entry
        again = f"; with Amax_S declared: {refusals[1][:200]}" if refusals[1] != refusals[0] else ""
        raise Unsupported(f"cuDNN refused the FP8 SDPA graph: {refusals[0]}{again}")


def _build(cudnn: Any, handle: Any, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           out_dtype: torch.dtype, mask: dict[str, Any], declare_amax_s: bool) -> Fp8Graph:
    """Build (validate, heuristics A then fallback, support check, plans; untimed) the sdpa_fp8 graph and
    make its factors, amax buffers and workspace."""
    e4m3, f32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    o_type = cudnn.data_type.BFLOAT16 if out_dtype == torch.bfloat16 else e4m3
    o_like = torch.empty((problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim), dtype=out_dtype,
                         device="meta")  # the strides of every O the timed call makes
    scalar = ([1, 1, 1, 1], [1, 1, 1, 1])
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
    g = cudnn.pygraph(handle=handle, io_data_type=e4m3, intermediate_data_type=f32, compute_data_type=f32)
    tq, tk, tv = (g.tensor(name=n, dim=_bhsd_dims_strides(t)[0], stride=_bhsd_dims_strides(t)[1], data_type=e4m3,
                           uid=uid)
                  for n, t, uid in (("q", q, _UID_Q), ("k", k, _UID_K), ("v", v, _UID_V)))
    factors = {n: g.tensor(name=n, dim=scalar[0], stride=scalar[1], data_type=f32, uid=uid)
               for n, uid, _ in FACTORS}
    to, _stats, t_amax_s, t_amax_o = g.sdpa_fp8(name="sdpa_fp8", q=tq, k=tk, v=tv, **factors,
                                                attn_scale=float(problem.softmax_scale), generate_stats=False,
                                                **mask)
    dims, strides = _bhsd_dims_strides(o_like)
    to.set_uid(_UID_O).set_output(True).set_dim(dims).set_stride(strides).set_data_type(o_type)
    t_amax_o.set_uid(_UID_AMAX_O).set_output(True).set_dim(scalar[0]).set_stride(scalar[1]).set_data_type(f32)
    if declare_amax_s:
        t_amax_s.set_uid(_UID_AMAX_S).set_output(True).set_dim(scalar[0]).set_stride(scalar[1]).set_data_type(f32)
    workspace = torch.empty(max(build_graph(g, cudnn), 1), dtype=torch.uint8, device=q.device)
    fixed = [torch.full(scalar[0], value, dtype=torch.float32, device=q.device) for _, _, value in FACTORS]
    uids = [uid for _, uid, _ in FACTORS]
    amax_o = torch.zeros(scalar[0], dtype=torch.float32, device=q.device)
    amax_s = torch.zeros(scalar[0], dtype=torch.float32, device=q.device) if declare_amax_s else None
    fixed.append(amax_o)
    uids.append(_UID_AMAX_O)
    if amax_s is not None:
        fixed.append(amax_s)
        uids.append(_UID_AMAX_S)
    return Fp8Graph(g, workspace, out_dtype, fixed, tuple(uids), amax_o, amax_s)
