"""The correctness rules, on outputs known to be right or wrong (CPU)."""
import pytest
import torch

from harness.measure import correctness as C
from harness.measure.inputs import make_inputs
from harness.spec import attention_math
from harness.spec.problem import Problem

P = Problem(batch=1, heads_q=2, seqlen_q=64, head_dim=64, dtype="float16")


@pytest.fixture(scope="module")
def case():
    q, k, v = make_inputs(P, seed=7, device="cpu")
    return q, k, v, C.build_oracle(P, q, k, v)


def test_pytorch_own_low_precision_result_passes(case):
    q, k, v, oracle = case
    low = attention_math.attention(q, k, v, P, q.dtype)
    assert C.passes(C.error_metrics(low, oracle.ref), oracle)


def test_float64_reference_rounded_to_the_dtype_passes(case):
    q, k, v, oracle = case
    assert C.passes(C.error_metrics(oracle.ref.to(q.dtype), oracle.ref), oracle)


@pytest.mark.parametrize("corrupt", ["zeros", "mean_v", "one_nan", "scaled", "transposed_heads", "shifted_row"])
def test_known_bad_outputs_fail(case, corrupt):
    q, k, v, oracle = case
    good = oracle.ref.to(q.dtype)
    bad = {
        "zeros": lambda: torch.zeros_like(good),
        "mean_v": lambda: v.mean(dim=1, keepdim=True).expand_as(good).clone(),
        "one_nan": lambda: good.clone().index_put_((torch.tensor([0]), torch.tensor([3]), torch.tensor([1]),
                                                    torch.tensor([5])), torch.tensor(float("nan"), dtype=q.dtype)),
        "scaled": lambda: good * 1.05,
        "transposed_heads": lambda: good.flip(2),
        "shifted_row": lambda: torch.roll(good, 1, dims=1),
    }[corrupt]()
    err = C.error_metrics(bad, oracle.ref)
    assert not C.passes(err, oracle)
    assert C.failure_reason(err, oracle)


def test_nan_and_inf_are_counted_not_hidden(case):
    q, k, v, oracle = case
    out = oracle.ref.to(q.dtype).clone()
    out[0, 0, 0, :3] = float("nan")
    out[0, 1, 0, 0] = float("inf")
    err = C.error_metrics(out, oracle.ref)
    assert (err.nan, err.inf) == (3, 1)
    assert "3 NaN and 1 Inf" in C.failure_reason(err, oracle)


def test_tolerance_is_twice_pytorchs_error_plus_rounding_floor(case):
    *_, oracle = case
    assert oracle.tolerance == pytest.approx(2 * oracle.torch_err + oracle.floor)
    assert 0 < oracle.floor < 1e-2


def test_null_kernel_calibration_flags_a_weak_problem():
    # all-positive uniform inputs, long rows: the softmax is nearly flat, so mean(V) is nearly right
    p = Problem(batch=1, heads_q=4, seqlen_q=1024, head_dim=128, dtype="bfloat16")
    q, k, v = make_inputs(p, seed=3, distribution="uniform", device="cpu")
    assert "mean(V)" in C.build_oracle(p, q, k, v).weak
    q, k, v = make_inputs(p, seed=3, distribution="normal", device="cpu")
    assert C.build_oracle(p, q, k, v).weak == []


def test_causal_rows_with_no_key_are_zero_in_the_reference():
    p = Problem(batch=1, heads_q=1, seqlen_q=8, seqlen_k=3, head_dim=64, causal=True, dtype="float32")
    q, k, v = make_inputs(p, seed=1, device="cpu")
    ref = attention_math.attention(q, k, v, p, torch.float64)
    assert torch.all(ref[0, :5] == 0)  # rows 0..4 attend j <= i - 5: nothing
    assert torch.allclose(ref[0, 5, 0], v[0, 0, 0].double())  # row 5 attends key 0 only


def test_output_checks_reject_fakes(case):
    q, *_ = case

    class Lazy(torch.Tensor):
        pass

    good = torch.zeros(1, 64, 2, 64, dtype=q.dtype)
    assert C.output_problem(good, P, q) is None
    assert "not a plain torch.Tensor" in C.output_problem(good.as_subclass(Lazy), P, q)
    assert "shape" in C.output_problem(good[:, :32], P, q)
    assert "dtype" in C.output_problem(good.float(), P, q)
    assert "broadcast" in C.output_problem(torch.zeros(1, 1, 1, 64, dtype=q.dtype).expand(1, 64, 2, 64), P, q)


def test_input_guard_sees_any_bit_change(case):
    q, k, v, _ = case
    guard = C.InputGuard(q, k, v)
    assert guard.changed() == []
    k2 = k.clone()
    g2 = C.InputGuard(q, k2, v)
    k2.view(torch.int16)[0, 0, 0, 0] ^= 1  # flip one bit
    assert g2.changed() == [1]


def test_bit_equal_treats_identical_nans_as_equal_and_signed_zeros_as_different():
    a = torch.tensor([float("nan"), 0.0])
    assert C.bit_equal(a, a.clone())
    assert not C.bit_equal(torch.tensor([0.0]), torch.tensor([-0.0]))


def test_an_unbounded_budget_computes_all_rows_in_one_pass(monkeypatch):
    calls = []
    real = torch.matmul

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(torch, "matmul", counting)
    p = Problem(batch=1, heads_q=2, seqlen_q=64, head_dim=64, dtype="float32")
    q, k, v = make_inputs(p, seed=1, device="cpu")
    attention_math.attention(q, k, v, p, torch.float32, budget_bytes=float("inf"))
    assert len(calls) == 2  # QKᵀ and PV, once each: the naive three-kernel pipeline


def test_a_single_key_problem_is_trivial_not_weak():
    # with one key, attention is V exactly: returning V is the right answer, not a shortcut
    p = Problem(batch=1, heads_q=2, seqlen_q=1, head_dim=64, dtype="bfloat16")
    q, k, v = make_inputs(p, seed=2, device="cpu")
    assert C.build_oracle(p, q, k, v).weak == []
