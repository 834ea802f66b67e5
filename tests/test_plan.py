"""Plans and filters."""
import pytest

from harness.run.plan import FilterError, make_plan, parse_filter
from harness.spec.suite import load_suite


def test_plan_is_problem_major_and_covers_every_backend():
    s = load_suite("fa-paper")
    plan = make_plan(s, ["sdpa-flash", "naive"])
    assert len(plan) == 96  # 24 problems x 2 backends x 2 timing modes (fa-paper reports both)
    assert [(c.backend, c.mode) for c in plan[:4]] == [("sdpa-flash", "isolated"), ("naive", "isolated"),
                                                       ("sdpa-flash", "sustained"), ("naive", "sustained")]
    assert plan[0].problem == plan[3].problem != plan[4].problem


@pytest.mark.parametrize("expr,count", [
    ("seqlen_q>=4096", 12), ("head_dim=128,causal=true", 6), ("d64", 12), ("seqlen_q=512,head_dim=64", 2),
])
def test_filters_select_problems(expr, count):
    assert len({c.problem for c in make_plan(load_suite("fa-paper"), ["naive"], expr)}) == count


def test_unknown_filter_key_is_an_error_naming_the_allowed_keys():
    with pytest.raises(FilterError, match="allowed batch"):
        parse_filter("seqlen>=4")


def test_filter_type_mismatch_is_an_error_not_a_traceback():
    with pytest.raises(FilterError, match="seqlen_q takes an integer"):
        parse_filter("seqlen_q>=abc")
