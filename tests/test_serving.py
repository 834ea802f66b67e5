"""Serving shapes on the CPU: decode over contiguous and paged caches, varlen packed batches, local windows
and soft-capping. Problem keys, counts and validation; the page pool and its table; the float64 reference
of each kind against a plain computation; every check of a cell catching the wrong answers a serving
kernel can give (an ignored page table, junk slots read, a window or soft cap ignored, an answer kept
across timed calls, a changed cache); suites, the store and the views."""
from __future__ import annotations

import itertools
import math
import sqlite3
from pathlib import Path

import pytest
import torch

from harness.backends import registry
from harness.backends.base import Backend
from harness.measure import inputs_decode, kinds
from harness.measure.cell import ProblemCache, measure_cell
from harness.records.observations import CorrectnessObservation, DeterminismObservation, TimingObservation
from harness.records.report import CellReport
from harness.spec.kinds import masks
from harness.spec.problem import Problem, ProblemError
from harness.spec.suite import Checks, SuiteError, Timing, load_suite

ROOT = Path(__file__).resolve().parents[1]
QUICK = Timing(min_samples=3, max_samples=6, time_cap_s=0.05, min_time_s=0.0, warmup=1)
CHECKS = Checks(distributions=("normal",), determinism_runs=2)


def decode(**kw) -> Problem:
    base = dict(batch=2, heads_q=8, heads_kv=2, seqlen_q=1, seqlen_k=70, head_dim=32, kind="decode", page_size=16)
    return Problem(**{**base, **kw})


def varlen(**kw) -> Problem:
    base = dict(batch=5, heads_q=4, heads_kv=2, seqlen_q=48, head_dim=32, kind="varlen", lengths="long_tail")
    return Problem(**{**base, **kw})


# -- the problem model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("db", sorted((ROOT / "results").glob("*/*.db")) or [ROOT / "results" / "none.db"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_stored_dense_problem_keeps_its_key_byte_for_byte(db):
    if not db.exists():
        pytest.skip("no committed database")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    # rows of later problem kinds and operations (newer databases) have keys of their own
    dense = " AND ".join(c for c, have in (("kind = 'dense'", "kind" in cols), ("op = 'fwd'", "op" in cols),
                                           ("window_left < 0 AND window_right < 0", "window_left" in cols),
                                           ("NOT softcap", "softcap" in cols)) if have) or "1"
    rows = conn.execute("SELECT DISTINCT problem_key, batch, heads_q, heads_kv, seqlen_q, seqlen_k, head_dim, dtype, "
                        f"causal, softmax_scale, layout FROM results WHERE {dense}").fetchall()
    assert rows
    for key, b, hq, hkv, sq, sk, d, dt, causal, scale, layout in rows:
        p = Problem(batch=b, heads_q=hq, heads_kv=hkv, seqlen_q=sq, seqlen_k=sk, head_dim=d, dtype=dt,
                    causal=bool(causal), softmax_scale=scale or None, layout=layout or "bshd")
        assert p.key() == key


def test_serving_keys_name_what_differs_and_dense_keys_do_not_change():
    assert Problem(batch=2, heads_q=8, seqlen_q=512, head_dim=64).key() == "b2-hq8-hkv8-sq512-sk512-d64-bfloat16-full-bshd"
    assert decode().key() == "decode-b2-hq8-hkv2-sq1-sk70-d32-bfloat16-full-bshd-page16"
    assert decode(page_size=0).key().endswith("-contig")
    assert varlen().key().startswith("varlen-long_tail-b5-")
    w = Problem(batch=1, heads_q=2, seqlen_q=64, head_dim=64, causal=True, window_left=16, window_right=0, softcap=30)
    assert w.key().endswith("-causal-bshd-win16_0-softcap30")


def brute_pairs(sq, sk, causal, left, right):
    off = sk - sq
    return sum(1 for i in range(sq) for j in range(sk)
               if not (causal and j > i + off) and not (left >= 0 and j < i + off - left)
               and not (right >= 0 and j > i + off + right))


@pytest.mark.parametrize("sq,sk", list(itertools.product([1, 2, 7, 33], [1, 5, 40])))
def test_window_pairs_match_a_brute_force_mask(sq, sk):
    for causal, left, right in itertools.product([False, True], [-1, 0, 3, 50], [-1, 0, 2, 9]):
        if causal and right > 0:
            continue
        assert masks.attended_pairs(sq, sk, causal, left, right) == brute_pairs(sq, sk, causal, left, right)
    # without a window the count is exactly the one causal problems always had
    for causal in (False, True):
        p = Problem(batch=1, heads_q=1, seqlen_q=sq, seqlen_k=sk, head_dim=64, causal=causal)
        assert masks.attended_pairs(sq, sk, causal) == p.attended_pairs()


