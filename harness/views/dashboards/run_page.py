"""The page of one run: overview, performance, roofline, correctness and profile, each per operation and
timing mode."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.views.dashboards import figures as F
from harness.views.dashboards.data import (
    CATEGORIES,
    OP_TITLES,
    STATUSES,
    Dataset,
    clock_summary,
    env_rows,
    modes_of,
    num,
    ops_of,
    shapes_in_order,
)
from harness.views.dashboards.gpus import gpu_section
from harness.views.dashboards.html import (
    Raw,
    chip,
    empty,
    esc,
    figure,
    h3,
    kv_table,
    note,
    page,
    section,
    table,
)
from harness.views.dashboards.page_names import INDEX_PAGE, slug


def pick_baseline(cells: pd.DataFrame, wanted: str) -> tuple[str | None, str]:
    """The requested baseline if it has passed timings in this run, else the first backend that does."""
    timed = sorted(cells.loc[cells["timed"], "backend"].unique())
    if wanted in timed:
        return wanted, ""
    if not timed:
        return None, ""
    return timed[
        0
    ], f"the requested baseline {wanted} has no passed, timed cell in this run; using {timed[0]}"


# -- run page ---------------------------------------------------------------------------------
def run_page(
    ds: Dataset, run_id: str, baseline: str, colors: dict[str, str], compares: list[tuple[str, str]]
) -> str:
    run = ds.run(run_id)
    cells = ds.cells(run_id)
    sid = slug(run_id)
    modes = modes_of(cells)
    ops = ops_of(cells)
    parts = [_overview(run, cells)]
    nav = [("Index", INDEX_PAGE), ("Overview", "#overview")]
    gpus = gpu_section(run, cells)  # only for a run of several workers
    if gpus:
        parts.append(gpus)
        nav.append(("GPUs", "#gpus"))
    if len(ops) > 1:  # the operation selector, and the operations' TFLOPS side by side
        parts.append(_op_selector(ops))
        parts.append(_side_by_side(cells, ops, colors, sid))
        nav.append(("Forward | backward", "#operations"))
    # performance and roofline once per operation and timing mode: the modes answer different questions
    # (docs/timing.md), a backward is not a forward, and a chart never mixes them
    for op in ops:
        by_op = cells[cells["op"] == op]
        for m in modes_of(by_op):
            suffix = "-".join(x for x, many in ((op, len(ops) > 1), (m, len(modes) > 1)) if many)
            sub = by_op[by_op["timing_mode"] == m]
            one = not suffix
            what = f"{OP_TITLES.get(op, op)}, {m}" if len(ops) > 1 else m
            parts.append(_op_view(op, len(ops) > 1, _performance(
                sub, baseline, colors, f"{sid}-{suffix}" if suffix else sid, m, one, suffix, what)))
            parts.append(_op_view(op, len(ops) > 1, _roofline(
                run, sub, colors, f"{sid}-{suffix}" if suffix else sid, m, one, suffix, what)))
            nav.append((f"Performance ({what})", f"#performance-{suffix}" if suffix else "#performance"))
            nav.append((f"Roofline ({what})", f"#roofline-{suffix}" if suffix else "#roofline"))
    ratios = _ratios(cells)
    if ratios:
        parts.append(ratios)
        nav.append(("Ratios", "#ratios"))
    parts.append(_correctness(cells, sid))
    nav.append(("Correctness", "#correctness"))
    prof = _profile(cells)
    if prof:
        parts.append(prof)
        nav.append(("Profile", "#profile"))
    for label, href in compares:
        nav.append((label, href))
    env = run.get("env") or {}
    sub = (
        f"suite {run.get('suite')} · {run.get('status')} · {run.get('created_at')} · "
        f"{env.get('gpu', 'GPU not recorded')} · commit {run.get('git_commit') or 'not recorded'} · "
        f"database {ds.db}"
    )
    return page(f"flashcore run {run_id}", sub, "".join(parts), nav)


def _overview(run: dict[str, Any], cells: pd.DataFrame) -> Raw:
    suites = sorted(set(cells["suite"].dropna()) | {run.get("suite") or ""} - {""})
    counts = []
    for b in sorted(cells["backend"].unique()):
        sub = cells[cells["backend"] == b]
        by = sub["status"].value_counts().to_dict()
        passed = int((sub["category"] == "passed").sum())
        counts.append([b, *[int(by.get(s, 0)) for s in STATUSES], passed, len(sub)])
    tot = cells["status"].value_counts().to_dict()
    counts.append(
        [
            Raw("<b>all</b>"),
            *[int(tot.get(s, 0)) for s in STATUSES],
            int((cells["category"] == "passed").sum()),
            len(cells),
        ]
    )
    skipped = _reasons(cells[cells["status"] == "skipped"])
    bad = _reasons(cells[cells["status"].isin(["failed", "rejected"])], with_status=True)
    return section(
        "overview",
        "Overview",
        h3("Environment"),
        kv_table(env_rows(run) + clock_summary(cells)),
        h3("Suites run"),
        note(", ".join(suites) or "none recorded"),
        h3("Cells per status"),
        note(
            "ok = ran and was timed; passed = ok and within the correctness tolerance on every input "
            "distribution. skipped, failed and rejected cells are never plotted as performance."
        ),
        table(["backend", *STATUSES, "passed", "total"], counts, numeric=[*STATUSES, "passed", "total"]),
        h3("Skipped, and why"),
        skipped,
        h3("Failed or rejected, and why"),
        bad,
    )


def _reasons(df: pd.DataFrame, with_status: bool = False) -> Raw:
    if df.empty:
        return empty("none")
    rows = []
    keys = ["backend", "status", "reason"] if with_status else ["backend", "reason"]
    df = df.assign(
        reason=df["reason"]
        .fillna("")
        .map(lambda s: s.strip().splitlines()[0] if s.strip() else "no reason recorded")
    )
    for key, grp in df.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        shapes = shapes_in_order(grp)
        shown = ", ".join(shapes[:4]) + (f" and {len(shapes) - 4} more" if len(shapes) > 4 else "")
        cols = list(key)
        if with_status:
            cols[1] = chip(cols[1])
        rows.append([*cols, len(grp), shown])
    return table([*keys, "cells", "problems"], rows, numeric=["cells"])


def _ratios(cells: pd.DataFrame) -> Raw | None:
    """Each backend's ratio to the run's baseline backend with its 95% bootstrap interval, per problem and
    timing mode (stored by the run when its suite names a ``[timing] baseline``)."""
    have = cells[cells["ratio_to_baseline"].notna()]
    if have.empty:
        return None
    rows = []
    for r in sorted(have.to_dict("records"), key=lambda r: (r["timing_mode"], r["order"], r["backend"])):
        x = r["ratio_to_baseline"]
        rows.append([r["backend"], r["shape"], r["timing_mode"], int(r["rounds"]) if num(r.get("rounds")) else 1,
                     f"{x['ratio']:.3f}", f"{x['lo']:.3f} – {x['hi']:.3f}", F.fmt(r["median_ms"])])
    bases = ", ".join(sorted({str(x.get("baseline")) for x in have["ratio_to_baseline"]}))
    return section(
        "ratios",
        f"Ratios to {bases}",
        note("Median time ÷ the baseline backend's median time on the same problem in the same timing mode "
             "(below 1: faster than the baseline), with a 95% percentile bootstrap interval over the two "
             "cells' samples (resampled independently). With [timing] rounds > 1 the samples of every visit "
             "of the rotation are pooled first."),
        table(["backend", "problem", "mode", "visits", "ratio", "95% interval", "median ms"], rows,
              numeric=["visits", "ratio", "median ms"]),
    )


def _mode_note(mode: str) -> str:
    if mode == "sustained":
        return ("Timing mode sustained: calls back to back under the power limiter, inputs rotated through "
                "buffers larger than 2× L2, no flush and no hold (what do_bench and a training step see).")
    return ("Timing mode isolated: L2 flushed and the GPU idle-held before every call, event tare taken off "
            "(the kernel with power headroom, close to what Nsight Compute sees).")


def _op_view(op: str, several: bool, part: Raw) -> Raw:
    """A section of one operation, shown or hidden by the operation selector."""
    return Raw(f'<div class="op-view" data-op="{esc(op)}">{part}</div>') if several else part


def _op_selector(ops: list[str]) -> Raw:
    """A selector of the operation whose sections the page shows (all by default); offline, no library."""
    options = '<option value="all">all operations</option>' + "".join(
        f'<option value="{esc(o)}">{esc(OP_TITLES.get(o, o))} ({esc(o)})</option>' for o in ops)
    script = ("<script>function fcOps(v){document.querySelectorAll('.op-view').forEach(function(e){"
              "e.style.display=(v==='all'||e.dataset.op===v)?'':'none';});}</script>")
    return Raw(f'<p class="note"><label>Operation: <select id="op-select" onchange="fcOps(this.value)">'
               f"{options}</select></label></p>{script}")


def _side_by_side(cells: pd.DataFrame, ops: list[str], colors: dict[str, str], sid: str) -> Raw:
    """Each operation's TFLOPS (isolated timing where there is one) in a column of its own, side by side."""
    cols = []
    for op in ops:
        sub = cells[cells["op"] == op]
        m = "isolated" if "isolated" in set(sub["timing_mode"]) else modes_of(sub)[0]
        fig = F.perf_panels(sub[sub["timing_mode"] == m], colors)
        body = figure(fig, f"ops-tflops-{sid}-{op}") if fig else empty("No passed, timed cell.")
        cols.append(f'<div class="op-column">{h3(f"{OP_TITLES.get(op, op).capitalize()} ({op}, {m})")}{body}</div>')
    grid = (f'<div class="side-by-side" style="display:grid;grid-template-columns:repeat({len(ops)},minmax(0,1fr));'
            f'gap:1em">{"".join(cols)}</div>')
    return section("operations", "Forward and backward side by side",
                   note("TFLOPS per operation with FlashAttention's FLOP counts: the backward is 2.5 × the "
                        "forward's FLOPs, forward + backward 3.5 ×. Only passed, timed cells are drawn."), Raw(grid))


