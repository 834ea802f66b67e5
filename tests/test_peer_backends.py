"""The peer backends on the CPU: FA3's choice of module, FlashInfer and the cuDNN frontend driven through
stand-in modules that record what the adapters ask of them (the real libraries need a GPU), their
refusals, and what the environment says about them."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch

from harness.analysis.verdict import to_result
from harness.backends import cudnn_frontend, flash_attn, flashinfer, registry
from harness.backends.base import Unsupported
from harness.backends.metrics import MetricSpec
from harness.measure import environment
from harness.run.plan import Cell
from harness.spec import attention_math
from harness.spec.problem import Problem
from harness.testing.fake_cudnn import FakeGraph, FakeTensor, fake_module

NEW = ("fa3", "flashinfer-fa3", "flashinfer-fa2", "cudnn-frontend")


def test_new_backends_register_and_import_without_their_packages() -> None:
    assert set(NEW) <= set(registry.names())
    assert not {k: v for k, v in registry.load_errors().items() if "flashinfer" in k or "cudnn" in k}
    for name in NEW:
        why = registry.get(name).unavailable()
        if not torch.cuda.is_available():
            assert why == "no CUDA GPU visible to torch", (name, why)


def _inputs(p: Problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, p.dtype)
    q = torch.randn(p.batch, p.seqlen_q, p.heads_q, p.head_dim, generator=g).to(dt)
    k, v = (torch.randn(p.batch, p.seqlen_k, p.heads_kv, p.head_dim, generator=g).to(dt) for _ in range(2))
    return q, k, v


# -- FA3: flash_attn_interface, else fa3_fwd_interface -------------------------------------------------
def _fake_fa(name: str, calls: list) -> types.ModuleType:
    mod = types.ModuleType(name)

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False):
        calls.append((name, softmax_scale, causal))
        return q.clone()  # what it returns does not matter here; the tuple form is handled too

    mod.flash_attn_func = flash_attn_func
    return mod


@pytest.fixture()
def no_fa3(monkeypatch: pytest.MonkeyPatch) -> None:
    for m in flash_attn.FA3_MODULES:
        monkeypatch.setitem(sys.modules, m, None)  # None in sys.modules: the import fails


def test_fa3_uses_the_forward_wheel_when_the_full_build_is_missing(no_fa3, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "fa3_fwd_interface", _fake_fa("fa3_fwd_interface", calls))
    assert flash_attn.fa3_module() == ("fa3_fwd_interface", "")
    assert flash_attn.fa3_description().startswith("fa3_fwd_interface (fa3-fwd")
    assert "bfloat16 only" in flash_attn.fa3_description()
    b = registry.get("fa3")
    assert b.module == "fa3_fwd_interface" and "fa3_fwd_interface" in b.description
    fp16 = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="float16")
    why = b.unsupported(fp16)
    assert why and "allowed dtype bfloat16, got float16" in why and "\n" not in why
    bf16 = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="bfloat16", causal=True)
    assert b.unsupported(bf16) is None
    b.prepare(bf16, *_inputs(bf16))()
    assert calls == [("fa3_fwd_interface", bf16.softmax_scale, True)]
    assert environment.peer_builds()["fa3"].startswith("fa3_fwd_interface")


def test_fa3_prefers_the_full_build_and_allows_fp16_there(no_fa3, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "flash_attn_interface", _fake_fa("flash_attn_interface", calls))
    monkeypatch.setitem(sys.modules, "fa3_fwd_interface", _fake_fa("fa3_fwd_interface", calls))
    b = registry.get("fa3")
    assert b.module == "flash_attn_interface"
    fp16 = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="float16")
    assert b.unsupported(fp16) is None
    b.prepare(fp16, *_inputs(fp16))()
    assert calls[0][0] == "flash_attn_interface"


def test_fa3_with_neither_module_names_both(no_fa3, monkeypatch) -> None:
    monkeypatch.setattr(flash_attn, "cuda_unavailable", lambda: None)
    why = registry.get("fa3").unavailable()
    assert "flash_attn_interface not importable" in why and "fa3_fwd_interface not importable" in why
    assert "pip install fa3-fwd" in why


def test_fa3_module_without_the_function_is_said_to_be_another_package(no_fa3, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "flash_attn_interface", types.ModuleType("flash_attn_interface"))
    module, why = flash_attn.fa3_module()
    assert module is None and "has no flash_attn_func" in why


# -- FlashInfer ----------------------------------------------------------------------------------------
class FakeWrapper:
    made: list[FakeWrapper] = []

    def __init__(self, workspace: torch.Tensor, layout: str, backend: str = "auto") -> None:
        self.workspace, self.layout, self.backend = workspace, layout, backend
        self.plans: list[dict[str, Any]] = []
        FakeWrapper.made.append(self)

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim_qk, **kw) -> None:
        if kw.get("refuse"):
            raise ValueError("nope")
        self.plans.append({"qo": qo_indptr.tolist(), "kv": kv_indptr.tolist(), "hq": num_qo_heads,
                           "hkv": num_kv_heads, "d": head_dim_qk, **kw})

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # a ragged [tokens, heads, d] call, computed with flashcore's own (bottom-right) attention
        p = self.plans[-1]
        b = len(p["qo"]) - 1
        sq, sk = p["qo"][1], p["kv"][1]
        prob = Problem(batch=b, heads_q=p["hq"], heads_kv=p["hkv"], seqlen_q=sq, seqlen_k=sk, head_dim=p["d"],
                       dtype="bfloat16" if q.dtype == torch.bfloat16 else "float16", causal=p["causal"],
                       softmax_scale=p["sm_scale"])
        o = attention_math.attention(q.view(b, sq, p["hq"], -1), k.view(b, sk, p["hkv"], -1),
                                     v.view(b, sk, p["hkv"], -1), prob, torch.float32)
        return o.to(q.dtype).reshape(b * sq, p["hq"], -1)


@pytest.fixture()
def fake_flashinfer(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, Any]:
    state: dict[str, Any] = {"compiled": set(), "built": [], "fail": False}
    FakeWrapper.made = []
    fi = types.ModuleType("flashinfer")
    fi.__version__ = "0.0-test"
    fi.BatchPrefillWithRaggedKVCacheWrapper = FakeWrapper
    jit, jit_att, jit_env, prefill = (types.ModuleType(n) for n in
                                      ("flashinfer.jit", "flashinfer.jit.attention", "flashinfer.jit.env",
                                       "flashinfer.prefill"))
    jit_env.FLASHINFER_JIT_DIR = tmp_path

    def uri(template, *args):
        return f"batch_prefill_{args[0]}_{args[4]}_{template}"

    def gen(template, *args):
        return types.SimpleNamespace(is_compiled=uri(template, *args) in state["compiled"])

    def get_module(template, *args):
        if state["fail"]:
            raise RuntimeError("Ninja build failed. nvcc: error")
        state["built"].append(uri(template, *args))
        state["compiled"].add(uri(template, *args))

    jit_att.get_batch_prefill_uri, jit_att.gen_batch_prefill_module = uri, gen
    prefill.get_batch_prefill_module = get_module
    for name, mod in (("flashinfer", fi), ("flashinfer.jit", jit), ("flashinfer.jit.attention", jit_att),
                      ("flashinfer.jit.env", jit_env), ("flashinfer.prefill", prefill)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(flashinfer, "JIT_TIMES", {})
    monkeypatch.setattr(flashinfer, "_WRAPPERS", {})
    monkeypatch.setattr(flashinfer, "WORKSPACE_BYTES", 1024)
    return state


@pytest.mark.parametrize("name, template", [("flashinfer-fa3", "fa3"), ("flashinfer-fa2", "fa2")])
@pytest.mark.parametrize("p", [
    Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=16, head_dim=64, dtype="bfloat16", causal=True),
    Problem(batch=1, heads_q=2, seqlen_q=8, seqlen_k=24, head_dim=128, dtype="float16", causal=True),
    Problem(batch=3, heads_q=2, seqlen_q=24, seqlen_k=8, head_dim=64, dtype="bfloat16", causal=False,
            layout="bhsd"),
])
def test_flashinfer_plans_the_ragged_batch_and_returns_bshd(fake_flashinfer, name, template, p) -> None:
    q, k, v = _inputs(p)
    if p.layout == "bhsd":  # the harness hands a transposed view of a [b, h, s, d] tensor
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    b = registry.get(name)
    assert b.unsupported(p) is None
    out = b.prepare(p, q, k, v)()
    (w,) = FakeWrapper.made
    assert w.backend == template and w.layout == "NHD"
    plan = w.plans[0]
    assert plan["qo"] == [i * p.seqlen_q for i in range(p.batch + 1)]
    assert plan["kv"] == [i * p.seqlen_k for i in range(p.batch + 1)]
    assert (plan["hq"], plan["hkv"], plan["d"], plan["causal"]) == (p.heads_q, p.heads_kv, p.head_dim, p.causal)
    assert plan["sm_scale"] == p.softmax_scale and plan["q_data_type"] == getattr(torch, p.dtype)
    assert out.shape == (p.batch, p.seqlen_q, p.heads_q, p.head_dim)
    ref = attention_math.attention(q, k, v, p, torch.float32)
    assert (out.float() - ref).abs().max() < 0.05  # the layout plumbing is right, not only the shape
    (entry,) = flashinfer.JIT_TIMES.values()
    assert entry["template"] == template and entry["cached"] is False and entry["seconds"] >= 0
    assert b.cell_extra()["flashinfer_jit"] == [entry]


def test_flashinfer_shares_one_planned_wrapper_per_problem_and_builds_once(fake_flashinfer, tmp_path) -> None:
    p = Problem(batch=2, heads_q=2, seqlen_q=8, head_dim=64, dtype="bfloat16")
    b = registry.get("flashinfer-fa3")
    runs = [b.prepare(p, *_inputs(p)) for _ in range(5)]
    assert len(FakeWrapper.made) == 1 and len(fake_flashinfer["built"]) == 1
    for r in runs:
        assert r().shape == (2, 8, 2, 64)
    p2 = Problem(batch=2, heads_q=2, seqlen_q=16, head_dim=64, dtype="bfloat16")
    b.prepare(p2, *_inputs(p2))
    assert len(FakeWrapper.made) == 2 and len(flashinfer._WRAPPERS) == 1  # only the latest is kept
    assert (tmp_path / "flashcore-jit-times.jsonl").read_text().count("\n") == 1


def test_flashinfer_says_when_the_module_came_from_the_cache(fake_flashinfer) -> None:
    p = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=128, dtype="bfloat16")
    fake_flashinfer["compiled"].add(f"batch_prefill_{torch.bfloat16}_128_fa2")
    flashinfer.build_module("fa2", p)
    (entry,) = flashinfer.JIT_TIMES.values()
    assert entry["cached"] is True and entry["aot"] is False


def test_flashinfer_build_failure_is_a_skip_with_the_compiler_error(fake_flashinfer) -> None:
    fake_flashinfer["fail"] = True
    p = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="bfloat16")
    with pytest.raises(Unsupported, match="could not build its fa3 prefill module.*nvcc: error"):
        registry.get("flashinfer-fa3").prepare(p, *_inputs(p))


@pytest.mark.parametrize("p, must", [
    (Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="float32"), "needs float16 or bfloat16"),
    (Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=96, dtype="bfloat16"), "allowed (64, 128)"),
])
def test_flashinfer_and_cudnn_refuse_what_they_do_not_cover(p: Problem, must: str) -> None:
    for name in ("flashinfer-fa3", "flashinfer-fa2", "cudnn-frontend"):
        why = registry.get(name).unsupported(p)
        assert why and must in why and name in why


def test_flashinfer_missing_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "flashinfer", None)
    monkeypatch.setattr(flashinfer, "cuda_unavailable", lambda: None)
    why = registry.get("flashinfer-fa2").unavailable()
    assert why.startswith("flashinfer not importable") and "pip install flashinfer-python" in why
    assert "\n" not in why
    assert flashinfer.flashinfer_description().startswith("none (flashinfer not importable")


# -- cuDNN frontend ------------------------------------------------------------------------------------
class FakeSdpaGraph(FakeGraph):
    made: list[FakeSdpaGraph] = []
    refuse = False

    def refused(self) -> bool:
        return FakeSdpaGraph.refuse

    def sdpa(self, **kw: Any) -> tuple[FakeTensor, None]:
        self.sdpa_kw = kw
        self.out = FakeTensor()
        return self.out, None

    def execute(self, buffers, workspace, handle=None, tensor_uids=None) -> None:
        self.executed.append(tensor_uids)
        q, k, v, o = buffers
        o.copy_(q)


@pytest.fixture()
def fake_cudnn(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    FakeSdpaGraph.made, FakeSdpaGraph.refuse = [], False
    m = fake_module(FakeSdpaGraph, "9.9-test", lambda: 91000)
    monkeypatch.setitem(sys.modules, "cudnn", m)
    monkeypatch.setattr(cudnn_frontend, "_GRAPHS", {})
    monkeypatch.setattr(cudnn_frontend, "_handles", {})
    monkeypatch.setattr(cudnn_frontend, "_handle", lambda c, device: "handle")
    cs = types.SimpleNamespace(cuda_stream=0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: cs)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    return m


@pytest.mark.parametrize("p", [
    Problem(batch=2, heads_q=8, heads_kv=2, seqlen_q=16, head_dim=64, dtype="bfloat16", causal=True),
    Problem(batch=1, heads_q=2, seqlen_q=8, seqlen_k=24, head_dim=128, dtype="float16", causal=False),
])
def test_cudnn_graph_reads_bshd_as_bhsd_with_bottom_right_causal(fake_cudnn, p) -> None:
    q, k, v = _inputs(p)
    out = registry.get("cudnn-frontend").prepare(p, q, k, v)()
    (g,) = FakeSdpaGraph.made
    assert g.kw["io_data_type"] == ("bf16" if p.dtype == "bfloat16" else "half")
    tq, tk, tv = g.tensors
    assert tq.kw["dim"] == [p.batch, p.heads_q, p.seqlen_q, p.head_dim]
    assert tq.kw["stride"] == [q.stride(0), q.stride(2), q.stride(1), q.stride(3)]
    assert tk.kw["dim"] == [p.batch, p.heads_kv, p.seqlen_k, p.head_dim]  # GQA: K/V keep their heads
    kw = g.sdpa_kw
    assert kw["attn_scale"] == p.softmax_scale and kw["generate_stats"] is False
    if p.causal:
        assert kw["diagonal_alignment"] == "bottom_right" and kw["diagonal_band_right_bound"] == 0
    else:
        assert "diagonal_alignment" not in kw and "diagonal_band_right_bound" not in kw
    assert g.out.kw["output"] is True and g.out.kw["dim"] == [p.batch, p.heads_q, p.seqlen_q, p.head_dim]
    assert g.steps == ["validate", "build_operation_graph", "create_execution_plans", "check_support",
                       "build_plans"]
    assert g.executed == [(1, 2, 3, 4)]
    assert out.shape == q.shape and torch.equal(out, q)


def test_cudnn_builds_one_graph_per_problem(fake_cudnn) -> None:
    p = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="bfloat16")
    runs = [registry.get("cudnn-frontend").prepare(p, *_inputs(p)) for _ in range(4)]
    for r in runs:
        r()
    assert len(FakeSdpaGraph.made) == 1 and len(FakeSdpaGraph.made[0].executed) == 4


def test_cudnn_refusal_is_a_skip_with_cudnns_message(fake_cudnn) -> None:
    FakeSdpaGraph.refuse = True
    p = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, dtype="bfloat16", causal=True)
    with pytest.raises(Unsupported, match="cuDNN refused the SDPA graph: RuntimeError: cudnnGraphNotSupported"):
        registry.get("cudnn-frontend").prepare(p, *_inputs(p))


def test_cudnn_description_and_environment(fake_cudnn, monkeypatch) -> None:
    assert cudnn_frontend.cudnn_frontend_description() == "nvidia-cudnn-frontend 9.9-test, cuDNN 91000"
    monkeypatch.setitem(sys.modules, "cudnn", None)
    assert cudnn_frontend.cudnn_frontend_description().startswith("none (cudnn frontend not importable")


def test_environment_names_every_peer_build() -> None:
    builds = environment.peer_builds()
    assert set(builds) == {"fa3", "flashinfer", "cudnn_frontend"}
    assert all(isinstance(v, str) and v for v in builds.values())
    for pkg in ("fa3-fwd", "flashinfer-python", "apache-tvm-ffi", "nvidia-cudnn-frontend"):
        assert pkg in environment.PACKAGES


def test_a_backends_untimed_observations_land_in_its_cell_record() -> None:
    """What a backend reports of its untimed work (FlashInfer: the module it compiled and how long that
    took) is stored in the cell's extra, so compile time is reported and never timed."""
    from harness.backends import registry
    from harness.backends.naive import Naive
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    class CompilingNaive(Naive):
        name = "naive-compiling"
        metrics = (MetricSpec("compile_s", "s", higher_is_better=False),)

        def cell_extra(self) -> dict[str, object]:
            return {"compile_s": 12.5}

    registry.register(CompilingNaive)
    p = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64, dtype="float32")
    try:
        report = measure_cell("naive-compiling", p, Checks(trials=1, determinism_runs=0),
                              Timing(max_samples=3, min_samples=1), "cpu", ProblemCache(), None)
    finally:
        registry._REGISTRY.pop("naive-compiling", None)
    assert report.status == "ok", report.reason
    assert report.metrics == {"compile_s": 12.5}
    row = to_result("r", "s", Cell("naive-compiling", p), report, None, 1.0)
    assert row.extra["compile_s"] == 12.5