def test_decode_flops_and_bytes():
    p = decode(batch=3, heads_q=32, heads_kv=8, seqlen_q=1, seqlen_k=4096, head_dim=128)
    assert p.flops() == 4 * 3 * 32 * 4096 * 128
    pages = 3 * 4096 // 16
    assert p.min_bytes() == 2 * (2 * 3 * 32 * 128 + 2 * 3 * 4096 * 8 * 128) + 4 * pages
    contig = p.with_(page_size=0)
    assert contig.min_bytes() == 2 * (2 * 3 * 32 * 128 + 2 * 3 * 4096 * 8 * 128)
    assert p.bandwidth_bound and not Problem(batch=1, heads_q=1, seqlen_q=8, head_dim=64).bandwidth_bound
    spec = decode(seqlen_q=4, seqlen_k=100, causal=True, heads_q=2, heads_kv=2, batch=1)
    assert spec.attended_pairs() == 97 + 98 + 99 + 100


def test_varlen_counts_real_tokens_only():
    p = varlen(causal=True)
    lengths = p.seq_lengths()
    assert len(lengths) == 5 and all(1 <= n <= 48 for n in lengths)
    assert lengths == varlen(causal=False).seq_lengths()  # the lengths are the problem's own, not random per call
    assert p.flops() == 4 * 4 * sum(n * (n + 1) // 2 for n in lengths) * 32
    assert p.min_bytes() == 2 * sum(lengths) * 32 * (2 * 4 + 2 * 2) + 4 * 6
    one = varlen(lengths="one_long", batch=9, seqlen_q=320)
    assert one.seq_lengths()[0] == 320 and max(one.seq_lengths()[1:]) <= 20


@pytest.mark.parametrize("kw,msg", [
    (dict(kind="prefill"), "kind='prefill': allowed dense, decode, varlen"),
    (dict(page_size=16), "only a decode problem has a paged cache"),
    (dict(lengths="uniform"), "only a varlen problem has lengths"),
    (dict(causal=True, window_left=4, window_right=2), "causal is the right bound 0"),
    (dict(window_left=-2), "window_left=-2: must be an integer >= 0, or -1"),
    (dict(softcap=-1.0), "softcap=-1.0: must be a finite number >= 0"),
    (dict(kind="decode", seqlen_q=17, seqlen_k=100), "1 to 16 query tokens"),
    (dict(kind="decode", seqlen_q=4, seqlen_k=2), "seqlen_k >= seqlen_q"),
    (dict(kind="decode", seqlen_q=1, seqlen_k=64, page_size=24), "page_size=24: allowed 0, 1, 8, 16"),
    (dict(kind="varlen", seqlen_q=64), "needs lengths, allowed uniform, long_tail, one_long"),
    (dict(kind="varlen", lengths="uniform", seqlen_q=64, seqlen_k=32), "seqlen_k equals seqlen_q"),
    (dict(kind="decode", seqlen_q=1, seqlen_k=64, layout="bhsd"), "bshd (NHD pages) only"),
])
def test_invalid_serving_problems_are_one_line_errors(kw, msg):
    base = dict(batch=1, heads_q=4, seqlen_q=8, head_dim=64)
    with pytest.raises(ProblemError, match=msg.replace("(", r"\(").replace(")", r"\)")) as exc:
        Problem(**{**base, **kw})
    assert "\n" not in str(exc.value)


def test_suite_window_key_and_its_conflict(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('[suite]\nbackends = ["naive"]\n[[grid]]\nbatch = 1\nheads_q = 2\nseqlen_q = 64\nhead_dim = 64\n'
                 'window = 8\n')
    (p,) = load_suite(str(f)).problems
    assert (p.window_left, p.window_right) == (8, 0)
    f.write_text(f.read_text() + "window_left = 4\n")
    with pytest.raises(SuiteError, match="give either window or window_left/window_right"):
        load_suite(str(f))


def test_the_serving_suites_load_and_the_old_correctness_rows_are_unchanged():
    for name in ("decode", "window", "varlen", "fp8"):
        assert load_suite(name).problems
    kinds_seen = {p.kind for p in load_suite("decode").problems}
    assert kinds_seen == {"decode"}
    corr = load_suite("correctness").problems
    dense = [p for p in corr if p.kind == "dense" and p.window_left < 0 and p.window_right < 0 and not p.softcap
             and p.dtype != "float8_e4m3" and p.op == "fwd"]
    assert len(dense) == 40 + 16 + 4  # the forward grids that were there before serving shapes
    assert {p.kind for p in corr} == {"dense", "decode", "varlen"}


# -- the page pool ----------------------------------------------------------------------------------------
def test_the_page_table_is_a_shuffled_permutation_and_the_pool_holds_the_cache():
    p = decode(batch=3, seqlen_k=70, page_size=16)
    pg = inputs_decode.paging(p, "cpu")
    assert pg.page_table.shape == (3, 5) and pg.page_table.dtype == torch.int32
    assert sorted(pg.page_table.flatten().tolist()) == list(range(15))
    assert pg.page_table.flatten().tolist() != list(range(15))  # not in order
    q, kpool, vpool = kinds.make_inputs(p, 7, "normal", "cpu")
    assert kpool.shape == (15, 16, 2, 32)
    dense_q, dense_k, dense_v = kinds.make_inputs(p.with_(page_size=0), 7, "normal", "cpu")
    assert torch.equal(q, dense_q)
    assert torch.equal(inputs_decode.gather(p, kpool), dense_k)
    assert torch.equal(inputs_decode.gather(p, vpool), dense_v)
    # the unused slots of each last page: large values no right kernel reads
    last = pg.page_table[:, -1].long()
    assert float(vpool[last, 70 % 16:].abs().max()) > 20
    # a backend gets copies
    meta = pg.for_backend()
    meta["page_table"].zero_()
    assert pg.page_table.flatten().tolist() != [0] * 15


def test_flashinfer_page_arrays_describe_the_same_pool():
    from harness.backends.flashinfer_decode import page_arrays

    p = decode(batch=3, seqlen_k=70, page_size=16)
    indptr, indices, last, ps = page_arrays(p, torch.device("cpu"))
    pg = inputs_decode.paging(p, "cpu")
    assert ps == 16 and indptr.tolist() == [0, 5, 10, 15] and last.tolist() == [70 - 64] * 3
    assert indices.tolist() == pg.page_table.flatten().tolist()
    indptr, indices, last, ps = page_arrays(p.with_(page_size=0), torch.device("cpu"))
    assert ps == 2 and indptr.tolist() == [0, 35, 70, 105] and indices.tolist() == list(range(105))
    assert last.tolist() == [2] * 3
    indptr, indices, last, ps = page_arrays(p.with_(page_size=0, seqlen_k=4096), torch.device("cpu"))
    assert ps == 64 and indptr.tolist() == [0, 64, 128, 192] and last.tolist() == [64] * 3


# -- the reference ----------------------------------------------------------------------------------------
def plain(q, k, v, scale, keep, cap=0.0):
    """float64 [b, sq, h, d] attention with an explicit [sq, sk] keep mask (GQA by repeat)."""
    g = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(g, 2), v.repeat_interleave(g, 2)
    s = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * scale
    if cap:
        s = cap * torch.tanh(s / cap)
    s = s.masked_fill(~keep, float("-inf"))
    return torch.nan_to_num(torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, -1), v.double()))


