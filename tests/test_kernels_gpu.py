"""flashcore's phase4 and phase4x torch ops on the GPU: the attention function of api.h (bottom-right
causal, GQA, any seqlen, LSE, rows with no key), in fp16 and bf16, against a float64 reference; errors
named for every input the kernels do not accept; bit-identical results on repeated runs. At the end, the
bleeding_edge op on strided inputs (bhsd views, slices of wider buffers, packed QKV) against SDPA and
the float64 reference, bit-identical to the same values passed contiguous.

Every checked output lands in memory filled with NaN just before (see ``call``), so an element the
kernel fails to write shows up as NaN."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu

OPS = ("phase4", "phase4x")
DTYPES = (torch.float16, torch.bfloat16)
# ‖out − ref‖ / ‖ref‖: fp16 / bf16 rounding of P and O bound these (METHOD.md: bf16 lands 1e-3..1e-2)
REL_TOL = {torch.float16: 3e-3, torch.bfloat16: 1.5e-2}
LSE_ATOL = 2e-3  # LSE is computed in fp32 from 16-bit inputs


@pytest.fixture(scope="module", autouse=True)
def ops():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("kernels are built for sm_90a (Hopper)")
    from harness.tools.build import load_ops

    load_ops()
    return {name: getattr(torch.ops.flashcore, name) for name in OPS}


#: one entry per `call`: whether its checked run wrote into the NaN-filled buffers
POISON_LOG: list[bool] = []


def call(op, q, k, v, scale=None, causal=False, return_lse=True):
    """Run the op twice: fill the first run's outputs with NaN and free them, so the second run's O and
    LSE, allocated from the same allocator state, start as NaN. Returns the second run's outputs."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    f = getattr(torch.ops.flashcore, op)
    o, lse = f(q, k, v, scale, causal, return_lse)
    ptrs = (o.data_ptr(), lse.data_ptr())
    o.fill_(float("nan"))
    lse.fill_(float("nan"))
    del o, lse
    o, lse = f(q, k, v, scale, causal, return_lse)
    POISON_LOG.append((o.data_ptr(), lse.data_ptr()) == ptrs)
    return o, lse


