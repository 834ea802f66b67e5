"""The GPU diagnostics are flashcore subcommands that keep their own options."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app


@pytest.mark.parametrize("name,option", [("repeat-cells", "--rounds"), ("thermal-timeline", "--phases"),
                                         ("clock-states", "--visits")])
def test_each_diagnostic_is_a_subcommand_whose_help_lists_its_own_options(name, option):
    res = CliRunner().invoke(app, ["diagnose", name, "--help"])
    assert res.exit_code == 0, res.output
    assert f"usage: flashcore diagnose {name}" in res.output and option in res.output


def test_a_diagnostic_refuses_an_option_it_does_not_have():
    res = CliRunner().invoke(app, ["diagnose", "clock-states", "--no-such-option"])
    assert res.exit_code == 2