def keep_mask(sq, sk, causal, left, right):
    return torch.tensor([[not (causal and j > i + sk - sq) and not (left >= 0 and j < i + sk - sq - left)
                          and not (right >= 0 and j > i + sk - sq + right) for j in range(sk)] for i in range(sq)])


@pytest.mark.parametrize("sq,sk,causal,left,right,cap", [
    (64, 64, True, 8, 0, 0.0), (40, 64, False, 8, 5, 0.0), (64, 40, True, -1, -1, 20.0), (33, 33, False, 3, 3, 5.0),
])
def test_the_reference_applies_window_and_soft_cap(sq, sk, causal, left, right, cap):
    p = Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=sq, seqlen_k=sk, head_dim=16, causal=causal,
                window_left=left, window_right=right, softcap=cap)
    q, k, v = kinds.make_inputs(p, 3, "large_logits", "cpu")
    ref = kinds.attention(q, k, v, p, torch.float64)
    assert torch.allclose(ref, plain(q, k, v, p.softmax_scale, keep_mask(sq, sk, causal, left, right), cap), atol=1e-12)


def test_decode_and_varlen_references_match_a_plain_computation():
    p = decode(seqlen_q=3, causal=True, window_left=20)
    q, k, v = kinds.make_inputs(p, 5, "normal", "cpu")
    kd, vd = inputs_decode.gather(p, k), inputs_decode.gather(p, v)
    want = plain(q, kd, vd, p.softmax_scale, keep_mask(3, 70, True, 20, -1))
    assert torch.allclose(kinds.attention(q, k, v, p, torch.float64), want, atol=1e-12)
    p = varlen(causal=True)
    q, k, v = kinds.make_inputs(p, 5, "normal", "cpu")
    out = kinds.attention(q, k, v, p, torch.float64)
    at = 0
    for n in p.seq_lengths():
        want = plain(q[None, at:at + n], k[None, at:at + n], v[None, at:at + n], p.softmax_scale,
                     keep_mask(n, n, True, -1, -1))[0]
        assert torch.allclose(out[at:at + n], want, atol=1e-12)
        at += n


