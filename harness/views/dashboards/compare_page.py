"""The page comparing two runs cell by cell: time ratios with their noise verdicts, and what changed in the
environment between them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd

from harness.analysis.noise import DEFAULT_ALPHA, DEFAULT_THRESHOLD, Side, Spread, judge
from harness.views.dashboards import figures as F
from harness.views.dashboards.data import (
    Dataset,
    env_rows,
    num,
)
from harness.views.dashboards.html import (
    chip,
    empty,
    figure,
    h3,
    note,
    page,
    section,
    table,
)
from harness.views.dashboards.page_names import INDEX_PAGE, run_page_name, slug


def _mode_labelled(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of a timing mode other than isolated get it in their backend label, so a chart or table
    of two runs never puts the two modes of a cell in one place."""
    return cells.assign(backend=[b if m == "isolated" else f"{b} · {m}"
                                 for b, m in zip(cells["backend"], cells["timing_mode"], strict=True)])


def _timings(extra: Any, median_ms: Any, p10_ms: Any, p90_ms: Any) -> Side:
    """What the noise rule judges a stored row on: its samples less the event tare, else its spread."""
    from harness.analysis.verdict import net_samples

    samples = net_samples(SimpleNamespace(extra=extra)) if isinstance(extra, dict) else []  # it reads only extra
    return samples or Spread.of_percentiles(num(median_ms) or 0.0, num(p10_ms), num(p90_ms))


