"""Claims about serving engines (SGLang, vLLM): measured on the backends they run (``measured_on``),
with the mapping cited; parsing errors, the choice of backend, and the seeds' rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.audit import ClaimsError, audit, parse_claims
from harness.records.result import Result
from harness.spec.claims import load_claims
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "suites" / "claims" / "seeds.toml"
A = {"batch": 2, "heads_q": 8, "seqlen_q": 512, "head_dim": 64, "dtype": "float16", "causal": False}
PA = Problem(**A)
MAP = [{"url": "https://example.org/docs", "quote": "defaults to fa3"}]


def claim(**kw: object) -> dict:
    c = {"id": "srv", "backend": "server", "problem": dict(A), "tflops": 40.0,
         "source": {"file": "doc.txt", "quote": "q"}, "measured_on": ["fa3", "flashinfer-fa3"], "mapping": MAP}
    c.update(kw)
    return {"claim": [{k: v for k, v in c.items() if v is not None}]}


def _ms(tflops: float) -> float:
    return PA.flops() / (tflops * 1e12) * 1e3


def _cell(backend: str, status: str = "ok", tflops: float | None = None, reason: str = "") -> Result:
    r = Result.for_problem("r1", "seed-claims", backend, PA, status, reason, passed=True if status == "ok" else None)
    if tflops is not None:
        ms = _ms(tflops)
        r.median_ms, r.p10_ms, r.p90_ms = ms, ms * 0.99, ms * 1.01
    return r


def _db(tmp_path: Path, cells: list[Result]) -> Path:
    path = tmp_path / "flashcore.db"
    s = Store(path)
    s.create_run(RunInfo(run_id="r1", suite="seed-claims", created_at="2026-12-02T00:00:00+00:00"))
    for c in cells:
        s.add_result(c)
    s.close()
    return path


def _claims_file(tmp_path: Path, toml: str) -> Path:
    p = tmp_path / "claims.toml"
    p.write_text(toml)
    return p


SERVER_TOML = """
[[claim]]
id = "srv"
backend = "server"
problem = { batch = 2, heads_q = 8, seqlen_q = 512, head_dim = 64, dtype = "float16", causal = false }
tflops = 40
source = { file = "doc.txt", quote = "q" }
measured_on = ["fa3", "flashinfer-fa3"]
mapping = [{ url = "https://example.org/docs", quote = "defaults to fa3" }]
"""


def test_parses_the_mapping_and_keeps_the_order() -> None:
    (c,) = parse_claims(claim())
    assert c.measured_on == ("fa3", "flashinfer-fa3")
    assert c.mapping[0].url == "https://example.org/docs" and c.mapping[0].quote == "defaults to fa3"


@pytest.mark.parametrize("kw, must", [
    ({"mapping": None}, "needs 'mapping'"),
    ({"measured_on": None}, "'mapping' without 'measured_on'"),
    ({"measured_on": []}, "a non-empty list of backend names"),
    ({"measured_on": ["fa3", ""]}, "a non-empty list of backend names"),
    ({"measured_on": ["fa3", "fa3"]}, "names a backend twice"),
    ({"mapping": [{"url": "u"}]}, "each with both keys"),
    ({"mapping": [{"url": "u", "quote": "q", "when": "x"}]}, "each with both keys"),
    ({"mapping": "https://example.org"}, "a non-empty list of"),
])
def test_bad_mapping_is_one_line_error(kw: dict, must: str) -> None:
    with pytest.raises(ClaimsError) as e:
        parse_claims(claim(**kw))
    assert must in str(e.value) and "\n" not in str(e.value)


def test_mapping_is_refused_on_other_kinds() -> None:
    bad = {"claim": [{"id": "s", "kind": "speedup", "backend": "a", "baseline": "b", "problem": dict(A),
                      "claimed": 2.0, "source": {"file": "d", "quote": "q"}, "measured_on": ["fa3"],
                      "mapping": MAP}]}
    with pytest.raises(ClaimsError, match="unknown key"):
        parse_claims(bad)


def test_first_backend_with_a_passed_timed_cell_decides(tmp_path: Path) -> None:
    db = _db(tmp_path, [_cell("fa3", tflops=41.0), _cell("flashinfer-fa3", tflops=20.0)])
    (v,) = audit(_claims_file(tmp_path, SERVER_TOML), db).verdicts
    assert v.verdict == "confirmed" and v.measured_cell.backend == "fa3"
    assert v.detail.startswith("server measured as fa3, its first choice: ")


def test_falls_back_and_says_why_the_first_could_not(tmp_path: Path) -> None:
    why = "fa3 here is fa3_fwd_interface (the fa3-fwd wheel, built without fp16): allowed dtype bfloat16"
    db = _db(tmp_path, [_cell("fa3", "skipped", reason=why), _cell("flashinfer-fa3", tflops=20.0)])
    (v,) = audit(_claims_file(tmp_path, SERVER_TOML), db).verdicts
    assert v.verdict == "refuted" and v.measured_cell.backend == "flashinfer-fa3"
    assert "measured as flashinfer-fa3, choice 2 of 2" in v.detail
    assert "built without fp16" in v.detail  # the reason the preferred kernel did not decide
    assert "measured slower" in v.detail  # 40 claimed, 20 measured


def test_untested_when_no_backend_has_a_cell_with_every_reason(tmp_path: Path) -> None:
    db = _db(tmp_path, [_cell("fa3", "skipped", reason="no fp16 here"), _cell("sdpa-flash", tflops=30.0)])
    (v,) = audit(_claims_file(tmp_path, SERVER_TOML), db).verdicts
    assert v.verdict == "untested"
    assert "none of the backends server runs on" in v.detail
    assert "fa3: fa3 skipped in run r1: no fp16 here" in v.detail
    assert "flashinfer-fa3: no backend 'flashinfer-fa3'" in v.detail


def test_without_mapping_the_server_name_stays_untested(tmp_path: Path) -> None:
    text = SERVER_TOML.replace('measured_on = ["fa3", "flashinfer-fa3"]\n', "").replace(
        'mapping = [{ url = "https://example.org/docs", quote = "defaults to fa3" }]\n', "")
    db = _db(tmp_path, [_cell("fa3", tflops=41.0)])
    (v,) = audit(_claims_file(tmp_path, text), db).verdicts
    assert v.verdict == "untested" and "no backend 'server'" in v.detail


def test_seed_rows_of_sglang_and_vllm_map_to_hopper_prefill_kernels() -> None:
    from harness.backends import registry

    c = {x.id: x for x in load_claims(SEEDS)}
    for cid in ("sglang-40", "vllm-35"):
        assert c[cid].measured_on[0] == "fa3", cid  # both default to FlashAttention-3 on Hopper
        assert "flashinfer-fa3" in c[cid].measured_on, cid  # their FlashInfer alternative
        assert all(b in registry.names() for b in c[cid].measured_on), cid
        assert c[cid].mapping and all(m.url.startswith("https://") and m.quote for m in c[cid].mapping)
    assert any("sglang" in m.url for m in c["sglang-40"].mapping)
    assert any("vllm" in m.url for m in c["vllm-35"].mapping)


def test_seed_server_rows_get_verdicts_once_the_kernels_are_measured(tmp_path: Path) -> None:
    db = _db(tmp_path, [_cell("fa3", tflops=300.0)])
    v = {x.claim.id: x for x in audit(SEEDS, db).verdicts}
    for cid in ("sglang-40", "vllm-35"):
        assert v[cid].verdict == "refuted" and v[cid].measured_cell.backend == "fa3", v[cid].detail
        assert "measured faster" in v[cid].detail