def test_timing_scales_reach_every_layout_and_come_back_off():
    gen = torch.Generator().manual_seed(1)
    from harness.measure import guards

    for p in (decode(), decode(page_size=0), varlen()):
        q, k, v = kinds.make_inputs(p, 2, "normal", "cpu")
        scales = guards.timing_scales(p.batch, p.heads_kv, p.head_dim, "cpu", gen)
        v2 = torch.empty_like(v)
        kinds.apply_v_scales(p, v2, v, scales)
        ref = kinds.attention(q, k, v, p, torch.float64)
        out = kinds.attention(q, k, v2, p, torch.float64)
        assert torch.allclose(kinds.unscale_output(p, out, scales), ref, atol=1e-10)
        assert not torch.allclose(out.double(), ref, atol=1e-3)


# -- cells: right kernels pass, wrong ones are caught ----------------------------------------------------
class _Wrong(Backend):
    devices = ("cpu",)
    kinds = ("dense", "decode", "varlen")
    features = ("window", "softcap")
    mistake = ""

    def prepare(self, problem, q, k, v):
        m = self.mistake
        if m == "pool as contiguous":  # ignores the page table: pages read in pool order
            pg = inputs_decode.paging(problem, k.device)
            kk = k.reshape(problem.batch, -1, *k.shape[2:])[:, :problem.seqlen_k]
            vv = v.reshape(problem.batch, -1, *v.shape[2:])[:, :problem.seqlen_k]
            dense = problem.with_(kind="dense", page_size=0)
            assert pg.num_pages
            return lambda: kinds.attention(q, kk, vv, dense, q.dtype)
        if m == "reads junk slots":  # attends every slot of the sequence's pages
            pg = inputs_decode.paging(problem, k.device)
            n = pg.pages_per_seq * pg.page_size
            idx = (pg.page_table.long()[:, :, None] * pg.page_size + torch.arange(pg.page_size)).reshape(problem.batch, n)
            dense = problem.with_(kind="dense", page_size=0, seqlen_k=n)
            return lambda: kinds.attention(q, k.reshape(-1, *k.shape[2:])[idx], v.reshape(-1, *v.shape[2:])[idx],
                                           dense, q.dtype)
        if m == "no window":
            plain_p = problem.with_(window_left=-1, window_right=-1)
            return lambda: kinds.attention(q, k, v, plain_p, q.dtype)
        if m == "no softcap":
            plain_p = problem.with_(softcap=0.0)
            return lambda: kinds.attention(q, k, v, plain_p, q.dtype)
        if m == "ignores sequence bounds":  # varlen attended as one long sequence
            one = problem.with_(kind="dense", lengths="", batch=1, seqlen_q=q.shape[0], seqlen_k=q.shape[0])
            return lambda: kinds.attention(q[None], k[None], v[None], one, q.dtype)[0]
        if m == "keeps its first answer":
            first: list = []

            def run():
                if not first:
                    first.append(kinds.attention(q, k, v, problem, q.dtype))
                return first[0].clone()
            return run
        if m == "writes the cache":
            def run():
                v.mul_(1.0)
                v.view(-1)[0] += 1
                return kinds.attention(q, k, v, problem, q.dtype)
            return run
        raise AssertionError(m)


def _cell(mistake: str, problem: Problem, timing: Timing | None = None) -> CellReport:
    name = f"test-serving-{mistake.replace(' ', '-')}"
    cls = type(name, (_Wrong,), {"name": name, "mistake": mistake})
    registry.register(cls)
    try:
        return measure_cell(name, problem, CHECKS, timing or Timing(enabled=False), "cpu", ProblemCache(), None)
    finally:
        registry._REGISTRY.pop(name, None)


@pytest.mark.parametrize("problem", [decode(), decode(page_size=0, seqlen_q=4, causal=True), varlen(causal=True),
                                     Problem(batch=1, heads_q=2, seqlen_q=40, head_dim=32, window_left=6,
                                             window_right=0, softcap=15.0)], ids=lambda p: p.key())
