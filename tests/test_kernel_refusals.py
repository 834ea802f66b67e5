"""What each kernel refuses before it launches, and the message that names it (CPU only: the kernels'
``supports_*`` functions compiled into a host program; no GPU is touched).

The torch ops raise these messages as they are, so they are what a user reads; the GPU tests check them
through the ops, this file checks them wherever nvcc is, for every kernel and each rule."""
from __future__ import annotations

import subprocess

import pytest

from harness.tools.build import toolchain
from harness.tools.build.kernels import INCLUDE_DIRS, KERNELS_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(toolchain.find_nvcc() is None, reason="nvcc not found (CUDA toolkit needed)"),
]

KERNELS = ("phase4", "phase4x", "bleeding_edge")

# One problem per line: a name, then C++ statements that change the good problem `p` (set back after).
CASES = {
    "good": "",
    "gqa_3_over_2": "p.heads_q = 3;",
    "scale_negative": "p.softmax_scale = -1.f;",
    "scale_infinite": "p.softmax_scale = INFINITY;",
    "head_dim_96": "p.head_dim = 96;",
    "dtype_unknown": "p.dtype = static_cast<DType>(7);",
    "q_misaligned": "p.q = buf + 8;",
    "k_head_stride_68": "p.k_stride.head = 68;",
    "k_head_stride_72": "p.k_stride.head = 72;",
    "k_batch_broadcast": "p.k_stride.batch = 0;",
    "batch_0": "p.batch = 0;",
    "batch_70000": "p.batch = 70000;",
}

_PROGRAM = r"""
#include <cmath>
#include <cstdio>
#include "flashcore/api.h"
using namespace flashcore;
alignas(16) static char buf[1 << 16];
static AttnParams good() {
  AttnParams p{};
  p.q = p.k = p.v = buf; p.o = buf;
  p.batch = 2; p.heads_q = 4; p.heads_kv = 2; p.seqlen_q = 64; p.seqlen_k = 64; p.head_dim = 64;
  p.softmax_scale = 0.125f; p.dtype = DType::kFloat16;
  set_contiguous_strides(p);
  return p;
}
static void show(const char* name, const AttnParams& p) {
  const char* why[] = {supports_phase4(p), supports_phase4x(p), supports_bleeding_edge(p)};
  const char* kernels[] = {"phase4", "phase4x", "bleeding_edge"};
  for (int i = 0; i < 3; ++i) std::printf("%s|%s|%s\n", name, kernels[i], why[i] ? why[i] : "ok");
}
int main() {
@CASES@
}
"""


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[tuple[str, str], str]:
    """{(case, kernel): message or "ok"}."""
    cases = "\n".join(f'  {{ AttnParams p = good(); {change} show("{name}", p); }}' for name, change in CASES.items())
    tmp = tmp_path_factory.mktemp("refusals")
    (tmp / "refusals.cu").write_text(_PROGRAM.replace("@CASES@", cases))
    exe = tmp / "refusals"
    # PTX only (no ptxas): the device code is not what is under test, and this keeps the build short
    cmd = [str(toolchain.find_nvcc()), "-std=c++17", "-O0", "-gencode=arch=compute_90a,code=compute_90a",
           *(f"-I{d}" for d in INCLUDE_DIRS), str(tmp / "refusals.cu"),
           *(str(KERNELS_DIR / f"{k}.cu") for k in KERNELS), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    rows = [line.split("|", 2) for line in out.splitlines()]
    return {(case, kernel): why for case, kernel, why in rows}


def _driver_or_ok(why: str) -> bool:
    # bleeding_edge also needs the driver's tensor-map encoder, absent on a machine without a GPU driver
    return why in ("ok", "cuTensorMapEncodeTiled is not available from the CUDA driver")


def test_every_kernel_accepts_a_contiguous_half_precision_problem(refusals):
    assert refusals["good", "phase4"] == "ok"
    assert refusals["good", "phase4x"] == "ok"
    assert _driver_or_ok(refusals["good", "bleeding_edge"])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("case", "message"), [
    ("gqa_3_over_2", "heads_q=3 is not a multiple of heads_kv=2"),
    ("scale_infinite", "softmax_scale must be finite"),
    ("head_dim_96", "head_dim=96 not supported: allowed 64, 128"),
    ("dtype_unknown", "dtype not supported: allowed float16, bfloat16"),
    ("q_misaligned", "q, k, v and o must be 16-byte aligned"),
    ("batch_0", "batch=0 heads_q=4 heads_kv=2 seqlen_q=64 seqlen_k=64: all must be >= 1"),
    ("batch_70000", "batch=70000 heads_q=4: each must be <= 65535 (CUDA grid limit)"),
])
def test_every_kernel_names_a_problem_outside_its_limits(refusals, kernel, case, message):
    assert message in refusals[case, kernel]


def test_only_the_hopper_kernel_refuses_a_non_positive_scale(refusals):
    # it folds log2(e) * scale into an exp2 whose row maximum must stay the maximum
    assert refusals["scale_negative", "bleeding_edge"] == "softmax_scale must be > 0"
    assert refusals["scale_negative", "phase4"] == "ok"


@pytest.mark.parametrize("kernel", ["phase4", "phase4x"])
def test_teaching_kernels_read_contiguous_tensors_only_and_say_which_strides_they_want(refusals, kernel):
    for case in ("k_head_stride_68", "k_head_stride_72", "k_batch_broadcast"):
        assert "this kernel reads contiguous [batch, seqlen, heads, head_dim] tensors (strides 8192, 128, 64)" in \
            refusals[case, kernel]
    assert refusals["k_head_stride_72", kernel].startswith("k has strides (batch 8192, seq 128, head 72)")


def test_hopper_kernel_takes_any_stride_a_tma_tensor_map_can_describe(refusals):
    assert _driver_or_ok(refusals["k_head_stride_72", "bleeding_edge"])
    assert refusals["k_head_stride_68", "bleeding_edge"].startswith(
        "k stride along heads (68 elements) is not a multiple of 8 elements")
    assert "k stride along batch (0 elements)" in refusals["k_batch_broadcast", "bleeding_edge"]
