"""Dashboards from a synthetic database built with the Store API: the pages are offline, every figure
is present, failed or rejected cells never appear as performance, errors are one line, output is
deterministic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.analysis.stats import summarize
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store
from harness.views.dashboards import ReportError, render
from harness.views.dashboards.compare_page import compare_frame
from harness.views.dashboards.data import load

ENV = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "capability": "9.0",
    "sm_count": 132,
    "driver": "570.86.15",
    "cuda": "12.8",
    "torch": "2.8.0+cu128",
    "python": "3.11.7",
    "git_commit": "",
    "packages": {"torch": "2.8.0", "flash_attn_3": "3.0.0b1"},
    "clocks": {
        "sm_mhz": 1980,
        "mem_mhz": 2619,
        "sm_max_mhz": 1980,
        "temp_c": 41,
        "power_w": 120.0,
        "throttle": [],
    },
}
#: backends whose rate (TFLOPS at S=2048) the synthetic timings follow
RATES = {"sdpa-flash": 330.0, "fa3": 480.0, "naive": 9.0}
# a backend name that only ever has a rejected (impossibly fast) cell: it must never reach a perf figure
REJECTED = "flashcore-bleeding-edge"
FAILED = "flashcore-phase4"  # wrong outputs
SKIPPED = "flex"


def _problems() -> list[Problem]:
    return [
        Problem(batch=2, heads_q=8, seqlen_q=s, head_dim=d, dtype="float16", causal=c)
        for d in (64, 128)
        for c in (False, True)
        for s in (512, 1024, 2048)
    ]


def _samples(ms: float, n: int = 30, spread: float = 0.04) -> list[float]:
    # deterministic, spread evenly over ±spread/2 around ms
    return [ms * (1 - spread / 2 + spread * i / (n - 1)) for i in range(n)]


def _timed(r: Result, p: Problem, ms: float, peak: float, spread: float = 0.04) -> Result:
    s = summarize(_samples(ms, spread=spread))
    r.median_ms, r.p10_ms, r.p90_ms, r.rel_spread, r.n_samples = s.median, s.p10, s.p90, s.rel_spread, s.n
    r.tflops = p.flops() / (s.median * 1e-3) / 1e12
    r.gbs = p.min_bytes() / (s.median * 1e-3) / 1e9
    r.pct_peak = 100 * r.tflops / peak
    r.timing_method = "cuda-events+l2flush"
    r.extra["samples_ms"] = [round(x, 6) for x in _samples(ms, spread=spread)]
    r.extra["clocks_before"] = dict(ENV["clocks"], sm_mhz=1980)
    r.extra["clocks_after"] = dict(ENV["clocks"], sm_mhz=1755, temp_c=63, throttle=["sw_power_cap"])
    return r


def _errors(r: Result, max_err: float = 4e-4) -> Result:
    r.max_abs_err, r.mean_abs_err, r.rel_l2_err, r.tolerance = max_err, max_err / 8, 1e-3, 2e-3
    r.torch_max_abs_err, r.nan_count, r.inf_count = 1e-3, 0, 0
    r.deterministic, r.determinism_runs, r.determinism_mismatches = True, 10, 0
    r.timed_outputs_ok = True
    return r


def make_db(path: Path, *, slow_fa3_in_r2: float = 1.3, ncu: bool = True) -> Path:
    """Two runs of one suite: ok, skipped, failed and rejected cells, ncu metrics on some cells."""
    store = Store(path)
    for i, (rid, commit) in enumerate((("r1", "aaaa1111"), ("r2", "bbbb2222"))):
        peak, bw = 700.0, 3000.0
        store.create_run(
            RunInfo(
                run_id=rid,
                suite="sweep",
                created_at=f"2025-01-0{i + 1}T00:00:00+00:00",
                git_commit=commit,
                argv="flashcore run --suite sweep",
                env=dict(ENV, git_commit=commit),
                peak_tflops=peak,
                peak_gbs=bw,
                status="complete",
                finished_at=f"2025-01-0{i + 1}T00:10:00+00:00",
            )
        )
        for p in _problems():
            for backend, rate in RATES.items():
                if backend == "naive" and p.seqlen_q == 2048:
                    store.add_result(
                        Result.for_problem(
                            rid,
                            "sweep",
                            backend,
                            p,
                            "failed",
                            "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB",
                            passed=False,
                            error_text="torch.OutOfMemoryError: CUDA out of memory",
                        )
                    )
                    continue
                eff = rate * (p.seqlen_q / 2048) ** 0.3
                if backend == "fa3" and rid == "r2":
                    eff /= slow_fa3_in_r2  # a regression the compare page must flag
                r = _errors(
                    Result.for_problem(rid, "sweep", backend, p, "ok", passed=True, seed_bounds_ok=True)
                )
                r = _timed(r, p, p.flops() / (eff * 1e12) * 1e3, peak)
                if ncu and backend == "fa3" and rid == "r2" and p.head_dim == 64:
                    r.extra["ncu"] = {
                        "flash_fwd_kernel": {
                            "sm__throughput.avg.pct_of_peak_sustained_elapsed": 71.25,
                            "dram__throughput.avg.pct_of_peak_sustained_elapsed": 22.5,
                            "gpu__time_duration.sum": {"value": round(r.median_ms * 1000, 2), "unit": "us"},
                        }
                    }
                store.add_result(r)
            store.add_result(
                Result.for_problem(
                    rid, "sweep", SKIPPED, p, "skipped", "flex attention needs triton (not installed)"
                )
            )
            bad = _errors(
                Result.for_problem(
                    rid,
                    "sweep",
                    FAILED,
                    p,
                    "failed",
                    "normal inputs, trial 0: max error 0.41 > tolerance 0.002",
                    passed=False,
                ),
                max_err=0.41,
            )
            bad.deterministic = False
            bad.determinism_mismatches = 3
            store.add_result(bad)
            rej = _errors(
                Result.for_problem(
                    rid,
                    "sweep",
                    REJECTED,
                    p,
                    "rejected",
                    "9800 TFLOPS is above 1.05 × the matmul peak measured in this run",
                    passed=False,
                )
            )
            store.add_result(_timed(rej, p, p.flops() / 9.8e15 * 1e3, peak))  # impossibly fast, stored anyway
    store.close()
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_db(tmp_path_factory.mktemp("db") / "flashcore.db")


@pytest.fixture(scope="module")
def rendered(db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("dash")
    return out, render(db, None, out)


def figure_divs(html: str) -> list[str]:
    return re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', html)


def figure_json(html: str, div_id: str) -> list[dict]:
    """The data list passed to Plotly.newPlot for one div."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*(\[.*?\]),\s*\{"', html, re.DOTALL)
    assert m, f"no newPlot call for {div_id}"
    return json.loads(m.group(1))


