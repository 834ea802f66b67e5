"""Suite files: the shipped suites parse; malformed ones give one line naming file, key and what is allowed."""
from pathlib import Path

import pytest

from harness.spec.suite import SuiteError, load_suite

SUITES = sorted(p.stem for p in (Path(__file__).parent.parent / "suites").glob("*.toml"))


@pytest.mark.parametrize("name", SUITES)
def test_every_shipped_suite_parses(name):
    from harness.testing import EXPLOITS, FAULTS, registered

    with registered(FAULTS, EXPLOITS):  # suites/faults.toml and exploits.toml name the test backends
        s = load_suite(name)
    assert s.problems and s.backends


def test_fa_paper_is_the_24_configurations_of_the_papers():
    s = load_suite("fa-paper")
    assert len(s.problems) == 24
    assert {p.batch * p.seqlen_q for p in s.problems} == {16384}
    assert {p.heads_q * p.head_dim for p in s.problems} == {2048}
    assert {p.seqlen_q for p in s.problems} == {512, 1024, 2048, 4096, 8192, 16384}


def test_sweep_has_both_dtypes_causal_and_a_gqa_case():
    s = load_suite("sweep")
    assert {p.dtype for p in s.problems} == {"float16", "bfloat16"}
    assert {p.causal for p in s.problems} == {False, True}
    assert any(p.heads_kv != p.heads_q for p in s.problems)


def write(tmp_path, text):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    return str(f)


GOOD = '[suite]\nname="x"\nbackends=["naive"]\n[[grid]]\nbatch=1\nheads_q=2\nseqlen_q=8\nhead_dim=64\n'


@pytest.mark.parametrize("text,expect", [
    ("[suite\n", "invalid TOML"),
    ('[[grid]]\nbatch=1\n', "[suite]"),
    ('[suite]\nname="x"\nbackends=["nope"]\n[[grid]]\nbatch=1\n', "unknown backend; allowed"),
    ('[suite]\nname="x"\nbackends=["naive"]\n', "[[grid]]"),
    (GOOD.replace("batch=1", "batch=0"), "batch=0"),
    (GOOD.replace("batch=1", "batch=[]"), "empty list"),
    (GOOD.replace("batch=1", "bach=1"), "unknown key; allowed"),
    (GOOD + "[timing]\nmode='magic'\n", "allowed events, graph"),
    (GOOD + "[timing]\nmax_noise=5\n", "fraction"),
    (GOOD + "[checks]\ndistributions=['gauss']\n", "allowed normal, uniform"),
    (GOOD + "[checks]\ntrials='two'\n", "non-negative integer"),
    (GOOD + "[extra]\n", "unknown section"),
    (GOOD.replace("batch=1", "tokens=100"), "multiple of seqlen_q"),
    (GOOD.replace('dtype', 'x') + "dtype='fp8'\n", "allowed float16"),
])
def test_malformed_suites_fail_with_one_line_naming_file_and_key(tmp_path, text, expect):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as exc:
        load_suite(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(path)
    assert expect in msg


def test_unknown_suite_name_lists_the_known_ones():
    with pytest.raises(SuiteError, match="allowed .*smoke"):
        load_suite("no-such-suite")



def test_the_l2_flush_mode_is_read_by_default_or_write(tmp_path):
    assert load_suite(write(tmp_path, GOOD)).timing.l2_flush_mode == "read"
    assert load_suite(write(tmp_path, GOOD + "[timing]\nl2_flush_mode='write'\n")).timing.l2_flush_mode == "write"
    with pytest.raises(SuiteError, match=r"\[timing\] l2_flush_mode.*allowed read, write"):
        load_suite(write(tmp_path, GOOD + "[timing]\nl2_flush_mode='clean'\n"))


def test_cooling_is_off_unless_a_suite_sets_it_and_is_bounded(tmp_path):
    assert load_suite(write(tmp_path, GOOD)).timing.cool == 0.0
    assert load_suite(write(tmp_path, GOOD + "[timing]\ncool=1.5\n")).timing.cool == 1.5
    with pytest.raises(SuiteError, match=r"\[timing\] cool = 500.*from 0 to 100"):
        load_suite(write(tmp_path, GOOD + "[timing]\ncool=500\n"))


def test_settling_time_and_kernel_clock_calls_are_bounded_timing_keys(tmp_path):
    t = load_suite(write(tmp_path, GOOD + "[timing]\nsettle_s=0\nkernel_clock_calls=10\n")).timing
    assert (t.settle_s, t.kernel_clock_calls) == (0.0, 10)
    assert load_suite(write(tmp_path, GOOD)).timing.settle_s > 0  # on unless a suite turns it off
    with pytest.raises(SuiteError, match=r"\[timing\] settle_s = -1.*from 0 to 60"):
        load_suite(write(tmp_path, GOOD + "[timing]\nsettle_s=-1\n"))
    with pytest.raises(SuiteError, match=r"\[timing\] kernel_clock_calls = 1.5.*integer"):
        load_suite(write(tmp_path, GOOD + "[timing]\nkernel_clock_calls=1.5\n"))


def test_minimum_sampled_time_is_on_by_default_and_bounded(tmp_path):
    assert load_suite(write(tmp_path, GOOD)).timing.min_time_s == 0.1
    assert load_suite(write(tmp_path, GOOD + "[timing]\nmin_time_s=0\n")).timing.min_time_s == 0.0
    with pytest.raises(SuiteError, match=r"\[timing\] min_time_s = -0.5.*from 0"):
        load_suite(write(tmp_path, GOOD + "[timing]\nmin_time_s=-0.5\n"))
