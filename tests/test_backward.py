"""The backward as an operation (CPU path): the problem's op, its FLOPs and bytes, the float64 gradients,
the gradient pass rule, the stages' verdicts on honest and cheating backwards, determinism as a property,
the timed calls' fresh dO, and the store's schema 4 (op and gradient columns)."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.measure import correctness as C
from harness.measure.cell import ProblemCache, measure_cell
from harness.measure.inputs import make_grad_output, make_inputs
from harness.measure.stages.base import CellContext
from harness.measure.stages.gradients import GradientDeterminismStage
from harness.measure.stages.work import Backward
from harness.records.observations import (
    GradientCorrectnessObservation,
    GradientDeterminismObservation,
    TimingObservation,
)
from harness.run.plan import FilterError, make_plan, parse_filter
from harness.spec import attention_math
from harness.spec.problem import Problem, ProblemError
from harness.spec.schema import Checks, Timing
from harness.spec.suite import SuiteError, load_suite
from harness.store.database import SCHEMA_VERSION, Store
from harness.testing import BACKWARD_EXPLOITS, EXPLOITS, as_older_schema, registered

cli = CliRunner()
P = Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=24, seqlen_k=40, head_dim=16, dtype="bfloat16", causal=True)


# -- the problem ------------------------------------------------------------------------------------
def test_a_forward_key_is_unchanged_and_the_others_name_their_operation():
    assert P.key() == "b2-hq4-hkv2-sq24-sk40-d16-bfloat16-causal-bshd"
    assert P.with_(op="bwd").key() == P.key() + "-bwd"
    assert P.with_(op="fwd_bwd").key() == P.key() + "-fwd_bwd"
    assert P.with_(op="bwd").inputs_key() == P.key()


def test_flops_follow_flashattentions_convention():
    f = P.flops()
    assert P.with_(op="bwd").flops() == pytest.approx(2.5 * f)
    assert P.with_(op="fwd_bwd").flops() == pytest.approx(3.5 * f)
    full = P.with_(causal=False)
    assert full.flops() == 4 * 2 * 4 * 24 * 40 * 16


def test_min_bytes_of_the_backward():
    q = 2 * 24 * 4 * 16 * 2  # bytes of Q (and O, dO, dQ)
    kv = 2 * 40 * 2 * 16 * 2  # bytes of K (and V, dK, dV)
    assert P.min_bytes() == 2 * q + 2 * kv
    assert P.with_(op="bwd").min_bytes() == 4 * q + 4 * kv
    assert P.with_(op="fwd_bwd").min_bytes() == 6 * q + 6 * kv


@pytest.mark.parametrize("op", ["backward", "", 1, None])
def test_an_unknown_operation_is_one_line_naming_the_allowed(op):
    with pytest.raises(ProblemError) as err:
        P.with_(op=op)
    assert "allowed fwd, bwd, fwd_bwd" in str(err.value) and "\n" not in str(err.value)


def test_a_suite_grid_multiplies_out_over_op_and_the_filter_selects_it(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[suite]\nbackends = ["naive"]\n[[grid]]\nbatch = 1\nheads_q = 2\nseqlen_q = [16, 32]\n'
                 'head_dim = 16\nop = ["fwd", "bwd", "fwd_bwd"]\n')
    s = load_suite(str(f))
    assert sorted(p.op for p in s.problems) == ["bwd", "bwd", "fwd", "fwd", "fwd_bwd", "fwd_bwd"]
    assert {c.problem.op for c in make_plan(s, filter_expr="op=bwd")} == {"bwd"}
    assert len(make_plan(s, filter_expr="op!=fwd")) == 4
    with pytest.raises(FilterError, match="op takes fwd, bwd, fwd_bwd"):
        parse_filter("op=back")
    f.write_text('[suite]\nbackends = ["naive"]\n[[grid]]\nbatch = 1\nheads_q = 2\nseqlen_q = 16\n'
                 'head_dim = 16\nop = "training"\n')
    with pytest.raises(SuiteError, match="op='training': allowed fwd, bwd, fwd_bwd"):
        load_suite(str(f))


def test_the_operations_of_a_shape_are_planned_next_to_each_other():
    s = load_suite("fa-paper-bwd")
    keys = [p.inputs_key() for p in s.problems]
    assert len(s.problems) == 64 and {p.op for p in s.problems} == {"bwd", "fwd_bwd"}
    assert all(keys[i] == keys[i + 1] for i in range(0, len(keys), 2))  # bwd and fwd_bwd of a shape adjacent
    assert {p.batch * p.seqlen_q for p in s.problems if p.heads_kv == p.heads_q} == {16384}
    assert {(p.batch, p.heads_q, p.heads_kv, p.head_dim) for p in s.problems if p.heads_kv != p.heads_q} == {(2, 64, 8, 128)}


def test_require_deterministic_defaults_to_the_forward_only(tmp_path):
    c = Checks()
    assert c.requires_determinism("fwd") and not c.requires_determinism("bwd")
    assert Checks(require_deterministic=True).requires_determinism("bwd")
    assert not Checks(require_deterministic=False).requires_determinism("fwd")
    f = tmp_path / "s.toml"
    f.write_text('[suite]\nbackends = ["naive"]\n[[grid]]\nbatch = 1\nheads_q = 2\nseqlen_q = 16\nhead_dim = 16\n'
                 '[checks]\nrequire_deterministic = "yes"\n')
    with pytest.raises(SuiteError, match="require_deterministic = 'yes': must be true or false"):
        load_suite(str(f))


# -- the float64 gradients and the pass rule ---------------------------------------------------------
def _full_autograd(q, k, v, do, p):
    """Unchunked float64 autograd through plain attention, K and V expanded to the query heads."""
    qq, kk, vv = (t.detach().double().requires_grad_() for t in (q, k, v))
    g = p.heads_q // p.heads_kv
    s = torch.einsum("bqhd,bkhd->bhqk", qq, kk.repeat_interleave(g, 2)) * p.softmax_scale
    if p.causal:
        s = s.masked_fill(~attention_math.causal_keep(p.seqlen_q, p.seqlen_k, 0, p.seqlen_q, "cpu"), float("-inf"))
    o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, -1).nan_to_num(0.0), vv.repeat_interleave(g, 2))
    return (o.detach(), *torch.autograd.grad(o, (qq, kk, vv), do.double()))


@pytest.mark.parametrize("p", [P, P.with_(seqlen_q=40, seqlen_k=24), P.with_(causal=False, layout="bhsd"),
                               P.with_(heads_kv=4)])
def test_chunked_float64_gradients_match_unchunked_autograd(p):
    q, k, v = make_inputs(p, 3, "normal", "cpu")
    do = make_grad_output(p, 4, "cpu")
    got = attention_math.attention_grads(q, k, v, do, p, torch.float64, budget_bytes=4000)  # several chunks
    want = _full_autograd(q, k, v, do, p)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert (g - w).abs().max() < 1e-12


@pytest.fixture(scope="module")
def grads():
    p = P.with_(op="bwd")
    q, k, v = make_inputs(p, 7, "normal", "cpu")
    do = make_grad_output(p, 8, "cpu")
    return p, q, k, v, do, C.build_grad_oracles(p, q, k, v, do)


def test_pytorchs_own_gradients_pass_and_wrong_ones_fail(grads):
    p, q, k, v, do, oracles = grads
    low = attention_math.attention_grads(q, k, v, do, p, q.dtype)
    for name, x in zip(("o", "dq", "dk", "dv"), low):
        o = oracles[name]
        assert o.tolerance == pytest.approx(2 * o.torch_err + o.floor)
        assert C.passes(C.error_metrics(x, o.ref), o), name
        assert not o.weak, name
        for bad in (torch.zeros_like(x), x * 1.1, x.flip(2)):
            assert not C.passes(C.error_metrics(bad, o.ref), o), name


def test_gqa_gradients_of_a_kv_head_sum_its_query_heads(grads):
    p, q, k, v, do, oracles = grads
    # the same problem with K and V repeated to every query head: the GQA dK is the sum over each group
    g = p.heads_q // p.heads_kv
    mha = p.with_(heads_kv=p.heads_q)
    _, _, dk, dv = attention_math.attention_grads(q, k.repeat_interleave(g, 2), v.repeat_interleave(g, 2), do, mha,
                                                  torch.float64)
    b, s, _, d = dk.shape
    assert torch.allclose(dk.view(b, s, p.heads_kv, g, d).sum(3), oracles["dk"].ref)
    assert torch.allclose(dv.view(b, s, p.heads_kv, g, d).sum(3), oracles["dv"].ref)


# -- cells: honest backends, skips, cheats ------------------------------------------------------------
T = Timing(min_samples=3, max_samples=6, time_cap_s=0.2, warmup=1, min_time_s=0.0)


@pytest.mark.parametrize("op", ["bwd", "fwd_bwd"])
@pytest.mark.parametrize("backend", ["reference", "naive", "sdpa-math"])
def test_honest_backwards_pass_on_every_distribution_with_every_timed_output_checked(backend, op):
    cache = ProblemCache()
    checks = Checks(distributions=("normal", "uniform", "large_logits", "large"), determinism_runs=3)
    for p in (P.with_(op=op), P.with_(op=op, seqlen_q=40, seqlen_k=24, layout="bhsd", dtype="float16")):
        report = measure_cell(backend, p, checks, T, "cpu", cache, None)
        assert report.status == "ok", report.reason
        grads, det = report.get(GradientCorrectnessObservation), report.get(GradientDeterminismObservation)
        assert grads.passed and det.deterministic and report.get(TimingObservation).outputs_ok
        for name in ("dq", "dk", "dv"):
            assert 0 <= grads.per_output[name]["max_abs"] <= grads.per_output[name]["tolerance"]
            assert grads.per_output[name]["rel_l2"] is not None
        assert set(det.per_output) == ({"o", "dq", "dk", "dv"} if op == "fwd_bwd" else {"dq", "dk", "dv"})
        assert not any(det.per_output.values()) and det.repeats == 2 + 3  # 3 runs of set 1, 2 of 3 others
        assert report.get(TimingObservation).samples_ms


def test_a_backend_without_the_operation_is_skipped_with_the_reason():
    with registered(EXPLOITS):
        report = measure_cell("control-custom", P.with_(op="bwd"), Checks(), T, "cpu", ProblemCache(), None)
    assert report.status == "skipped"
    assert report.reason == "control-custom: no backward kernel (supports fwd)"


@pytest.fixture(scope="module")
def bwd_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bwd")
    suite = tmp / "bwd.toml"
    suite.write_text("""
