"""Plans and filters."""
import pytest

from harness.plan import FilterError, make_plan, parse_filter
from harness.problem import Problem
from harness.suite import load_suite


def test_plan_is_problem_major_and_covers_every_backend():
    s = load_suite("fa-paper")
    plan = make_plan(s, ["sdpa-flash", "naive"])
    assert len(plan) == 48
    assert [c.backend for c in plan[:4]] == ["sdpa-flash", "naive", "sdpa-flash", "naive"]
    assert plan[0].problem == plan[1].problem


@pytest.mark.parametrize("expr,count", [
    ("seqlen_q>=4096", 12), ("head_dim=128,causal=true", 6), ("d64", 12), ("seqlen_q=512,head_dim=64", 2),
])
def test_filters_select_problems(expr, count):
    assert len(make_plan(load_suite("fa-paper"), ["naive"], expr)) == count


def test_unknown_filter_key_is_an_error_naming_the_allowed_keys():
    with pytest.raises(FilterError, match="allowed batch"):
        parse_filter("seqlen>=4")


def test_filter_type_mismatch_is_an_error_not_a_traceback():
    pred = parse_filter("seqlen_q>=abc")
    with pytest.raises(FilterError, match="cannot compare"):
        pred(Problem(batch=1, heads_q=1, seqlen_q=4, head_dim=64))
