"""The claims-audit page: every claim with its source quote, consistency, verdict and the measured cell."""

from __future__ import annotations

from typing import Any

from harness.analysis.audit import AuditReport, claimed_text, problem_label
from harness.analysis.audit.check import VERDICTS, Verdict
from harness.views.dashboards import figures as F
from harness.views.dashboards.html import Raw, chip, empty, esc, figure, h3, note, page, section, table

RULES = (
    "Consistency: a latency and a rate at one problem imply FLOPs = TFLOPS·1e12 × ms·1e-3; within 5% of the "
    "problem's FLOPs is consistent. Measured: the latest run with a passed, timed cell of that backend on "
    "that "
    "problem; TFLOPS confirmed if measured ≥ 0.9 × claimed (latency: measured ≤ claimed / 0.9), else refuted "
    "×N. Untested: no such backend or cell, or the cell was skipped, failed, rejected or did not pass. "
    "Formulas (H100 occupancy, traffic, FLOPs, arithmetic) are recomputed and must match within 5%, or for "
    "an achieved figure not exceed the theoretical bound."
)


def _consistency_chip(text: str) -> Raw | str:
    if text.startswith("consistent"):
        return chip("consistent")
    if text.startswith("inconsistent"):
        return Raw(f"{chip(text.split(':')[0], 'inconsistent')} {esc(text.partition(':')[2].strip())}")
    return text


def _dumbbell_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    rows = []
    for v in verdicts:
        c = v.claim
        if c.kind != "measured":
            continue
        implied = None
        if c.latency_ms is not None and c.problem is not None:
            implied = c.problem.flops() / (c.latency_ms.lo * 1e-3) / 1e12
        cell = v.measured_cell
        lines = [f"<b>{c.backend}</b> — claim {c.id}", problem_label(c.problem), f"claimed {claimed_text(c)}"]
        if implied is not None:
            lines.append(f"{c.latency_ms} ms at this shape is {implied:.4g} TFLOPS")
        if cell is not None:
            lines.append(
                f"measured median {F.fmt(v.measured_ms)} ms, {F.tflops_text(v.measured_tflops)} TFLOPS "
                f"(run {v.measured_run})"
            )
            lines.append(f"max err {F.fmt(cell.max_abs_err, '.3g')}, mean {F.fmt(cell.mean_abs_err, '.3g')}")
        else:
            lines.append(f"measured: none — {v.detail}")
        lines.append(f"verdict: <b>{v.verdict}</b>")
        rows.append(
            {
                "id": c.id,
                "claimed_tflops": c.tflops.lo if c.tflops else None,
                "implied_tflops": implied,
                "measured_tflops": v.measured_tflops,
                "hover": "<br>".join(lines),
            }
        )
    return rows


def audit_page(report: AuditReport) -> str:
    counts = report.counts()
    summary = (
        " · ".join(f"{n} {k}" for k, n in counts.items())
        + f" · {len(report.inconsistent())} internally inconsistent"
    )
    rows = []
    for v in report.verdicts:
        c = v.claim
        what = (
            c.backend
            if c.kind == "measured"
            else (f"{c.backend} vs {c.baseline}" if c.kind == "speedup" else c.kind)
        )
        prob = problem_label(c.problem) if c.kind in ("measured", "speedup", "traffic", "flops") else ""
        src = Raw(
            f"<code>{esc(c.source.file.rsplit('/', 1)[-1])}</code><br>"
            f'<span class="quote">“{esc(c.source.quote)}”</span>'
        )
        detail = esc(v.detail) + (f"<br><i>{esc(c.note)}</i>" if c.note else "")
        rows.append(
            [
                c.id,
                what,
                prob,
                claimed_text(c),
                _consistency_chip(v.consistency),
                Raw(f"{chip(v.verdict)}" + (f" {esc(F.fmt(v.factor, '.1f'))}×" if v.factor else "")),
                Raw(detail),
                src,
            ]
        )
    fig = F.audit_dumbbell(_dumbbell_rows(report.verdicts))
    legend = Raw('<p class="legend">' + "".join(f"<span>{chip(k)}</span>" for k in VERDICTS) + "</p>")
    body = section(
        "claims",
        "Claims audit",
        note(f"claims: {report.claims_path} · measurements: {report.db_note}"),
        note(summary),
        legend,
        note(RULES),
        figure(fig, "audit-tflops") if fig else empty("No claim states a TFLOPS figure."),
        h3("Every claim"),
        table(
            ["id", "backend / kind", "problem", "claimed", "consistency", "verdict", "detail", "source"], rows
        ),
    )
    return page("flashcore claims audit", f"{report.claims_path}", body, [("Index", "index.html")])
