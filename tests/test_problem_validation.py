"""The problem model checks every given value before it derives a default from another, so a bad size is
one line naming file, key, value and what is allowed; a default is spelt by leaving the key out (0 is
not a default, it is an error)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.run.plan import FilterError, make_plan, parse_filter
from harness.spec.problem import Problem, ProblemError
from harness.spec.suite import SuiteError, load_suite

HEAD = '[suite]\nname = "x"\nbackends = ["reference"]\n[[grid]]\nbatch = 1\nheads_q = 2\nseqlen_q = 16\n'


def _suite(tmp_path: Path, grid: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(HEAD + grid)
    return p


@pytest.mark.parametrize("grid,shown", [
    ("head_dim = 0\n", "head_dim=0: must be a positive integer"),
    ("head_dim = [64, 0]\n", "head_dim=0: must be a positive integer"),
    ("head_dim = -0.0\n", "head_dim=-0.0: must be a positive integer"),
    ("head_dim = -1\n", "head_dim=-1: must be a positive integer"),
    ('head_dim = "64"\n', "head_dim='64': must be a positive integer"),
    ("head_dim = 64.0\n", "head_dim=64.0: must be a positive integer"),  # a float is not a size
    ("head_dim = true\n", "head_dim=True: must be a positive integer"),  # nor is a bool (True == 1)
    ("head_dim = nan\n", "head_dim=nan: must be a positive integer"),
    ("head_dim = 64\nheads_kv = 0\n", "heads_kv=0: must be a positive integer (leave heads_kv out for the "
                                      "default, heads_q)"),
    ("head_dim = 64\nseqlen_k = 0\n", "seqlen_k=0: must be a positive integer (leave seqlen_k out for the "
                                      "default, seqlen_q)"),
    ("head_dim = 64\nheads_kv = false\n", "heads_kv=False: must be a positive integer"),
    ("head_dim = 64\nsoftmax_scale = 0\n", "softmax_scale=0: must be a positive finite number (leave "
                                           "softmax_scale out for the default, 1/sqrt(head_dim))"),
    ("head_dim = 64\nsoftmax_scale = -0.5\n", "softmax_scale=-0.5: must be a positive finite number"),
    ("head_dim = 64\nsoftmax_scale = inf\n", "softmax_scale=inf: must be a positive finite number"),
    ("head_dim = 64\nsoftmax_scale = nan\n", "softmax_scale=nan: must be a positive finite number"),
    ("head_dim = 64\nsoftmax_scale = " + "9" * 400 + "\n", "must be a positive finite number"),
])
def test_a_bad_size_or_scale_is_one_line_naming_file_key_value_and_what_is_allowed(tmp_path, grid, shown):
    path = _suite(tmp_path, grid)
    with pytest.raises(SuiteError) as e:
        load_suite(str(path))
    assert shown in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    res = CliRunner().invoke(app, ["run", "--suite", str(path), "--db", str(tmp_path / "r.db")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("flashcore: error: ") and shown in res.output
    assert not (tmp_path / "r.db").exists()  # refused before anything was opened


def test_leaving_a_key_out_is_the_default():
    p = Problem(batch=1, heads_q=4, seqlen_q=10, head_dim=64)
    assert (p.heads_kv, p.seqlen_k, p.softmax_scale) == (4, 10, 0.125)
    given = Problem(batch=1, heads_q=4, seqlen_q=10, head_dim=64, heads_kv=2, seqlen_k=7, softmax_scale=1)
    assert (given.heads_kv, given.seqlen_k) == (2, 7)
    assert isinstance(given.softmax_scale, float) and given.softmax_scale == 1.0


@pytest.mark.parametrize("kw,shown", [
    (dict(head_dim=0), "head_dim=0"), (dict(heads_kv=0), "heads_kv=0"), (dict(seqlen_k=0), "seqlen_k=0"),
    (dict(softmax_scale=0.0), "softmax_scale=0.0"), (dict(softmax_scale=True), "softmax_scale=True"),
    (dict(batch=True), "batch=True"), (dict(heads_q=2.0), "heads_q=2.0"), (dict(dtype=["bfloat16"]), "dtype="),
    (dict(softmax_scale=math.inf), "softmax_scale=inf"), (dict(softmax_scale=10**400), "softmax_scale=1000"),
])
def test_the_model_itself_refuses_what_no_kernel_can_run(kw, shown):
    with pytest.raises(ProblemError, match=shown.replace("[", r"\[")):
        Problem(**{"batch": 1, "heads_q": 2, "seqlen_q": 16, "head_dim": 64, **kw})


@pytest.mark.parametrize("expr,shown", [
    ("batch=true", "batch takes an integer"),  # True == 1 in Python: it must not select batch 1
    ("seqlen_q>=1.5", "seqlen_q takes an integer"),
    ("causal=yes", "causal takes true or false"),
    ("dtype=fp16", "dtype takes float16, bfloat16, float32"),
    ("layout=bsdh", "layout takes bshd, bhsd"),
])
def test_a_filter_value_the_key_cannot_hold_is_an_error_not_an_empty_selection(expr, shown):
    with pytest.raises(FilterError, match=shown):
        parse_filter(expr)


def test_a_valid_filter_still_selects():
    assert len({c.problem for c in make_plan(load_suite("fa-paper"), ["naive"], "causal=true,head_dim=128")}) == 6