def test_a_metric_the_backend_does_not_declare_fails_its_cell_with_how_to_declare_it() -> None:
    """``extra`` holds the harness's keys and the names backends declare (name, unit, better-is-higher):
    a backend reporting anything else is told so, and its cell is stored failed with that message."""
    from harness.backends import registry
    from harness.backends.metrics import UndeclaredMetric
    from harness.backends.naive import Naive
    from harness.measure.cell import ProblemCache, measure_cell
    from harness.run.worker import _failure
    from harness.spec.problem import Problem
    from harness.spec.suite import Checks, Timing

    class Chatty(Naive):
        name = "naive-chatty"
        metrics = (MetricSpec("compile_s", "s", higher_is_better=False),)

        def cell_extra(self) -> dict[str, object]:
            return {"compile_s": 1.0, "samples_ms": [0.0]}

    registry.register(Chatty)
    p = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64, dtype="float32")
    try:
        with pytest.raises(UndeclaredMetric) as caught:
            measure_cell("naive-chatty", p, Checks(trials=1, determinism_runs=0), Timing(enabled=False), "cpu",
                         ProblemCache(), None)
        row = to_result("r", "s", Cell("naive-chatty", p), _failure(caught.value, tampered=False), None, 1.0)
    finally:
        registry._REGISTRY.pop("naive-chatty", None)
    assert "'samples_ms'" in str(caught.value) and "MetricSpec(name, unit, higher_is_better)" in str(caught.value)
    assert row.status == "failed" and row.reason.startswith("UndeclaredMetric: naive-chatty: cell_extra() reported")
    assert "samples_ms" not in row.extra


def test_the_backends_declare_every_metric_they_report() -> None:
    from harness.backends import flashinfer, flashinfer_decode, sdpa

    assert [m.name for m in sdpa.SdpaFlash.metrics] == ["gqa_expanded"]
    assert [(m.name, m.unit, m.higher_is_better) for m in flashinfer.FlashInferFA3.metrics] == [
        ("flashinfer_jit", "s", False)]
    assert [m.name for m in flashinfer_decode.FlashInferDecode.metrics] == ["flashinfer_plan"]
