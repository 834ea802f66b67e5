"""``flashcore standing``: where one backend stands against the per-configuration best of named peers in one
stored run (``harness.analysis.standing``): per problem the ratio best peer median / backend median, the
best peer and every TFLOPS; then the geometric mean, the worst problem and how many fall below a floor."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from harness.analysis.standing import DEFAULT_FLOOR, Standing, StandingError
from harness.cli.console import console
from harness.cli.errors import fail, named, user_errors
from harness.store.database import DEFAULT_DB


def _num(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _tflops(tflops: float | None, note: str, duty: float | None = None) -> str:
    """A row's TFLOPS, or, for one that cannot be ranked, why (its status, ``wrong``, ``no row``): a wrong
    result's speed is not shown as one. A row timed gated carries the GPU's busy share: ``612.3 (g 26%)``."""
    if not note:
        return _num(tflops, ".1f") + (f" (g {duty:.0%})" if duty is not None else "")
    return f"[{'bold red' if note == 'wrong' else 'yellow'}]{escape(note.split(':', 1)[0])}[/]"


def standing_table(s: Standing) -> Table:
    """One row per configuration: the backend's TFLOPS, each peer's (or why it has none), the best peer and
    the ratio (of medians; the times are in ``--json``); a ratio below the floor in red, a ratio across duty
    cycles (one row gated, the other not) marked ``*``, a configuration not ranked says why."""
    t = Table(title=f"run {s.run_id}, {s.mode} mode: ratio = best peer's median / {s.backend}'s median, per "
                    f"configuration (> 1: {s.backend} faster)")
    t.add_column("configuration", no_wrap=True)
    for name in (s.backend, *s.peers):
        t.add_column(escape(f"{name}\nTFLOPS"), justify="right", min_width=len(name))
    t.add_column("best peer")
    t.add_column("ratio", justify="right", no_wrap=True)
    if s.excluded:
        t.add_column("not ranked", overflow="fold")
    for r in s.rows:
        tflops = [_tflops(r.tflops, r.note, r.duty), *(_tflops(p.tflops, p.note, p.duty) for p in r.peers)]
        ratio = ""
        if r.ratio is not None:
            ratio = f"{r.ratio:.3f}" if r.ratio >= s.floor else f"[red]{r.ratio:.3f}[/]"
            ratio += "*" if r.mixed_duty else ""
        row = [escape(r.problem_key), *tflops, escape(r.best_peer or ""), ratio]
        if s.excluded:
            note = r.excluded if len(r.excluded) <= 80 else r.excluded[:79] + "…"
            row.append(f"[{'bold red' if r.wrong else 'yellow'}]{escape(note)}[/]" if note else "")
        t.add_row(*row)
    return t


def summary_lines(s: Standing) -> list[str]:
    """The summary under the table: geometric mean, worst, the floor count, and what was left out and why."""
    n = len(s.ranked)
    lines = []
    head = f"{s.backend} against the best of {', '.join(s.peers)} per configuration, {s.mode} mode:"
    if n:
        lines.append(f"{head} geometric mean {s.geomean:.3f} over {n} configuration{'s' if n != 1 else ''}")
        lines.append(f"worst {s.worst_ratio:.3f} at {s.worst_problem}; {s.below_floor} of {n} configurations "
                     f"below {s.floor:g}")
    else:
        lines.append(f"{head} no configuration could be ranked")
    if s.excluded:
        why = [f"{k} {what}" for k, what in ((s.excluded_backend, f"where {s.backend} has no ok row"),
                                             (s.excluded_wrong, f"where {s.backend}'s result was wrong (never ranked)"),
                                             (s.excluded_no_peer, "where no peer has an ok, correct row")) if k]
        lines.append(f"excluded from the geometric mean: {s.excluded} of {len(s.rows)} configurations, "
                     f"{'; '.join(why)}")
    if s.peer_rows_wrong:
        lines.append(f"{s.peer_rows_wrong} peer row(s) set aside because their correctness failed: a wrong "
                     "result is never the best")
    if s.mixed_duty:
        lines.append(f"{s.mixed_duty} of {n} ratios compare a row timed gated (a host-bound call: batches behind "
                     "holds in which the GPU idles, so it runs cooler) with one timed back to back: there the two "
                     "backends met different duty cycles (marked *; gated rows carry the GPU's busy share)")
    if s.run_status != "complete":
        lines.append(f"run {s.run_id} is {s.run_status}: a cell it did not reach has no row")
    if len(s.modes) > 1:
        others = ", ".join(m for m in s.modes if m != s.mode)
        lines.append(f"timing mode {s.mode}; the run also has {others} (--mode)")
    if s.max_rounds > 1:
        lines.append(f"rows as the run stored them: one per backend, problem and mode, pooling up to "
                     f"{s.max_rounds} interleaved rounds")
    return lines


def standing(
    db: Path = typer.Option(DEFAULT_DB, "--db"),
    run: str | None = typer.Option(None, "--run", help="run id (default: the latest)"),
    backend: str = typer.Option(..., "--backend", help="the backend to rank"),
    peers: str = typer.Option(..., "--peers", help="comma-separated peer backends; per configuration the best "
                                                  "(fastest ok, correct row) of them is the reference"),
    mode: str | None = typer.Option(
        None, "--mode", help="timing mode, isolated or sustained (default: isolated if the run has it, else its "
                             "only mode)"),
    floor: float = typer.Option(DEFAULT_FLOOR, "--floor", help="count the configurations whose ratio is below this"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the result as JSON to this file"),
) -> None:
    """Where BACKEND stands against the per-configuration best of PEERS in one run: ratio best peer ms /
    BACKEND ms (> 1: BACKEND faster), the best peer, TFLOPS, and the geometric mean over configurations."""
    from harness.analysis.standing import standing as compute
    from harness.store.database import Store

    try:
        store = Store(db, readonly=True)
        rid = run or store.latest_run_id()
        if rid is None:
            raise fail(f"{db} holds no runs yet: run `flashcore run --suite smoke` first")
        result = compute(store, rid, backend, peers.split(","), mode, floor)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(result.to_json() + "\n", encoding="utf-8")
    except (StandingError, *user_errors()) as exc:
        raise fail(named(exc, db)) from None
    console.print(standing_table(result))
    for line in summary_lines(result):
        console.print(line, markup=False, highlight=False)
    if json_out is not None:
        console.print(f"wrote {json_out}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(standing)
