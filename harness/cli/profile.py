"""``flashcore profile`` (Nsight Compute metrics of selected cells) and ``flashcore validate``
(compute-sanitizer on the project kernels); the command building and parsing live in harness.tools.profiling."""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import typer

from harness.cli.errors import fail
from harness.store.database import DEFAULT_DB

DEFAULT_PROJECT_BACKENDS = "flashcore-phase4,flashcore-phase4x,flashcore-bleeding-edge"


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _check_backends(names: list[str]) -> None:
    from harness.backends import registry

    for n in names:
        try:
            registry.get(n)
        except registry.UnknownBackendError as exc:
            raise fail(str(exc)) from None


def _require_gpu(what: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise fail(f"no CUDA GPU visible to torch (torch.cuda.is_available() is False): {what} needs "
                    "an NVIDIA GPU")


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 220)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text)


def _new_run(store, suite: str, run_id: str | None) -> str:
    from harness.measure import environment
    from harness.run.supervisor import new_run_id
    from harness.store.database import RunInfo, now

    rid = run_id or new_run_id()
    env = environment.collect()
    store.create_run(RunInfo(run_id=rid, suite=suite, created_at=now(), git_commit=env.get("git_commit", ""),
                             argv=shlex.join(["flashcore", *sys.argv[1:]]), env=env))
    return rid