def reference(q, k, v, scale, causal):
    """float64 attention: O [b, sq, hq, d] and natural-log LSE [b, hq, sq]; rows with no key: 0, -inf."""
    _b, sq, hq, _d = q.shape
    sk, hkv = k.shape[1], k.shape[2]
    qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
    kd = kd.repeat_interleave(hq // hkv, dim=1)
    vd = vd.repeat_interleave(hq // hkv, dim=1)
    s = (qd @ kd.transpose(-1, -2)) * scale
    if causal:
        i = torch.arange(sq, device=q.device)[:, None]
        j = torch.arange(sk, device=q.device)[None, :]
        s = s.masked_fill(~(j <= i + (sk - sq)), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[..., None]).nan_to_num(nan=0.0)
    o = (p @ vd).transpose(1, 2)
    return o, lse


def rel_err(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def make_qkv(b, sq, sk, hq, hkv, d, dtype, magnitude=1.0, seed=None):
    g = torch.Generator(device="cuda")
    g.manual_seed(seed if seed is not None else torch.randint(0, 2**31 - 1, ()).item())
    q = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.float32, generator=g) * magnitude
    k = torch.randn(b, sk, hkv, d, device="cuda", dtype=torch.float32, generator=g) * magnitude
    v = torch.randn(b, sk, hkv, d, device="cuda", dtype=torch.float32, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def check(op, q, k, v, scale=None, causal=False):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    o, lse = call(op, q, k, v, scale, causal)
    torch.cuda.synchronize()
    ref_o, ref_lse = reference(q, k, v, scale, causal)
    assert o.shape == q.shape and o.dtype == q.dtype and o.is_contiguous()
    assert lse.shape == (q.shape[0], q.shape[2], q.shape[1]) and lse.dtype == torch.float32
    assert not torch.isnan(o).any(), "NaN in O: an element was not written (or the softmax produced NaN)"
    assert not torch.isnan(lse).any(), "NaN in LSE"
    err = rel_err(o, ref_o)
    assert err < REL_TOL[q.dtype], f"{op}: ‖O−ref‖/‖ref‖ = {err:.2e} ≥ {REL_TOL[q.dtype]:.0e}"
    empty = torch.isinf(ref_lse)  # rows that attend no key
    assert torch.equal(torch.isinf(lse) & (lse < 0), empty), "LSE must be -inf exactly on rows with no key"
    if empty.any():
        rows = empty.transpose(1, 2)  # [b, sq, hq]
        assert (o[rows] == 0).all(), "rows with no attended key must have O = 0"
    if (~empty).any():
        lerr = (lse.double()[~empty] - ref_lse[~empty]).abs().max().item()
        assert lerr < LSE_ATOL * max(1.0, ref_lse[~empty].abs().max().item()), f"{op}: LSE error {lerr:.2e}"
    return o, lse


# -- the attention function ---------------------------------------------------------------------------

SEQLENS = [(1, 1), (17, 17), (100, 100), (257, 257), (64, 192), (100, 257), (257, 100), (1, 257), (257, 1)]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "bf16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("sq,sk", SEQLENS, ids=[f"sq{a}-sk{b}" for a, b in SEQLENS])
def test_matches_float64_reference_for_any_seqlens_with_ragged_tiles(op, dtype, d, causal, sq, sk):
    q, k, v = make_qkv(2, sq, sk, 4, 2, d, dtype)
    check(op, q, k, v, causal=causal)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("hq,hkv", [(8, 8), (8, 2), (8, 1), (6, 3)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_grouped_query_attention_reads_kv_head_h_over_group(op, hq, hkv, causal):
    q, k, v = make_qkv(2, 130, 190, hq, hkv, 64, torch.float16)
    check(op, q, k, v, causal=causal)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("d", [64, 128])
def test_many_tiles_causal_and_full(op, d):
    q, k, v = make_qkv(1, 1024, 1024, 2, 2, d, torch.bfloat16)
    check(op, q, k, v, causal=True)
    check(op, q, k, v, causal=False)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale", [0.01, 0.3, 2.0])
def test_softmax_scale_argument_is_used(op, scale):
    q, k, v = make_qkv(1, 96, 96, 2, 2, 64, torch.float16)
    check(op, q, k, v, scale=scale, causal=True)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "bf16"])
def test_large_magnitude_scores_stay_finite_and_accurate(op, dtype):
    # |q·k|·scale reaches thousands: exp without the running max would overflow fp32
    q, k, v = make_qkv(1, 200, 300, 2, 1, 64, dtype, magnitude=16.0)
    check(op, q, k, v, causal=False)
    check(op, q, k, v, causal=True)


@pytest.mark.parametrize("op", OPS)
def test_rows_that_attend_no_key_get_zero_output_and_minus_inf_lse(op):
    # bottom-right causal with sq > sk: the first sq - sk rows see no key
    q, k, v = make_qkv(1, 200, 70, 2, 2, 64, torch.float16)
    o, lse = check(op, q, k, v, causal=True)
    assert (o[:, :130] == 0).all() and torch.isneginf(lse[:, :, :130]).all()
    assert torch.isfinite(lse[:, :, 130:]).all()


@pytest.mark.parametrize("op", OPS)
def test_without_return_lse_the_lse_is_an_empty_float32_tensor(op):
    q, k, v = make_qkv(1, 33, 33, 2, 2, 64, torch.float16)
    o, lse = call(op, q, k, v, return_lse=False)
    assert lse.numel() == 0 and lse.dtype == torch.float32
    assert rel_err(o, reference(q, k, v, 64 ** -0.5, False)[0]) < REL_TOL[torch.float16]


@pytest.mark.parametrize("op", OPS)
def test_runs_on_the_current_stream(op):
    q, k, v = make_qkv(2, 300, 300, 4, 4, 64, torch.float16)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        o, _ = call(op, q, k, v, causal=True)
    s.synchronize()
    assert rel_err(o, reference(q, k, v, 64 ** -0.5, True)[0]) < REL_TOL[torch.float16]


# -- determinism -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_repeated_runs_are_bit_identical(op, causal):
    q, k, v = make_qkv(2, 777, 777, 4, 2, 128, torch.bfloat16)
    first_o, first_lse = call(op, q, k, v, causal=causal)
    for _ in range(4):
        o, lse = call(op, q, k, v, causal=causal)
        assert torch.equal(o, first_o) and torch.equal(lse, first_lse)


# -- errors that name the problem and what is allowed ------------------------------------------------------

def _good(d=64, dtype=torch.float16):
    return make_qkv(1, 16, 16, 2, 2, d, dtype, seed=0)


@pytest.mark.parametrize("op", OPS)
def test_rejects_float32_naming_the_allowed_dtypes(op):
    q, k, v = (t.float() for t in _good())
    with pytest.raises(RuntimeError, match=r"dtype Float.*allowed float16, bfloat16"):
        call(op, q, k, v)


@pytest.mark.parametrize("op", OPS)
def test_rejects_mixed_dtypes(op):
    q, k, v = _good()
    with pytest.raises(RuntimeError, match=r"one dtype"):
        call(op, q, k.bfloat16(), v)


@pytest.mark.parametrize("op", OPS)
def test_rejects_cpu_tensors_and_mixed_devices(op):
    q, k, v = _good()
    with pytest.raises(RuntimeError, match=r"must be a CUDA tensor"):
        getattr(torch.ops.flashcore, op)(q.cpu(), k.cpu(), v.cpu(), 0.125, False, False)
    with pytest.raises(RuntimeError, match=r"must be a CUDA tensor|same device"):
        getattr(torch.ops.flashcore, op)(q, k.cpu(), v, 0.125, False, False)


@pytest.mark.parametrize("op", OPS)
def test_rejects_wrong_rank(op):
    q, k, v = _good()
    with pytest.raises(RuntimeError, match=r"q must have rank 4"):
        getattr(torch.ops.flashcore, op)(q[0], k, v, 0.125, False, False)


@pytest.mark.parametrize("op", OPS)
def test_rejects_non_contiguous_strides(op):
    q, k, v = make_qkv(1, 16, 16, 2, 2, 64, torch.float16, seed=0)
    bhsd_view = q.transpose(1, 2).contiguous().transpose(1, 2)  # a bhsd tensor seen as bshd
    with pytest.raises(RuntimeError, match=r"q must be contiguous .*\.contiguous\(\)"):
        getattr(torch.ops.flashcore, op)(bhsd_view, k, v, 0.125, False, False)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("d", [32, 96, 256])
def test_rejects_unsupported_head_dim_naming_the_allowed_ones(op, d):
    q, k, v = _good(d=d)
    with pytest.raises(RuntimeError, match=rf"head_dim={d} not supported: allowed 64, 128"):
        call(op, q, k, v)


@pytest.mark.parametrize("op", OPS)
def test_rejects_inconsistent_shapes(op):
    q, k, v = _good()
    f = getattr(torch.ops.flashcore, op)
    with pytest.raises(RuntimeError, match=r"k and v must have one shape"):
        f(q, k, v[:, :8].contiguous(), 0.125, False, False)
    with pytest.raises(RuntimeError, match=r"head_dim of k \(128\) differs from q \(64\)"):
        kk, vv, _ = make_qkv(1, 16, 16, 2, 2, 128, torch.float16, seed=0)
        f(q, kk, vv, 0.125, False, False)
    with pytest.raises(RuntimeError, match=r"heads_q=3 is not a multiple of heads_kv=2"):
        q3, _, _ = make_qkv(1, 16, 16, 3, 2, 64, torch.float16, seed=0)
        f(q3, k, v, 0.125, False, False)
    with pytest.raises(RuntimeError, match=r"batch of k \(2\) differs from q \(1\)"):
        k2, v2, _ = make_qkv(2, 16, 16, 2, 2, 64, torch.float16, seed=0)
        f(q, k2, v2, 0.125, False, False)
    with pytest.raises(RuntimeError, match=r"every dimension must be in \[1"):
        f(q[:, :0], k, v, 0.125, False, False)


@pytest.mark.parametrize("op", OPS)
def test_rejects_non_finite_scale(op):
    q, k, v = _good()
    with pytest.raises(RuntimeError, match=r"softmax_scale must be finite"):
        getattr(torch.ops.flashcore, op)(q, k, v, math.inf, False, False)


# -- tracing ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_fake_implementation_gives_output_shapes(op):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        q = mode.from_tensor(torch.empty(2, 40, 8, 64, device="cuda", dtype=torch.bfloat16))
        k = mode.from_tensor(torch.empty(2, 50, 2, 64, device="cuda", dtype=torch.bfloat16))
        o, lse = getattr(torch.ops.flashcore, op)(q, k, k, 0.125, True, True)
        assert o.shape == (2, 40, 8, 64) and o.dtype == torch.bfloat16
        assert lse.shape == (2, 8, 40) and lse.dtype == torch.float32
        _, empty = getattr(torch.ops.flashcore, op)(q, k, k, 0.125, True, False)
        assert empty.shape == (0,)


def test_torch_compile_traces_the_ops_without_graph_breaks():
    q, k, v = make_qkv(1, 80, 80, 2, 2, 64, torch.float16)

    def f(q, k, v):
        a = torch.ops.flashcore.phase4(q, k, v, 0.125, True, False)[0]
        b = torch.ops.flashcore.phase4x(q, k, v, 0.125, True, False)[0]
        return a.float() - b.float()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(q, k, v), f(q, k, v))


# -- the test machinery itself, and the op set ---------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_the_checked_run_writes_into_the_poisoned_buffers(op):
    q, k, v = make_qkv(2, 123, 123, 4, 4, 64, torch.float16)
    del POISON_LOG[:]
    for causal in (False, True):
        call(op, q, k, v, causal=causal)
    assert POISON_LOG == [True, True], "the second run did not reuse the NaN-filled buffers"


def test_bleeding_edge_op_exists_exactly_when_its_source_does():
    from harness.tools.build import kernels as ktable
    from harness.tools.build import loaded_ops

    built = "bleeding_edge" in loaded_ops()  # FLASHCORE_KERNELS may leave it out
    assert built <= ktable.by_name("bleeding_edge").exists()
    assert hasattr(torch.ops.flashcore, "bleeding_edge") == built


# -- the harness backends ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name,op", [("FlashcorePhase4", "phase4"), ("FlashcorePhase4X", "phase4x")])
@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_backend_runs_the_op_for_both_layouts(cls_name, op, layout):
    from harness.backends import flashcore_ops
    from harness.spec.problem import Problem

    backend = getattr(flashcore_ops, cls_name)()
    assert backend.custom_kernel and backend.unavailable() is None
    p = Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=150, seqlen_k=90, head_dim=64, dtype="bfloat16",
                causal=True, layout=layout)
    assert backend.unsupported(p) is None
    q, k, v = make_qkv(2, 150, 90, 4, 2, 64, torch.bfloat16)
    if layout == "bhsd":  # the harness hands bhsd problems over as transposed views of [b, h, s, d]
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    o = backend.prepare(p, q, k, v)()
    assert o.shape == q.shape
    assert rel_err(o, reference(q, k, v, p.softmax_scale, True)[0]) < REL_TOL[torch.bfloat16]


# -- bleeding_edge: strided q/k/v (any batch/seq/head strides, contiguous head_dim) -------------------------
#
# The reference here is torch's own SDPA (float32 math on the upcast inputs, bottom-right causal mask
# given explicitly: SDPA's is_causal is top-left aligned), besides the float64 one of `check`.

BE = "bleeding_edge"


@pytest.fixture(scope="module")
def be_op(ops):
    if not hasattr(torch.ops.flashcore, BE):
        pytest.skip("the bleeding_edge op is not built in (FLASHCORE_KERNELS or its source missing)")
    return getattr(torch.ops.flashcore, BE)


def sdpa_reference(q, k, v, scale, causal):
    """O [b, sq, hq, d] in float32 from torch SDPA (math backend); rows that attend no key are 0."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sq, sk, hq, hkv = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
    kf = kf.repeat_interleave(hq // hkv, dim=1)
    vf = vf.repeat_interleave(hq // hkv, dim=1)
    mask = None
    if causal:
        i = torch.arange(sq, device=q.device)[:, None]
        j = torch.arange(sk, device=q.device)[None, :]
        mask = j <= i + (sk - sq)
    with sdpa_kernel(SDPBackend.MATH):
        o = torch.nn.functional.scaled_dot_product_attention(qf, kf, vf, attn_mask=mask, scale=scale)
    return o.transpose(1, 2).nan_to_num(nan=0.0)


def as_bhsd(t):
    """The same values in [b, h, s, d] memory, seen as [b, s, h, d] (the harness's bhsd layout)."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def in_wider_head_buffer(t, pad=64, offset=32):
    """The same values as a slice [..., offset:offset + d] of a [b, s, h, d + pad] buffer."""
    b, s, h, d = t.shape
    buf = torch.full((b, s, h, d + pad), float("nan"), dtype=t.dtype, device=t.device)
    buf[..., offset:offset + d] = t
    return buf[..., offset:offset + d]


def packed_qkv(q, k, v):
    """q, k, v as the three parts of one packed [b, s, 3, h, d] buffer (self-attention shapes)."""
    qkv = torch.stack([q, k, v], dim=2)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


LAYOUTS = {
    "bshd": lambda q, k, v: (q, k, v),
    "bhsd": lambda q, k, v: tuple(as_bhsd(t) for t in (q, k, v)),
    "padded-head": lambda q, k, v: tuple(in_wider_head_buffer(t) for t in (q, k, v)),
    "q-bhsd-kv-bshd": lambda q, k, v: (as_bhsd(q), k, v),
}


def check_be_strided(q, k, v, causal, scale=None):
    """Runs the op on the strided tensors; checks O against SDPA and the float64 reference, and that it is
    bit-identical to the op on contiguous copies of the same values."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    o, lse = check(BE, q, k, v, scale=scale, causal=causal)  # float64 reference, NaN-poisoned O/LSE
    ref = sdpa_reference(q, k, v, scale, causal)
    err = rel_err(o, ref.double())
    assert err < REL_TOL[q.dtype], f"‖O−sdpa‖/‖sdpa‖ = {err:.2e}"
    o_c, lse_c = call(BE, *(t.contiguous() for t in (q, k, v)), scale=scale, causal=causal)
    assert torch.equal(o, o_c) and torch.equal(lse, lse_c), "strided and contiguous inputs must give the same bits"
    return o


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "bf16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_bleeding_edge_reads_strided_inputs_without_a_copy(be_op, layout, causal, d, dtype):
    q, k, v = make_qkv(2, 300, 300, 4, 2, d, dtype)
    q, k, v = LAYOUTS[layout](q, k, v)
    if layout != "bshd":
        assert not all(t.is_contiguous() for t in (q, k, v))
    o = check_be_strided(q, k, v, causal)
    assert o.is_contiguous() and o.shape == q.shape


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "bf16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_bleeding_edge_reads_a_packed_qkv_buffer(be_op, causal, dtype):
    q, k, v = make_qkv(2, 257, 257, 4, 4, 128, dtype)
    q, k, v = packed_qkv(q, k, v)
    assert q.stride() == (257 * 3 * 4 * 128, 3 * 4 * 128, 128, 1)
    check_be_strided(q, k, v, causal)


# causal with Sq != Sk both ways (bottom-right: rows with no key when Sq > Sk), ragged tiles, one row
BE_SEQLENS = [(1, 1), (100, 257), (257, 100), (1, 300), (300, 1), (640, 2200), (2200, 640)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "bf16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("sq,sk", BE_SEQLENS, ids=[f"sq{a}-sk{b}" for a, b in BE_SEQLENS])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_bleeding_edge_bhsd_with_unequal_seqlens(be_op, causal, sq, sk, d, dtype):
    q, k, v = make_qkv(1, sq, sk, 2, 2, d, dtype)
    check_be_strided(*LAYOUTS["bhsd"](q, k, v), causal)


@pytest.mark.parametrize("hq,hkv", [(8, 8), (8, 2), (8, 1), (6, 3)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("layout", ["bshd", "bhsd", "padded-head"])
def test_bleeding_edge_grouped_query_attention_with_strides(be_op, layout, causal, hq, hkv):
    q, k, v = make_qkv(2, 130, 190, hq, hkv, 128, torch.bfloat16)
    check_be_strided(*LAYOUTS[layout](q, k, v), causal)


@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("s", [1024, 2048])
def test_bleeding_edge_bhsd_with_more_tiles_than_sms(be_op, s, causal, d):
    # Sk <= 1024 non-causal runs the persistent schedule (several tiles per CTA), Sk = 2048 one tile per CTA
    q, k, v = make_qkv(2, s, s, 16, 16, d, torch.bfloat16)  # 192-512 tiles
    check_be_strided(*LAYOUTS["bhsd"](q, k, v), causal)


@pytest.mark.parametrize("s,d", [(1024, 128), (2048, 128), (4096, 128), (2048, 64)])
def test_bleeding_edge_on_several_streams_at_once_matches_one_stream(be_op, s, d):
    # the dynamic schedules claim tiles from a counter that the op keeps per stream: launches that overlap
    # on two streams must not share one (a shared counter hands tiles to the wrong launch)
    q, k, v = make_qkv(4, s, s, 2048 // d, 2048 // d, d, torch.bfloat16, seed=1)
    want = [call(BE, q, k, v, causal=c)[0] for c in (True, False)]
    streams = [torch.cuda.Stream() for _ in range(4)]
    got = []
    for _ in range(3):
        for i, st in enumerate(streams):
            st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                got.append((i % 2, be_op(q, k, v, d ** -0.5, i % 2 == 0, False)[0]))
    torch.cuda.synchronize()
    for parity, o in got:
        assert torch.equal(o, want[parity]), "a launch on another stream changed the result"


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_bleeding_edge_repeated_strided_runs_are_bit_identical(be_op, causal):
    q, k, v = LAYOUTS["bhsd"](*make_qkv(2, 777, 777, 4, 2, 128, torch.bfloat16))
    first_o, first_lse = call(BE, q, k, v, causal=causal)
    for _ in range(4):
        o, lse = call(BE, q, k, v, causal=causal)
        assert torch.equal(o, first_o) and torch.equal(lse, first_lse)


def test_bleeding_edge_names_the_strides_tma_cannot_describe(be_op):
    q, k, v = make_qkv(1, 64, 64, 2, 2, 64, torch.float16, seed=0)
    # head stride 68 elements = 136 bytes: not a multiple of 16 bytes
    q68 = in_wider_head_buffer(q, pad=4, offset=0)
    with pytest.raises(RuntimeError, match=r"q stride along heads \(68 elements\) is not a multiple of 8 elements"):
        be_op(q68, k, v, 0.125, False, False)
    # a base address 8 bytes past a 16-byte boundary
    k_off = in_wider_head_buffer(k, pad=8, offset=4)
    with pytest.raises(RuntimeError, match=r"16-byte aligned"):
        be_op(q, k_off, v, 0.125, False, False)
    # head_dim not contiguous
    wide = torch.zeros(1, 64, 2, 128, dtype=torch.float16, device="cuda")
    with pytest.raises(RuntimeError, match=r"v must have a contiguous last dimension"):
        be_op(q, k, wide[..., ::2], 0.125, False, False)
    # a broadcast (stride 0) batch dimension
    kb, vb = (t.expand(2, -1, -1, -1) for t in (k, v))
    q2 = torch.cat([q, q])
    with pytest.raises(RuntimeError, match=r"k stride along batch \(0 elements\) is 0"):
        be_op(q2, kb, vb, 0.125, False, False)


def test_bleeding_edge_backend_runs_bhsd_in_place(be_op):
    from harness.backends import flashcore_ops
    from harness.spec.problem import Problem

    backend = flashcore_ops.FlashcoreBleedingEdge()
    assert backend.unavailable() is None and backend.strided_inputs
    p = Problem(batch=2, heads_q=4, heads_kv=2, seqlen_q=150, seqlen_k=90, head_dim=128, dtype="bfloat16",
                causal=True, layout="bhsd")
    assert backend.unsupported(p) is None
    q, k, v = LAYOUTS["bhsd"](*make_qkv(2, 150, 90, 4, 2, 128, torch.bfloat16))
    run = backend.prepare(p, q, k, v)
    o = run()
    assert rel_err(o, reference(q, k, v, p.softmax_scale, True)[0]) < REL_TOL[torch.bfloat16]
    # no copy was taken in prepare: changing the caller's tensors in place changes the next result
    v.mul_(2)
    o2 = run()
    assert rel_err(o2, reference(q, k, v, p.softmax_scale, True)[0]) < REL_TOL[torch.bfloat16]
    assert not torch.equal(o, o2)


def test_fake_implementation_gives_a_contiguous_output_for_strided_inputs(be_op):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        q = mode.from_tensor(torch.empty(2, 8, 40, 64, device="cuda", dtype=torch.bfloat16)).transpose(1, 2)
        k = mode.from_tensor(torch.empty(2, 2, 50, 64, device="cuda", dtype=torch.bfloat16)).transpose(1, 2)
        o, _ = be_op(q, k, k, 0.125, True, False)
        assert o.shape == (2, 40, 8, 64) and o.is_contiguous()