[suite]
name = "bwd-cpu"
backends = ["exploit-stale-grads", "reference", "exploit-dq-only", "sdpa-math", "naive", "control-custom"]

[[grid]]
batch = 2
heads_q = 4
heads_kv = 2
seqlen_q = 32
seqlen_k = 48
head_dim = 16
dtype = "bfloat16"
causal = [false, true]
op = ["fwd", "bwd", "fwd_bwd"]

[timing]
min_samples = 3
max_samples = 8
time_cap_s = 0.2
warmup = 1
""")
    db = tmp / "r.db"
    with registered(EXPLOITS):
        res = cli.invoke(app, ["run", "--suite", str(suite), "--db", str(db)])
        shown = cli.invoke(app, ["show", "--db", str(db)])
        out = tmp / "e.csv"
        exported = cli.invoke(app, ["export", "--db", str(db), "--format", "csv", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert shown.exit_code == 0 and exported.exit_code == 0, shown.output + exported.output
    with Store(db, readonly=True) as s:
        rows = list(s.iter_results())
    return {"rows": rows, "show": shown.output, "csv": out, "db": db}


def test_stale_gradients_are_rejected_and_dq_only_fails(bwd_run):
    rows = {(r.backend, r.op, r.causal): r for r in bwd_run["rows"]}
    for causal in (False, True):
        stale = rows[("exploit-stale-grads", "bwd", causal)]
        assert stale.status == "rejected" and "stale gradients" in stale.reason, stale.reason
        dq_only = rows[("exploit-dq-only", "bwd", causal)]
        assert dq_only.status == "failed" and "dk max_abs_err" in dq_only.reason, dq_only.reason
        assert dq_only.dq_max_err <= dq_only.extra["per_output"]["dq"]["tolerance"] < dq_only.dk_max_err
        for name in BACKWARD_EXPLOITS:
            assert rows[(name, "fwd", causal)].status == "skipped"
        assert rows[("control-custom", "bwd", causal)].reason == "control-custom: no backward kernel (supports fwd)"


def test_honest_rows_are_ok_and_carry_the_op_and_the_gradient_errors(bwd_run):
    for r in bwd_run["rows"]:
        if r.backend in ("reference", "sdpa-math", "naive"):
            assert r.status == "ok" and r.passed and r.timed_outputs_ok, (r.problem_key, r.reason)
            assert r.problem_key.endswith("" if r.op == "fwd" else f"-{r.op}")
            assert (r.dq_max_err is None) == (r.op == "fwd")
            assert r.flops == pytest.approx({"fwd": 1, "bwd": 2.5, "fwd_bwd": 3.5}[r.op]
                                             * Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=32, seqlen_k=48,
                                                       head_dim=16, causal=r.causal).flops())
    assert " bwd " in bwd_run["show"] and " fwd_bwd " in bwd_run["show"]


def test_export_has_the_op_and_gradient_columns(bwd_run):
    import pandas as pd

    df = pd.read_csv(bwd_run["csv"])
    for col in ("op", "dq_max_err", "dk_max_err", "dv_max_err", "dq_rel_l2_err", "dk_rel_l2_err", "dv_rel_l2_err"):
        assert col in df.columns
    assert set(df["op"]) == {"fwd", "bwd", "fwd_bwd"}
    ok = df[(df["status"] == "ok") & (df["op"] != "fwd")]
    assert ok["dq_max_err"].notna().all() and ok["dv_rel_l2_err"].notna().all()


# -- determinism as a property ---------------------------------------------------------------------
def _ctx(op: str, checks: Checks, outputs) -> CellContext:
    p = P.with_(op=op)
    q, k, v = make_inputs(p, 1, "normal", "cpu")

    class S:  # an input set: only its dtype is read
        pass

    s = S()
    s.q = q
    calls = iter(outputs)
    ctx = CellContext("x", None, p, checks, Timing(), "cpu", ProblemCache(), None)
    ctx.first_outputs.append((s, lambda: next(calls), next(calls)))
    return ctx


def _grads(p: Problem, dq_value: float):
    shapes = p.output_shapes()
    return tuple(torch.full(shapes[n], dq_value if n == "dq" else 1.0, dtype=torch.bfloat16) for n in shapes)


@pytest.mark.parametrize("require, fails", [(None, False), (False, False), (True, True)])
def test_a_nondeterministic_backward_is_reported_per_gradient_and_fails_only_where_required(require, fails):
    p = P.with_(op="bwd")
    outs = [_grads(p, 1.0), _grads(p, 1.0), _grads(p, 2.0), _grads(p, 1.0), _grads(p, 3.0)]
    obs = GradientDeterminismStage().run(_ctx("bwd", Checks(determinism_runs=5, require_deterministic=require), outs))
    assert (obs.runs, obs.repeats, obs.mismatches) == (5, 4, 2)
    assert obs.per_output == {"dq": 2, "dk": 0, "dv": 0} and not obs.deterministic
    assert (obs.ending is not None) == fails
    if fails:
        assert "dq in 2 of 4" in obs.ending.reason


# -- the timed calls' fresh contents --------------------------------------------------------------
@pytest.mark.parametrize("op", ["bwd", "fwd_bwd"])
def test_each_timed_call_expects_its_own_gradients(op):
    p = P.with_(op=op)
    cache = ProblemCache()
    s = cache.get(p, 11, "normal", "cpu", True, False)
    ctx = CellContext("naive", __import__("harness.backends.registry", fromlist=["get"]).get("naive"), p, Checks(),
                      Timing(), "cpu", cache, None)
    work = Backward(ctx)
    buf = work.buffer(s)
    run = work.prepare(buf)
    gen = torch.Generator().manual_seed(0)
    first_scales = work.fill(buf, s, gen)
    first = run()
    assert float(work.ratio(first, s, first_scales)) <= 1.0  # right for its own scales
    for _ in range(5):  # a later call's scales: the first call's gradients are wrong for it
        scales = work.fill(buf, s, gen)
        if not torch.equal(scales[0] * scales[1], first_scales[0] * first_scales[1]):
            assert float(work.ratio(first, s, scales)) > 1.0
        assert float(work.ratio(run(), s, scales)) <= 1.0


# -- the store ---------------------------------------------------------------------------------------
def test_a_version_3_database_migrates_to_4_with_every_row_a_forward(tmp_path):
    db = tmp_path / "v3.db"
    with Store(db) as s:  # a current database, taken back to version 3 below
        from harness.records.result import Result
        from harness.store.database import RunInfo, now

        s.create_run(RunInfo(run_id="r1", suite="smoke", created_at=now()))
        s.add_result(Result.for_problem("r1", "smoke", "naive", P, "ok", median_ms=1.0, extra={"samples_ms": [1.0]}))
    as_older_schema(db, 3, ("op", "dq_max_err", "dk_max_err", "dv_max_err", "dq_rel_l2_err", "dk_rel_l2_err", "dv_rel_l2_err"))
    with Store(db, readonly=True) as s:
        assert s.schema == 3
        before = list(s.iter_results())
        assert before[0].op == "fwd"
    with Store(db) as s:
        assert (s.schema, s.migrated_from) == (SCHEMA_VERSION, 3) and SCHEMA_VERSION == 5
        assert s.backup == tmp_path / "v3.db.bak-v3" and s.backup.is_file()
        assert list(s.iter_results()) == before
        assert s.conn.execute("SELECT op FROM results").fetchall()[0][0] == "fwd"
        cols = {r[1] for r in s.conn.execute("PRAGMA table_info(superseded_results)")}
        assert {"op", "dq_max_err", "dv_rel_l2_err"} <= cols


# -- the dashboards ----------------------------------------------------------------------------------
def test_the_run_page_has_an_operation_selector_and_the_operations_side_by_side(bwd_run, tmp_path):
    import json
    import re

    from harness.views.dashboards import render

    paths = render(bwd_run["db"], None, tmp_path / "dash")
    html = next(p for p in paths if p.name.startswith("run-")).read_text()
    assert '<select id="op-select"' in html and 'id="operations"' in html
    for op in ("fwd", "bwd", "fwd_bwd"):
        assert f'<option value="{op}">' in html and f'data-op="{op}"' in html
        assert f'id="performance-{op}"' in html and f'id="roofline-{op}"' in html
        m = re.search(r'Plotly\.newPlot\(\s*"ops-tflops-[^"]*-' + op + r'",\s*(\[.*?\]),\s*\{"', html, re.DOTALL)
        assert m, op
        names = {t.get("name") for t in json.loads(m.group(1))}
        assert "sdpa-math" in names and not names & {"exploit-stale-grads", "exploit-dq-only"}
    # a backward's label names its operation: never drawn in a forward's place
    assert "· bwd" in html and "· fwd_bwd" in html


# -- the backends' backward code paths, on CPU tensors ------------------------------------------------
@pytest.fixture
def flash_on_cpu(monkeypatch):
    """sdpa-flash and its deterministic variant allowed on the CPU, where PyTorch has a FlashAttention
    kernel of its own: the same autograd path, layouts, GQA and lower-right causal mask as on the GPU."""
    from harness.backends import registry, sdpa

    registry.names()
    for name, cls in (("sdpa-flash", sdpa.SdpaFlash), ("sdpa-flash-det", sdpa.SdpaFlashDet)):
        monkeypatch.setitem(registry._REGISTRY, name, type(cls.__name__, (cls,), {"devices": ("cuda", "cpu")}))


@pytest.mark.parametrize("backend", ["sdpa-flash", "sdpa-flash-det"])
@pytest.mark.parametrize("op", ["bwd", "fwd_bwd"])
def test_sdpas_autograd_backward_passes_gqa_and_lower_right_causal(flash_on_cpu, backend, op):
    cache = ProblemCache()
    for p in (P.with_(op=op), P.with_(op=op, heads_kv=4, seqlen_k=24, layout="bhsd")):
        report = measure_cell(backend, p, Checks(distributions=("normal", "large_logits")), T, "cpu", cache, None)
        assert report.status == "ok", (p.key(), report.reason)
        assert report.get(GradientCorrectnessObservation).passed and report.get(TimingObservation).outputs_ok
        assert report.get(GradientDeterminismObservation).deterministic
    assert not torch.are_deterministic_algorithms_enabled()  # the variant's setting stays inside its calls


def test_the_deterministic_variants_have_no_forward_of_their_own(flash_on_cpu):
    report = measure_cell("sdpa-flash-det", P, Checks(), T, "cpu", ProblemCache(), None)
    assert report.status == "skipped"
    assert report.reason == "sdpa-flash-det: no forward of its own (supports bwd, fwd_bwd)"


def test_deterministic_algorithms_are_on_inside_the_context_only():
    import torch.utils.deterministic as det

    from harness.backends.autograd import deterministic_algorithms

    before = (torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory)
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled() and not det.fill_uninitialized_memory
    assert (torch.are_deterministic_algorithms_enabled(), det.fill_uninitialized_memory) == before


class _RefusingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, o):
        return o.clone()

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError("backward is not supported on this GPU architecture")


def _fake_flash_attn(refuse: bool = False, deterministic: bool = True):
    """A stand-in for a flash_attn module: flash_attn_func as an autograd function over plain attention."""
    import types

    seen: dict = {}

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False, **kw):
        seen.update(kw)
        p = Problem(batch=q.shape[0], seqlen_q=q.shape[1], heads_q=q.shape[2], head_dim=q.shape[3],
                    seqlen_k=k.shape[1], heads_kv=k.shape[2], causal=causal, softmax_scale=softmax_scale,
                    dtype={torch.bfloat16: "bfloat16", torch.float16: "float16"}[q.dtype])
        out = attention_math.attention(q, k, v, p, torch.float32, q.dtype)
        return (_RefusingBackward.apply(out) if refuse else out), None  # (out, lse), as FA3/FA4 return

    if not deterministic:
        def plain(q, k, v, softmax_scale=None, causal=False):
            return flash_attn_func(q, k, v, softmax_scale, causal)
        return types.SimpleNamespace(flash_attn_func=plain), seen
    return types.SimpleNamespace(flash_attn_func=flash_attn_func), seen


@pytest.mark.parametrize("cls", ["FA4", "FA4Det"])
def test_flashattentions_backward_runs_through_its_autograd_function(monkeypatch, cls):
    import sys

    from harness.backends import flash_attn

    mod, seen = _fake_flash_attn()
    monkeypatch.setitem(sys.modules, "fake_flash_attn", mod)
    b = getattr(flash_attn, cls)()
    b.module = "fake_flash_attn"
    p = P.with_(op="bwd", layout="bhsd")
    q, k, v = make_inputs(p, 1, "normal", "cpu")
    do = make_grad_output(p, 2, "cpu")
    oracles = C.build_grad_oracles(p, q, k, v, do)
    for got in (b.prepare_backward(p, q, k, v, do)(), b.prepare_fwd_bwd(p, q, k, v, do)()[1:]):
        for name, x in zip(("dq", "dk", "dv"), got):
            assert C.passes(C.error_metrics(x, oracles[name].ref), oracles[name]), name
    assert seen.get("deterministic", False) is (cls == "FA4Det")


def test_a_flashattention_backward_the_build_refuses_is_skipped_with_its_words(monkeypatch):
    import sys

    from harness.backends import flash_attn
    from harness.backends.base import Unsupported

    p = P.with_(op="bwd")
    q, k, v = make_inputs(p, 1, "normal", "cpu")
    do = make_grad_output(p, 2, "cpu")
    monkeypatch.setitem(sys.modules, "fake_flash_attn", _fake_flash_attn(refuse=True)[0])
    b = flash_attn.FA4()
    b.module = "fake_flash_attn"
    with pytest.raises(Unsupported, match="fa4 backward: NotImplementedError: backward is not supported"):
        b.prepare_backward(p, q, k, v, do)
    monkeypatch.setitem(sys.modules, "fake_flash_attn", _fake_flash_attn(deterministic=False)[0])
    det = flash_attn.FA4Det()
    det.module = "fake_flash_attn"
    with pytest.raises(Unsupported, match="has no deterministic argument"):
        det.prepare_backward(p, q, k, v, do)


def test_a_kernel_refusing_gqa_runs_the_backward_on_expanded_heads_and_says_so(flash_on_cpu, monkeypatch):
    import torch.nn.functional as F

    real = F.scaled_dot_product_attention

    def no_gqa(*args, **kw):
        if kw.get("enable_gqa"):
            raise RuntimeError("No available kernel. Aborting execution.")
        return real(*args, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", no_gqa)
    cache = ProblemCache()
    p = P.with_(seqlen_k=P.seqlen_q)  # is_causal: the lower-right mask's own dispatch would bypass the patch
    fwd = measure_cell("sdpa-flash", p, Checks(), T, "cpu", cache, None)
    assert fwd.status == "skipped" and "PyTorch refused FLASH_ATTENTION" in fwd.reason  # as before
    for op in ("bwd", "fwd_bwd"):
        report = measure_cell("sdpa-flash", p.with_(op=op), Checks(), T, "cpu", cache, None)
        assert report.status == "ok", report.reason
        assert report.get(GradientCorrectnessObservation).passed and report.get(TimingObservation).outputs_ok
        assert "expanded to the query heads" in report.metrics["gqa_expanded"]


class _FakeCudnn:
    """A stand-in for cuDNN's frontend module: graphs that record their tensors by uid, and execute the
    attention math on what they are handed (the harness's plumbing: uids, shapes, strides, statistics)."""

    class data_type:  # noqa: N801 - the frontend's names
        HALF, BFLOAT16, FLOAT = "half", "bf16", "float"

    class diagonal_alignment:  # noqa: N801
        BOTTOM_RIGHT = "bottom_right"

    class heur_mode:  # noqa: N801
        A, FALLBACK = "a", "fallback"

    class T:
        def __init__(self, **kw):
            self.__dict__.update(kw)

        def __getattr__(self, name):
            if name.startswith("set_"):
                def setter(value, _n=name[4:]):
                    setattr(self, _n, value)
                    return self
                return setter
            raise AttributeError(name)

    class pygraph:  # noqa: N801
        def __init__(self, **kw):
            self.ops = []

        def tensor(self, name, dim, stride, data_type, uid):
            return _FakeCudnn.T(name=name, dim=dim, stride=stride, data_type=data_type, uid=uid)

        def sdpa(self, name, q, k, v, attn_scale, generate_stats, **mask):
            assert generate_stats
            out = (_FakeCudnn.T(), _FakeCudnn.T())
            self.ops.append(("fwd", (q, k, v), out, attn_scale, mask))
            return out

        def sdpa_backward(self, name, q, k, v, o, dO, stats, attn_scale, **kw):
            out = (_FakeCudnn.T(), _FakeCudnn.T(), _FakeCudnn.T())
            self.ops.append(("bwd", (q, k, v, o, dO, stats), out, attn_scale, kw))
            return out

        def validate(self):
            pass

        build_operation_graph = check_support = build_plans = validate

        def create_execution_plans(self, modes):
            pass

        def get_workspace_size(self):
            return 16

        def execute(self, tensors, workspace, handle, tensor_uids):
            by_uid = dict(zip(tensor_uids, tensors))
            kind, ins, outs, scale, kw = self.ops[0]
            for t in (*ins, *outs):  # every tensor the graph declared is handed over, in its declared layout
                x = by_uid[t.uid]
                assert [x.shape[0], x.shape[2], x.shape[1], x.shape[3]] == t.dim or list(x.shape) == t.dim
            q, k, v = (by_uid[t.uid] for t in ins[:3])
            p = Problem(batch=q.shape[0], seqlen_q=q.shape[1], heads_q=q.shape[2], head_dim=q.shape[3],
                        seqlen_k=k.shape[1], heads_kv=k.shape[2], causal=bool(kw.get("diagonal_alignment")),
                        softmax_scale=scale, dtype="bfloat16")
            if kind == "fwd":
                by_uid[outs[0].uid].copy_(attention_math.attention(q, k, v, p, torch.float32, q.dtype))
                by_uid[outs[1].uid].fill_(1.0)
                return
            assert by_uid[ins[5].uid].dtype == torch.float32 and kw.get("use_deterministic_algorithm") in (None, True)
            _, dq, dk, dv = attention_math.attention_grads(q, k, v, by_uid[ins[4].uid], p, torch.float32, q.dtype)
            for t, g in zip(outs, (dq, dk, dv)):
                by_uid[t.uid].copy_(g)

    @staticmethod
    def set_stream(handle, stream):
        pass

    @staticmethod
    def get_stream(handle):
        return 0


@pytest.mark.parametrize("name", ["cudnn-frontend", "cudnn-frontend-det"])
def test_cudnn_frontends_training_graphs_hand_over_every_tensor(monkeypatch, name):
    import types

    from harness.backends import cudnn_frontend, registry

    monkeypatch.setattr(cudnn_frontend, "_import_cudnn", lambda: _FakeCudnn)
    monkeypatch.setattr(cudnn_frontend, "_handle", lambda cudnn, device: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: types.SimpleNamespace(cuda_stream=0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    b = registry.get(name)
    for op in ("bwd", "fwd_bwd"):
        p = P.with_(op=op, layout="bhsd")
        q, k, v = make_inputs(p, 1, "normal", "cpu")
        do = make_grad_output(p, 2, "cpu")
        oracles = C.build_grad_oracles(p, q, k, v, do)
        run = b.prepare_backward(p, q, k, v, do) if op == "bwd" else b.prepare_fwd_bwd(p, q, k, v, do)
        outs = run()
        for n, x in zip(("o", "dq", "dk", "dv")[4 - len(outs):], outs):
            assert C.passes(C.error_metrics(x, oracles[n].ref), oracles[n]), (op, n)


def test_flashattentions_forward_on_a_bhsd_view_reads_the_inputs_of_each_call_not_a_copy(monkeypatch):
    """The harness refills the buffers it prepared with before every timed call; an adapter that copied a
    bhsd view in prepare would compute on stale inputs (measured on a GPU: FA4 rejected on every bhsd cell)."""
    import sys

    from harness.backends import flash_attn

    mod, _ = _fake_flash_attn()
    monkeypatch.setitem(sys.modules, "fake_flash_attn", mod)
    b = flash_attn.FA4()
    b.module = "fake_flash_attn"
    p = P.with_(layout="bhsd")
    q, k, v = make_inputs(p, 1, "normal", "cpu")
    assert not q.is_contiguous()
    run = b.prepare(p, q, k, v)
    v.mul_(-2)  # what the timing stage does to V before a timed call
    want = attention_math.attention(q, k, v, p, torch.float64)
    assert C.passes(C.error_metrics(run(), want), C.build_oracle(p, q, k, v, calibrate=False))
