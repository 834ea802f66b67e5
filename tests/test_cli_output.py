"""What the commands write by default and what their help shows: generated files go to an ignored folder
(never over the committed dashboards/ or results/), and every boolean option reads as a flag."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

ROOT = Path(__file__).resolve().parent.parent
DB = ROOT / "results" / "h100" / "flashcore.db"
RUN = "h100-seed-claims"  # a small committed run
COMMANDS = ("env", "run", "show", "export", "compare", "build", "report", "audit", "profile", "validate")

needs_db = pytest.mark.skipif(not DB.is_file(), reason=f"{DB} is not in this checkout")


def _ignored(rel: str) -> bool:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT, check=False).returncode == 0


@needs_db
def test_report_and_audit_write_into_an_ignored_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the defaults are relative: they land here, not in the checkout
    res = CliRunner().invoke(app, ["report", "--db", str(DB), "--run", RUN])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["audit", str(ROOT / "suites" / "claims" / "seeds.toml"), "--db", str(DB)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "results" / "local" / "dashboards"
    assert {"index.html", "audit.html", f"run-{RUN}.html"} <= {p.name for p in out.iterdir()}
    assert not (tmp_path / "dashboards").exists()
    assert _ignored("results/local/dashboards/index.html")
    assert not _ignored("dashboards/index.html")  # the committed pages stay tracked


def test_the_report_modules_default_folder_is_the_commands():
    from harness.cli.report import DEFAULT_OUT as CLI_OUT
    from harness.views.dashboards import DEFAULT_OUT

    assert DEFAULT_OUT == CLI_OUT == Path("results/local/dashboards")


@needs_db
def test_export_writes_into_an_ignored_file_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["export", "--db", str(DB), "--run", RUN])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "results" / "local" / "export.csv").is_file()
    assert not (tmp_path / "results" / "export.csv").exists()
    assert _ignored("results/local/export.csv") and _ignored("results/export.parquet")


def _help(command: str) -> str:
    res = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_boolean_options_as_flags(command):
    from typer.main import get_command

    group = get_command(app)
    cmd = group.get_command(None, command)
    flags = [o for p in cmd.params if getattr(p, "is_flag", False) for o in p.opts if o.startswith("--")]
    text = _help(command)
    assert not re.search(r"<bool>|BOOLEAN", text), text
    for flag in [*flags, "--help"]:
        line = next((ln for ln in text.splitlines() if re.match(rf"\s*(-\w, )?{re.escape(flag)}\b", ln)), None)
        assert line is not None, f"{flag} is not in the help of {command}:\n{text}"
        assert not re.match(rf"\s*(-\w, )?{re.escape(flag)} <", line), line  # no value after a flag


def test_help_keeps_bracketed_words_in_option_texts():
    # the [timing] in "the suite's [timing] cool" is text, not markup
    assert "[timing] cool" in " ".join(_help("run").split())