@pytest.mark.parametrize("backend", ["reference", "naive", "sdpa-math"])
def test_the_cpu_backends_pass_every_serving_kind(problem, backend):
    report = measure_cell(backend, problem, CHECKS, QUICK, "cpu", ProblemCache(), None)
    if backend == "sdpa-math" and problem.softcap:
        assert report.status == "skipped" and "softcap" in report.reason
        return
    assert report.status == "ok", report.reason
    assert report.get(CorrectnessObservation).passed and report.get(DeterminismObservation).deterministic
    assert report.get(TimingObservation).outputs_ok


@pytest.mark.parametrize("mistake,problem,status,why", [
    ("pool as contiguous", decode(), "failed", "max_abs_err"),
    ("reads junk slots", decode(), "failed", "max_abs_err"),
    ("no window", Problem(batch=1, heads_q=2, seqlen_q=40, head_dim=32, causal=True, window_left=4), "failed", "max_abs_err"),
    ("no window", decode(window_left=8), "failed", "max_abs_err"),
    ("no softcap", Problem(batch=1, heads_q=2, seqlen_q=40, head_dim=32, softcap=2.0), "failed", "max_abs_err"),
    ("ignores sequence bounds", varlen(), "failed", "max_abs_err"),
    ("writes the cache", decode(), "rejected", "modified its input"),
])
def test_wrong_serving_kernels_are_caught(mistake, problem, status, why):
    report = _cell(mistake, problem)
    assert report.status == status and why in report.reason, report.reason


@pytest.mark.parametrize("problem", [decode(), varlen()], ids=lambda p: p.kind)
def test_an_answer_kept_across_timed_calls_is_rejected(problem):
    report = _cell("keeps its first answer", problem, QUICK)
    assert report.status == "rejected" and "timed calls returned wrong outputs" in report.reason


def test_a_dense_only_backend_never_sees_a_page_pool():
    report = measure_cell("cudnn-frontend", decode(), CHECKS, QUICK, "cpu", ProblemCache(), None)
    assert report.status == "skipped"
    from harness.backends.base import serving_unsupported

    assert "no decode entry" in serving_unsupported(registry.get("flashcore-phase4"), decode())
    assert "does not implement window" in serving_unsupported(
        registry.get("flashcore-phase4"), Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, window_left=2))


def test_flex_masks_on_the_cpu(monkeypatch):
    from torch.nn.attention.flex_attention import flex_attention

    from harness.backends import flex as flexmod

    monkeypatch.setattr(flexmod, "_compiled_flex", lambda: flex_attention)
    monkeypatch.setattr(flexmod.Flex, "devices", ("cuda", "cpu"))
    monkeypatch.setattr(flexmod.Flex, "unavailable", lambda self: None)
    for p in (decode(seqlen_q=3, causal=True, window_left=30), varlen(causal=True, window_left=5), varlen(),
              Problem(batch=1, heads_q=2, seqlen_q=40, seqlen_k=56, head_dim=32, window_left=6, window_right=3,
                      softcap=10.0)):
        report = measure_cell("flex", p, CHECKS, Timing(enabled=False), "cpu", ProblemCache(), None)
        assert report.status == "ok", (p.key(), report.reason)


def test_flash_attention_options_follow_each_versions_window_convention():
    from harness.backends.flash_attn_serving import options

    p = Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64, causal=True, window_left=4, softcap=30.0)
    assert options(p, fa4=False)["window_size"] == (4, 0)
    assert options(p, fa4=True)["window_size"] == (4, 0)
    p = p.with_(causal=False, window_right=-1)
    assert options(p, fa4=False)["window_size"] == (4, -1) and options(p, fa4=True)["window_size"] == (4, None)
    assert options(p, fa4=False)["softcap"] == 30.0
    assert "window_size" not in options(p.with_(window_left=-1), fa4=False)


# -- store and views -------------------------------------------------------------------------------------
def test_serving_fields_are_stored_and_shown_with_bandwidth(tmp_path):
    from rich.console import Console

    from harness.records.result import Result
    from harness.store.database import RunInfo, Store
    from harness.views.export import frame
    from harness.views.tables import print_run

    store = Store(tmp_path / "s.db", create=True)
    store.create_run(RunInfo("r1", "decode", "2026-01-01T00:00:00Z", peak_tflops=700.0, peak_gbs=4000.0))
    p = decode(page_size=64, seqlen_k=4096)
    store.add_result(Result.for_problem("r1", "decode", "naive", p, "ok", median_ms=0.1, gbs=3000.0,
                                        pct_bandwidth=75.0, tflops=1.0))
    (r,) = list(store.iter_results("r1"))
    assert (r.kind, r.page_size, r.problem_key) == ("decode", 64, p.key())
    df = frame(store)
    assert {"kind", "page_size", "pct_bandwidth", "gbs"} <= set(df.columns)
    console = Console(record=True, width=300)
    print_run(console, store, "r1")
    text = console.export_text()
    assert "GB/s" in text and "% copy" in text and "75.0" in text


