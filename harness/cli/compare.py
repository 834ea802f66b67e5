"""``flashcore compare``: two runs side by side, and which changes are beyond noise (the rule of
``harness.analysis.noise``, shared with the dashboards and the regression gate)."""
from __future__ import annotations

import math
from pathlib import Path

import typer

from harness.analysis.noise import DEFAULT_ALPHA, DEFAULT_THRESHOLD
from harness.cli.console import console
from harness.cli.errors import fail, named, user_errors
from harness.store.database import DEFAULT_DB
from harness.views import tables


def compare(
    run_a: str = typer.Argument(..., help="baseline run id"),
    run_b: str | None = typer.Argument(None, help="run id to compare with the baseline"),
    db: Path = typer.Option(DEFAULT_DB, "--db"),
    min_ms: float = typer.Option(0.1, "--min-ms", help="agreement is judged on cells at least this long"),
    within: float = typer.Option(0.01, "--within", help="relative agreement asked of those cells"),
    baseline: str | None = typer.Option(
        None, "--baseline",
        help="backend to report every other one as a ratio to, with a bootstrap interval (default: the ratios "
             "the runs stored, from the suite's [timing] baseline)"),
    threshold: float = typer.Option(
        DEFAULT_THRESHOLD, "--threshold", help="relative median move a change must exceed (with significance)"),
    alpha: float = typer.Option(
        DEFAULT_ALPHA, "--alpha", help="Mann-Whitney significance level a change must reach"),
    across_gpus: bool = typer.Option(
        False, "--across-gpus",
        help="compare RUN's cells measured on different GPUs of it, each GPU against the first (one run id)"),
) -> None:
    """Two runs side by side (or one run's GPUs): per-cell median ratio and which changes exceed the noise."""
    from harness.analysis.compare import (
        agreement,
        clock_attribution,
        diff_runs,
        method_mismatches,
        normalised_agreement,
    )
    from harness.store.database import Store

    if not (math.isfinite(min_ms) and min_ms >= 0):
        raise fail(f"--min-ms {min_ms!r}: must be a finite number >= 0")
    if not (math.isfinite(within) and 0 < within < 1):
        raise fail(f"--within {within!r}: must be a fraction in (0, 1), e.g. 0.01 for 1%")
    for name, value in (("--threshold", threshold), ("--alpha", alpha)):
        if not (math.isfinite(value) and 0 < value < 1):
            raise fail(f"{name} {value!r}: must be a fraction in (0, 1)")
    if across_gpus:
        if run_b is not None:
            raise fail(f"--across-gpus compares the GPUs of one run: give one run id, not {run_a} and {run_b}")
        _across_gpus(db, run_a, min_ms, within, threshold, alpha)
        return
    if run_b is None:
        raise fail("compare: Missing argument 'RUN_B' (or --across-gpus RUN for the GPUs of one run)")
    try:
        store = Store(db, readonly=True)
        diffs = diff_runs(store, run_a, run_b, baseline, threshold=threshold, alpha=alpha)
    except user_errors() as exc:
        raise fail(named(exc, db)) from None
    if not diffs:
        raise fail(f"runs {run_a} and {run_b} share no ok cell to compare")
    console.print(tables.diff_table(diffs))
    ok, n, worst = agreement(diffs, min_ms, within)
    console.print(f"{ok} of {n} cells of >= {min_ms:g} ms agree within {within:.1%} (worst {worst:.2%}); "
                  f"{sum(d.beyond_noise for d in diffs)} of {len(diffs)} cells changed beyond their noise "
                  f"(median moved more than {threshold:.0%} and Mann-Whitney p < {alpha:g}; rows without "
                  "raw samples: beyond their p10–p90 spread)")
    n_off, followed, unclocked = clock_attribution(diffs, min_ms, within)
    if n_off > unclocked:
        console.print(f"of the {n_off} cells outside {within:.1%}, {followed} moved with the effective SM clock "
                      f"(at least half the change); {unclocked} have no usable clock (none recorded, or one "
                      "above the GPU's maximum)")
    n_ok, n_read, n_worst = normalised_agreement(diffs, min_ms, within)
    if n_read:
        console.print(f"diagnostic, not a measurement: with each time scaled by its run's clock reading (suspect "
                      f"readings included), {n_ok} of {n_read} cells would agree within {within:.1%} "
                      f"(worst {n_worst:.2%})")
    from harness.analysis.compare import ratio_agreement

    r_ok, r_n, r_worst = ratio_agreement(diffs, min_ms, within)
    if r_n:
        console.print(f"ratios to the baseline: {r_ok} of {r_n} cells of >= {min_ms:g} ms agree within {within:.1%} "
                      f"between the runs (worst {r_worst:.2%})")
    elif baseline:
        console.print(f"ratios to the baseline: no cell of >= {min_ms:g} ms has a ratio to {baseline} in both runs")
    mixed = method_mismatches(diffs)
    if mixed:
        console.print(f"note: {len(mixed)} cells were timed by different methods ({mixed[0].a_method} vs "
                      f"{mixed[0].b_method}): their ratios include the change of method")


def _across_gpus(db: Path, run_id: str, min_ms: float, within: float, threshold: float, alpha: float) -> None:
    from harness.analysis.compare import agreement
    from harness.analysis.gpus import across_gpus, gpu_text
    from harness.store.database import Store

    try:
        store = Store(db, readonly=True)
        pairs = across_gpus(store, run_id, threshold=threshold, alpha=alpha)
    except user_errors() as exc:
        raise fail(named(exc, db)) from None
    if not pairs:
        raise fail(f"run {run_id} has no ok cell measured on two GPUs (each cell ran once; flashcore run "
                   f"--remeasure --run-id {run_id} --gpus N, measures them again on GPU N)")
    for p in pairs:
        a, b = gpu_text(p.a, p.a_name), gpu_text(p.b, p.b_name)
        table = tables.diff_table(p.diffs)
        table.title = f"{b} against {a} (ratio = {b.split(' (')[0]} / {a.split(' (')[0]} median)"
        console.print(table)
        ok, n, worst = agreement(p.diffs, min_ms, within)
        console.print(f"{b} against {a}: {len(p.diffs)} cells, median ratio {p.median_ratio:.4f}; {p.slower} slower "
                      f"and {p.faster} faster beyond their noise (median moved more than {threshold:.0%} and "
                      f"Mann-Whitney p < {alpha:g}); {ok} of {n} cells of >= {min_ms:g} ms agree within {within:.1%} "
                      f"(worst {worst:.2%})", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(compare)
