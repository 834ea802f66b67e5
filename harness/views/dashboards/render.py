"""Write the dashboards: a page per run, a comparison page, the index, and the audit page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.views.dashboards.compare_page import compare_page
from harness.views.dashboards.data import ReportError, compare_pair, load, select_runs
from harness.views.dashboards.figures import palette
from harness.views.dashboards.index_page import index_page
from harness.views.dashboards.page_names import AUDIT_PAGE, INDEX_PAGE, compare_page_name, run_page_name
from harness.views.dashboards.run_page import run_page

if TYPE_CHECKING:
    from harness.analysis.audit import AuditReport

DEFAULT_OUT = Path("results/local/dashboards")  # ignored by git; the committed dashboards/: nox -s dashboards


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _out(out_dir: str | Path) -> Path:
    """The output folder, with the plotly.js that every page loads from beside it (offline, one copy)."""
    from harness.views.dashboards.html import PLOTLY_FILE, plotly_js

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        js = out / PLOTLY_FILE
        if not js.is_file() or js.read_text(encoding="utf-8") != plotly_js():
            _write(js, plotly_js())
    except OSError as exc:
        raise ReportError(f"cannot write to the output folder {out}: {exc.strerror}") from None
    return out


def render(
    db: str | Path,
    run_ids: Sequence[str] | None = None,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    baseline: str = "sdpa-flash",
    compare: Sequence[str] | None = None,
) -> list[Path]:
    """Render one offline HTML page per selected run (all runs when ``run_ids`` is None), a comparison page
    (``compare`` = two run ids or commits; by default the latest two selected runs of one suite), and
    ``index.html`` linking them. Returns the written paths, index last. Raises ReportError (one line) for a
    missing or empty database or an unknown run."""
    ds = load(db)
    selected = select_runs(ds, run_ids)
    out = _out(out_dir)
    colors = palette(ds.backends())
    pair = compare_pair(ds, compare, selected)
    written: list[Path] = []
    for rid in selected:
        links = (
            [(f"Compare {pair[0]} → {pair[1]}", compare_page_name(*pair))]
            if pair and rid in pair
            else []
        )
        written.append(
            _write(out / run_page_name(rid), run_page(ds, rid, baseline, colors, links))
        )
    if pair:
        written.append(_write(out / compare_page_name(*pair), compare_page(ds, *pair)))
    written.append(_write(out / INDEX_PAGE, index_page(out, ds, f"database {ds.db}")))
    return written


def write_audit(report: AuditReport, out_dir: str | Path = DEFAULT_OUT) -> list[Path]:
    """Write the audit page and refresh the index so it links it."""
    from harness.views.dashboards.audit_page import audit_page

    out = _out(out_dir)
    written = [_write(out / AUDIT_PAGE, audit_page(report))]
    try:
        ds = load(report.db) if report.db is not None else None
        note = f"database {report.db}"
    except ReportError as exc:  # the audit runs without measurements; the index says so
        ds, note = None, str(exc)
    written.append(_write(out / INDEX_PAGE, index_page(out, ds, note)))
    return written