def test_rows_from_before_serving_fields_read_as_dense(tmp_path):
    from harness.records.result import Result
    from harness.store.database import RunInfo, Store

    store = Store(tmp_path / "s.db", create=True)
    store.create_run(RunInfo("r1", "smoke", "2026-01-01T00:00:00Z"))
    store.add_result(Result.for_problem("r1", "smoke", "naive", Problem(batch=1, heads_q=2, seqlen_q=8, head_dim=64), "ok"))
    store.conn.execute("UPDATE results SET kind=NULL, page_size=NULL, lengths=NULL, window_left=NULL, "
                       "window_right=NULL, softcap=NULL")
    store.conn.commit()
    (r,) = list(store.iter_results("r1"))
    assert (r.kind, r.page_size, r.window_left, r.softcap) == ("dense", 0, -1, 0.0)


def test_a_pct_of_copy_bandwidth_is_recorded_from_the_runs_peak():
    from harness.analysis.verdict import to_result
    from harness.run.plan import Cell

    p = decode(batch=4, seqlen_k=4096, heads_q=32, heads_kv=8, head_dim=128)
    timed = TimingObservation(samples_ms=[0.1] * 10, method="cpu-wallclock", stop_reason="", synced_ms=[], wall_ms=[],
                              enqueue_ms=0.0, tare_ms=0.0, worst_err_over_tol=0.0)
    res = to_result("r", "decode", Cell("naive", p), CellReport(observations=[timed]),
                    {"matmul_tflops": 700.0, "copy_gbs": 4000.0}, 1.0)
    assert res.gbs == pytest.approx(p.min_bytes() / 1e-4 / 1e9)
    assert res.pct_bandwidth == pytest.approx(100 * res.gbs / 4000.0)
    assert math.isfinite(res.pct_peak)


# -- FlashAttention's entry points, as a CPU stand-in that implements their documented arguments ----------
def _fa_math(q, k, v, softmax_scale, causal, window_size, softcap):
    left, right = (-1 if w is None else w for w in window_size)
    p = Problem(batch=q.shape[0], heads_q=q.shape[2], heads_kv=k.shape[2], seqlen_q=q.shape[1], seqlen_k=k.shape[1],
                head_dim=q.shape[3], dtype={torch.bfloat16: "bfloat16", torch.float16: "float16"}[q.dtype],
                causal=causal, softmax_scale=softmax_scale, window_left=left, window_right=0 if causal else right,
                softcap=softcap or 0.0)
    return kinds.attention(q, k, v, p, torch.float32, q.dtype)


