"""The index of a dashboards folder: its runs, comparisons, claims audit and the folders of other databases."""

from __future__ import annotations

from pathlib import Path

from harness.views.dashboards.data import (
    STATUSES,
    Dataset,
)
from harness.views.dashboards.html import (
    Raw,
    empty,
    esc,
    link,
    page,
    section,
    table,
)
from harness.views.dashboards.page_names import AUDIT_PAGE, INDEX_PAGE, run_page_name


def index_page(out_dir: Path, ds: Dataset | None, db_note: str) -> str:
    parts: list[str] = []
    if ds is not None:
        rows = []
        for run in reversed(ds.runs.to_dict("records")):
            rid = run["run_id"]
            cells = ds.cells(rid)
            name = run_page_name(rid)
            have = (out_dir / name).exists()
            counts = cells["status"].value_counts().to_dict()
            rows.append(
                [
                    link(name, rid) if have else rid,
                    run.get("suite", ""),
                    run.get("created_at", ""),
                    (run.get("env") or {}).get("gpu", ""),
                    run.get("git_commit") or "",
                    *[int(counts.get(s, 0)) for s in STATUSES],
                    Raw(
                        " · ".join(
                            f'<a href="{esc(name)}#{a}">{esc(a)}</a>'
                            for a in ("overview", "performance", "roofline", "correctness")
                        )
                    )
                    if have
                    else "",
                ]
            )
        parts.append(
            section(
                "runs",
                "Runs",
                table(
                    ["run", "suite", "created", "GPU", "commit", *STATUSES, "sections"],
                    rows,
                    numeric=STATUSES,
                ),
            )
        )
    comps = sorted(p.name for p in out_dir.glob("compare-*.html"))
    parts.append(
        section(
            "compare",
            "Comparisons",
            Raw(
                "<ul>"
                + "".join(
                    f"<li>{link(c, c[len('compare-') : -len('.html')].replace('-vs-', ' → '))}</li>"
                    for c in comps
                )
                + "</ul>"
            )
            if comps
            else empty("none (needs two runs of one suite, or --compare A B)"),
        )
    )
    folders = sorted(p.parent.name for p in out_dir.glob(f"*/{INDEX_PAGE}"))
    if folders:  # other databases' dashboards, each written into a folder of this one
        parts.append(section("databases", "Other databases", Raw(
            "<ul>" + "".join(f"<li>{link(f'{d}/{INDEX_PAGE}', d)}</li>" for d in folders) + "</ul>")))
    audit = out_dir / AUDIT_PAGE
    parts.append(
        section(
            "audit",
            "Claims audit",
            Raw(f"<p>{link(AUDIT_PAGE, 'claims audit')}</p>")
            if audit.exists()
            else empty("not run yet: flashcore audit suites/claims/seeds.toml"),
        )
    )
    return page("flashcore dashboards", db_note, "".join(parts), plotly=False)
