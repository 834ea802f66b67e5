"""Claims audit: parsing (one-line errors), consistency arithmetic, H100 formulas, verdicts against a
synthetic database, and the verdicts of suites/claims/seeds.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.analysis.audit import ClaimsError, audit, parse_claims
from harness.analysis.audit.formulas import FormulaError, evaluate, occupancy, traffic
from harness.records.result import Result
from harness.spec.claims import load_claims
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "suites" / "claims" / "seeds.toml"
A = {"batch": 2, "heads_q": 8, "seqlen_q": 512, "head_dim": 64, "dtype": "float16", "causal": False}
PA = Problem(**A)
SRC = 'source = { file = "doc.txt", quote = "it is fast" }'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "claims.toml"
    p.write_text(text)
    return p


def one_claim(**kw: object) -> dict:
    c = {
        "id": "c",
        "backend": "sdpa-flash",
        "problem": dict(A),
        "tflops": 1.0,
        "source": {"file": "doc.txt", "quote": "q"},
    }
    c.update(kw)
    return {"claim": [{k: v for k, v in c.items() if v is not None}]}


# -- parsing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, must",
    [
        ("[[claim]\nid = 'x'", ["not valid TOML"]),
        ("title = 'x'", ["unknown top-level key", "[[claim]]"]),
        (
            f"[[claim]]\nid = 'x'\nkind = 'guess'\n{SRC}",
            [
                "claim[0] (id 'x')",
                "'kind' = 'guess'",
                "allowed measured, speedup, occupancy, traffic, flops, arithmetic",
            ],
        ),
        (
            f"[[claim]]\nid = 'x'\nbackend = 'b'\nproblem = 'unknown'\ntflops = 1\nspeed = 2\n{SRC}",
            [
                "unknown key(s) ['speed']",
                "allowed id, kind, source, note, backend, problem, tflops, latency_ms",
            ],
        ),
        (
            "[[claim]]\nid = 'x'\nbackend = 'b'\nproblem = 'unknown'\ntflops = 1",
            ["key 'source'", "file", "quote"],
        ),
        (
            f"[[claim]]\nid = 'x'\nbackend = 'b'\nproblem = 'unknown'\ntflops = -3\n{SRC}",
            ["key 'tflops' = -3", "positive number or a range [lo, hi]"],
        ),
        (
            f"[[claim]]\nid = 'x'\nbackend = 'b'\nproblem = 'unknown'\n{SRC}",
            ["needs 'tflops' and/or 'latency_ms'"],
        ),
        (f"[[claim]]\nid = 'x'\nbackend = 'b'\ntflops = 1\n{SRC}", ["missing key 'problem'"]),
        (
            f"[[claim]]\nid = 'x'\nbackend = 'b'\ntflops = 1\n{SRC}\n"
            "problem = {batch = 2, heads_q = 8, seqlen_q = 512, head_dim = 64, dtype = 'fp8'}",
            ["key 'problem'", "dtype='fp8'", "allowed float16, bfloat16, float32"],
        ),
        (
            f"[[claim]]\nid = 'x'\nbackend = 'b'\ntflops = 1\n{SRC}\n"
            "problem = {batch = 2, heads_q = 8, seqlen_q = 512, head_dim = 64, dtype = 'fp16', heads = 3}",
            ["unknown key(s) ['heads']", "allowed batch, heads_q"],
        ),
        (
            f"[[claim]]\nid = 'x'\nkind = 'occupancy'\nquantity = 'blocks'\nclaimed = 2\n{SRC}\n"
            "inputs = {regs_per_thread = 96, threads_per_block = 256, smem_kib = 192}",
            ["'quantity' = 'blocks'", "allowed blocks_per_sm, warps_per_sm, occupancy_pct"],
        ),
        (
            f"[[claim]]\nid = 'x'\nkind = 'occupancy'\nquantity = 'blocks_per_sm'\nclaimed = 2\n{SRC}\n"
            "inputs = {regs_per_thread = 96, threads_per_block = 256}",
            ["exactly one of smem_bytes, smem_kib"],
        ),
        (
            f"[[claim]]\nid = 'x'\nkind = 'traffic'\nquantity = 'q_read'\nclaimed = 2\nunit = 'gigs'\n{SRC}\n"
            "problem = {batch = 2, heads_q = 8, seqlen_q = 512, head_dim = 64, dtype = 'fp16'}",
            ["'unit' = 'gigs'", "allowed B, KB, MB, GB"],
        ),
        (
            f"[[claim]]\nid = 'x'\nkind = 'arithmetic'\nexpr = \"__import__('os')\"\nclaimed = 1\n{SRC}",
            ["key 'expr'", "only numbers"],
        ),
        (
            f"[[claim]]\nid = 'x'\nkind = 'arithmetic'\nexpr = '1/2'\nclaimed = 1\ncompare = 'around'\n{SRC}",
            ["'compare' = 'around'", "allowed equal, at_most"],
        ),
        (
            f"[[claim]]\nid = 'x'\nkind = 'arithmetic'\nexpr = '1'\nclaimed = 1\n{SRC}\n"
            f"[[claim]]\nid = 'x'\nkind = 'arithmetic'\nexpr = '1'\nclaimed = 1\n{SRC}",
            ["claim[1]", "used twice"],
        ),
    ],
)
def test_malformed_claims_file_is_one_line_error(tmp_path: Path, text: str, must: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ClaimsError) as e:
        load_claims(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for m in must:
        assert m in msg, msg


def test_missing_claims_file(tmp_path: Path) -> None:
    with pytest.raises(ClaimsError, match="no such claims file"):
        audit(tmp_path / "nope.toml", None)


def test_aliases_ranges_and_defaults() -> None:
    (c,) = parse_claims(one_claim(tflops=[12, 15], latency_ms=0.667, problem=dict(A, dtype="fp16")))
    assert c.kind == "measured" and c.problem == PA
    assert (c.tflops.lo, c.tflops.hi) == (12.0, 15.0) and str(c.tflops) == "12–15"


# -- formulas ----------------------------------------------------------------------------------
def test_h100_occupancy_formula() -> None:
    o = occupancy(96, 256, 196608)  # the bleeding-edge kernel's figures
    assert (o.blocks_by_regs, o.blocks_by_smem, o.blocks_by_threads, o.blocks_per_sm) == (2, 1, 8, 1)
    assert o.warps_per_sm == 8 and o.occupancy_pct == 12.5 and o.max_warps_per_sm == 64
    o = occupancy(57, 256, 88 * 1024)  # phase 4X: 57 regs round to 64 per thread -> 4 blocks; smem allows 2
    assert (o.blocks_by_regs, o.blocks_by_smem, o.blocks_per_sm, o.occupancy_pct) == (4, 2, 2, 25.0)
    assert occupancy(32, 32, 0).blocks_per_sm == 32  # the 32-block cap
    assert occupancy(255, 1024, 0).blocks_per_sm == 0  # 261k registers do not fit
    assert occupancy(32, 128, 228 * 1024).blocks_per_sm == 0  # more than 227 KiB per block
    assert occupancy(32, 128, 227 * 1024).blocks_per_sm == 1
    with pytest.raises(FormulaError):
        occupancy(32, 2048, 0)


def test_traffic_formula() -> None:
    b = Problem(16, 16, 2048, 64, dtype="float16")
    assert traffic(b, "q_read") == 64 * 2**20  # 16·16·2048·64 elements × 2 B
    assert traffic(b, "qkv_read") == 192 * 2**20
    assert traffic(b, "fused_total") == b.min_bytes() == 256 * 2**20
    assert traffic(b, "s_write") == 2 * 2**30  # B·H·S² × 2 B
    assert traffic(b, "s_write", "float32") == 4 * 2**30
    assert traffic(b, "unfused_total") == 256 * 2**20 + 4 * 2 * 2**30
    gqa = Problem(1, 8, 128, 64, heads_kv=2, seqlen_k=256, dtype="bfloat16")
    assert traffic(gqa, "k_read") == 1 * 2 * 256 * 64 * 2


def test_arithmetic_evaluator() -> None:
    assert evaluate("2 * (64*64*2 + 64*64*2) / 1024") == 32
    assert evaluate("min(3, ceil(2.1)) + 2**3 - -1") == 12
    for bad in ("x + 1", "open('f')", "(1).real", "[1, 2]", "1 if 1 else 2", "sqrt(-1)", "1/0"):
        with pytest.raises(FormulaError):
            evaluate(bad)


# -- consistency -------------------------------------------------------------------------------
def test_consistency_arithmetic() -> None:
    claims = parse_claims(
        {
            "claim": [
                one_claim(id="be", tflops=52.3, latency_ms=0.192)["claim"][0],
                one_claim(id="ok", tflops=round(PA.flops() / 0.5e-3 / 1e12, 3), latency_ms=0.5)["claim"][0],
                one_claim(id="edge", tflops=PA.flops() / 0.5e-3 / 1e12 * 1.049, latency_ms=0.5)["claim"][0],
                one_claim(id="over", tflops=PA.flops() / 0.5e-3 / 1e12 * 1.06, latency_ms=0.5)["claim"][0],
                one_claim(id="range", tflops=[1.0, 3.0], latency_ms=0.5)["claim"][0],
                one_claim(id="single", tflops=52.3)["claim"][0],
                one_claim(id="unknown", problem="unknown", tflops=16.61, latency_ms=0.46)["claim"][0],
            ]
        }
    )
    from harness.analysis.audit.check import Measurements, check

    v = {c.id: check(c, Measurements.empty("test")) for c in claims}
    # 0.192 ms at B2·H8·S512·D64 (1.074 GFLOP) is 5.59 TFLOPS; 52.3 is 9.35× that
    assert v["be"].consistency.startswith("inconsistent ×9.4")
    assert v["be"].consistency_factor == pytest.approx(52.3e12 * 0.192e-3 / PA.flops())
    assert "5.59 TFLOPS" in v["be"].consistency
    assert v["ok"].consistency == "consistent" and v["edge"].consistency == "consistent"
    assert v["over"].consistency.startswith("inconsistent ×1.1")
    assert v["range"].consistency == "consistent"  # 2.15 TFLOPS lies in 1–3
    assert v["single"].consistency == "—"
    assert v["unknown"].consistency.startswith("cannot check: problem unknown (the figures imply 7.64 GFLOP)")
    assert v["unknown"].verdict == "untestable"


# -- verdicts against a database ---------------------------------------------------------------
def _cell(
    run: str,
    backend: str,
    p: Problem,
    status: str = "ok",
    ms: float | None = None,
    passed: bool | None = True,
    reason: str = "",
) -> Result:
    r = Result.for_problem(run, "s", backend, p, status, reason, passed=passed)
    if ms is not None:
        r.median_ms, r.p10_ms, r.p90_ms = ms, ms * 0.98, ms * 1.02
        r.tflops = p.flops() / (ms * 1e-3) / 1e12
        r.max_abs_err, r.mean_abs_err = 3e-4, 4e-5
    return r


def _ms(p: Problem, tflops: float) -> float:
    return p.flops() / (tflops * 1e12) * 1e3


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "flashcore.db"
    s = Store(path)
    for i, rid in enumerate(("old", "new")):
        s.create_run(RunInfo(run_id=rid, suite="s", created_at=f"2025-02-0{i + 1}T00:00:00+00:00"))
    bhsd = Problem(**A, layout="bhsd")
    s.add_result(_cell("old", "fast", PA, ms=_ms(PA, 50.0)))
    s.add_result(_cell("new", "fast", bhsd, ms=_ms(PA, 100.0)))  # newest wins; any layout matches
    s.add_result(_cell("new", "base", PA, ms=_ms(PA, 10.0)))
    s.add_result(
        _cell("new", "skippy", PA, "skipped", passed=None, reason="needs flash-attn 3 (not installed)")
    )
    s.add_result(
        _cell("new", "crashy", PA, "failed", passed=False, reason="CUDA error: illegal memory access")
    )
    s.add_result(
        _cell(
            "new",
            "cheat",
            PA,
            "rejected",
            ms=_ms(PA, 9000.0),
            passed=False,
            reason="faster than the copy engine can read the inputs",
        )
    )
    s.add_result(_cell("new", "wrong", PA, "ok", ms=_ms(PA, 80.0), passed=False))
    s.add_result(_cell("new", "untimed", PA, "ok", passed=True))
    s.add_result(_cell("old", "flaky", PA, ms=_ms(PA, 40.0)))  # measured once, skipped later
    s.add_result(_cell("new", "flaky", PA, "skipped", passed=None, reason="not built on this machine"))
    s.close()
    return path


def claims_for(tmp_path: Path, rows: list[str]) -> Path:
    prob = "problem = { batch = 2, heads_q = 8, seqlen_q = 512, head_dim = 64, dtype = 'float16' }"
    body = "".join(f"[[claim]]\n{r}\n{prob}\n{SRC}\n" for r in rows)
    return write(tmp_path, body)


def test_verdicts_against_database(tmp_path: Path, db: Path) -> None:
    c = claims_for(
        tmp_path,
        [
            "id = 'confirmed'\nbackend = 'fast'\ntflops = 105",  # 100 >= 0.9 × 105
            "id = 'refuted'\nbackend = 'fast'\ntflops = 150",  # 150 / 100
            f"id = 'lat-ok'\nbackend = 'fast'\nlatency_ms = {_ms(PA, 100.0) * 0.95}",
            f"id = 'lat-bad'\nbackend = 'fast'\nlatency_ms = {_ms(PA, 100.0) / 3}",
            "id = 'understated'\nbackend = 'base'\ntflops = 0.87",
            "id = 'range'\nbackend = 'fast'\ntflops = [105, 200]",  # within 10% of the range
            "id = 'nobackend'\nbackend = 'sglang'\ntflops = 40",
            "id = 'skipped'\nbackend = 'skippy'\ntflops = 40",
            "id = 'failed'\nbackend = 'crashy'\ntflops = 40",
            "id = 'rejected'\nbackend = 'cheat'\ntflops = 40",
            "id = 'wrong'\nbackend = 'wrong'\ntflops = 40",
            "id = 'untimed'\nbackend = 'untimed'\ntflops = 40",
            "id = 'flaky'\nbackend = 'flaky'\ntflops = 60",
            "id = 'speedup-ok'\nkind = 'speedup'\nbackend = 'fast'\nbaseline = 'base'\nclaimed = 10",
            "id = 'speedup-bad'\nkind = 'speedup'\nbackend = 'fast'\nbaseline = 'base'\nclaimed = 60.1",
            "id = 'speedup-untested'\nkind = 'speedup'\nbackend = 'fast'\nbaseline = 'skippy'\nclaimed = 2",
        ],
    )
    rep = audit(c, db)
    v = {x.claim.id: x for x in rep.verdicts}
    assert v["confirmed"].verdict == "confirmed" and v["confirmed"].measured_run == "new"
    assert v["confirmed"].measured_tflops == pytest.approx(100.0)
    assert v["refuted"].verdict == "refuted" and v["refuted"].factor == pytest.approx(1.5)
    assert "claimed 150 TFLOPS is ×1.5 the measured 100" in v["refuted"].detail
    assert v["lat-ok"].verdict == "confirmed"
    assert v["lat-bad"].verdict == "refuted" and v["lat-bad"].factor == pytest.approx(3.0)
    assert "×3.0 slower than claimed" in v["lat-bad"].detail
    # a baseline claimed 11× slower than it measures is refuted, not confirmed: it inflates every speedup
    assert v["understated"].verdict == "refuted" and "understates it" in v["understated"].detail
    assert v["understated"].factor == pytest.approx(10.0 / 0.87, rel=1e-3)
    assert v["range"].verdict == "confirmed"
    assert v["nobackend"].verdict == "untested" and "no backend 'sglang'" in v["nobackend"].detail
    assert (
        v["skipped"].verdict == "untested" and "skipped in run new: needs flash-attn 3" in v["skipped"].detail
    )
    assert "failed in run new: CUDA error" in v["failed"].detail
    assert "rejected in run new: faster than the copy engine" in v["rejected"].detail
    assert v["rejected"].measured_tflops is None  # a rejected timing is never used as a measurement
    assert "did not pass correctness" in v["wrong"].detail
    assert "was not timed" in v["untimed"].detail
    # the newest passed measurement counts even when a later run skipped the backend
    assert v["flaky"].verdict == "refuted" and v["flaky"].measured_run == "old"
    assert v["speedup-ok"].verdict == "confirmed" and v["speedup-ok"].computed == pytest.approx(10.0)
    assert v["speedup-bad"].verdict == "refuted" and v["speedup-bad"].factor == pytest.approx(6.01)
    assert v["speedup-untested"].verdict == "untested" and "skipped" in v["speedup-untested"].detail
    assert rep.counts()["untested"] == 7


def test_other_problem_and_no_database(tmp_path: Path, db: Path) -> None:
    c = write(
        tmp_path,
        "[[claim]]\nid = 'x'\nbackend = 'fast'\ntflops = 1\n"
        "problem = { batch = 4, heads_q = 8, seqlen_q = 512, head_dim = 64, dtype = 'float16' }\n" + SRC,
    )
    (v,) = audit(c, db).verdicts
    assert v.verdict == "untested" and "fast has no cell at B4·H8·S512·D64 fp16" in v.detail
    (v,) = audit(c, tmp_path / "missing.db").verdicts
    assert v.verdict == "untested" and "missing.db does not exist" in v.detail


# -- the seed claims ---------------------------------------------------------------------------
def test_seed_claims_parse_and_formula_verdicts() -> None:
    rep = audit(SEEDS, None)
    v = {x.claim.id: x for x in rep.verdicts}
    assert len(v) >= 30
    # consistency of the published pairs
    assert v["bleeding-edge-52.3"].consistency.startswith("inconsistent ×9.4")
    assert v["sdpa-flash-0.87"].consistency.startswith("inconsistent ×9.3")
    assert v["fa3-60"].consistency.startswith("inconsistent ×9.3")
    assert v["phase4-6.42"].consistency == "consistent"  # 274.9 GFLOP / 42.79 ms = 6.42 TFLOPS
    assert v["phase4x-10.87"].consistency == "consistent"  # / 25.30 ms = 10.86 TFLOPS
    assert v["before-pipeline-16.61"].verdict == "untestable"
    # occupancy: 192 KiB of shared memory leaves one 256-thread block per SM, 8 of 64 warps
    assert (
        v["bleeding-edge-2-blocks-per-sm"].verdict == "refuted"
        and v["bleeding-edge-2-blocks-per-sm"].computed == 1
    )
    assert v["bleeding-edge-active-warps"].computed == 12.5
    assert v["h100-max-warps-per-sm"].computed == 64
    assert v["bleeding-edge-achieved-occupancy"].verdict == "refuted"
    assert v["bleeding-edge-register-limit"].verdict == "confirmed"
    assert v["phase4x-occupancy"].computed == 25.0 and v["phase4x-occupancy"].verdict == "refuted"
    # traffic at B16·H16·S2048·D64 fp16: Q is 64 MiB, S is 2 GiB
    assert v["phase3c-q-read"].computed == pytest.approx(64 * 2**20 / 1e9)
    assert "×32.0 if GB meant GiB" in v["phase3c-q-read"].detail
    assert v["phase3c-s-write"].computed == pytest.approx(2 * 2**30 / 1e9)
    assert v["phase4-projection-flops"].factor == pytest.approx(1.1e12 / (4 * 16 * 16 * 2048**2 * 64))
    assert v["smem-budget-64x64"].computed == 32 and v["bank-count"].computed == 32
    for ok in (
        "wgmma-16x-larger",
        "phase4x-grid",
        "phase4x-peak-fraction",
        "acc-o-bytes",
        "unfused-hbm-time",
    ):
        assert v[ok].verdict == "confirmed", ok
    # without a database every measured claim is untested, never confirmed
    assert all(
        x.verdict in ("untested", "untestable")
        for x in rep.verdicts
        if x.claim.kind in ("measured", "speedup")
    )
    for x in rep.verdicts:
        assert x.claim.source.file and x.claim.source.quote


def _seed_text(name: str) -> str | None:
    for root in (ROOT.parent, ROOT, ROOT.parent.parent):
        p = root / name
        if p.is_file():
            t = p.read_text(encoding="utf-8")
            try:  # files 000 and 001 are UTF-8 once decoded as Mac Roman; quotes use the repaired text
                return t + "\n" + t.encode("mac_roman").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                return t
    return None


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def test_seed_quotes_are_verbatim() -> None:
    norm = _norm
    checked = 0
    for c in load_claims(SEEDS):
        text = _seed_text(c.source.file)
        if text is None:
            continue
        for frag in c.source.quote.split(" … "):
            assert norm(frag) in norm(text), f"{c.id}: {frag!r} not in {c.source.file}"
        checked += 1
    if not checked:
        pytest.skip("the seed documents (shared/seeds/) are not present next to this checkout")


def test_seed_claims_against_synthetic_db(tmp_path: Path) -> None:
    from test_report import make_db

    db = make_db(tmp_path / "flashcore.db")
    rep = audit(SEEDS, db)
    v = {x.claim.id: x for x in rep.verdicts}
    assert v["sdpa-flash-0.87"].verdict == "refuted" and "understates" in v["sdpa-flash-0.87"].detail
    assert (
        v["bleeding-edge-52.3"].verdict == "untested"
        and "rejected in run r2" in v["bleeding-edge-52.3"].detail
    )
    assert "no backend 'sdpa-math'" in v["sdpa-math-0.87"].detail


# -- CLI ---------------------------------------------------------------------------------------
def _app():
    import typer

    from harness.cli.report import audit as audit_cmd
    from harness.cli.report import report

    app = typer.Typer()
    app.command()(report)
    app.command()(audit_cmd)
    return app


def test_cli_audit_prints_and_writes_page(tmp_path: Path) -> None:
    from test_report import make_db
    from typer.testing import CliRunner

    db = make_db(tmp_path / "flashcore.db")
    out = tmp_path / "dash"
    res = CliRunner().invoke(_app(), ["audit", str(SEEDS), "--db", str(db), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "bleeding-edge-52.3" in res.output and "inconsistent ×9.4" in res.output
    assert (out / "audit.html").exists()
    assert 'href="audit.html"' in (out / "index.html").read_text()
    page = (out / "audit.html").read_text()
    assert "inconsistent ×9.4" in page and "001_7d9054eb5aec3014.txt" in page


def test_cli_audit_bad_file_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    bad = write(tmp_path, "[[claim]]\nid = 'x'\nkind = 'vibes'\n" + SRC)
    res = CliRunner().invoke(_app(), ["audit", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "kind" in lines[0] and "allowed measured" in lines[0] and str(bad) in lines[0]