def _fake_fa_module(version: int):
    import types

    mod = types.ModuleType(f"fake_fa{version}")
    unbounded = (None, None) if version == 4 else (-1, -1)

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False, window_size=unbounded, softcap=0.0,
                        q_descale=None, k_descale=None, v_descale=None):
        if q.dtype == torch.float8_e4m3fn:  # dequantised with the (batch, heads_kv) descales, bfloat16 out
            q, k, v = (t.float().mul(d[0, 0]).to(torch.bfloat16) for t, d in ((q, q_descale), (k, k_descale),
                                                                              (v, v_descale)))
        return _fa_math(q, k, v, softmax_scale, causal, window_size, softcap)

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                               seqused_k=None, page_table=None, softmax_scale=None, causal=False,
                               window_size=unbounded, softcap=0.0):
        if page_table is not None:  # batch-shaped q against a paged cache (FA4)
            ps = k.shape[1]
            outs = []
            for b in range(q.shape[0]):
                n = int(seqused_k[b])
                pages = page_table[b, :-(-n // ps)].long()
                kb, vb = k[pages].reshape(-1, *k.shape[2:])[:n], v[pages].reshape(-1, *v.shape[2:])[:n]
                outs.append(_fa_math(q[b:b + 1], kb[None], vb[None], softmax_scale, causal, window_size, softcap))
            return torch.cat(outs)
        outs = []
        for s, e in zip(cu_seqlens_q[:-1].tolist(), cu_seqlens_q[1:].tolist()):
            outs.append(_fa_math(q[None, s:e], k[None, s:e], v[None, s:e], softmax_scale, causal, window_size, softcap)[0])
        return torch.cat(outs), None  # FA4 returns (out, lse)

    def flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=None, page_table=None, block_table=None,
                                softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0):
        table = page_table if page_table is not None else block_table
        if table is None:
            return _fa_math(q, k_cache, v_cache, softmax_scale, causal, window_size, softcap)
        return flash_attn_varlen_func(q, k_cache, v_cache, seqused_k=cache_seqlens, page_table=table,
                                      softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                      softcap=softcap)

    mod.flash_attn_func, mod.flash_attn_varlen_func = flash_attn_func, flash_attn_varlen_func
    if version != 4:
        mod.flash_attn_with_kvcache = flash_attn_with_kvcache
    return mod


@pytest.mark.parametrize("version", [2, 3, 4])
def test_the_flash_attention_serving_calls_pass_the_page_table_lengths_and_masks_right(version, monkeypatch):
    import sys

    from harness.backends import flash_attn as fa

    name = f"fake_fa{version}"
    monkeypatch.setitem(sys.modules, name, _fake_fa_module(version))
    cls = {2: fa.FA2, 3: fa.FA3, 4: fa.FA4}[version]
    monkeypatch.setattr(cls, "devices", ("cuda", "cpu"))
    monkeypatch.setattr(cls, "unavailable", lambda self: None)
    backend = cls()
    backend.module = name
    monkeypatch.setattr(registry, "get", lambda n: backend)
    paged = 256 if version == 2 else 16  # FlashAttention-2 pages hold a multiple of 256 tokens
    problems = [decode(page_size=0, head_dim=64),
                decode(seqlen_q=3, seqlen_k=300, causal=True, window_left=20, softcap=5.0, head_dim=64, page_size=paged),
                decode(seqlen_k=300, head_dim=64, page_size=paged),
                varlen(causal=True, head_dim=64), varlen(window_left=4, window_right=2, head_dim=64),
                Problem(batch=1, heads_q=2, seqlen_q=40, seqlen_k=56, head_dim=64, window_left=6, window_right=3,
                        softcap=8.0)]
    if version == 3:
        problems.append(Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=64, head_dim=64, dtype="float8_e4m3", causal=True))
    for p in problems:
        report = measure_cell(cls.name, p, CHECKS, QUICK, "cpu", ProblemCache(), None)
        assert report.status == "ok", (p.key(), report.reason)
    if version == 2:
        report = measure_cell(cls.name, decode(head_dim=64), CHECKS, QUICK, "cpu", ProblemCache(), None)
        assert report.status == "skipped" and "multiple of 256" in report.reason


# -- FP8 -------------------------------------------------------------------------------------------------
FP8 = Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=64, seqlen_k=80, head_dim=32, dtype="float8_e4m3", causal=True)


def test_fp8_inputs_are_e4m3_with_a_per_tensor_descale_and_bytes_count_one_each():
    from harness.spec.kinds import fp8

    q, k, v = kinds.make_inputs(FP8, 3, "large", "cpu")
    assert q.dtype == k.dtype == v.dtype == torch.float8_e4m3fn
    x = kinds.make_inputs(FP8.with_(dtype="float32"), 3, "large", "cpu")[2]
    want = (x / fp8.DESCALE).clamp(-fp8.HEADROOM, fp8.HEADROOM).to(torch.float8_e4m3fn).float() * fp8.DESCALE
    assert torch.equal(kinds.dequantize(v), want)
    assert float(v.float().abs().max()) <= fp8.HEADROOM
    n_q, n_kv = 2 * 64 * 4 * 32, 2 * 80 * 2 * 32
    assert FP8.min_bytes() == n_q + 2 * n_kv + 2 * n_q
    ref = kinds.attention(q, k, v, FP8, torch.float64)
    keep = keep_mask(64, 80, True, -1, -1)
    assert torch.allclose(ref, plain(kinds.dequantize(q), kinds.dequantize(k), kinds.dequantize(v),
                                     FP8.softmax_scale, keep), atol=1e-12)
    assert kinds.attention(q, k, v, FP8, q.dtype).dtype == torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    from harness.measure import guards

    scales = guards.timing_scales(2, 2, 32, "cpu", gen)
    v2 = torch.empty_like(v)
    kinds.apply_v_scales(FP8, v2, v, scales)
    assert torch.equal(v2.float(), v.float() * scales)  # exact: ±1, ±2 within the headroom


