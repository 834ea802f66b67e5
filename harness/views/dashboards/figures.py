"""Plotly figures. Each takes frames from harness.views.dashboards.data and returns a Figure (or None when there
is nothing to draw). Performance figures take only passed, timed cells: a failed or rejected cell is never
drawn as a speed. Data go in as plain lists, so the HTML holds readable numbers, not base64 blobs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.views.dashboards.data import CATEGORIES, num, shapes_in_order

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
)
CATEGORY_COLORS = {
    "passed": "#2f855a",
    "unchecked": "#4a5568",
    "skipped": "#8a99ab",
    "failed": "#c53030",
    "rejected": "#702459",
}
CATEGORY_TEXT = {
    "passed": "pass",
    "unchecked": "no oracle",
    "skipped": "skip",
    "failed": "FAIL",
    "rejected": "REJECT",
}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
LAYOUT = {
    "template": "plotly_white",
    "font": {"size": 12},
    "hoverlabel": {"align": "left"},
    "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
}


def palette(backends: Sequence[str]) -> dict[str, str]:
    """One colour per backend, stable across every page of a render."""
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(sorted(backends))}


def fmt(x: Any, spec: str = ".4g", none: str = "—") -> str:
    v = num(x)
    return none if v is None else format(v, spec)


def tflops_text(t: Any) -> str:
    v = num(t)
    if v is None:
        return "—"
    return f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def err_text(r: dict[str, Any]) -> str:
    parts = [f"max err {fmt(r.get('max_abs_err'), '.3g')}", f"mean {fmt(r.get('mean_abs_err'), '.3g')}"]
    if num(r.get("tolerance")) is not None:
        parts.append(f"tol {fmt(r.get('tolerance'), '.3g')}")
    return ", ".join(parts)


def hover(r: dict[str, Any], *extra: str) -> str:
    """Backend, shape, ms, TFLOPS and error of one cell; ms and TFLOPS only for a passed, timed cell."""
    lines = [f"<b>{r['backend']}</b>", r["shape"]]
    if r.get("timing_mode"):
        lines.append(f"timing mode: {r['timing_mode']}" + (f", {int(r['rounds'])} visits pooled"
                                                          if num(r.get("rounds")) and r["rounds"] > 1 else ""))
    if r.get("timed"):
        lines.append(
            f"median {fmt(r['median_ms'])} ms (p10–p90 {fmt(r.get('p10_ms'))}–{fmt(r.get('p90_ms'))}, "
            f"n={fmt(r.get('n_samples'), '.0f')})"
        )
        lines.append(
            f"{tflops_text(r['tflops_eff'])} TFLOPS"
            + (f" ({fmt(r.get('pct_peak'), '.1f')}% of measured peak)" if num(r.get("pct_peak")) else "")
        )
    else:
        lines.append(
            f"ms: n/a — {r['category']}" + (f": {_short(r.get('reason'))}" if r.get("reason") else "")
        )
        lines.append("TFLOPS: n/a (only passed cells are timed results)")
    lines.append(err_text(r))
    lines.extend(e for e in extra if e)
    return "<br>".join(lines)


def _short(s: Any, n: int = 90) -> str:
    s = str(s or "").strip().splitlines()[0] if s else ""
    return s if len(s) <= n else s[: n - 1] + "…"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.to_dict("records")


# -- performance ------------------------------------------------------------------------------
def perf_panels(cells: pd.DataFrame, colors: dict[str, str]) -> go.Figure | None:
    """TFLOPS vs seqlen, one panel per (head_dim, causal, dtype), one line per backend (and B·H config)."""
    df = cells[cells["timed"]]
    if df.empty:
        return None
    keys = sorted(
        {
            (int(d), bool(c), str(t))
            for d, c, t in zip(df["head_dim"], df["causal"], df["dtype"], strict=True)
        },
        key=lambda k: (k[2], k[1], k[0]),
    )
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    titles = [f"D{d} · {'causal' if c else 'full'} · {t}" for d, c, t in keys]
    fig = make_subplots(
        rows=nrows,
        cols=ncols,
        subplot_titles=titles,
        horizontal_spacing=0.07,
        vertical_spacing=min(0.12, 0.5 / max(nrows, 1)),
    )
    shown: set[str] = set()
    for i, (d, c, t) in enumerate(keys):
        row, col = i // ncols + 1, i % ncols + 1
        panel = df[(df["head_dim"] == d) & (df["causal"].astype(bool) == c) & (df["dtype"] == t)]
        configs = sorted(
            {
                (int(b), int(h), int(k))
                for b, h, k in zip(panel["batch"], panel["heads_q"], panel["heads_kv"], strict=True)
            }
        )
        for backend in sorted(panel["backend"].unique()):
            for j, (b, h, k) in enumerate(configs):
                sel = panel[
                    (panel["backend"] == backend)
                    & (panel["batch"] == b)
                    & (panel["heads_q"] == h)
                    & (panel["heads_kv"] == k)
                ].sort_values("seqlen_q")
                if sel.empty:
                    continue
                recs = _records(sel)
                y = [r["tflops_eff"] for r in recs]
                # p10 time is the fast end: TFLOPS error bars come from the p10–p90 times
                hi = [
                    r["flops"] / (r["p10_ms"] * 1e-3) / 1e12 - r["tflops_eff"] if num(r["p10_ms"]) else 0.0
                    for r in recs
                ]
                lo = [
                    r["tflops_eff"] - r["flops"] / (r["p90_ms"] * 1e-3) / 1e12 if num(r["p90_ms"]) else 0.0
                    for r in recs
                ]
                cfg = f"B{b}·H{h}" + (f"/{k}" if k != h else "")
                fig.add_trace(
                    go.Scatter(
                        x=[int(r["seqlen_q"]) for r in recs],
                        y=y,
                        mode="lines+markers",
                        name=backend if len(configs) == 1 else f"{backend} {cfg}",
                        legendgroup=backend,
                        showlegend=backend not in shown,
                        line={"color": colors.get(backend), "dash": DASHES[j % len(DASHES)]},
                        error_y={
                            "type": "data",
                            "symmetric": False,
                            "array": hi,
                            "arrayminus": lo,
                            "thickness": 1,
                            "width": 3,
                        },
                        hovertext=[hover(r) for r in recs],
                        hovertemplate="%{hovertext}<extra></extra>",
                    ),
                    row=row,
                    col=col,
                )
                shown.add(backend)
        seqs = sorted({int(s) for s in panel["seqlen_q"]})
        fig.update_xaxes(
            type="log",
            tickvals=seqs,
            ticktext=[str(s) for s in seqs],
            title_text="seqlen_q",
            row=row,
            col=col,
        )
        fig.update_yaxes(title_text="TFLOPS" if col == 1 else None, rangemode="tozero", row=row, col=col)
    fig.update_layout(
        **LAYOUT,
        height=120 + 330 * nrows,
        legend_title_text="backend",
        title="Achieved TFLOPS vs sequence length (passed cells; bars: p10–p90 of the timing samples)",
    )
    return fig


def speedup_heatmap(cells: pd.DataFrame, baseline: str, colors: dict[str, str]) -> go.Figure | None:
    """Median-time speedup of each backend over the baseline on every problem both passed."""
    df = cells[cells["timed"]]
    base = df[df["backend"] == baseline].set_index("shape")
    if df.empty or base.empty:
        return None
    shapes = shapes_in_order(df)
    backends = [baseline] + sorted(b for b in df["backend"].unique() if b != baseline)
    z, text, hov = [], [], []
    for b in backends:
        zr, tr, hr = [], [], []
        sub = df[df["backend"] == b].set_index("shape")
        for s in shapes:
            if s in sub.index and s in base.index:
                r = sub.loc[s].to_dict()
                r["shape"] = s
                sp = base.loc[s, "median_ms"] / r["median_ms"]
                zr.append(math.log2(sp))
                tr.append(f"{sp:.2f}×")
                hr.append(hover(r, f"<b>{sp:.3g}× vs {baseline}</b> ({fmt(base.loc[s, 'median_ms'])} ms)"))
            else:
                zr.append(None)
                tr.append("")
                hr.append(
                    f"<b>{b}</b><br>{s}<br>no passed timing for {b if s not in sub.index else baseline} here"
                )
        z.append(zr)
        text.append(tr)
        hov.append(hr)
    finite = [abs(v) for row in z for v in row if v is not None]
    # colour saturates at 4× either way so that 10–50% differences stay visible; the text gives the value
    lim = min(2.0, max(1.0, max(finite) if finite else 1.0))
    ticks = [t for t in range(-2, 3) if abs(t) <= lim]
    return _log_ratio_heatmap(
        z, shapes, backends, text, hov, colorscale="RdBu", lim=lim, ticks=ticks,
        ticktext=[f"{2.0**t:g}×" for t in ticks], bar_title=f"× vs {baseline}", height_base=140,
        title=f"Speedup over {baseline} (baseline median ÷ backend median; blue = faster)",
    )


def latency_spread(cells: pd.DataFrame, colors: dict[str, str]) -> go.Figure | None:
    """Median latency per problem and backend, error bars from p10 to p90."""
    df = cells[cells["timed"]]
    if df.empty:
        return None
    shapes = shapes_in_order(df)
    fig = go.Figure()
    for backend in sorted(df["backend"].unique()):
        sub = df[df["backend"] == backend].copy()
        sub["pos"] = [shapes.index(s) for s in sub["shape"]]
        recs = _records(sub.sort_values("pos"))
        fig.add_trace(
            go.Scatter(
                x=[r["shape"] for r in recs],
                y=[r["median_ms"] for r in recs],
                mode="markers",
                name=backend,
                marker={
                    "color": colors.get(backend),
                    "size": 14,
                    "symbol": "line-ew-open",
                    "line": {"width": 3},
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [(r["p90_ms"] - r["median_ms"]) if num(r["p90_ms"]) else 0.0 for r in recs],
                    "arrayminus": [(r["median_ms"] - r["p10_ms"]) if num(r["p10_ms"]) else 0.0 for r in recs],
                    "thickness": 1.5,
                    "width": 4,
                },
                hovertext=[
                    hover(r, f"relative spread (p90−p10)/median {fmt(r.get('rel_spread'), '.2%')}")
                    for r in recs
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig.update_layout(
        **LAYOUT,
        scattermode="group",
        height=460 + 6 * max(len(s) for s in shapes),
        title="Latency: median per cell, bars from p10 to p90 of the samples (log scale)",
        legend_title_text="backend",
    )
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=shapes, tickangle=-35, automargin=True
    )
    fig.update_yaxes(type="log", title_text="ms")
    return fig


def roofline(
    cells: pd.DataFrame, peak_tflops: float | None, peak_gbs: float | None, colors: dict[str, str]
) -> go.Figure | None:
    """Arithmetic intensity (FLOPs / minimum bytes) vs achieved TFLOPS, under the run's measured roofs."""
    df = cells[cells["timed"] & cells["ai"].gt(0)]
    if df.empty:
        return None
    fig = go.Figure()
    ai_min, ai_max = float(df["ai"].min()) / 2, float(df["ai"].max()) * 2
    if peak_tflops and peak_gbs:
        ridge = peak_tflops * 1e12 / (peak_gbs * 1e9)
        ai_min, ai_max = min(ai_min, ridge / 4), max(ai_max, ridge * 2)
        xs = sorted({ai_min, ridge, ai_max})
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[min(peak_tflops, x * peak_gbs / 1e3) for x in xs],
                mode="lines",
                name="roof (measured)",
                line={"color": "#334e68", "width": 2},
                hovertext=[
                    f"roof at {x:.4g} FLOP/B: {min(peak_tflops, x * peak_gbs / 1e3):.4g} TFLOPS<br>"
                    f"matmul peak {peak_tflops:.1f} TFLOPS, copy bandwidth {peak_gbs:.0f} GB/s "
                    f"(both measured in this run); ridge at {ridge:.0f} FLOP/B"
                    for x in xs
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
        # log axes place annotations in log10 units; plotly hides one whose anchor sits on the range's edge
        fig.add_annotation(
            x=math.log10(ai_max / 1.15),
            y=math.log10(peak_tflops),
            xanchor="right",
            yanchor="bottom",
            text=f"matmul peak {peak_tflops:.0f} TFLOPS",
            showarrow=False,
            font={"size": 11},
        )
        fig.add_annotation(
            x=math.log10(ai_min * 1.15),
            y=math.log10(ai_min * 1.4 * peak_gbs / 1e3),
            xanchor="left",
            yanchor="bottom",
            text=f"copy bandwidth {peak_gbs:.0f} GB/s",
            showarrow=False,
            font={"size": 11},
        )
    for backend in sorted(df["backend"].unique()):
        recs = _records(df[df["backend"] == backend].sort_values("ai"))
        fig.add_trace(
            go.Scatter(
                x=[r["ai"] for r in recs],
                y=[r["tflops_eff"] for r in recs],
                mode="markers",
                name=backend,
                marker={"color": colors.get(backend), "size": 9, "line": {"width": 0.5, "color": "#fff"}},
                hovertext=[
                    hover(r, f"intensity {r['ai']:.4g} FLOP/byte (min bytes {r['min_bytes']:,})"
                          + (f"<br>{r['min_bytes'] / (r['median_ms'] * 1e-3) / 1e9:.0f} GB/s, "
                             f"{100 * r['min_bytes'] / (r['median_ms'] * 1e-3) / 1e9 / peak_gbs:.1f}% of the copy bandwidth"
                             if peak_gbs and r.get("kind") == "decode" else ""))
                    for r in recs
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    title = "Roofline: FLOPs per minimum byte (Q, K, V read + O written once) vs achieved TFLOPS"
    if not (peak_tflops and peak_gbs):
        title += " — no peaks measured in this run, so no roofs"
    fig.update_layout(**LAYOUT, height=560, title=title, legend_title_text="backend")
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP/byte)")
    fig.update_yaxes(type="log", title_text="TFLOPS")
    return fig


# -- correctness ------------------------------------------------------------------------------
def correctness_matrix(cells: pd.DataFrame) -> go.Figure | None:
    if cells.empty:
        return None
    shapes = shapes_in_order(cells)
    backends = sorted(cells["backend"].unique())
    idx = {c: i for i, c in enumerate(CATEGORIES)}
    n = len(CATEGORIES)
    scale = []
    for i, c in enumerate(CATEGORIES):
        scale += [[i / n, CATEGORY_COLORS[c]], [(i + 1) / n, CATEGORY_COLORS[c]]]
    z, text, hov = [], [], []
    for b in backends:
        sub = cells[cells["backend"] == b]
        by_shape = {r["shape"]: r for r in _records(sub)}
        zr, tr, hr = [], [], []
        for s in shapes:
            r = by_shape.get(s)
            if r is None:
                zr.append(None)
                tr.append("")
                hr.append(f"<b>{b}</b><br>{s}<br>not run on this problem")
                continue
            zr.append(idx[r["category"]])
            tr.append(CATEGORY_TEXT[r["category"]])
            hr.append(hover(r, *_correctness_lines(r)))
        z.append(zr)
        text.append(tr)
        hov.append(hr)
    return _backend_shape_heatmap(
        z, shapes, backends, text, hov, height_base=160,
        title="Correctness: every backend on every problem (hover for errors, NaN/Inf, determinism)",
        colorscale=scale, zmin=0, zmax=n, showscale=False, textfont={"color": "#fff", "size": 11},
    )


def _correctness_lines(r: dict[str, Any]) -> list[str]:
    out = [f"status <b>{r['status']}</b>" + (f" — {_short(r.get('reason'), 160)}" if r.get("reason") else "")]
    if num(r.get("nan_count")) is not None or num(r.get("inf_count")) is not None:
        out.append(f"NaN {fmt(r.get('nan_count'), '.0f')}, Inf {fmt(r.get('inf_count'), '.0f')}")
    if r.get("deterministic") is not None and not (
        isinstance(r["deterministic"], float) and math.isnan(r["deterministic"])
    ):
        out.append(
            f"deterministic: {'yes' if r['deterministic'] else 'NO'} "
            f"({fmt(r.get('determinism_mismatches'), '.0f')} mismatches in "
            f"{fmt(r.get('determinism_runs'), '.0f')} runs)"
        )
    if num(r.get("torch_max_abs_err")) is not None:
        out.append(f"PyTorch's own error {fmt(r.get('torch_max_abs_err'), '.3g')}")
    if r.get("timed_outputs_ok") is False:
        out.append("timed outputs: WRONG")
    return out


# -- compare ----------------------------------------------------------------------------------
def compare_heatmap(joined: pd.DataFrame, a: str, b: str) -> go.Figure | None:
    """Per-cell time ratio after/before; bold where the change is beyond noise (``harness.analysis.noise``)."""
    if joined.empty:
        return None
    shapes = shapes_in_order(joined)
    backends = sorted(joined["backend"].unique())
    z, text, hov = [], [], []
    for be in backends:
        by_shape = {r["shape"]: r for r in _records(joined[joined["backend"] == be])}
        zr, tr, hr = [], [], []
        for s in shapes:
            r = by_shape.get(s)
            if r is None:
                zr.append(None)
                tr.append("")
                hr.append(f"<b>{be}</b><br>{s}<br>not passed and timed in both runs")
                continue
            zr.append(math.log2(r["ratio"]))
            mark = f"<b>{r['ratio']:.2f}×</b>" if r["significant"] else f"{r['ratio']:.2f}×"
            tr.append(mark)
            hr.append(
                "<br>".join(
                    [
                        f"<b>{be}</b>",
                        s,
                        f"before ({a}): {fmt(r['median_ms_a'])} ms, {tflops_text(r['tflops_a'])} TFLOPS, "
                        f"spread {fmt(r['spread_a'], '.1%')}",
                        f"after ({b}): {fmt(r['median_ms_b'])} ms, {tflops_text(r['tflops_b'])} TFLOPS, "
                        f"spread {fmt(r['spread_b'], '.1%')}",
                        f"time ratio after/before {r['ratio']:.3f} — "
                        + (f"<b>{r['verdict']}</b>" if r["significant"] else r["verdict"])
                        + f": {r['reason']}",
                        f"max err after {fmt(r['max_abs_err_b'], '.3g')}, "
                        f"before {fmt(r['max_abs_err_a'], '.3g')}",
                    ]
                )
            )
        z.append(zr)
        text.append(tr)
        hov.append(hr)
    finite = [abs(v) for row in z for v in row if v is not None]
    lim = min(2.0, max(0.5, max(finite) if finite else 0.5))
    ticks = [
        math.log2(t) for t in (0.25, 0.5, 0.67, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 4) if abs(math.log2(t)) <= lim
    ]
    return _log_ratio_heatmap(
        z, shapes, backends, text, hov, colorscale="RdBu_r", lim=lim, ticks=ticks,
        ticktext=[f"{2.0**t:.3g}×" for t in ticks], bar_title="after ÷ before", height_base=160,
        title="Time ratio after ÷ before (red = slower; bold = beyond noise: median move and Mann-Whitney)",
    )


def _log_ratio_heatmap(z: list[list[float | None]], shapes: list[str], backends: list[str], text: list[list[str]],
                       hov: list[list[str]], *, colorscale: str, lim: float, ticks: list[float],
                       ticktext: list[str], bar_title: str, height_base: int, title: str) -> go.Figure:
    """A backend × shape heat map of log2 ratios, centred on 1×, with the ratio written in each cell."""
    return _backend_shape_heatmap(
        z, shapes, backends, text, hov, height_base=height_base, title=title, colorscale=colorscale, zmid=0,
        zmin=-lim, zmax=lim, colorbar={"title": bar_title, "tickvals": ticks, "ticktext": ticktext},
    )


def _backend_shape_heatmap(z: list[list[float | None]], shapes: list[str], backends: list[str],
                           text: list[list[str]], hov: list[list[str]], *, height_base: int, title: str,
                           **style: Any) -> go.Figure:
    """Backends as rows (first on top), shapes as columns, `text` written in each cell and `hov` on hover;
    `style` is the colour scale and its bar (go.Heatmap's arguments)."""
    fig = go.Figure(go.Heatmap(z=z, x=shapes, y=backends, text=text, texttemplate="%{text}", hovertext=hov,
                               hovertemplate="%{hovertext}<extra></extra>", xgap=2, ygap=2, **style))
    fig.update_layout(**LAYOUT, height=height_base + 34 * len(backends) + 8 * max(len(x) for x in shapes),
                      title=title)
    fig.update_xaxes(tickangle=-35, automargin=True, showgrid=False, zeroline=False)
    fig.update_yaxes(autorange="reversed", automargin=True, showgrid=False, zeroline=False)
    return fig


# -- audit ------------------------------------------------------------------------------------
def audit_dumbbell(rows: list[dict[str, Any]]) -> go.Figure | None:
    """Claimed TFLOPS, the TFLOPS the claimed latency implies, and the measured TFLOPS, per claim."""
    rows = [r for r in rows if r.get("claimed_tflops") or r.get("implied_tflops") or r.get("measured_tflops")]
    if not rows:
        return None
    ids = [r["id"] for r in rows]
    fig = go.Figure()
    for r in rows:
        xs = [v for v in (r.get("claimed_tflops"), r.get("implied_tflops"), r.get("measured_tflops")) if v]
        if len(xs) > 1:
            fig.add_trace(
                go.Scatter(
                    x=[min(xs), max(xs)],
                    y=[r["id"], r["id"]],
                    mode="lines",
                    line={"color": "#bcccdc", "width": 3},
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
    series = (
        ("claimed_tflops", "claimed TFLOPS", "diamond", "#dd6b20"),
        ("implied_tflops", "TFLOPS implied by the claimed latency", "x", "#718096"),
        ("measured_tflops", "measured TFLOPS (latest passed cell)", "circle", "#2f855a"),
    )
    for key, name, symbol, color in series:
        sel = [r for r in rows if r.get(key)]
        if sel:
            fig.add_trace(
                go.Scatter(
                    x=[r[key] for r in sel],
                    y=[r["id"] for r in sel],
                    mode="markers",
                    name=name,
                    marker={
                        "symbol": symbol,
                        "size": 12,
                        "color": color,
                        "line": {"width": 1, "color": "#fff"},
                    },
                    hovertext=[r["hover"] for r in sel],
                    hovertemplate="%{hovertext}<extra></extra>",
                )
            )
    fig.update_layout(**LAYOUT, height=140 + 36 * len(ids), title="Claimed vs implied vs measured TFLOPS")
    fig.update_xaxes(type="log", title_text="TFLOPS (log)")
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(ids)), automargin=True)
    return fig