def _performance(cells: pd.DataFrame, baseline: str, colors: dict[str, str], sid: str, mode: str = "isolated",
                 only: bool = True, suffix: str = "", what: str = "") -> Raw:
    excluded = cells[~cells["timed"]]
    ex_note = "Only passed, timed cells are drawn. " + (
        f"{len(excluded)} cell(s) are left out: "
        + ", ".join(f"{n} {c}" for c, n in excluded["category"].value_counts().sort_index().items())
        + " (see Correctness)."
        if len(excluded)
        else "No cell is left out."
    )
    parts: list[str] = [note(_mode_note(mode)), note(ex_note)]
    fig = F.perf_panels(cells, colors)
    parts.append(figure(fig, f"perf-tflops-{sid}") if fig else empty("No passed, timed cell in this run."))
    base, why = pick_baseline(cells, baseline)
    parts.append(h3(f"Speedup over {base or baseline}"))
    if why:
        parts.append(note(why))
    fig = F.speedup_heatmap(cells, base, colors) if base else None
    parts.append(figure(fig, f"perf-speedup-{sid}") if fig else empty("No baseline with passed timings."))
    parts.append(h3("Latency and its spread"))
    fig = F.latency_spread(cells, colors)
    parts.append(figure(fig, f"perf-latency-{sid}") if fig else empty("No passed, timed cell in this run."))
    return section("performance" if only else f"performance-{suffix or mode}", f"Performance ({what or mode} timing)",
                   *parts)