def test_fp8_cells_pass_with_the_dequantised_reference_and_an_ignored_descale_fails():
    for backend in ("reference", "naive"):
        report = measure_cell(backend, FP8, Checks(distributions=("normal", "large")), QUICK, "cpu", ProblemCache(),
                              None)
        assert report.status == "ok", report.reason
        assert report.get(CorrectnessObservation).passed and report.get(TimingObservation).outputs_ok
    report = measure_cell("sdpa-math", FP8, CHECKS, QUICK, "cpu", ProblemCache(), None)
    assert report.status == "skipped" and "fp8" in report.reason

    class NoDescale(_Wrong):
        name = "test-serving-no-descale"
        features = ("fp8",)

        def prepare(self, problem, q, k, v):  # the stored values taken as the real ones
            bf = problem.with_(dtype="bfloat16")
            return lambda: kinds.attention(q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16), bf,
                                           torch.bfloat16)

    registry.register(NoDescale)
    try:
        report = measure_cell(NoDescale.name, FP8, CHECKS, Timing(enabled=False), "cpu", ProblemCache(), None)
    finally:
        registry._REGISTRY.pop(NoDescale.name, None)
    assert report.status == "failed" and "max_abs_err" in report.reason


def test_fp8_is_dense_only():
    with pytest.raises(ProblemError, match="FP8 inputs are measured on dense problems only"):
        decode(dtype="float8_e4m3")


# -- end to end: suite → plan → worker → store → show, export, report ------------------------------------
def test_a_serving_suite_runs_end_to_end_on_the_cpu(tmp_path):
    import csv

    from typer.testing import CliRunner

    from harness.cli import app

    suite = tmp_path / "serve.toml"
    suite.write_text('''[suite]
name = "serve-cpu"
backends = ["reference", "naive", "sdpa-math", "flashinfer-decode", "fa3"]
[[grid]]
kind = "decode"
batch = 2
heads_q = 8
heads_kv = 2
seqlen_q = [1, 3]
seqlen_k = 70
head_dim = 32
causal = true
page_size = 16
[[grid]]
kind = "varlen"
batch = 4
heads_q = 4
seqlen_q = 40
head_dim = 32
lengths = "one_long"
window = 8
[[grid]]
batch = 1
heads_q = 2
seqlen_q = 32
head_dim = 32
dtype = "float8_e4m3"
softcap = 20.0
[checks]
determinism_runs = 2
[timing]
min_samples = 3
max_samples = 6
time_cap_s = 0.05
min_time_s = 0
warmup = 1
''')
    db = tmp_path / "s.db"
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--suite", str(suite), "--db", str(db)])
    assert res.exit_code == 0, res.output
    rows = sqlite3.connect(db).execute("select backend, problem_key, status, reason, kind from results").fetchall()
    assert len(rows) == 4 * 5
    ok = {(b, k) for b, k, s, _, _ in rows if s == "ok"}
    assert {b for b, _ in ok} == {"reference", "naive", "sdpa-math"}
    assert ("naive", "decode-b2-hq8-hkv2-sq3-sk70-d32-bfloat16-causal-bshd-page16") in ok
    assert all(s in ("ok", "skipped") for _, _, s, _, _ in rows)
    assert {k for _, _, _, _, k in rows} == {"decode", "varlen", "dense"}
    res = runner.invoke(app, ["show", "--db", str(db)], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "GB/s" in res.output and "% copy" in res.output
    out = tmp_path / "e.csv"
    assert runner.invoke(app, ["export", "--db", str(db), "--format", "csv", "--out", str(out)]).exit_code == 0
    exported = list(csv.DictReader(out.open()))
    assert {r["kind"] for r in exported} == {"decode", "varlen", "dense"} and "pct_bandwidth" in exported[0]
    res = runner.invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "dash")])
    assert res.exit_code == 0, res.output
    html = "".join(p.read_text() for p in (tmp_path / "dash").glob("*.html"))
    assert "decode page 16" in html and "varlen one_long" in html


def test_sdpa_kernels_without_gqa_get_the_heads_repeated_inside_the_call():
    import torch.nn.functional as F

    from harness.backends.serving_baselines import sdpa_run

    seen = []

    def spy(qh, kh, vh, **kw):
        seen.append((kh.shape[1], kw.get("enable_gqa", False)))
        return F.scaled_dot_product_attention(qh, kh, vh, **kw)

    for p in (decode(), varlen(), Problem(batch=1, heads_q=4, heads_kv=2, seqlen_q=40, head_dim=32, window_left=6)):
        q, k, v = kinds.make_inputs(p, 1, "normal", "cpu")
        ref = kinds.attention(q, k, v, p, torch.float64)
        for expand in (False, True):
            seen.clear()
            out = sdpa_run(p, q, k, v, spy, expand_gqa=expand)()
            assert seen == [(p.heads_q, False)] if expand else seen == [(p.heads_kv, True)]
            assert float((out.double() - ref).abs().max()) < 0.02
