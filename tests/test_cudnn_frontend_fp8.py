"""cuDNN's FP8 attention forward (``cudnn-frontend-fp8``) on the CPU, through a stand-in ``cudnn`` module
whose ``sdpa_fp8`` takes the arguments the real one (frontend 1.32) does and whose execution computes what
cuDNN documents for them (descaled e4m3 scores, ``P · scale_s`` rounded to e4m3, O scaled by ``scale_o`` in
the declared O type): its refusals, the graph it builds, the tensors it hands over, and a whole harness cell.
The last test runs the real library on a GPU against the naive FP8 path."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch

from harness.backends import cudnn_frontend, cudnn_frontend_fp8, registry
from harness.backends.base import Unsupported
from harness.measure import correctness, kinds
from harness.measure.cell import ProblemCache, measure_cell
from harness.records.observations import CorrectnessObservation, TimingObservation
from harness.spec.kinds import fp8
from harness.spec.problem import Problem
from harness.spec.suite import Checks, Timing, load_suite
from harness.testing.fake_cudnn import FakeGraph, FakeTensor, fake_module

NAME = "cudnn-frontend-fp8"
E4M3 = torch.float8_e4m3fn
QUICK = Timing(min_samples=3, max_samples=6, time_cap_s=0.05, min_time_s=0.0, warmup=1)
HOPPER, BLACKWELL = (9, 0), (10, 0)


def fp8_problem(**kw: Any) -> Problem:
    base = dict(batch=2, heads_q=4, heads_kv=2, seqlen_q=48, head_dim=64, dtype="float8_e4m3", causal=True)
    return Problem(**{**base, **kw})


# -- registration and refusals -------------------------------------------------------------------------
def test_it_registers_and_says_why_it_cannot_run_here() -> None:
    assert NAME in registry.names()
    assert not {k: v for k, v in registry.load_errors().items() if "cudnn" in k}
    b = registry.get(NAME)
    assert b.features == ("fp8",) and b.operations == frozenset({"fwd"}) and "\n" not in b.description
    if not torch.cuda.is_available():
        assert b.unavailable() == "no CUDA GPU visible to torch"


@pytest.mark.parametrize("p, must", [
    (Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="bfloat16"), "runs FP8 problems only"),
    (Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=128, dtype="float16"), "got float16"),
    (fp8_problem(head_dim=96), "head_dim=96 not supported by cudnn-frontend-fp8: allowed (64, 128, 256)"),
    (fp8_problem(head_dim=32), "allowed (64, 128, 256)"),
])
def test_it_refuses_what_it_does_not_cover_in_one_line(p: Problem, must: str) -> None:
    why = registry.get(NAME).unsupported(p)
    assert why and must in why and "\n" not in why


def test_it_takes_the_fp8_suites_problems() -> None:
    b = registry.get(NAME)
    for suite in ("fp8", "correctness"):
        s = load_suite(suite)
        assert NAME in s.backends
        rows = [p for p in s.problems if fp8.is_fp8(p.dtype)]
        assert rows and all(b.unsupported(p) is None for p in rows if p.seqlen_q == p.seqlen_k), suite
    assert "fp8" in b.features  # what serving_unsupported checks before unsupported()


def test_the_16_bit_backend_still_refuses_fp8() -> None:
    assert "needs float16 or bfloat16" in registry.get("cudnn-frontend").unsupported(fp8_problem())


@pytest.fixture()
def gpu_here(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A pretend GPU and cuDNN library: their capability and version, set per test."""
    state: dict[str, Any] = {"cap": HOPPER, "version": 91900}
    monkeypatch.setattr(cudnn_frontend, "cuda_unavailable", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: state["cap"])
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: state["version"])
    return state


