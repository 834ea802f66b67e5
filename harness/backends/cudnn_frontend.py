"""cuDNN's fused attention through cuDNN's own Python graph API (``nvidia-cudnn-frontend``, ``import
cudnn``), not through PyTorch: beside ``sdpa-cudnn`` it shows whether PyTorch's path to the same library
leaves speed on the table.

``prepare`` builds the SDPA graph once per problem and input strides (validate, heuristics A then
fallback, support check, plan build; untimed) and allocates its workspace; the timed callable allocates
O and executes the plan. The graph reads q/k/v in place through their strides (bshd and bhsd alike).
Causal masks are bottom-right aligned (``diagonal_alignment=BOTTOM_RIGHT`` with right bound 0), as
flashcore's problems; GQA is K/V with fewer heads. A problem cuDNN refuses (no engine for it on this
GPU and cuDNN version) is recorded as skipped with cuDNN's message.

The backward: a training forward graph (``generate_stats=True``: O and the softmax statistics) and an
``sdpa_backward`` graph (Q, K, V, O, dO and the statistics in; dQ, dK, dV out), built once per problem and
strides. ``bwd`` runs the forward once, untimed, and times the backward graph; ``fwd_bwd`` times both.
``cudnn-frontend-det`` builds the backward with ``use_deterministic_algorithm=True`` (cuDNN's
deterministic dQ accumulation), the variant cudnn-frontend's own benchmark reports the cost of.
"""
from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch

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

_UID_Q, _UID_K, _UID_V, _UID_O = 1, 2, 3, 4
_UID_STATS, _UID_DO, _UID_DQ, _UID_DK, _UID_DV = 5, 6, 7, 8, 9
_handles: dict[int, Any] = {}


def _import_cudnn() -> Any:
    """The frontend module, with the cuDNN library torch ships already loaded: the frontend looks for
    libcudnn in site-packages or by soname, and torch's own copy is the one loaded first this way."""
    torch.backends.cudnn.version()  # loads torch's libcudnn
    import cudnn

    return cudnn


def cudnn_frontend_description() -> str:
    """The frontend's version and the cuDNN library it runs, for ``flashcore env`` and the run's
    environment."""
    try:
        cudnn = _import_cudnn()
    except Exception as exc:  # missing, or a broken install raising anything at import
        return f"none (cudnn frontend not importable: {type(exc).__name__}: {str(exc)[:120]})"
    try:
        backend = f", cuDNN {cudnn.backend_version()}"
    except Exception:  # noqa: BLE001 - no cuDNN library loaded (e.g. a CPU-only machine)
        backend = ", no cuDNN library loaded"
    return f"nvidia-cudnn-frontend {getattr(cudnn, '__version__', '?')}{backend}"


def frontend_unavailable() -> str | None:
    """Why cuDNN's own graph API cannot run in this process (no GPU, the frontend not importable, no cuDNN
    library it can load), in one line, or None."""
    why = cuda_unavailable()
    if why:
        return why
    try:
        cudnn = _import_cudnn()
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        return (f"cudnn frontend not importable ({type(exc).__name__}: {str(exc)[:160]}); "
                "pip install nvidia-cudnn-frontend")
    try:
        cudnn.backend_version()
    except Exception as exc:  # noqa: BLE001 - frontend present, no libcudnn it can use
        return f"the cudnn frontend found no cuDNN library ({type(exc).__name__}: {str(exc)[:160]})"
    return None


def build_graph(g: Any, cudnn: Any) -> int:
    """Validate, lower and plan a built-up graph (heuristics A, then the fallback), check that an engine
    supports it and build its plan; return the workspace it needs in bytes."""
    g.validate()
    g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support()
    g.build_plans()
    return int(g.get_workspace_size())


#: (problem key, q/k/v strides) -> (built graph, its workspace): the harness prepares many input buffers
#: of one problem (one per timing slot, more in sustained mode); one graph and workspace serve them all,
#: since executions on one stream run in order. Only the latest problem's graph is kept.
_GRAPHS: dict[tuple[Any, ...], tuple[Any, torch.Tensor]] = {}