def compare_frame(ds: Dataset, a: str, b: str, *, threshold: float = DEFAULT_THRESHOLD,
                  alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """Cells passed and timed in both runs, with the time ratio and whether it is beyond noise (the
    rule of ``harness.analysis.noise``, as ``flashcore compare`` and the regression gate apply it)."""
    cols = [
        "backend",
        "problem_key",
        "shape",
        "order",
        "median_ms",
        "rel_spread",
        "tflops_eff",
        "max_abs_err",
        "p10_ms",
        "p90_ms",
        "timing_mode",
        "ratio_to_baseline",
        "extra",
    ]
    ca = _mode_labelled(ds.cells(a))
    cb = _mode_labelled(ds.cells(b))
    j = ca[ca["timed"]][cols].merge(
        cb[cb["timed"]][cols], on=["backend", "problem_key", "timing_mode"], suffixes=("_a", "_b")
    )
    if j.empty:
        return j.assign(
            shape=[],
            order=[],
            ratio=[],
            noise=[],
            significant=[],
            verdict=[],
            reason=[],
            p=[],
            spread_a=[],
            spread_b=[],
            tflops_a=[],
            tflops_b=[],
        )
    j = j.rename(
        columns={
            "shape_a": "shape",
            "order_a": "order",
            "tflops_eff_a": "tflops_a",
            "tflops_eff_b": "tflops_b",
        }
    )
    j["spread_a"] = (j["p90_ms_a"] - j["p10_ms_a"]) / j["median_ms_a"]
    j["spread_b"] = (j["p90_ms_b"] - j["p10_ms_b"]) / j["median_ms_b"]
    j["ratio"] = j["median_ms_b"] / j["median_ms_a"]
    j["noise"] = j["spread_a"].fillna(0) + j["spread_b"].fillna(0)  # shown beside the verdict
    changes = [
        judge(_timings(r["extra_a"], r["median_ms_a"], r["p10_ms_a"], r["p90_ms_a"]),
              _timings(r["extra_b"], r["median_ms_b"], r["p10_ms_b"], r["p90_ms_b"]),
              threshold=threshold, alpha=alpha)
        for r in j.to_dict("records")
    ]
    j["verdict"] = [c.verdict for c in changes]
    j["reason"] = [c.reason for c in changes]
    j["p"] = [c.p for c in changes]
    j["significant"] = [c.beyond_noise for c in changes]
    return j.drop(columns=["extra_a", "extra_b"])


def _compare_ratios(j: pd.DataFrame, a: str, b: str) -> list[str]:
    """The ratios to the baseline in both runs, with their intervals, and how far each moved."""
    if j.empty or "ratio_to_baseline_a" not in j:
        return []
    both = j[j["ratio_to_baseline_a"].notna() & j["ratio_to_baseline_b"].notna()]
    rows = []
    for r in sorted(both.to_dict("records"), key=lambda r: (r["backend"], r["order"])):
        x, y = r["ratio_to_baseline_a"], r["ratio_to_baseline_b"]
        if x.get("baseline") != y.get("baseline") or r["backend"].split(" · ")[0] == x.get("baseline"):
            continue
        rows.append([r["backend"], r["shape"], f"{x['ratio']:.3f} [{x['lo']:.3f}, {x['hi']:.3f}]",
                     f"{y['ratio']:.3f} [{y['lo']:.3f}, {y['hi']:.3f}]", f"{y['ratio'] / x['ratio'] - 1:+.2%}"])
    if not rows:
        return []
    return [h3("Ratios to the baseline in both runs (95% bootstrap intervals)"),
            table(["backend", "problem", f"before ({a})", f"after ({b})", "moved"], rows, numeric=["moved"])]


def compare_page(ds: Dataset, a: str, b: str) -> str:
    j = compare_frame(ds, a, b)
    ra, rb = ds.run(a), ds.run(b)
    sig = j[j["significant"]]
    recs = sorted(sig.to_dict("records"), key=lambda r: (-r["ratio"], r["backend"], r["order"]))
    rows = [
        [
            r["backend"],
            r["shape"],
            F.fmt(r["median_ms_a"]),
            F.fmt(r["median_ms_b"]),
            f"{r['ratio']:.3f}×",
            f"{r['noise']:.1%}",
            F.fmt(r["p"], ".2g"),
            chip("slower", "failed") if r["verdict"] == "slower" else chip("faster", "passed"),
        ]
        for r in recs
    ]
    ca, cb = _mode_labelled(ds.cells(a)), _mode_labelled(ds.cells(b))
    st = ca[["backend", "problem_key", "shape", "category"]].merge(
        cb[["backend", "problem_key", "category"]],
        on=["backend", "problem_key"],
        how="outer",
        suffixes=("_a", "_b"),
    )
    st = st[st["category_a"].fillna("absent") != st["category_b"].fillna("absent")]
    st_rows = []
    for r in st.to_dict("records"):
        shape = (
            r["shape"]
            if isinstance(r["shape"], str)
            else cb.loc[
                (cb["backend"] == r["backend"]) & (cb["problem_key"] == r["problem_key"]), "shape"
            ].iloc[0]
        )
        st_rows.append(
            [
                r["backend"],
                shape,
                chip(r["category_a"]) if isinstance(r["category_a"], str) else "absent",
                chip(r["category_b"]) if isinstance(r["category_b"], str) else "absent",
            ]
        )
    st_rows.sort(key=lambda x: (x[0], x[1]))
    env_a, env_b = dict(env_rows(ra)), dict(env_rows(rb))
    diff = [
        [k, env_a.get(k, ""), env_b.get(k, "")]
        for k in dict.fromkeys([*env_a, *env_b])
        if env_a.get(k, "") != env_b.get(k, "") and k not in ("created at", "finished at", "argv")
    ]
    fig = F.compare_heatmap(j, a, b)
    body = section(
        "compare",
        f"Compare {a} → {b}",
        note(
            f"before: {a} (suite {ra.get('suite')}, {ra.get('created_at')}, "
            f"commit {ra.get('git_commit') or '—'}); after: {b} (suite {rb.get('suite')}, "
            f"{rb.get('created_at')}, commit {rb.get('git_commit') or '—'}). Ratio = after median ÷ before "
            "median over cells that passed and were timed in both runs. A change counts when the median moved "
            f"by more than {DEFAULT_THRESHOLD:.0%} and the Mann-Whitney U test on the two cells' samples gives "
            f"p < {DEFAULT_ALPHA:g}; for cells recorded without samples, when it moved by more than "
            f"{DEFAULT_THRESHOLD:.0%} and beyond their combined relative spread (p90 − p10)/median."
        ),
        figure(fig, f"compare-{slug(a)}-{slug(b)}")
        if fig
        else empty("No cell passed and was timed in both runs."),
        h3(f"Changes beyond the noise ({len(sig)} of {len(j)} cells)"),
        table(
            ["backend", "problem", f"before ms ({a})", f"after ms ({b})", "ratio", "noise", "p", ""],
            rows,
            numeric=["before ms", "after ms", "ratio", "noise", "p"],
        ),
        *_compare_ratios(j, a, b),
        h3("Cells whose status changed"),
        table(["backend", "problem", f"before ({a})", f"after ({b})"], st_rows),
        h3("Environment differences"),
        table(["", f"before ({a})", f"after ({b})"], diff) if diff else empty("none recorded"),
    )
    nav = [("Index", INDEX_PAGE), (f"Run {a}", run_page_name(a)), (f"Run {b}", run_page_name(b))]
    return page(f"flashcore compare {a} → {b}", f"database {ds.db}", body, nav)