# -- pages ------------------------------------------------------------------------------------
def test_every_page_written_and_indexed(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    names = sorted(p.name for p in paths)
    assert names == ["compare-r1-vs-r2.html", "index.html", "run-r1.html", "run-r2.html"]
    index = (out / "index.html").read_text()
    for n in names[:1] + names[2:]:
        assert f'href="{n}' in index
    for anchor in ("overview", "performance", "roofline", "correctness"):
        assert f'href="run-r2.html#{anchor}"' in index


def test_index_links_the_dashboards_of_other_databases_in_its_folders(db: Path, tmp_path: Path) -> None:
    render(db, ["r1"], tmp_path / "h200")  # another GPU's database, written into a folder of this one
    render(db, ["r2"], tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert 'href="h200/index.html"' in index
    assert "Other databases" not in (tmp_path / "h200" / "index.html").read_text()


def without_bundle(html: str) -> str:
    """The page minus its one local script tag, plotly.min.js beside it."""
    return html.replace('<script type="text/javascript" src="plotly.min.js"></script>', "<script></script>", 1)


def test_pages_are_offline(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        full = p.read_text()
        html = without_bundle(full)
        assert len(html) < len(full) or p.name == "index.html"
        assert "http://" not in html and "https://" not in html, p
        assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE), p
        assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?(https?:)?//", html, re.IGNORECASE), p
        assert not re.search(r"@import\s+url\(\s*[\"']?https?:", html, re.IGNORECASE), p
        assert "cdn.plot.ly" not in html and "cdn.jsdelivr" not in html, p
        if p.name != "index.html":
            # every page with figures loads the one local copy of plotly.js
            assert full.count('src="plotly.min.js"') == 1, p
    js = (paths[0].parent / "plotly.min.js").read_text()
    assert "plotly.js v" in js[:300]


def test_run_page_has_each_section_and_figure(rendered: tuple[Path, list[Path]]) -> None:
    out, _ = rendered
    html = (out / "run-r2.html").read_text()
    for anchor in ("overview", "performance", "roofline", "correctness", "profile"):
        assert f'<section id="{anchor}">' in html
    assert figure_divs(html) == [
        "perf-tflops-r2",
        "perf-speedup-r2",
        "perf-latency-r2",
        "roofline-r2",
        "correctness-r2",
    ]
    # overview: environment, status counts, skipped backend and its reason
    assert "NVIDIA H100 80GB HBM3" in html and "570.86.15" in html and "bbbb2222" in html
    assert "flex attention needs triton (not installed)" in html
    assert "1755–1980 MHz" in html and "sw_power_cap" in html
    # profile: the ncu metrics beside the harness median
    assert "sm__throughput.avg.pct_of_peak_sustained_elapsed" in html and "71.25" in html
    # r1 has no ncu metrics: no profile section
    assert '<section id="profile">' not in (out / "run-r1.html").read_text()


def test_failed_and_rejected_cells_never_in_performance_figures(rendered: tuple[Path, list[Path]]) -> None:
    out, _ = rendered
    html = (out / "run-r2.html").read_text()
    for div in ("perf-tflops-r2", "perf-speedup-r2", "perf-latency-r2", "roofline-r2"):
        text = json.dumps(figure_json(html, div))
        assert REJECTED not in text and FAILED not in text and SKIPPED not in text, div
        assert "9800" not in text, div
    # naive failed (out of memory) at S2048: no naive point there
    for trace in figure_json(html, "perf-tflops-r2"):
        if trace.get("name", "").startswith("naive"):
            assert 2048 not in trace["x"]
    # the correctness matrix does show them, as failed / rejected
    corr = json.dumps(figure_json(html, "correctness-r2"))
    assert REJECTED in corr and FAILED in corr and "REJECT" in corr and "FAIL" in corr


def test_hover_shows_backend_shape_ms_tflops_error(rendered: tuple[Path, list[Path]]) -> None:
    out, _ = rendered
    html = (out / "run-r2.html").read_text()
    for div in ("perf-tflops-r2", "perf-latency-r2", "roofline-r2", "perf-speedup-r2"):
        hovers = [
            h
            for t in figure_json(html, div)
            for h in _flat(t.get("hovertext") or [])
            if h and h.startswith("<b>") and " ms" in h
        ]
        assert hovers, div
        h = hovers[0]
        assert re.search(r"<b>[\w-]+</b><br>B\d+·H\d+·S\d+·D\d+ fp16", h), h
        assert "ms" in h and "TFLOPS" in h and "max err" in h, h


def _flat(x: list) -> list:
    return [y for v in x for y in (_flat(v) if isinstance(v, list) else [v])]


def test_speedup_baseline_and_values_from_database(rendered: tuple[Path, list[Path]], db: Path) -> None:
    out, _ = rendered
    html = (out / "run-r1.html").read_text()
    (hm,) = figure_json(html, "perf-speedup-r1")
    assert hm["y"][0] == "sdpa-flash"
    i = hm["y"].index("fa3")
    # fa3 is 480/330 faster than sdpa-flash in r1 on every problem where both passed
    assert all(t == f"{480 / 330:.2f}×" for t in hm["text"][i] if t)


def test_baseline_fallback_when_missing(db: Path, tmp_path: Path) -> None:
    render(db, ["r1"], tmp_path, baseline="no-such-backend")
    html = (tmp_path / "run-r1.html").read_text()
    assert "requested baseline no-such-backend has no passed, timed cell" in html
    (hm,) = figure_json(html, "perf-speedup-r1")
    assert hm["y"][0] == "fa3"  # first backend with passed timings, alphabetically


def test_roofline_uses_the_runs_measured_peaks(rendered: tuple[Path, list[Path]]) -> None:
    out, _ = rendered
    traces = figure_json((out / "run-r1.html").read_text(), "roofline-r1")
    roof = traces[0]
    assert roof["name"] == "roof (measured)"
    assert max(roof["y"]) == pytest.approx(700.0)
    ridge = 700e12 / 3000e9
    assert ridge in roof["x"]


def test_compare_flags_changes_beyond_noise(db: Path, rendered: tuple[Path, list[Path]]) -> None:
    ds = load(db)
    j = compare_frame(ds, "r1", "r2")
    fa3 = j[j["backend"] == "fa3"]
    assert len(fa3) == 12 and fa3["significant"].all() and (fa3["ratio"].round(3) == 1.3).all()
    assert not j[j["backend"] == "sdpa-flash"]["significant"].any()  # unchanged within noise
    html = (rendered[0] / "compare-r1-vs-r2.html").read_text()
    assert "Changes beyond the noise (12 of " in html
    assert figure_divs(html) == ["compare-r1-r2"]


def test_compare_by_commit_and_errors(db: Path, tmp_path: Path) -> None:
    paths = render(db, ["r2"], tmp_path, compare=["bbbb", "aaaa1111"])
    assert tmp_path / "compare-r2-vs-r1.html" in paths
    with pytest.raises(ReportError, match="exactly two"):
        render(db, None, tmp_path, compare=["r1"])
    with pytest.raises(ReportError, match="neither a run id nor a commit"):
        render(db, None, tmp_path, compare=["r1", "zzzz"])
    with pytest.raises(ReportError, match="no run 'nope'"):
        render(db, ["nope"], tmp_path)


# -- errors ------------------------------------------------------------------------------------
def test_missing_database_is_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(ReportError) as e:
        render(missing, None, tmp_path / "out")
    msg = str(e.value)
    assert str(missing) in msg and "flashcore run" in msg and "\n" not in msg
    assert not missing.exists()  # reading never creates a database


def test_empty_database_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    Store(path).close()
    with pytest.raises(ReportError, match="holds no runs") as e:
        render(path, None, tmp_path / "out")
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    s = Store(path)
    s.create_run(RunInfo(run_id="x", suite="smoke", created_at="2025-01-01T00:00:00+00:00"))
    s.close()
    with pytest.raises(ReportError, match="no results"):
        render(path, None, tmp_path / "out")


def test_not_a_database_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ReportError, match="not a flashcore results database"):
        render(path, None, tmp_path / "out")


def test_cli_report_errors_are_one_line(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from harness.cli.report import audit, report

    app = typer.Typer()
    app.command()(report)
    app.command()(audit)
    res = CliRunner().invoke(
        app, ["report", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert (
        len(lines) == 1
        and lines[0].startswith("flashcore: error: results database")
        and "Traceback" not in res.output
    )


def test_cli_report_writes_pages(db: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from harness.cli.report import audit, report

    app = typer.Typer()
    app.command()(report)
    app.command()(audit)
    res = CliRunner().invoke(
        app, ["report", "--db", str(db), "--out", str(tmp_path), "--run", "r1", "--run", "r2"]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 4 page(s)" in res.output
    assert (tmp_path / "index.html").exists()


# -- determinism -------------------------------------------------------------------------------
def test_output_is_deterministic(db: Path, tmp_path: Path) -> None:
    a = render(db, None, tmp_path / "a")
    b = render(db, None, tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    again = render(db, None, tmp_path / "a")
    for pa, pb in zip(a, again, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_the_default_comparison_skips_profile_runs_which_have_no_medians(db: Path, tmp_path: Path) -> None:
    import shutil

    from harness.views.dashboards.data import compare_pair

    copy = tmp_path / "with-profiles.db"
    shutil.copy(db, copy)
    with Store(copy) as store:
        for rid in ("p1", "p2"):  # two later profile runs of one suite
            store.create_run(RunInfo(run_id=rid, suite="profile:sweep", created_at=f"2025-02-0{rid[1]}T00:00:00+00:00",
                                     git_commit="", argv="flashcore profile", env={}))
            store.add_result(Result.for_problem(rid, "profile:sweep", "fa3", _problems()[0], "ok"))
    ds = load(copy)
    assert compare_pair(ds, None, list(ds.runs["run_id"])) == ("r1", "r2")
