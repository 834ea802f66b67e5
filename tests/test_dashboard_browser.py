"""Every generated page opened in headless Chromium, offline: no page error, no console error, no request
leaving file://, and every figure rendered. Screenshots land in the test's tmp dir (printed with -s).

Needs Debian's chromium (/usr/bin/chromium) and Playwright's Python package; never `playwright install`:
    apt-get install -y chromium && pip install playwright
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.analysis.audit import audit
from harness.views.dashboards import render, write_audit

CHROMIUM = os.environ.get("FLASHCORE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SEEDS = Path(__file__).resolve().parent.parent / "suites" / "claims" / "seeds.toml"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
)
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set FLASHCORE_CHROMIUM)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from test_report import make_db

    tmp = tmp_path_factory.mktemp("browser")
    db = make_db(tmp / "flashcore.db")
    out = tmp / "dashboards"
    render(db, None, out)
    write_audit(audit(SEEDS, db), out)
    return sorted(out.glob("*.html"))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as exc:  # noqa: BLE001 - a broken or incompatible Chromium is an environment problem, not a page bug
            pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {str(exc).splitlines()[0]}")
        yield b
        b.close()


def test_pages_exist(pages: list[Path]) -> None:
    assert {p.name for p in pages} == {
        "index.html",
        "run-r1.html",
        "run-r2.html",
        "compare-r1-vs-r2.html",
        "audit.html",
    }


def test_every_page_renders_offline(pages: list[Path], browser, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for path in pages:
        ctx = browser.new_context(offline=True, viewport={"width": 1500, "height": 1000})
        page = ctx.new_page()
        errors: list[str] = []
        external: list[str] = []
        # the handlers fire during this iteration's goto, so binding this iteration's lists is what we want
        page.on("pageerror", lambda e, errors=errors: errors.append(f"pageerror: {e}"))
        page.on(
            "console",
            lambda m, errors=errors: (
                errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        page.on(
            "request",
            lambda r, external=external: (
                external.append(r.url)
                if not r.url.startswith(("file:", "data:", "blob:", "about:"))
                else None
            ),
        )
        page.goto(path.as_uri(), wait_until="load")
        n_figs = page.locator(".plotly-graph-div").count()
        if n_figs:
            page.wait_for_function(
                "n => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                ".filter(d => d.querySelector('.main-svg')).length === n",
                arg=n_figs,
                timeout=30000,
            )
        rendered = page.evaluate(
            "Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".filter(d => d.querySelector('.main-svg')).length"
        )
        # each drawn figure has data in it, not an empty frame
        traces = page.evaluate(
            "Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => (d.data || []).length)"
        )
        shot = shots / (path.stem + ".png")
        page.screenshot(path=str(shot), full_page=True)
        ctx.close()
        print(f"{path.name}: {n_figs} figures, screenshot {shot}")
        assert not errors, f"{path.name}: {errors}"
        assert not external, f"{path.name} requested {external}"
        assert rendered == n_figs, f"{path.name}: {rendered} of {n_figs} figures rendered"
        assert all(t > 0 for t in traces), f"{path.name}: a figure without data {traces}"
        assert shot.stat().st_size > 10_000
    names = {p.name: p for p in pages}
    assert "run-r2.html" in names


def test_hover_label_appears(pages: list[Path], browser) -> None:
    """Moving the mouse over a point shows the hover label with backend, shape, ms, TFLOPS and error."""
    path = next(p for p in pages if p.name == "run-r1.html")
    ctx = browser.new_context(offline=True, viewport={"width": 1500, "height": 1000})
    page = ctx.new_page()
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_selector("#perf-latency-r1 .main-svg")
    page.locator("#perf-latency-r1").scroll_into_view_if_needed()
    point = page.locator("#perf-latency-r1 .scatterlayer .point").first
    box = point.bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#perf-latency-r1 .hoverlayer .hovertext", timeout=5000)
    text = page.locator("#perf-latency-r1 .hoverlayer .hovertext").first.text_content() or ""
    ctx.close()
    for word in ("ms", "TFLOPS", "max err", "B2·H8·S"):
        assert word in text, text