def _roofline(run: dict[str, Any], cells: pd.DataFrame, colors: dict[str, str], sid: str, mode: str = "isolated",
              only: bool = True, suffix: str = "", what: str = "") -> Raw:
    pt, pg = num(run.get("peak_tflops")), num(run.get("peak_gbs"))
    fig = F.roofline(cells, pt, pg, colors)
    txt = (
        "Roofs are this run's own measurements: the dense matmul rate (runs.peak_tflops) and the device copy "
        "bandwidth (runs.peak_gbs), not datasheet numbers. Intensity uses the minimum traffic (Q, K, V read "
        "and O written once; a backward also reads O and dO and writes dQ, dK, dV), so a point's distance "
        "below the memory roof is traffic beyond that minimum or latency not hidden. Decode cells (few query "
        "tokens against a long KV cache: minimum bytes are the cached K and V) sit far left, under the memory "
        "roof; their headline is GB/s and % of the copy bandwidth, shown in the hover."
    )
    return section(
        "roofline" if only else f"roofline-{suffix or mode}",
        f"Roofline ({what or mode} timing)",
        note(txt),
        figure(fig, f"roofline-{sid}") if fig else empty("No passed, timed cell in this run."),
    )


def _correctness(cells: pd.DataFrame, sid: str) -> Raw:
    fig = F.correctness_matrix(cells)
    legend = Raw(
        '<p class="legend">'
        + "".join(f"<span>{chip(F.CATEGORY_TEXT[c], c)} {esc(c)}</span>" for c in CATEGORIES)
        + "</p>"
    )
    bad = cells[cells["category"].isin(["failed", "rejected", "unchecked"])]
    rows = []
    for r in sorted(bad.to_dict("records"), key=lambda r: (r["backend"], r["order"])):
        rows.append(
            [
                r["backend"],
                r["shape"],
                chip(r["category"]),
                F.fmt(r["max_abs_err"], ".3g"),
                F.fmt(r["mean_abs_err"], ".3g"),
                F.fmt(r["tolerance"], ".3g"),
                f"{F.fmt(r['nan_count'], '.0f')}/{F.fmt(r['inf_count'], '.0f')}",
                (r.get("reason") or "").strip().splitlines()[0][:300]
                if (r.get("reason") or "").strip()
                else "",
            ]
        )
    return section(
        "correctness",
        "Correctness",
        note(
            "Each cell is checked against a float64 reference on several input distributions, with a "
            "tolerance "
            "scaled to PyTorch's own error; NaN/Inf and bit-exact repeatability are checked too."
        ),
        legend,
        figure(fig, f"correctness-{sid}") if fig else empty("No cells in this run."),
        h3("Cells that did not pass"),
        table(
            ["backend", "problem", "category", "max err", "mean err", "tolerance", "NaN/Inf", "reason"],
            rows,
            numeric=["max err", "mean err", "tolerance"],
        ),
    )