def profile(
    suite: str = typer.Option(..., "--suite", "-s", help="suite name (suites/NAME.toml) or path"),
    backends: str = typer.Option("", "--backends", "-b",
                                 help="comma-separated backends (default: the suite's)"),
    filter: str = typer.Option("", "--filter", "-f", help='e.g. "seqlen_q=2048,head_dim=128"'),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="results database (SQLite)"),  # noqa: B008 - typer reads defaults this way
    clock_control: str = typer.Option("none", "--clock-control", help="ncu --clock-control: none or base"),
    calls: int | None = typer.Option(
        None, "--calls",
        help="profiled calls per cell, each in its own NVTX range (default: 3 with --metric-set full, 20 with "
             "time, where ncu's mean of 3 calls moved by up to 3% on kernels that vary call to call)"),
    timing: str = typer.Option(
        "fresh", "--timing",
        help="harness medians to compare with: fresh (measure the cells first), latest (the latest ok "
             "result per cell in the DB; cells without one are measured), none, or a run id"),
    out_dir: Path = typer.Option(Path("results/local/profile"), "--out-dir", help="ncu CSV output per cell"),  # noqa: B008 - typer reads defaults this way
    run_id: str | None = typer.Option(None, "--run-id", help="name the profile run"),
    cell_timeout: float = typer.Option(900.0, "--cell-timeout", help="seconds allowed per ncu run"),
    metric_set: str = typer.Option(
        "full", "--metric-set",
        help="full (every metric the dashboard shows; ~40 replay passes) or time (kernel duration and SM "
             "clock only: one pass, for comparing with the harness's medians)"),
) -> None:
    """Nsight Compute metrics of selected cells, stored beside the harness timings (suite "profile:SUITE")."""
    from harness.records.result import Result
    from harness.run.plan import FilterError, make_plan, one_per_problem
    from harness.run.supervisor import RunOptions, WorkerError, run_suite
    from harness.spec.suite import SuiteError, load_suite
    from harness.store.database import Store, StoreError, now
    from harness.tools.profiling import compare, ncu, profile_suite

    names = _names(backends)
    _check_backends(names)
    if clock_control not in ("none", "base"):
        raise fail(f"--clock-control {clock_control!r}: allowed none, base")
    if calls is None:
        calls = 20 if metric_set == "time" else 3
    if calls < 1:
        raise fail(f"--calls {calls}: must be at least 1")
    if metric_set not in ncu.METRIC_SETS:
        raise fail(f"--metric-set {metric_set!r}: allowed {', '.join(ncu.METRIC_SETS)}")
    try:
        s = load_suite(suite)
        plan = make_plan(s, names or None, filter)
    except (SuiteError, FilterError) as exc:
        raise fail(str(exc)) from None
    if not plan:
        raise fail(f"the filter {filter!r} leaves no problem of suite {s.name!r} "
                    f"({len(s.problems)} problems)")
    exe = ncu.find_ncu()
    if exe is None:
        raise fail("ncu not found on PATH: install Nsight Compute (it ships with the CUDA toolkit, "
                    f"e.g. /usr/local/cuda/bin/ncu) and put it on PATH, or set {ncu.NCU_ENV}")
    _require_gpu("profile")
    console = _console()
    try:
        store = Store(db)
        harness: dict[tuple[str, str], Result] = {}
        if timing == "latest":
            harness = compare.latest_medians(store, [(c.backend, c.problem.key()) for c in plan])
        elif timing not in ("fresh", "none"):
            store.get_run(timing)  # a wrong id fails here, naming the latest runs
            harness = compare.medians_of_run(store, timing)
        rid = _new_run(store, profile_suite(s.name), run_id)
        measure = timing in ("fresh", "latest")
        # ncu is compared with isolated-mode medians only (compare.medians_of_run): time no other mode
        todo = ([c for c in plan if c.mode == "isolated" and (c.backend, c.problem.key()) not in harness]
                if measure else [])
        if todo:
            timing_id = f"{rid}-timing"
            console.print(f"profile: harness timing of {len(todo)} cells first (run {timing_id})")
            run_suite(replace(s, name=f"profile-timing:{s.name}"), todo, store,
                      RunOptions(run_id=timing_id, argv=shlex.join(["flashcore", *sys.argv[1:]]),
                                 log_dir=out_dir / rid / "logs"))
            harness.update(compare.medians_of_run(store, timing_id))
    except (StoreError, WorkerError) as exc:
        raise fail(str(exc)) from None

    # metric names this ncu knows (names drift between versions): unknown ones are dropped, not fatal
    from harness.tools.profiling import proc

    query = proc.run([exe, "--query-metrics"], 120)
    metrics, dropped = ncu.filter_known(ncu.METRIC_SETS[metric_set], ncu.parse_query_metrics(query.output))
    if dropped:
        console.print(f"profile: this ncu does not list {len(dropped)} metric(s), dropped: "
                      f"{', '.join(dropped)}")
    cell_dir = out_dir / rid
    cell_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    # the plan has a cell per timing mode and round; ncu profiles each (backend, problem) once
    targets = one_per_problem(plan)
    for n, cell in enumerate(targets, 1):
        key = cell.problem.key()
        t0 = time.perf_counter()
        prof = ncu.profile_cell(exe, cell.backend, cell.problem, metrics=metrics, clock_control=clock_control,
                                calls=calls, timeout_s=cell_timeout, python=sys.executable)
        csv_path = cell_dir / f"{_slug(cell.backend)}__{_slug(key)}.ncu.txt"
        csv_path.write_text(prof.output)
        h = harness.get((cell.backend, key))
        row = compare.make_row(cell.backend, key, prof, h)
        rows.append(row)
        failed += prof.status == "failed"
        extra = {"ncu": prof.kernels, "ncu_call_ns": prof.call_ns, "ncu_calls": calls,
                 "ncu_launches": prof.launches, "ncu_clock_control": clock_control,
                 "ncu_metrics_dropped": dropped + prof.dropped_metrics, "ncu_output": str(csv_path),
                 "ncu_command": shlex.join(prof.command), "ncu_seconds": round(time.perf_counter() - t0, 1),
                 "harness": ({"run_id": h.run_id, "median_ms": h.median_ms, "p10_ms": h.p10_ms,
                              "p90_ms": h.p90_ms, "timing_method": h.timing_method,
                              "raw_median_ms": h.extra.get("raw_median_ms"),
                              "event_tare_ms": h.extra.get("event_tare_ms"),
                              "kernel_ms": h.extra.get("kernel_ms")}
                             if h is not None else None),
                 "ncu_over_harness": row.ratio, "ncu_over_raw_events": row.raw_ratio,
                 "ncu_over_kernel_clock": row.kernel_ratio}
        store.add_result(Result.for_problem(
            rid, profile_suite(s.name), cell.backend, cell.problem, prof.status, prof.reason[:1000],
            extra=extra,
            error_text=prof.output[-4000:] if prof.status == "failed" else ""))
        ms = f"{row.ncu_ms:.4f} ms/call (ncu)" if row.ncu_ms is not None else prof.reason[:120]
        vs = f" vs {row.harness_ms:.4f} ms (harness)" if row.harness_ms is not None else ""
        console.print(f"profile [{n}/{len(targets)}] {cell.backend} {key}: {prof.status}, {ms}{vs}")
    store.update_run(rid, status="complete", finished_at=now())
    console.print(compare.table(rows))
    for line in compare.agreement_lines(rows):
        console.print(line)
    console.print(f"profile run {rid} in {db} (suite {profile_suite(s.name)}); ncu output in {cell_dir}")
    if failed:
        raise typer.Exit(1)


