"""The problem model: FLOPs by FlashAttention's convention, minimum bytes, validation."""
import itertools

import pytest

from harness.spec.problem import Problem, ProblemError


def brute_force_pairs(sq: int, sk: int, causal: bool) -> int:
    if not causal:
        return sq * sk
    return sum(1 for i in range(sq) for j in range(sk) if j <= i + sk - sq)


@pytest.mark.parametrize("sq,sk", list(itertools.product([1, 2, 7, 16, 33], [1, 3, 16, 40])))
@pytest.mark.parametrize("causal", [False, True])
def test_attended_pairs_match_a_brute_force_bottom_right_mask(sq, sk, causal):
    p = Problem(batch=1, heads_q=1, seqlen_q=sq, seqlen_k=sk, head_dim=64, causal=causal)
    assert p.attended_pairs() == brute_force_pairs(sq, sk, causal)


def test_flops_follow_flash_attention_convention():
    p = Problem(batch=2, heads_q=8, seqlen_q=512, head_dim=64)
    assert p.flops() == 4 * 2 * 8 * 512 * 512 * 64
    # causal counts the attended lower triangle, diagonal included: (S² + S) / 2 pairs
    c = p.with_(causal=True)
    assert c.flops() == 4 * 2 * 8 * (512 * 513 // 2) * 64
    assert c.flops() / p.flops() == pytest.approx(0.5, rel=1e-2)


def test_the_seeds_headline_number_is_5_6_tflops_not_52_3():
    p = Problem(batch=2, heads_q=8, seqlen_q=512, head_dim=64, dtype="float16")
    assert p.flops() / 0.192e-3 / 1e12 == pytest.approx(5.59, abs=0.01)


def test_min_bytes_read_qkv_once_write_o_once():
    p = Problem(batch=2, heads_q=8, heads_kv=2, seqlen_q=100, seqlen_k=300, head_dim=128, dtype="bfloat16")
    q = o = 2 * 100 * 8 * 128 * 2
    kv = 2 * 300 * 2 * 128 * 2
    assert p.min_bytes() == q + o + 2 * kv


def test_defaults_are_derived():
    p = Problem(batch=1, heads_q=4, seqlen_q=10, head_dim=64)
    assert (p.heads_kv, p.seqlen_k) == (4, 10)
    assert p.softmax_scale == pytest.approx(0.125)


@pytest.mark.parametrize("kw,msg", [
    (dict(batch=0), "batch=0"),
    (dict(heads_q=6, heads_kv=4), "multiple of heads_kv"),
    (dict(dtype="int8"), "allowed float16, bfloat16, float32"),
    (dict(layout="sbhd"), "allowed bshd, bhsd"),
    (dict(softmax_scale=float("nan")), "positive finite"),
    (dict(seqlen_q=1.5), "positive integer"),
])
def test_invalid_problems_name_the_field_and_what_is_allowed(kw, msg):
    base = dict(batch=1, heads_q=4, seqlen_q=8, head_dim=64)
    with pytest.raises(ProblemError, match=msg):
        Problem(**{**base, **kw})


def test_key_is_stable_and_distinguishes_problems():
    a = Problem(batch=1, heads_q=4, seqlen_q=8, head_dim=64)
    assert a.key() == "b1-hq4-hkv4-sq8-sk8-d64-bfloat16-full-bshd"
    assert a.with_(causal=True).key() != a.key()
    assert Problem.from_dict(a.as_dict()) == a