def _handle(cudnn: Any, device: torch.device) -> Any:
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _handles:
        with torch.cuda.device(idx):
            _handles[idx] = cudnn.create_handle()
    return _handles[idx]


def _bhsd_dims_strides(t: torch.Tensor) -> tuple[list[int], list[int]]:
    """cuDNN's [b, h, s, d] view of a harness [b, s, h, d] tensor, whatever its memory layout."""
    b, s, h, d = t.shape
    return [b, h, s, d], [t.stride(0), t.stride(2), t.stride(1), t.stride(3)]


class CudnnFrontend(Backend):
    name: ClassVar[str] = "cudnn-frontend"
    description: ClassVar[str] = "cuDNN SDPA through cuDNN's own graph API (nvidia-cudnn-frontend), not PyTorch"
    head_dims: ClassVar[tuple[int, ...]] = (64, 128)
    operations: ClassVar[frozenset[str]] = frozenset(OPS)
    #: build the backward with cuDNN's deterministic algorithm
    deterministic: ClassVar[bool] = False

    def unavailable(self) -> str | None:
        why = frontend_unavailable()
        if why:
            return why
        cap = torch.cuda.get_device_capability()
        if cap < (8, 0):
            return f"cudnn-frontend's fused attention needs compute capability (8, 0), this GPU is {cap}"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        return half_precision_unsupported(self.name, problem, self.head_dims)

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        cudnn = _import_cudnn()
        handle = _handle(cudnn, q.device)
        out_shape = (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)
        g, workspace = self._graph(cudnn, handle, problem, q, k, v)
        uids = (_UID_Q, _UID_K, _UID_V, _UID_O)
        # the frontend's fast path (1.32): buffers by uid, metadata cached; older frontends take a dict
        by_uid = "tensor_uids" in inspect.signature(g.execute).parameters

        def run() -> torch.Tensor:
            stream = torch.cuda.current_stream().cuda_stream
            if cudnn.get_stream(handle) != stream:  # a few µs per set: only when the stream changed
                cudnn.set_stream(handle=handle, stream=stream)
            o = torch.empty(out_shape, dtype=q.dtype, device=q.device)
            if by_uid:
                g.execute([q, k, v, o], workspace, handle=handle, tensor_uids=uids)
            else:
                g.execute(dict(zip(uids, (q, k, v, o))), workspace, handle=handle)
            return o

        return run

    def _graph(self, cudnn: Any, handle: Any, problem: Problem, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor) -> tuple[Any, torch.Tensor]:
        key = (problem.key(), str(q.device), q.stride(), k.stride(), v.stride())
        if key in _GRAPHS:
            return _GRAPHS[key]
        _GRAPHS.clear()
        io = {torch.float16: cudnn.data_type.HALF, torch.bfloat16: cudnn.data_type.BFLOAT16}[q.dtype]
        out_shape = (problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim)
        o_like = torch.empty(out_shape, dtype=q.dtype, device=q.device)  # strides of every O run returns
        try:
            cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
            g = cudnn.pygraph(handle=handle, io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT,
                              compute_data_type=cudnn.data_type.FLOAT)
            tq, tk, tv = (g.tensor(name=n, dim=_bhsd_dims_strides(t)[0], stride=_bhsd_dims_strides(t)[1],
                                   data_type=io, uid=uid)
                          for n, t, uid in (("q", q, _UID_Q), ("k", k, _UID_K), ("v", v, _UID_V)))
            # forward only: no softmax statistics
            kwargs: dict[str, Any] = {"attn_scale": problem.softmax_scale, "generate_stats": False}
            if problem.causal:
                kwargs["diagonal_alignment"] = cudnn.diagonal_alignment.BOTTOM_RIGHT
                kwargs["diagonal_band_right_bound"] = 0
            to, _stats = g.sdpa(name="sdpa_fwd", q=tq, k=tk, v=tv, **kwargs)
            dims, strides = _bhsd_dims_strides(o_like)
            to.set_uid(_UID_O).set_output(True).set_dim(dims).set_stride(strides).set_data_type(io)
            workspace = torch.empty(max(build_graph(g, cudnn), 1), dtype=torch.uint8, device=q.device)
        except Exception as exc:  # cudnn raises its own error types for a graph it cannot run
            if "out of memory" in str(exc).lower():
                raise
            raise Unsupported(f"cuDNN refused the SDPA graph: {type(exc).__name__}: {str(exc)[:300]}") from None
        _GRAPHS[key] = (g, workspace)
        return g, workspace

    # -- the backward ---------------------------------------------------------------------------------
    def prepare_backward(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         do: torch.Tensor) -> GradFn:
        step = _TrainingStep(self, problem, q, k, v, do)
        o, stats = step.forward()  # untimed: what the backward reads
        torch.cuda.synchronize()

        def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return step.backward(o, stats)

        return run

    def prepare_fwd_bwd(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        do: torch.Tensor) -> FwdBwdFn:
        step = _TrainingStep(self, problem, q, k, v, do)

        def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            o, stats = step.forward()
            return (o, *step.backward(o, stats))

        return run


