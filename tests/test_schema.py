"""The suite tables are pydantic models: a bound or a choice is written once and holds for the suite file,
for code that builds the tables and for the ``flashcore run`` overrides alike."""
from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from harness.cli import app
from harness.spec.schema import Checks, Timing, bounds, choices
from harness.spec.suite import SuiteError, load_suite

GOOD = '[suite]\nname="x"\nbackends=["naive"]\n[[grid]]\nbatch=1\nheads_q=2\nseqlen_q=8\nhead_dim=64\n'


def _load(tmp_path, extra: str):
    f = tmp_path / "s.toml"
    f.write_text(GOOD + extra)
    return load_suite(str(f))


def test_bounds_and_choices_are_read_from_the_models():
    assert bounds(Timing, "cool") == (0.0, 100.0)
    assert bounds(Timing, "rounds") == (1, 100)
    assert choices(Timing, "l2_flush_mode") == ("read", "write")
    assert choices(Timing, "modes") == ("isolated", "sustained")
    assert "normal" in choices(Checks, "distributions")


def test_the_dataclasses_validate_when_built_or_replaced():
    with pytest.raises(ValidationError):
        Timing(cool=101)
    with pytest.raises(ValidationError):
        replace(Timing(), max_noise=float("nan"))
    with pytest.raises(ValidationError):
        Checks(trials=True)  # a bool is not a count
    assert Timing(cool=1).cool == 1.0 and isinstance(Timing(cool=1).cool, float)
    assert Timing(modes=["isolated", "sustained"]).modes == ("isolated", "sustained")  # a worker's JSON list
    assert Checks(distributions="uniform").distributions == ("uniform",)


@pytest.mark.parametrize("extra, shown", [
    ("[timing]\nmin_samples=20\nmax_samples=10\n", "[timing] max_samples = 10: need 1 <= min_samples <= max_samples"),
    ("[timing]\nwarmup=2.0\n", "[timing] warmup = 2.0: must be a non-negative integer from 0 to 100000"),
    ("[timing]\nl2_flush='yes'\n", "[timing] l2_flush = 'yes': must be true or false"),
    ("[timing]\nbaseline=3\n", "[timing] baseline = 3: must be a string"),
    ("[timing]\ncool=-1\n", "[timing] cool = -1: must be a positive number from 0 to 100"),
    ("[checks]\nnope=1\n", "[checks] nope = 1: unknown key; allowed correctness, trials"),
    ("[checks]\ndistributions=[]\n", "[checks] distributions = []: must be a non-empty list of strings"),
    ("[suite.x]\n", "[suite] x = {}: unknown key; allowed name, description, backends"),
    ("timing = 3\n", "[timing] = 3: must be a table"),
    ("[[grid]]\n", "[[grid]] #2 = {}: must be a non-empty table of problem keys"),
])
def test_each_model_error_is_one_line_naming_file_key_value_and_what_is_allowed(tmp_path, extra, shown):
    if extra.startswith("timing ="):
        f = tmp_path / "s.toml"
        f.write_text(extra + GOOD)
        call = lambda: load_suite(str(f))  # noqa: E731
    else:
        call = lambda: _load(tmp_path, extra)  # noqa: E731
    with pytest.raises(SuiteError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and shown in msg, msg


def test_a_suite_without_a_name_is_named_after_its_file(tmp_path):
    assert _load(tmp_path, "").name == "x"
    f = tmp_path / "unnamed.toml"
    f.write_text(GOOD.replace('name="x"\n', ""))
    assert load_suite(str(f)).name == "unnamed"


@pytest.mark.parametrize("args, shown", [
    (["--rounds", "101"], "--rounds 101: allowed 1 to 100 visits"),
    (["--cool", "nan"], "--cool nan: allowed 0 (back to back) to 100 times the call's time"),
    (["--kernel-clock", "10001"], "--kernel-clock 10001: allowed 0 (off) to 10000 calls"),
    (["--l2-flush", "clean"], "--l2-flush 'clean': allowed read, write, off"),
])
def test_run_overrides_are_held_to_the_model_bounds(tmp_path, args, shown):
    res = CliRunner().invoke(app, ["run", "--suite", "smoke", "--db", str(tmp_path / "x.db"), *args])
    assert res.exit_code == 2 and shown in res.output, res.output
    assert not (tmp_path / "x.db").exists()


def test_claim_citations_are_models_that_refuse_blank_or_stray_keys():
    import harness.analysis.audit  # noqa: F401 - the audit package imports the claims module in its order
    from harness.spec.claims import MappingSource, Source

    assert Source(file="doc.txt", quote="q").file == "doc.txt"
    for bad in ({"file": " ", "quote": "q"}, {"file": "d", "quote": "q", "page": 3}, {"file": 1, "quote": "q"}):
        with pytest.raises(ValidationError):
            Source(**bad)
    with pytest.raises(ValidationError):
        MappingSource(url="u", quote="")
