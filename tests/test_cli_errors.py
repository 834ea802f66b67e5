"""Error lines a new user meets: a backend whose plugin failed to load says why where it is asked for;
every database error names the file; no error line runs to thousands of characters; and `flashcore run`
works on a node without plotly (the dashboard modules are imported only by the commands that need them)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.backends import registry
from harness.cli import app
from harness.cli.errors import MAX_ERROR_CHARS, one_line
from harness.store.database import Store, StoreError

ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()
PREFIX = "flashcore: error: "


@pytest.fixture
def broken_plugin(monkeypatch):
    """A FLASHCORE_BACKENDS entry whose module does not import, loaded afresh (and forgotten after)."""
    monkeypatch.setenv(registry.EXTRA_ENV, "flashcore_missing_plugin.mod:MyBackend")
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_LOAD_ERRORS", {})
    yield
    registry._loaded = False


@pytest.mark.parametrize("asked", ["MyBackend", "my-backend"])
def test_a_backend_whose_plugin_failed_to_load_says_why_where_it_is_asked_for(tmp_path, broken_plugin, asked):
    res = cli.invoke(app, ["run", "--suite", "smoke", "--backends", asked, "--db", str(tmp_path / "r.db")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "No module named 'flashcore_missing_plugin'" in res.output
    assert "failed to load" in res.output and "flashcore_missing_plugin.mod:MyBackend" in res.output
    if asked == "my-backend":  # not the entry's name: still told it is unknown, and what did not load
        assert "unknown backend 'my-backend': allowed" in res.output


def test_a_database_the_system_will_not_open_is_named(tmp_path, monkeypatch):
    db = tmp_path / "r.db"

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(StoreError) as e:
        Store(db)
    assert str(e.value) == f"{db}: unable to open database file"
    res = cli.invoke(app, ["run", "--suite", "smoke", "--backends", "reference", "--db", str(db)])
    assert res.exit_code == 2 and f"{PREFIX}{db}: unable to open database file" in res.output, res.output


@pytest.mark.parametrize("argv", [["show"], ["export"], ["compare", "a", "b"], ["run", "--suite", "smoke"]])
def test_a_folder_given_as_the_database_is_named(tmp_path, argv):
    res = cli.invoke(app, [*argv, "--db", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert f"{tmp_path} is a directory, not a results database" in res.output


def test_a_long_error_is_capped_and_keeps_its_start(tmp_path):
    name = "warp-drive-" + "x" * 6000
    res = cli.invoke(app, ["run", "--suite", "smoke", "--backends", name, "--db", str(tmp_path / "r.db")])
    assert res.exit_code == 2
    (line,) = res.output.splitlines()
    assert line.startswith(f"{PREFIX}unknown backend 'warp-drive-xxx")
    assert len(line) <= len(PREFIX) + MAX_ERROR_CHARS
    assert line.endswith("more characters)")


def test_the_one_line_helper_leaves_a_short_error_alone():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * MAX_ERROR_CHARS) == "x" * MAX_ERROR_CHARS


def _without_plotly(tmp_path: Path) -> dict[str, str]:
    """An environment where `import plotly` fails, as on a GPU node where it was never installed (the
    worker processes inherit it too)."""
    fake = tmp_path / "fake" / "plotly"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named plotly (test: not installed)')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}


def test_importing_the_cli_imports_no_plotly_and_no_dashboard_module():
    code = ("import sys, harness.cli; bad = sorted(m for m in sys.modules if m.split('.')[0] == 'plotly' "
            "or m.startswith(('harness.views.dashboards', 'harness.analysis.audit', 'harness.tools.profiling'))); print(bad); "
            "sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_run_works_without_plotly_and_report_says_in_one_line_what_is_missing(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('[suite]\nname = "tiny"\nbackends = ["reference"]\n[[grid]]\nbatch = 1\nheads_q = 1\n'
                     'seqlen_q = 8\nhead_dim = 8\ndtype = "float32"\n[timing]\nmin_samples = 3\nmax_samples = 3\n'
                     'time_cap_s = 0.05\nmin_time_s = 0\nwarmup = 1\n')
    env = _without_plotly(tmp_path)
    db = tmp_path / "r.db"
    flashcore = [sys.executable, "-c", "from harness.cli import main; main()"]
    res = subprocess.run([*flashcore, "run", "--suite", str(suite), "--db", str(db)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "flashcore show --run" in res.stdout
    res = subprocess.run([*flashcore, "report", "--db", str(db), "--out", str(tmp_path / "d")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"{PREFIX}report is not available here: ") and "plotly" in res.stderr


def test_audit_gives_its_verdicts_without_plotly_and_says_the_page_was_not_written(tmp_path):
    """A GPU node without plotly still audits claims: the verdict table needs no plotly, only the HTML page."""
    claims = tmp_path / "claims.toml"
    claims.write_text('[[claim]]\nid = "c1"\nbackend = "sdpa-flash"\nproblem = { batch = 1, heads_q = 1, seqlen_q = 8, '
                      'head_dim = 8, dtype = "float16", causal = false }\ntflops = 1\n'
                      'source = { file = "x.txt", quote = "q" }\n')
    env = _without_plotly(tmp_path)
    flashcore = [sys.executable, "-c", "from harness.cli import main; main()"]
    res = subprocess.run([*flashcore, "audit", str(claims), "--db", str(tmp_path / "none.db"), "--out",
                          str(tmp_path / "a")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "c1" in res.stdout and "audit page not written" in res.stdout and "plotly" in res.stdout
    assert not (tmp_path / "a").exists()