def test_missing_frontend_is_one_line(gpu_here, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cudnn", None)
    why = registry.get(NAME).unavailable()
    assert why.startswith("cudnn frontend not importable") and "pip install nvidia-cudnn-frontend" in why
    assert "\n" not in why


@pytest.mark.parametrize("cap, version, must", [
    (HOPPER, 91900, None),
    (BLACKWELL, 91300, None),
    (HOPPER, 90005, "cuDNN 9.0.5 has no FP8 attention forward: it needs cuDNN 9.1.0 or newer"),
    (HOPPER, 91000, "cuDNN 9.10.0 has no FP8 attention forward"),
    ((8, 0), 91900, "needs compute capability (9, 0) (Hopper) or newer, this GPU is (8, 0)"),
    ((8, 9), 91900, "this GPU is (8, 9)"),
])
def test_it_needs_hopper_and_a_cudnn_with_fp8_attention(fake_cudnn, gpu_here, cap, version, must) -> None:
    gpu_here.update(cap=cap, version=version)
    why = registry.get(NAME).unavailable()
    assert why is None if must is None else (why and must in why and "\n" not in why), why


def test_a_frontend_without_a_cudnn_library_is_one_line(fake_cudnn, gpu_here) -> None:
    def missing() -> int:
        raise RuntimeError("Unable to find symbol cudnnGetVersion")

    fake_cudnn.backend_version = missing
    why = registry.get(NAME).unavailable()
    assert why.startswith("the cudnn frontend found no cuDNN library") and "cudnnGetVersion" in why


def test_bottom_right_causal_with_unequal_lengths_is_refused_before_blackwell(gpu_here) -> None:
    b = registry.get(NAME)
    unequal = fp8_problem(seqlen_q=32, seqlen_k=80)
    why = b.unsupported(unequal)
    assert why and "no bottom-right causal mask before Blackwell" in why and "seqlen_q=32 != seqlen_k=80" in why
    assert b.unsupported(unequal.with_(causal=False)) is None  # no mask, nothing to align
    assert b.unsupported(fp8_problem()) is None  # equal lengths: top-left is the same mask
    gpu_here["cap"] = BLACKWELL
    assert b.unsupported(unequal) is None


# -- the graph, through a stand-in cudnn module --------------------------------------------------------
class FakeFp8Graph(FakeGraph):
    made: list[FakeFp8Graph] = []
    refuse = False  # every graph
    refuse_virtual_amax_s = False  # a graph that leaves Amax_S virtual

    def refused(self) -> bool:
        return FakeFp8Graph.refuse or (FakeFp8Graph.refuse_virtual_amax_s and not self.amax_s.kw["output"])

    # the argument names of frontend 1.32's binding (python/pygraph/sdpa.cpp); a name it lacks is a TypeError
    def sdpa_fp8(self, q, k, v, descale_q, descale_k, descale_v, descale_s, scale_s, scale_o, *, is_inference=None,
                 attn_scale=None, bias=None, use_causal_mask=False, use_causal_mask_bottom_right=False,
                 sliding_window=None, diagonal_alignment="top_left", left_bound=None, right_bound=None,
                 compute_data_type=None, name="", generate_stats=None) -> list:
        assert (generate_stats is None) != (is_inference is None), "exactly one of generate_stats, is_inference"
        self.sdpa_kw = dict(q=q, k=k, v=v, descale_q=descale_q, descale_k=descale_k, descale_v=descale_v,
                            descale_s=descale_s, scale_s=scale_s, scale_o=scale_o, attn_scale=attn_scale,
                            use_causal_mask=use_causal_mask, use_causal_mask_bottom_right=use_causal_mask_bottom_right,
                            diagonal_alignment=diagonal_alignment, left_bound=left_bound, right_bound=right_bound,
                            generate_stats=generate_stats, name=name)
        self.o, self.amax_s, self.amax_o = FakeTensor(), FakeTensor(), FakeTensor()
        return [self.o, None, self.amax_s, self.amax_o]

    def sdpa(self, **kw: Any) -> Any:
        raise AssertionError("the 16-bit sdpa node is not the FP8 one")

    def execute(self, buffers, workspace, handle=None, tensor_uids=None) -> None:
        """What cuDNN's FP8 forward computes from the buffers bound to the graph's uids."""
        self.executed.append(tuple(tensor_uids))
        self.bound = by_uid = dict(zip(tensor_uids, buffers))
        declared = [t for t in self.tensors if t.kw.get("uid") is not None]
        declared += [t for t in (self.o, self.amax_s, self.amax_o) if t.kw["output"]]
        assert sorted(by_uid) == sorted(t.kw["uid"] for t in declared), "every declared tensor, nothing else"
        for t in declared:  # each buffer as the graph declared it: [b, h, s, d] dims of a bshd/bhsd tensor
            x = by_uid[t.kw["uid"]]
            dims = [x.shape[0], x.shape[2], x.shape[1], x.shape[3]] if x.dim() == 4 and x.numel() > 1 else list(x.shape)
            assert dims == list(t.kw["dim"]), (t.kw, x.shape)
            if x.numel() > 1:
                assert [x.stride(0), x.stride(2), x.stride(1), x.stride(3)] == list(t.kw["stride"])
            assert x.dtype == {"fp8_e4m3": E4M3, "bf16": torch.bfloat16, "float": torch.float32}[t.kw["data_type"]]
        kw, val = self.sdpa_kw, (lambda t: float(by_uid[t.kw["uid"]].reshape(())))
        q, k, v = (by_uid[kw[n].kw["uid"]].to(torch.float32) for n in "qkv")
        group = q.shape[2] // k.shape[2]
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        kh, vh = kh.repeat_interleave(group, 1), vh.repeat_interleave(group, 1)
        s = qh @ kh.transpose(-1, -2) * kw["attn_scale"] * val(kw["descale_q"]) * val(kw["descale_k"])
        sq, sk = s.shape[-2:]
        if kw["right_bound"] is not None:  # key j visible to query i iff j <= i + right_bound (+ Sk - Sq: bottom-right)
            shift = sk - sq if kw["diagonal_alignment"] == "bottom_right" else 0
            rows, cols = torch.arange(sq)[:, None], torch.arange(sk)[None, :]
            s = s.masked_fill(cols > rows + shift + kw["right_bound"], float("-inf"))
        p = torch.nan_to_num(torch.softmax(s, -1), nan=0.0)
        p8 = (p * val(kw["scale_s"])).to(E4M3).to(torch.float32)
        o = (p8 @ vh) * val(kw["descale_s"]) * val(kw["descale_v"]) * val(kw["scale_o"])
        by_uid[self.o.kw["uid"]].copy_(o.transpose(1, 2))
        by_uid[self.amax_o.kw["uid"]].fill_(float(o.abs().max()))
        if self.amax_s.kw["output"]:
            by_uid[self.amax_s.kw["uid"]].fill_(float(p.max()))


@pytest.fixture()
def fake_cudnn(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    FakeFp8Graph.made, FakeFp8Graph.refuse, FakeFp8Graph.refuse_virtual_amax_s = [], False, False
    m = fake_module(FakeFp8Graph, "1.32-test", lambda: torch.backends.cudnn.version())
    monkeypatch.setitem(sys.modules, "cudnn", m)
    monkeypatch.setattr(cudnn_frontend_fp8, "_GRAPHS", {})
    monkeypatch.setattr(cudnn_frontend_fp8, "_handle", lambda c, device: "handle")
    cs = types.SimpleNamespace(cuda_stream=0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: cs)
    return m


def _inputs(p: Problem, seed: int = 0, distribution: str = "normal"):
    return kinds.make_inputs(p, seed, distribution, "cpu")


def _passes(p: Problem, q, k, v, out) -> bool:
    return correctness.passes(correctness.error_metrics(out, kinds.attention(q, k, v, p, torch.float64)),
                              correctness.build_oracle(p, q, k, v, calibrate=False))


@pytest.mark.parametrize("p, cap, align, o_type", [
    (fp8_problem(), HOPPER, "top_left", "fp8_e4m3"),  # causal, Sq == Sk, GQA 4/2
    (fp8_problem(seqlen_q=40, seqlen_k=72, causal=False, layout="bhsd", head_dim=128), HOPPER, None, "fp8_e4m3"),
    (fp8_problem(seqlen_q=32, seqlen_k=80), BLACKWELL, "bottom_right", "bf16"),
    (fp8_problem(heads_kv=4, causal=False), BLACKWELL, None, "bf16"),
])
def test_the_sdpa_fp8_graph_takes_the_problems_descales_scale_mask_and_o_type(fake_cudnn, gpu_here, p, cap, align,
                                                                                o_type) -> None:
    gpu_here.update(cap=cap, version=91900)
    q, k, v = _inputs(p)
    b = registry.get(NAME)
    out = b.prepare(p, q, k, v)()
    (g,) = FakeFp8Graph.made
    assert g.kw["io_data_type"] == "fp8_e4m3" and g.kw["intermediate_data_type"] == g.kw["compute_data_type"] == "float"
    tq, tk, tv = g.tensors[:3]
    assert [t.kw["uid"] for t in (tq, tk, tv)] == [1, 2, 3]
    assert all(t.kw["data_type"] == "fp8_e4m3" for t in (tq, tk, tv))
    assert tq.kw["dim"] == [p.batch, p.heads_q, p.seqlen_q, p.head_dim]
    assert tq.kw["stride"] == [q.stride(0), q.stride(2), q.stride(1), q.stride(3)]  # read in place, any layout
    assert tk.kw["dim"] == tv.kw["dim"] == [p.batch, p.heads_kv, p.seqlen_k, p.head_dim]  # GQA: K/V keep their heads
    kw = g.sdpa_kw
    assert (kw["q"], kw["k"], kw["v"]) == (tq, tk, tv)
    assert kw["attn_scale"] == p.softmax_scale and kw["generate_stats"] is False and kw["name"]
    # the factors: [1, 1, 1, 1] float32 tensors, bound at execution to the problem's descale and P's scales
    factors = {n: kw[n] for n in ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")}
    assert all(t.kw["dim"] == [1, 1, 1, 1] and t.kw["data_type"] == "float" for t in factors.values())
    assert len({t.kw["uid"] for t in factors.values()}) == 6
    values = {n: float(g.bound[t.kw["uid"]].reshape(())) for n, t in factors.items()}
    assert values == {"descale_q": fp8.DESCALE, "descale_k": fp8.DESCALE, "descale_v": fp8.DESCALE,
                      "descale_s": 2.0 ** -8, "scale_s": 2.0 ** 8, "scale_o": 1.0}
    # causal: bottom-right as flashcore's, through sdpa_fp8's own argument names
    assert not kw["use_causal_mask"] and not kw["use_causal_mask_bottom_right"] and kw["left_bound"] is None
    if align is None:
        assert kw["right_bound"] is None
    else:
        assert kw["diagonal_alignment"] == align and kw["right_bound"] == 0
    # O: uid 4 in the O type this GPU and cuDNN can write; Amax_O to a buffer, Amax_S left virtual
    assert g.o.kw["uid"] == 4 and g.o.kw["output"] is True and g.o.kw["data_type"] == o_type
    assert g.o.kw["dim"] == [p.batch, p.heads_q, p.seqlen_q, p.head_dim]
    assert g.amax_o.kw["output"] is True and g.amax_o.kw["uid"] == 12 and g.amax_o.kw["data_type"] == "float"
    assert g.amax_s.kw["output"] is False
    assert g.steps == ["validate", "build_operation_graph", "create_execution_plans", "check_support", "build_plans"]
    assert g.executed == [(1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 4)]
    assert out.dtype == torch.bfloat16 and out.shape == (p.batch, p.seqlen_q, p.heads_q, p.head_dim)
    assert out.is_contiguous()
    assert _passes(p, q, k, v, out)  # what cuDNN computes from these factors is the problem's attention
    assert b.cell_extra() == {"cudnn_fp8": {"o_dtype": "bfloat16" if o_type == "bf16" else "float8_e4m3fn",
                                            "amax_s_declared": False}}


@pytest.mark.parametrize("cap, version, o_type", [(HOPPER, 91900, "fp8_e4m3"), (HOPPER, 92600, "fp8_e4m3"),
                                                  (BLACKWELL, 91200, "fp8_e4m3"), (BLACKWELL, 91300, "bf16"),
                                                  ((12, 0), 91900, "bf16")])
def test_a_bfloat16_o_only_where_cudnn_writes_one_from_fp8(fake_cudnn, gpu_here, cap, version, o_type) -> None:
    gpu_here.update(cap=cap)
    fake_cudnn.backend_version = lambda: version
    p = fp8_problem(causal=False)
    out = registry.get(NAME).prepare(p, *_inputs(p))()
    assert FakeFp8Graph.made[0].o.kw["data_type"] == o_type and out.dtype == torch.bfloat16


def test_the_fp8_o_is_dequantised_exactly_in_the_timed_call(fake_cudnn, gpu_here) -> None:
    p = fp8_problem()
    q, k, v = _inputs(p, distribution="large")  # V at the e4m3 headroom: O's range is the widest
    run = registry.get(NAME).prepare(p, q, k, v)
    (g,) = FakeFp8Graph.made
    captured = []
    execute = g.execute

    def spy(buffers, workspace, handle=None, tensor_uids=None) -> None:
        execute(buffers, workspace, handle=handle, tensor_uids=tensor_uids)
        captured.append(dict(zip(tensor_uids, buffers))[4])

    g.execute = spy
    out = run()
    (o8,) = captured
    assert o8.dtype == E4M3 and torch.isfinite(o8.float()).all()
    assert torch.equal(out, o8.to(torch.bfloat16))  # scale_o = 1: the cast is the whole dequantisation
    out2 = run()
    assert captured[1].data_ptr() != out2.data_ptr() and out2.data_ptr() != out.data_ptr()  # fresh outputs


def test_one_graph_and_one_set_of_factors_serve_every_prepare_and_call(fake_cudnn, gpu_here) -> None:
    p = fp8_problem()
    b = registry.get(NAME)
    runs = [b.prepare(p, *_inputs(p, seed)) for seed in range(3)]
    (entry,) = cudnn_frontend_fp8._GRAPHS.values()
    fixed = [t.data_ptr() for t in entry.fixed]
    for r in runs:
        r()
        r()
    assert len(FakeFp8Graph.made) == 1 and len(FakeFp8Graph.made[0].executed) == 6
    g = FakeFp8Graph.made[0]
    assert [g.bound[uid].data_ptr() for uid in entry.fixed_uids] == fixed  # the same factors, every call
    assert float(entry.amax_o.reshape(())) > 0  # the amax buffer is written by the execution
    p2 = fp8_problem(seqlen_q=64)
    b.prepare(p2, *_inputs(p2))
    assert len(FakeFp8Graph.made) == 2 and len(cudnn_frontend_fp8._GRAPHS) == 1  # only the latest is kept


def test_a_cudnn_that_wants_amax_s_declared_gets_it(fake_cudnn, gpu_here) -> None:
    FakeFp8Graph.refuse_virtual_amax_s = True
    p = fp8_problem()
    q, k, v = _inputs(p)
    b = registry.get(NAME)
    out = b.prepare(p, q, k, v)()
    first, second = FakeFp8Graph.made
    assert "build_plans" not in first.steps and second.amax_s.kw["output"] is True
    assert second.amax_s.kw["uid"] == 11 and second.amax_s.kw["dim"] == [1, 1, 1, 1]
    assert second.executed == [(1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 11, 4)]
    (entry,) = cudnn_frontend_fp8._GRAPHS.values()
    assert entry.amax_s is not None and 0 < float(entry.amax_s.reshape(())) <= 1
    assert b.cell_extra()["cudnn_fp8"]["amax_s_declared"] is True
    assert _passes(p, q, k, v, out)


def test_cudnns_refusal_is_a_skip_with_its_message(fake_cudnn, gpu_here) -> None:
    FakeFp8Graph.refuse = True
    p = fp8_problem()
    with pytest.raises(Unsupported, match="cuDNN refused the FP8 SDPA graph: RuntimeError: cudnnGraphNotSupported"):
        registry.get(NAME).prepare(p, *_inputs(p))
    assert len(FakeFp8Graph.made) == 2  # asked once more with Amax_S declared


def test_bottom_right_on_hopper_is_unsupported_at_prepare_too(fake_cudnn, gpu_here) -> None:
    p = fp8_problem(seqlen_q=32, seqlen_k=80)
    with pytest.raises(Unsupported, match="no bottom-right causal mask before Blackwell"):
        registry.get(NAME).prepare(p, *_inputs(p))
    assert not FakeFp8Graph.made


def test_a_wrong_argument_is_the_adapters_error_not_a_skip(fake_cudnn, gpu_here, monkeypatch) -> None:
    monkeypatch.setattr(cudnn_frontend_fp8, "mask_kwargs",
                        lambda cudnn, problem, cap: {"diagonal_band_right_bound": 0})  # sdpa's name, not sdpa_fp8's
    p = fp8_problem()
    with pytest.raises(TypeError, match="diagonal_band_right_bound"):
        registry.get(NAME).prepare(p, *_inputs(p))


@pytest.mark.parametrize("p", [fp8_problem(), fp8_problem(seqlen_q=40, seqlen_k=72, causal=False, head_dim=128)])
def test_a_whole_cell_passes_the_harness_checks_on_the_stand_in(fake_cudnn, gpu_here, monkeypatch, p) -> None:
    """Correctness in every distribution, determinism, and the timed calls' outputs (V scaled by ±1 and ±2
    between calls: O's widest range) all pass when cuDNN computes what it documents for these arguments."""
    monkeypatch.setattr(cudnn_frontend_fp8.CudnnFrontendFp8, "devices", ("cuda", "cpu"))
    checks = Checks(distributions=("normal", "uniform", "large_logits", "large"), determinism_runs=2)
    report = measure_cell(NAME, p, checks, QUICK, "cpu", ProblemCache(), None)
    assert report.status == "ok", report.reason
    assert report.get(CorrectnessObservation).passed and report.get(TimingObservation).outputs_ok
    assert report.metrics["cudnn_fp8"] == {"o_dtype": "float8_e4m3fn", "amax_s_declared": False}


# -- the real library --------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cudnn_fp8_passes_against_the_naive_fp8_path_on_the_gpu() -> None:
    """On a GPU (Hopper or newer, cuDNN 9.1+): cuDNN's FP8 forward passes the harness's correctness check
    on one small GQA problem, causal and not, where the naive FP8 path (the yardstick itself) does."""
    try:
        cudnn_frontend._import_cudnn()  # torch's libcudnn first, as the backend loads it
    except Exception as exc:  # noqa: BLE001 - missing, or a broken install raising anything at import
        pytest.skip(f"nvidia-cudnn-frontend not importable: {type(exc).__name__}: {exc}")
    b = registry.get(NAME)
    why = b.unavailable()
    if why:
        pytest.skip(why)
    naive = registry.get("naive")
    amax = {}
    for causal in (False, True):
        p = Problem(batch=2, heads_q=8, heads_kv=2, seqlen_q=256, head_dim=128, dtype="float8_e4m3", causal=causal)
        q, k, v = kinds.make_inputs(p, 1, "normal", "cuda")
        oracle = correctness.build_oracle(p, q, k, v)
        out = b.prepare(p, q, k, v)()  # an Unsupported here is a failure: this GPU and cuDNN run FP8 attention
        torch.cuda.synchronize()
        assert correctness.output_problem(out, p, q) is None
        err = correctness.error_metrics(out, oracle.ref)
        assert correctness.passes(err, oracle), (causal, b.cell_extra(), correctness.failure_reason(err, oracle))
        base = correctness.error_metrics(naive.prepare(p, q, k, v)(), oracle.ref)
        assert correctness.passes(base, oracle), causal
        (entry,) = cudnn_frontend_fp8._GRAPHS.values()
        amax[causal] = (float(entry.amax_o.reshape(())), float(oracle.ref.abs().max()))
    for causal, (got, want) in amax.items():  # Amax_O's buffer holds O's absolute maximum (scale_o = 1)
        assert got == pytest.approx(want, rel=0.1), (causal, got, want)
