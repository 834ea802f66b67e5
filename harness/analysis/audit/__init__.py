"""Claims audit: published statements (a TOML claims file) checked by arithmetic, by formula and
against the results database. ``audit(claims_path, db)`` returns an :class:`AuditReport`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.audit.check import VERDICTS, Verdict, check, load_measurements, problem_label
from harness.spec.claims import Claim, ClaimsError, Range, load_claims, parse_claims

__all__ = [
    "AuditReport",
    "Claim",
    "ClaimsError",
    "Range",
    "Verdict",
    "audit",
    "load_claims",
    "parse_claims",
    "problem_label",
]


@dataclass
class AuditReport:
    claims_path: Path
    db: Path | None
    db_note: str  # where measurements came from, or why there are none
    verdicts: list[Verdict]

    def counts(self) -> dict[str, int]:
        c = Counter(v.verdict for v in self.verdicts)
        return {k: c.get(k, 0) for k in VERDICTS}

    def inconsistent(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.consistency.startswith("inconsistent")]

    def by_id(self, claim_id: str) -> Verdict:
        for v in self.verdicts:
            if v.claim.id == claim_id:
                return v
        raise KeyError(claim_id)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per claim (for tables, CSV, tests)."""
        out = []
        for v in self.verdicts:
            c = v.claim
            out.append(
                {
                    "id": c.id,
                    "kind": c.kind,
                    "backend": c.backend,
                    "baseline": c.baseline,
                    "problem": problem_label(c.problem)
                    if c.kind in ("measured", "speedup", "traffic", "flops")
                    else "",
                    "claimed": claimed_text(c),
                    "consistency": v.consistency,
                    "verdict": v.verdict,
                    "factor": v.factor,
                    "detail": v.detail,
                    "measured_tflops": v.measured_tflops,
                    "measured_ms": v.measured_ms,
                    "run": v.measured_run,
                    "source": c.source.file,
                    "quote": c.source.quote,
                    "note": c.note,
                }
            )
        return out


def claimed_text(c: Claim) -> str:
    if c.kind == "measured":
        parts = []
        if c.tflops is not None:
            parts.append(f"{c.tflops} TFLOPS")
        if c.latency_ms is not None:
            parts.append(f"{c.latency_ms} ms")
        return ", ".join(parts)
    if c.kind == "speedup":
        return f"{c.claimed}× vs {c.baseline}"
    unit = {
        "traffic": f" {c.unit}",
        "flops": f" {c.unit}",
        "occupancy": "%" if c.quantity == "occupancy_pct" else f" {c.quantity}",
    }.get(c.kind, "")
    # an at_most claim is an achieved figure, held to the formula's bound
    suffix = " achieved (≤ formula)" if c.compare == "at_most" else ""
    if c.kind == "traffic":
        return f"{c.quantity} {c.claimed}{unit}{suffix}"
    if c.kind == "occupancy" and c.quantity == "occupancy_pct":
        return f"occupancy {c.claimed}{unit}{suffix}"
    return f"{c.claimed}{unit}{suffix}"


def audit(claims_path: str | Path, db: str | Path | None) -> AuditReport:
    """Check every claim of a claims file; measurements come from ``db`` (which may be missing: then
    every measured claim is untested, while arithmetic and formula checks still run)."""
    claims = load_claims(claims_path)
    m = load_measurements(db)
    note = m.source if m.by_backend else (m.source or "no database")
    return AuditReport(
        Path(claims_path), Path(db) if db is not None else None, note, [check(c, m) for c in claims]
    )
