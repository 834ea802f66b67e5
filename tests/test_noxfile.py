"""The nox sessions: names, descriptions, tags, the default set, GPU sessions skipping without a GPU."""
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU = {"tests", "lint", "build", "smoke", "report", "dashboards"}
GPU = {"correctness", "determinism", "sweep", "fa-paper", "bench", "regress", "profile", "sanitize", "evidence"}

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nox") is None, reason="nox is not installed")


def nox(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def sessions():
    res = nox("-l", "--json", "-t", "cpu", "gpu")
    assert res.returncode == 0, res.stderr
    return {s["name"]: s for s in json.loads(res.stdout)}


def test_every_session_exists_with_a_description(sessions):
    assert set(sessions) == CPU | GPU
    for name, s in sessions.items():
        assert len(s["description"]) > 20, f"{name} has no real docstring"


def test_sessions_are_tagged_cpu_or_gpu(sessions):
    for name, s in sessions.items():
        assert ("gpu" in s["tags"]) == (name in GPU) and ("cpu" in s["tags"]) == (name in CPU), (name, s["tags"])


def test_suite_sessions_run_the_suite_of_their_name(sessions):
    for name in ("smoke", "correctness", "determinism", "sweep", "fa-paper"):
        assert f"--suite {name}" in sessions[name]["description"]
        assert "suite" in sessions[name]["tags"]


def test_gpu_sessions_use_the_current_environment(sessions):
    # python=False: the machine's CUDA torch is used, never reinstalled
    assert all(sessions[n]["python"] is False for n in GPU)


def test_plain_nox_runs_only_the_fast_default_set():
    res = nox("-l", "--json")
    assert res.returncode == 0, res.stderr
    assert {s["name"] for s in json.loads(res.stdout)} == {"tests", "lint"}


def test_the_listing_shows_descriptions_and_tags():
    out = nox("-l").stdout
    assert "* tests [cpu] -> CPU unit tests" in out
    assert "- regress [gpu,perf] -> Re-time the benchmark cells and gate them" in out


def test_gpu_sessions_skip_with_the_reason_where_there_is_no_gpu():
    path = os.path.dirname(sys.executable)
    if shutil.which("nvidia-smi", path=path):
        pytest.skip("nvidia-smi sits beside this Python: cannot hide the GPU")
    env = {**os.environ, "PATH": path}
    env.pop("FLASHCORE_BENCH_DEVICE", None)
    res = nox("-s", "bench", "sanitize", env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Session bench skipped: no NVIDIA GPU here (nvidia-smi is not on PATH)" in out
    assert "Session sanitize skipped" in out


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_posargs_reach_the_command():
    res = nox("-s", "lint", "--", "noxfile.py", env={**os.environ, "FLASHCORE_NOX_HOST": "1"})
    out = res.stdout + res.stderr
    assert "-m ruff check noxfile.py" in out
    assert res.returncode == 0, out  # the noxfile itself is lint-clean


@functools.cache
def _noxfile():
    """The noxfile as a module (once: loading it registers its sessions with nox)."""
    spec = importlib.util.spec_from_file_location("flashcore_noxfile", ROOT / "noxfile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_the_dashboards_session_makes_every_committed_page(tmp_path):
    """Its commands, run into a fresh folder, write exactly the files committed in dashboards/, and the audit
    there judges the seed claims against measurements."""
    from typer.testing import CliRunner

    from harness.cli import app

    pages = {}
    noxfile = _noxfile()
    for db, out, pairs in noxfile.DASHBOARDS:
        assert (ROOT / db).is_file(), db
        fresh = tmp_path / out
        for cmd in noxfile.dashboard_commands(str(ROOT / db), str(fresh), pairs):
            res = CliRunner().invoke(app, cmd)
            assert res.exit_code == 0, (cmd, res.output)
        pages.update({str(p.relative_to(tmp_path)): p for p in fresh.rglob("*") if p.is_file()})
    listed = subprocess.run(["git", "ls-files", "dashboards"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    assert set(pages) == set(listed.stdout.split())
    audit = pages["dashboards/audit.html"].read_text()
    assert 'c-confirmed">confirmed' in audit and 'c-refuted">refuted' in audit  # measured, not all untested