#: (problem key, strides, deterministic) -> (forward graph, backward graph, workspace): as _GRAPHS
_TRAIN_GRAPHS: dict[tuple[Any, ...], tuple[Any, Any, torch.Tensor]] = {}


class _TrainingStep:
    """cuDNN's training forward (O and the softmax statistics) and backward graphs of one problem, and the
    calls that execute them on the harness's q, k, v and dO (read in place, through their strides)."""

    def __init__(self, backend: CudnnFrontend, problem: Problem, q: torch.Tensor, k: torch.Tensor,
                 v: torch.Tensor, do: torch.Tensor) -> None:
        self.cudnn = cudnn = _import_cudnn()
        self.handle = _handle(cudnn, q.device)
        self.q, self.k, self.v, self.do = q, k, v, do
        b, sq, hq, d = q.shape
        self.o_shape, self.stats_shape = (b, sq, hq, d), (b, hq, sq, 1)
        key = (problem.key(), str(q.device), q.stride(), k.stride(), v.stride(), do.stride(), backend.deterministic)
        if key not in _TRAIN_GRAPHS:
            _TRAIN_GRAPHS.clear()
            _TRAIN_GRAPHS[key] = self._build(problem, backend.deterministic)
        self.fwd, self.bwd, self.workspace = _TRAIN_GRAPHS[key]

    def _empty(self, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype or self.q.dtype, device=self.q.device)

    def _build(self, problem: Problem, deterministic: bool) -> tuple[Any, Any, torch.Tensor]:
        cudnn, q, k, v, do = self.cudnn, self.q, self.k, self.v, self.do
        io = {torch.float16: cudnn.data_type.HALF, torch.bfloat16: cudnn.data_type.BFLOAT16}[q.dtype]
        mask: dict[str, Any] = {}
        if problem.causal:
            mask = {"diagonal_alignment": cudnn.diagonal_alignment.BOTTOM_RIGHT, "diagonal_band_right_bound": 0}
        o_like, stats_like = self._empty(self.o_shape), self._empty(self.stats_shape, torch.float32)
        try:
            cudnn.set_stream(handle=self.handle, stream=torch.cuda.current_stream().cuda_stream)

            def graph() -> Any:
                return cudnn.pygraph(handle=self.handle, io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT,
                                     compute_data_type=cudnn.data_type.FLOAT)

            def tensor(g: Any, name: str, t: torch.Tensor, uid: int, bshd: bool = True) -> Any:
                dims, strides = _bhsd_dims_strides(t) if bshd else (list(t.shape), list(t.stride()))
                dt = cudnn.data_type.FLOAT if t.dtype == torch.float32 else io
                return g.tensor(name=name, dim=dims, stride=strides, data_type=dt, uid=uid)

            def output(t: Any, like: torch.Tensor, uid: int, bshd: bool = True) -> None:
                dims, strides = _bhsd_dims_strides(like) if bshd else (list(like.shape), list(like.stride()))
                dt = cudnn.data_type.FLOAT if like.dtype == torch.float32 else io
                t.set_uid(uid).set_output(True).set_dim(dims).set_stride(strides).set_data_type(dt)

            fwd = graph()
            fq, fk, fv = (tensor(fwd, n, t, uid) for n, t, uid in (("q", q, _UID_Q), ("k", k, _UID_K), ("v", v, _UID_V)))
            to, tstats = fwd.sdpa(name="sdpa_fwd", q=fq, k=fk, v=fv, attn_scale=problem.softmax_scale,
                                  generate_stats=True, **mask)
            output(to, o_like, _UID_O)
            output(tstats, stats_like, _UID_STATS, bshd=False)
            bwd = graph()
            bq, bk, bv, bo, bdo = (tensor(bwd, n, t, uid) for n, t, uid in (
                ("q", q, _UID_Q), ("k", k, _UID_K), ("v", v, _UID_V), ("o", o_like, _UID_O), ("dO", do, _UID_DO)))
            bstats = tensor(bwd, "stats", stats_like, _UID_STATS, bshd=False)
            extra = {"use_deterministic_algorithm": True} if deterministic else {}
            tdq, tdk, tdv = bwd.sdpa_backward(name="sdpa_bwd", q=bq, k=bk, v=bv, o=bo, dO=bdo, stats=bstats,
                                              attn_scale=problem.softmax_scale, **mask, **extra)
            for t, like, uid in ((tdq, q, _UID_DQ), (tdk, k, _UID_DK), (tdv, v, _UID_DV)):
                output(t, self._grad_like(like), uid)
            size = 1
            for g in (fwd, bwd):
                size = max(size, build_graph(g, cudnn))
            workspace = torch.empty(size, dtype=torch.uint8, device=q.device)
        except Exception as exc:  # cudnn raises its own error types for a graph it cannot run
            if "out of memory" in str(exc).lower():
                raise
            raise Unsupported(f"cuDNN refused the SDPA training graphs: {type(exc).__name__}: {str(exc)[:300]}") from None
        return fwd, bwd, workspace

    def _grad_like(self, x: torch.Tensor) -> torch.Tensor:
        """A gradient buffer: contiguous bshd, the shape of ``x``."""
        return self._empty(tuple(x.shape))

    def _execute(self, g: Any, tensors: list[torch.Tensor], uids: tuple[int, ...]) -> None:
        cudnn, handle = self.cudnn, self.handle
        stream = torch.cuda.current_stream().cuda_stream
        if cudnn.get_stream(handle) != stream:
            cudnn.set_stream(handle=handle, stream=stream)
        if "tensor_uids" in inspect.signature(g.execute).parameters:
            g.execute(tensors, self.workspace, handle=handle, tensor_uids=uids)
        else:
            g.execute(dict(zip(uids, tensors)), self.workspace, handle=handle)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        o, stats = self._empty(self.o_shape), self._empty(self.stats_shape, torch.float32)
        self._execute(self.fwd, [self.q, self.k, self.v, o, stats], (_UID_Q, _UID_K, _UID_V, _UID_O, _UID_STATS))
        return o, stats

    def backward(self, o: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dq, dk, dv = (self._grad_like(x) for x in (self.q, self.k, self.v))
        self._execute(self.bwd, [self.q, self.k, self.v, o, self.do, stats, dq, dk, dv],
                      (_UID_Q, _UID_K, _UID_V, _UID_O, _UID_DO, _UID_STATS, _UID_DQ, _UID_DK, _UID_DV))
        return dq, dk, dv


class CudnnFrontendDet(CudnnFrontend):
    name: ClassVar[str] = "cudnn-frontend-det"
    description: ClassVar[str] = "cudnn-frontend's deterministic backward (sdpa_backward, use_deterministic_algorithm)"
    operations: ClassVar[frozenset[str]] = frozenset({"bwd", "fwd_bwd"})
    deterministic: ClassVar[bool] = True


register(CudnnFrontend)
register(CudnnFrontendDet)
