"""nox sessions for flashcore. ``nox -l`` lists them; ``nox`` alone runs the fast default set (tests, lint).

Tags: ``cpu`` sessions run anywhere; ``gpu`` sessions need an NVIDIA GPU and SKIP with the reason where
none is visible. Everything after ``--`` reaches the underlying command (``nox -s bench -- -k sdpa``).

Environments:
  * GPU sessions always run in the current environment (``python=False``): they need the machine's CUDA
    build of torch, which must never be reinstalled (the H100 has no network).
  * CPU sessions create a reused virtualenv and install ``torch==2.13.0`` (the local CPU build;
    override with FLASHCORE_TORCH_SPEC) before ``-e .[test]``. ``FLASHCORE_NOX_HOST=1`` makes them use
    the current environment instead (``venv_backend="none"``), as on the H100.
  * The interpreter for host sessions is the one running nox (override with FLASHCORE_PYTHON).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.needs_version = ">=2024.4.15"
nox.options.reuse_venv = "yes"

HOST = os.environ.get("FLASHCORE_NOX_HOST", "") == "1"
CPU_VENV = "none" if HOST else "virtualenv"
TORCH_SPEC = os.environ.get("FLASHCORE_TORCH_SPEC", "torch==2.13.0")
FLASHCORE = ("-c", "import sys; from harness.cli import app; sys.argv[0] = 'flashcore'; app()")

# The regression gate (docs/regression-gate.md, "How the thresholds were chosen"):
#   THRESHOLD: harness/analysis/regress.py fails a cell whose median is more than this much slower AND whose
#              raw rounds differ with Mann-Whitney p < ALPHA;
#   BACKSTOP:  pytest-benchmark's own --benchmark-compare-fail on the median, with no significance test,
#              set far above any run-to-run shift measured on the unchanged tree, so noise cannot trip it.
THRESHOLD = float(os.environ.get("FLASHCORE_REGRESS_THRESHOLD", "0.05"))
ALPHA = 0.01
BACKSTOP_PCT = 25
#   BASELINE_RUNS: runs `nox -s bench` records (FLASHCORE_BENCH_BASELINE_RUNS); the gate judges each cell against
#              the middle one, so one run in an unusual GPU state does not become the baseline
BASELINE_RUNS = 3

#: The committed dashboards: (database, folder, comparisons kept beside the default one). ``nox -s dashboards``
#: writes each folder afresh from its database: a page per run, the default comparison (the latest two
#: runs of one suite), each listed comparison, and the claims audit against the same database (it holds
#: the seed claims' cells; exploits.db and faults.db hold only the exploits and faults suites' runs).
#: ``flashcore report`` reads one database, and its index lists that database's runs only, so another
#: GPU's database gets a folder of its own inside dashboards/; those folders come first, so that the index of
#: dashboards/ finds and links them.
DASHBOARDS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("results/h200/flashcore.db", "dashboards/h200", (
        ("h200-fa-paper-peers", "h200-fa-paper-all"),
    )),
    ("results/h100/flashcore.db", "dashboards", (
        ("h100-seed-claims", "h100-seed-claims-2"),
        ("h100-fa-paper-s3-a", "h100-fa-paper-s3-b"),
        ("h100-ncu-agreement-write-s3", "h100-ncu-agreement-read-s3"),
        ("h100-clock-a", "h100-clock-b"),
    )),
)
CLAIMS = "suites/claims/seeds.toml"

PROFILE_DEFAULT = ("--suite", "fa-paper", "--filter", "seqlen_q=2048,head_dim=128",
                   "--backends", "sdpa-flash,sdpa-cudnn,flashcore-phase4x,flashcore-bleeding-edge")


def _host(session: nox.Session) -> bool:
    return session.venv_backend == "none"


def _python(session: nox.Session) -> str:
    return (os.environ.get("FLASHCORE_PYTHON") or sys.executable) if _host(session) else "python"


def _run_py(session: nox.Session, *args: str, **kw) -> str | bool | None:
    return session.run(_python(session), *args, external=True, **kw)


def _install(session: nox.Session) -> None:
    """torch first (so pip never picks a CUDA wheel for the CPU venv), then the project with test tools."""
    if _host(session):
        try:
            _run_py(session, "-c", "import torch, harness", silent=True)
        except CommandFailed:
            session.error(f"{_python(session)} cannot import torch and harness: FLASHCORE_NOX_HOST=1 uses "
                          "this environment as it is; install the project there first (pip install -e .)")
        return
    session.install(TORCH_SPEC)
    session.install("-e", ".[test]")


def _require_gpu(session: nox.Session) -> None:
    """Skip (not fail) where there is no GPU: no nvidia-smi, no GPU listed, or torch sees no CUDA."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        session.skip(f"no NVIDIA GPU here (nvidia-smi is not on PATH): '{session.name}' is a GPU session; "
                     "run it on the H100")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=120, check=False)
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        first = (listed.stdout or listed.stderr).strip().splitlines()[:1]
        session.skip(f"nvidia-smi lists no GPU ({first[0] if first else f'exit {listed.returncode}'}): "
                     f"'{session.name}' is a GPU session")
    probe = subprocess.run([_python(session), "-c",
                            "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"],
                           capture_output=True, text=True, timeout=300, check=False)
    if probe.returncode != 0:
        why = "torch.cuda.is_available() is False" if probe.returncode == 3 else probe.stderr.strip()[-300:]
        session.skip(f"{_python(session)}: no usable CUDA torch ({why}): '{session.name}' is a GPU session")