#: the profile table's columns: short header -> ncu metric (all metrics stay in the database)
PROFILE_COLUMNS = {
    "SM %": "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "tensor %": "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
    "DRAM %": "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "DRAM B/s": "dram__bytes.sum.per_second",
    "occupancy %": "sm__warps_active.avg.pct_of_peak_sustained_active",
    "regs": "launch__registers_per_thread",
    "smem B": "smem_per_block_bytes",
}
_KERNEL_CHARS = 48


def _profile(cells: pd.DataFrame) -> Raw | None:
    from harness.tools.profiling.compare import ratio as ncu_ratio
    from harness.tools.profiling.ncu import TIME, stall_summary

    rows: list[tuple[tuple[Any, ...], list[str]]] = []
    present: set[str] = set()
    for r in cells.to_dict("records"):
        extra = r.get("extra") or {}
        ncu = extra.get("ncu")
        if not isinstance(ncu, dict) or not ncu:
            continue
        # either {metric: value} or {kernel: {metric: value}}
        per_kernel = ncu if all(isinstance(v, dict) and "value" not in v for v in ncu.values()) else {"": ncu}
        h = (extra.get("harness") or {}).get("median_ms") or (r["median_ms"] if r["timed"] else None)
        call_ns = extra.get("ncu_call_ns")
        ratio = ncu_ratio(call_ns / 1e6 if isinstance(call_ns, (int, float)) else None, h)
        for kernel, metrics in sorted(per_kernel.items()):
            present.update(col for col, m in PROFILE_COLUMNS.items() if m in metrics)
            name = kernel or "—"
            short = name if len(name) <= _KERNEL_CHARS else name[: _KERNEL_CHARS - 1] + "…"
            stalls = stall_summary(metrics)
            cols = [r["backend"], r["shape"], short, _metric(metrics.get("launches_per_call")),
                    F.fmt(h) if h else "n/a", _metric(metrics.get(TIME)),
                    format(ratio, ".3f") if ratio is not None else ""]
            rows.append(((r["backend"], r["order"], name), cols + [metrics, stalls]))
    if not rows:
        return None
    shown = [c for c in PROFILE_COLUMNS if c in present]
    body = [cols[:7] + [_metric(cols[7].get(PROFILE_COLUMNS[c])) for c in shown] + [cols[8]]
            for _, cols in sorted(rows, key=lambda x: x[0])]
    legend = "; ".join(f"{c} = {PROFILE_COLUMNS[c]}" for c in shown)
    return section(
        "profile",
        "Profile (Nsight Compute)",
        note(
            "Per-kernel Nsight Compute metrics stored with each cell, beside the harness's own median "
            "(ncu replays kernels with its own clock control and cache flush). ncu/harness is the summed "
            "kernel time of one call over the harness median. Units as stored (profile runs: ns, bytes, "
            f"per second). Columns: {legend}; every collected metric is in the database."
        ),
        table(
            ["backend", "problem", "kernel", "launches/call", "harness median ms", "gpu__time_duration",
             "ncu/harness", *shown, "top stalls"],
            body,
            numeric=["launches/call", "harness median ms", "gpu__time_duration", "ncu/harness", *shown],
        ),
    )


def _metric(v: Any) -> str:
    if isinstance(v, dict) and "value" in v:
        return f"{_metric(v['value'])} {v.get('unit', '')}".strip()
    if num(v) is not None:
        return format(float(v), ".4g")
    if v is None:
        return ""
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