def validate(
    backends: str = typer.Option(DEFAULT_PROJECT_BACKENDS, "--backends", "-b",
                                 help="comma-separated backends"),
    tools: str = typer.Option("memcheck,racecheck,synccheck,initcheck", "--tools",
                              help="compute-sanitizer tools, comma-separated"),
    seqlens: str = typer.Option("1,17,100,257", "--seqlens", help="seqlen_q = seqlen_k values"),
    head_dims: str = typer.Option("64,128", "--head-dims"),
    dtypes: str = typer.Option("float16,bfloat16", "--dtypes"),
    causal: str = typer.Option("both", "--causal", help="both, true or false"),
    isolate: str = typer.Option("auto", "--isolate",
                                help="auto: one process per tool, re-run per backend when it fails; "
                                     "always: one process per tool and backend"),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="results database (SQLite)"),  # noqa: B008 - typer reads defaults this way
    out_dir: Path = typer.Option(Path("results/local/validate"), "--out-dir", help="full sanitizer logs"),  # noqa: B008 - typer reads defaults this way
    run_id: str | None = typer.Option(None, "--run-id", help="name the validate run"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds allowed per sanitizer process"),
) -> None:
    """compute-sanitizer memcheck, racecheck, synccheck, initcheck on the project kernels (suite validate)."""
    from rich.table import Table

    from harness.records.result import Result
    from harness.spec.problem import ProblemError
    from harness.store.database import Store, StoreError, now
    from harness.tools.profiling import proc, sanitizer
    from harness.tools.sanitize_target import make_problems

    names = _names(backends)
    if not names:
        raise fail("--backends is empty")
    _check_backends(names)
    tool_list = _names(tools)
    bad = [t for t in tool_list if t not in sanitizer.TOOLS]
    if bad or not tool_list:
        raise fail(f"--tools {tools!r}: allowed {', '.join(sanitizer.TOOLS)}")
    if isolate not in ("auto", "always"):
        raise fail(f"--isolate {isolate!r}: allowed auto, always")
    try:
        problems = make_problems(seqlens, head_dims, dtypes, causal)
    except ProblemError as exc:
        raise fail(str(exc)) from None
    exe = sanitizer.find_sanitizer()
    if exe is None:
        raise fail("compute-sanitizer not found on PATH: install it (it ships with the CUDA toolkit, "
                    "e.g. /usr/local/cuda/bin/compute-sanitizer) and put it on PATH, or set "
                    f"{sanitizer.SANITIZER_ENV}")
    _require_gpu("validate")
    console = _console()
    target_args = ["--seqlens", seqlens, "--head-dims", head_dims, "--dtypes", dtypes, "--causal", causal]
    problem_set = f"{len(problems)} problems: seqlen {seqlens}, D {head_dims}, {dtypes}, causal {causal}"
    try:
        store = Store(db)
        rid = _new_run(store, "validate", run_id)
    except StoreError as exc:
        raise fail(str(exc)) from None
    log_dir = out_dir / rid
    log_dir.mkdir(parents=True, exist_ok=True)

    def run_tool(tool: str, group: list[str]):
        cmd = sanitizer.build_command(exe, tool, group, python=sys.executable, target_args=target_args)
        t0 = time.perf_counter()
        res = proc.run(cmd, timeout, env=sanitizer.TARGET_ENV)
        log = log_dir / f"{tool}-{'+'.join(_slug(b) for b in group)}.log"
        log.write_text(f"$ {shlex.join(cmd)}\nexit_code: {res.returncode}\n\n{res.output}")
        console.print(f"validate: {tool} on {', '.join(group)}: exit {res.returncode} "
                      f"in {time.perf_counter() - t0:.0f}s ({log})")
        return cmd, res, sanitizer.parse(res.output), log, time.perf_counter() - t0

    table = Table(title=f"compute-sanitizer on {problem_set}")
    for col in ("backend", "tool", "status", "calls", "errors", "reason / first error"):
        table.add_column(col, overflow="fold")
    failed = checked = 0
    for tool in tool_list:
        groups = [names] if isolate == "auto" and len(names) > 1 else [[b] for b in names]
        outcomes = []  # (backend, verdict, cmd, log, seconds, isolated)
        for group in groups:
            cmd, res, parsed, log, secs = run_tool(tool, group)
            whole = sanitizer.verdict(tool, res.returncode, parsed, timed_out=res.timed_out,
                                      timeout_s=timeout)
            if len(group) > 1 and whole.status == "failed":
                console.print(f"validate: {tool} failed with {len(group)} backends in one process: "
                              "re-running each backend alone to pin it")
                for b in group:
                    cmd_b, res_b, parsed_b, log_b, secs_b = run_tool(tool, [b])
                    outcomes.append((b, sanitizer.verdict(tool, res_b.returncode, parsed_b, backend=b,
                                                          timed_out=res_b.timed_out, timeout_s=timeout),
                                     cmd_b, log_b, secs_b, True))
                continue
            for b in group:
                outcomes.append((b, sanitizer.verdict(tool, res.returncode, parsed, backend=b,
                                                      timed_out=res.timed_out, timeout_s=timeout),
                                 cmd, log, secs, len(group) == 1))
        for b, v, cmd, log, secs, isolated in outcomes:
            failed += v.status == "failed"
            checked += v.status == "ok"
            passed = {"ok": True, "failed": False}.get(v.status)
            store.add_result(Result(
                run_id=rid, suite="validate", backend=b, problem_key=f"compute-sanitizer:{tool}",
                status=v.status, reason=v.reason[:1000], passed=passed,
                error_text="\n\n".join(v.first_errors)[:8000],
                extra={"tool": tool, "errors": v.errors, "calls": v.calls, "first_errors": v.first_errors,
                       "problems": [p.key() for p in problems], "problem_set": problem_set,
                       "isolated": isolated, "log": str(log), "command": shlex.join(cmd),
                       "seconds": round(secs, 1)}))
            first = v.first_errors[0].splitlines()[0] if v.first_errors else ""
            shown = v.reason + (f" | {first}" if first and first not in v.reason else "")
            table.add_row(b, tool, v.status, str(v.calls), str(v.errors), shown[:300])
    store.update_run(rid, status="complete", finished_at=now())
    console.print(table)
    console.print(f"validate run {rid} in {db} (suite validate); logs in {log_dir}")
    if failed:
        raise typer.Exit(1)
    if not checked:
        typer.echo("flashcore: validate checked nothing: every backend was unavailable or skipped", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(profile)
    app.command()(validate)