def _flashcore(session: nox.Session, *args: str) -> None:
    _run_py(session, *FLASHCORE, *args)


def _suite(session: nox.Session, name: str) -> None:
    _flashcore(session, "run", "--suite", name, *session.posargs)


# -- CPU ------------------------------------------------------------------------------------------------
@nox.session(venv_backend=CPU_VENV, tags=["cpu"])
def tests(session: nox.Session) -> None:
    """CPU unit tests: pytest -m "not gpu" with the GPU hidden (posargs go to pytest)."""
    _install(session)
    session.env["CUDA_VISIBLE_DEVICES"] = ""
    _run_py(session, "-m", "pytest", "-m", "not gpu", *(session.posargs or ["-q", "tests"]))


@nox.session(venv_backend=CPU_VENV, tags=["cpu"])
def lint(session: nox.Session) -> None:
    """ruff check over the repository (posargs replace the default target '.')."""
    if not _host(session):
        session.install("ruff")
    _run_py(session, "-m", "ruff", "check", *(session.posargs or ["."]))


@nox.session(venv_backend=CPU_VENV, tags=["cpu"], default=False)
def build(session: nox.Session) -> None:
    """Compile the project kernels for sm_90a (flashcore build): resources and SASS audit; needs nvcc."""
    _install(session)
    _flashcore(session, "build", *session.posargs)


@nox.session(venv_backend=CPU_VENV, tags=["cpu", "suite"], default=False)
def smoke(session: nox.Session) -> None:
    """flashcore run --suite smoke: tiny problems, every backend (the CPU path where there is no GPU)."""
    _install(session)
    _suite(session, "smoke")


@nox.session(venv_backend=CPU_VENV, tags=["cpu"], default=False)
def report(session: nox.Session) -> None:
    """flashcore report: the offline HTML dashboards from the results database."""
    _install(session)
    _flashcore(session, "report", *session.posargs)


def dashboard_commands(db: str, out: str, pairs: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """The flashcore commands that write one dashboards folder, in order. Each listed comparison renders
    its two runs first; the report of every run comes after, so each run page links the default comparison
    as a plain ``flashcore report`` makes it; the audit comes last and writes the index that links it all."""
    cmds = [["report", "--db", db, "--out", out, "--run", a, "--run", b, "--compare", a, "--compare", b]
            for a, b in pairs]
    cmds.append(["report", "--db", db, "--out", out])
    cmds.append(["audit", CLAIMS, "--db", db, "--out", out])
    return cmds


@nox.session(venv_backend=CPU_VENV, tags=["cpu"], default=False)
def dashboards(session: nox.Session) -> None:
    """Regenerate the committed dashboards/ from the committed databases (report, comparisons, audit)."""
    _install(session)
    fresh = Path(session.create_tmp()) / "dashboards-fresh"
    shutil.rmtree(fresh, ignore_errors=True)  # so a page that no command writes any more does not linger
    for db, out, pairs in DASHBOARDS:
        if out != "dashboards" and not out.startswith("dashboards/"):
            session.error(f"DASHBOARDS: {out!r} is not dashboards/ or a folder in it")
        if not Path(db).is_file():
            session.error(f"{db} is missing: the {out}/ pages are made from it")
        for cmd in dashboard_commands(db, str(fresh / out), pairs):
            _flashcore(session, *cmd)
    shutil.rmtree("dashboards", ignore_errors=True)
    shutil.copytree(fresh / "dashboards", "dashboards")
    session.log(f"dashboards/: {sum(1 for p in Path('dashboards').rglob('*') if p.is_file())} files")


# -- GPU: always the current environment (its CUDA torch) -----------------------------------------------
@nox.session(python=False, tags=["gpu", "suite"], default=False)
def correctness(session: nox.Session) -> None:
    """flashcore run --suite correctness: ragged tiles, seqlen 1, GQA, four input distributions; no timing."""
    _require_gpu(session)
    _suite(session, "correctness")


@nox.session(python=False, tags=["gpu", "suite"], default=False)
def determinism(session: nox.Session) -> None:
    """flashcore run --suite determinism: 100 runs on the same inputs, compared bit for bit."""
    _require_gpu(session)
    _suite(session, "determinism")


@nox.session(python=False, tags=["gpu", "suite"], default=False)
def sweep(session: nox.Session) -> None:
    """flashcore run --suite sweep: the B/H/S/D grid, fp16 and bf16, causal and not."""
    _require_gpu(session)
    _suite(session, "sweep")


@nox.session(name="fa-paper", python=False, tags=["gpu", "suite"], default=False)
def fa_paper(session: nox.Session) -> None:
    """flashcore run --suite fa-paper: the FlashAttention papers' forward grid (24 configurations)."""
    _require_gpu(session)
    _suite(session, "fa-paper")


def _bench_pytest(session: nox.Session, *args: str) -> None:
    _run_py(session, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--benchmark-only",
            "--benchmark-columns=min,median,iqr,rounds,iterations", *args)


def _bench_device(session: nox.Session) -> None:
    # FLASHCORE_BENCH_DEVICE=cpu: a tiny CPU set that exercises baseline → regress → gate without a GPU
    if os.environ.get("FLASHCORE_BENCH_DEVICE", "").lower() != "cpu":
        _require_gpu(session)


@nox.session(python=False, tags=["gpu", "perf"], default=False)
def bench(session: nox.Session) -> None:
    """pytest-benchmark over the benchmark cells, BASELINE_RUNS times (each its own process): the baseline set
    in results/benchmarks/<gpu>-<driver>/, NNNN_baseline-<stamp>.json."""
    _bench_device(session)
    if os.environ.get("FLASHCORE_SLOWDOWN"):
        session.error("FLASHCORE_SLOWDOWN is set: a baseline must never be recorded with the test hook "
                      "active")
    raw = os.environ.get("FLASHCORE_BENCH_BASELINE_RUNS", str(BASELINE_RUNS))
    if not raw.isdigit() or not 1 <= int(raw) <= 20:
        session.error(f"FLASHCORE_BENCH_BASELINE_RUNS={raw!r}: a whole number of runs from 1 to 20")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for _ in range(int(raw)):
        _bench_pytest(session, f"--benchmark-save=baseline-{stamp}", "--benchmark-save-data", *session.posargs)


@nox.session(python=False, tags=["gpu", "perf"], default=False)
def regress(session: nox.Session) -> None:
    """Re-time the benchmark cells and gate them against the newest baseline set (slowdown/missing cell fails)."""
    _bench_device(session)
    out = _run_py(session, "-m", "harness.analysis.regress", "--print-baseline", silent=True)
    baselines = [Path(line) for line in str(out).strip().splitlines() if line.strip()]
    baseline = baselines[-1]  # pytest-benchmark's backstop compares with one file: the set's newest
    storage = baseline.parents[1]
    current, verdict = storage / "regress-latest.json", storage / "regress-latest-verdict.json"
    current.unlink(missing_ok=True)
    bench_error = None
    try:
        _bench_pytest(session, f"--benchmark-compare={baseline}",
                      f"--benchmark-compare-fail=median:{BACKSTOP_PCT}%", f"--benchmark-json={current}",
                      *session.posargs)
    except CommandFailed as exc:  # still run the gate below, so its table is printed
        bench_error = exc
    if not current.exists() or current.stat().st_size == 0:
        session.error(f"the benchmarks wrote no results to {current}: see the pytest output above")
    try:
        _run_py(session, "-m", "harness.analysis.regress", "--baseline", *map(str, baselines), "--current",
                str(current), "--threshold", str(THRESHOLD), "--alpha", str(ALPHA), "--report", str(verdict))
    except CommandFailed:
        session.error(f"regression gate FAILED against {', '.join(p.name for p in baselines)} (table above; "
                      f"verdicts in {verdict})")
    if bench_error is not None:
        session.error(f"pytest-benchmark failed (a benchmark errored or the median:{BACKSTOP_PCT}% backstop "
                      "tripped): see its output above")


@nox.session(python=False, tags=["gpu", "perf"], default=False)
def profile(session: nox.Session) -> None:
    """flashcore profile: Nsight Compute metrics of selected cells, stored beside the timings."""
    _require_gpu(session)
    _flashcore(session, "profile", *(session.posargs or PROFILE_DEFAULT))


@nox.session(python=False, tags=["gpu"], default=False)
def sanitize(session: nox.Session) -> None:
    """flashcore validate: compute-sanitizer memcheck/racecheck/synccheck/initcheck on the project kernels."""
    _require_gpu(session)
    _flashcore(session, "validate", *session.posargs)


# -- GPU evidence in stages, each fitting one call on an offline GPU machine ----------------------------
EVIDENCE_STAGES = ("setup", "gpu-tests", "peers", "fa-paper", "crosscheck", "duty-cycle", "rounds", "core-compare",
                   "backward", "serving")
#: the duty-cycle stage's cells (CELLS overrides): one long non-causal and one causal fa-paper cell per backend
DUTY_CYCLE_CELLS = ",".join(f"{b}:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-{c}-bshd"
                            for b in ("sdpa-cudnn", "flashcore-bleeding-edge") for c in ("full", "causal"))
#: the backends with a backward that the backward stage measures (BACKENDS overrides)
BACKWARD_BACKENDS = "sdpa-cudnn,sdpa-flash,flex,fa4,fa4-det,cudnn-frontend,cudnn-frontend-det,sdpa-flash-det"
SERVING_SUITES = ("decode", "varlen", "window", "fp8")
EVIDENCE_BACKENDS = "sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge"


def _evidence_step(session: nox.Session, *args: str, timed: bool = False, env: dict[str, str] | None = None) -> None:
    """Run one step of the procedure and print its exit code; a failing step does not stop the stage."""
    import time

    t0 = time.monotonic()
    session.log(f"+ {' '.join(args)}")
    code = session.run(*args, external=True, success_codes=range(256), env=env)
    session.log(f"exit code {0 if code is True else code}")
    if timed:
        session.log(f"wall {time.monotonic() - t0:.0f} s: {' '.join(args)}")


def _has_run(db: str, run_id: str) -> bool:
    """Whether ``db`` already holds ``run_id`` (a stage called again resumes its runs instead of failing)."""
    import sqlite3

    if not Path(db).is_file():
        return False
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None
    except sqlite3.Error:
        return False
    finally:
        con.close()


def _run_or_resume(session: nox.Session, fc: tuple[str, ...], db: str, run_id: str, *args: str) -> None:
    resume = ("--resume",) if _has_run(db, run_id) else ()
    _evidence_step(session, *fc, "run", *args, "--db", db, "--run-id", run_id, *resume, timed=True)


@nox.session(python=False, tags=["gpu"], default=False)
def evidence(session: nox.Session) -> None:
    """GPU evidence by stage (nox -s evidence -- STAGE): setup, gpu-tests, peers, fa-paper, crosscheck (resumed
    when called again), duty-cycle (CELLS: BACKEND:PROBLEM_KEY,...), rounds, core-compare (OLD=PATH: an earlier core's source tree, run beside this one in the same call), backward,
    serving (SUITES: default decode,varlen,window,fp8). The backward and serving stages resume their runs
    when called again with the same TAG and DB, so a stage cut by a device call's limit goes on in the next.

    For an offline GPU machine with the optional backends staged in /opt (the peers: flashcore wheelhouse).
    Databases go to $DB (default $GPU_DIR/flashcore.db, GPU_DIR default results/gpu), logs and a consistent
    copy of the database to $OUT (default /tmp/out); runs are named $TAG-<stage> (TAG default gpu)."""
    if not session.posargs or session.posargs[0] not in EVIDENCE_STAGES:
        session.error(f"name a stage: nox -s evidence -- STAGE, STAGE one of {', '.join(EVIDENCE_STAGES)}")
    stage = session.posargs[0]
    _require_gpu(session)
    env = os.environ
    out, gpu = env.get("OUT", "/tmp/out"), env.get("GPU_DIR", "results/gpu")
    db, tag = env.get("DB", f"{gpu}/flashcore.db"), env.get("TAG", "gpu")
    backends, logs = env.get("BACKENDS", EVIDENCE_BACKENDS), "/tmp/fclogs"
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(gpu).mkdir(parents=True, exist_ok=True)
    session.run("bash", "scripts/device_setup.sh", external=True)
    # what sourcing device_setup.sh exports, and where the staged backends are found
    paths = [p for p in ("/opt/fa4site", "/opt/fa4site/nvidia_cutlass_dsl/dsl_packages", "/opt/peers")
             if Path(p).is_dir()]
    session.env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    session.env.update(PYTHONUNBUFFERED="1", FLASHINFER_WORKSPACE_BASE="/opt/flashinfer-ws",
                       FLASHINFER_CUDA_ARCH_LIST="9.0a", MAX_JOBS=str(os.cpu_count() or 1))
    py = _python(session)
    fc = (py, *FLASHCORE)
    if stage == "setup":
        _evidence_step(session, "nvidia-smi",
                       "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit", "--format=csv")
        _evidence_step(session, py, "-c", "from harness.tools.build import load_ops; load_ops(verbose=True)")
        _evidence_step(session, *fc, "env")
    elif stage == "gpu-tests":
        _evidence_step(session, py, "-m", "pytest", "-q", "-m", "gpu", "tests/test_harness_gpu.py",
                       "tests/test_timing_modes.py", "tests/test_kernels_gpu.py", timed=True)
    elif stage == "peers":  # the peer backends: correctness and determinism rows, every distribution
        peers = "fa3,flashinfer-fa3,flashinfer-fa2,cudnn-frontend"
        for suite in ("correctness", "determinism"):
            _evidence_step(session, *fc, "run", "--suite", suite, "--backends", peers, "--db", db,
                           "--run-id", f"{tag}-{suite}-peers", "--log-dir", logs, timed=True)
    elif stage == "fa-paper":  # every available backend, both timing modes, correctness included
        _evidence_step(session, *fc, "run", "--suite", "fa-paper", "--db", db, "--run-id", f"{tag}-fa-paper",
                       "--log-dir", logs, timed=True)
        _evidence_step(session, *fc, "audit", CLAIMS, "--db", db, "--out", f"{out}/audit")
    elif stage == "crosscheck":  # flashcore's two modes against do_bench and ncu (FILTER narrows the cells)
        resume = ("--resume",) if _has_run(db, f"{tag}-crosscheck") or _has_run(db, f"{tag}-crosscheck-flashcore") else ()
        _evidence_step(session, *fc, "crosscheck", "--suite", "fa-paper", "--filter",
                       env.get("FILTER", "seqlen_q>=1024"), "--backends", backends, "--db", db,
                       "--run-id", f"{tag}-crosscheck", *resume, timed=True)
    elif stage == "duty-cycle":  # the sustained loop with and without do_bench's flush between calls, and do_bench
        cells = [a for c in env.get("CELLS", DUTY_CYCLE_CELLS).split(",") if c for a in ("--cell", c)]
        _evidence_step(session, *fc, "diagnose", "duty-cycle", "--suite", "fa-paper", *cells,
                       "--json", f"{out}/duty-cycle.json", timed=True)
    elif stage == "rounds":  # two back-to-back runs with interleaved rounds: the ratio agreement
        for r in ("a", "b"):
            _evidence_step(session, *fc, "run", "--suite", "fa-paper", "--rounds", env.get("ROUNDS", "3"),
                           "--modes", env.get("MODES", "isolated"), "--backends", backends,
                           "--filter", env.get("FILTER", "seqlen_q>=2048"), "--db", db,
                           "--run-id", f"{tag}-rounds-{r}", "--log-dir", logs, timed=True)
        _evidence_step(session, *fc, "compare", f"{tag}-rounds-a", f"{tag}-rounds-b", "--db", db)
    elif stage == "core-compare":  # an earlier core (OLD: its source tree, e.g. a git worktree) against this one
        old_tree = env.get("OLD")
        if not old_tree or not Path(old_tree, "harness").is_dir():
            session.error("core-compare needs OLD=PATH, a source tree of the earlier core (git worktree add PATH REV)")
        old_db = f"{gpu}/old-core.db"
        old_env = {"PYTHONPATH": os.pathsep.join([str(Path(old_tree).resolve()), session.env["PYTHONPATH"]])}
        # both cores read the earlier tree's suite files: the same cells, in a format both know
        suites = Path(old_tree).resolve() / "suites"
        cells = ["--backends", env.get("BACKENDS", "sdpa-flash,sdpa-cudnn,sdpa-math,naive"), "--log-dir", logs]
        timed_cells = ["--suite", str(suites / "fa-paper.toml"), "--modes", "isolated", "--filter",
                       env.get("FILTER", "seqlen_q<=4096"), "--backends", env.get("BACKENDS", "sdpa-cudnn,sdpa-flash"),
                       "--log-dir", logs]
        for suite in ("correctness", "determinism"):  # the same status for every cell
            path = str(suites / f"{suite}.toml")
            _evidence_step(session, *fc, "run", "--suite", path, *cells, "--db", old_db, "--run-id",
                           f"{tag}-old-{suite}", env=old_env, timed=True)
            _evidence_step(session, *fc, "run", "--suite", path, *cells, "--db", db, "--run-id",
                           f"{tag}-new-{suite}", timed=True)
        # medians: old, new, old again, so the old core's own run-to-run spread is the yardstick
        for who, where, extra_env in (("old-a", old_db, old_env), ("new", db, None), ("old-b", old_db, old_env)):
            _evidence_step(session, *fc, "run", *timed_cells, "--db", where, "--run-id", f"{tag}-{who}-fa-paper",
                           env=extra_env, timed=True)
        _evidence_step(session, *fc, "db", "merge", old_db, db)
        _evidence_step(session, *fc, "compare", f"{tag}-old-a-fa-paper", f"{tag}-old-b-fa-paper", "--db", db)
        _evidence_step(session, *fc, "compare", f"{tag}-old-a-fa-paper", f"{tag}-new-fa-paper", "--db", db)
    elif stage == "backward":  # the FA papers' backward grid, then the backward rows of correctness and determinism
        bwd = ("--backends", env.get("BACKENDS", BACKWARD_BACKENDS), "--log-dir", logs)
        _run_or_resume(session, fc, db, f"{tag}-fa-paper-bwd", "--suite", "fa-paper-bwd", "--filter",
                       env.get("FILTER", "op=bwd"), *bwd)
        _run_or_resume(session, fc, db, f"{tag}-correctness-bwd", "--suite", "correctness", "--filter", "op!=fwd", *bwd)
        _run_or_resume(session, fc, db, f"{tag}-determinism-bwd", "--suite", "determinism", "--filter", "op=bwd", *bwd)
    elif stage == "serving":  # FlashInfer's and flex's compiles first, side by side, then each serving suite
        suites = [x for x in env.get("SUITES", ",".join(SERVING_SUITES)).split(",") if x]
        _evidence_step(session, *fc, "warm", *(a for suite in suites for a in ("--suite", suite)), timed=True)
        for suite in suites:
            _run_or_resume(session, fc, db, f"{tag}-{suite}", "--suite", suite, "--log-dir", logs)
    _evidence_step(session, *fc, "db", "copy", db, f"{out}/")
    if Path(logs).is_dir():
        import tarfile

        with tarfile.open(f"{out}/logs-{stage}.tgz", "w:gz") as tar:
            tar.add(logs, arcname="fclogs")
