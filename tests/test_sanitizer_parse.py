"""compute-sanitizer: the command, the parsing of its output and the (conjunctive) verdict, on canned text."""
import subprocess
import sys

import pytest

from harness.tools.profiling import sanitizer
from harness.tools.sanitize_target import make_problems

P4X, BE = "flashcore-phase4x", "flashcore-bleeding-edge"
K1 = "b1-hq2-hkv2-sq1-sk1-d64-float16-full-bshd"
K17 = "b1-hq2-hkv2-sq17-sk17-d64-float16-full-bshd"


def calls(backend, *keys, errors=0):
    lines = []
    for k in keys:
        lines += [f"SANITIZE BEGIN {backend} {k}", f"SANITIZE END {backend} {k} ok"]
    return lines + [f"SANITIZE BACKEND {backend} calls={len(keys)} skipped=0 errors={errors}"]


def stream(*body, summary="========= ERROR SUMMARY: 0 errors", done=True):
    lines = ["========= COMPUTE-SANITIZER", *body]
    if done:
        lines.append("SANITIZE DONE calls=2 skipped=0 errors=0")
    if summary:
        lines.append(summary)
    return "\n".join(lines) + "\n"


CLEAN = stream(*calls(P4X, K1, K17))

OOB = [
    "========= Invalid __global__ read of size 16 bytes",
    "=========     at attention_phase4x_kernel(const __half *, const __half *, int)+0x1a30 in /w/kernels/phase4x.cu:212",
    "=========     by thread (64,0,0) in block (0,1,0)",
    "=========     Address 0x7f3a2c000440 is out of bounds",
    "=========     and is 1 bytes after the nearest allocation at 0x7f3a2c000000 of size 1088 bytes",
    "=========     Saved host backtrace up to driver entry point at kernel launch time",
    "=========         Host Frame: [0x2f1d4f] in libcuda.so.1",
    "=========",
]
MEMCHECK_OOB = stream(f"SANITIZE BEGIN {P4X} {K1}", f"SANITIZE END {P4X} {K1} ok", f"SANITIZE BEGIN {P4X} {K17}",
                      *OOB, f"SANITIZE END {P4X} {K17} ok", f"SANITIZE BACKEND {P4X} calls=2 skipped=0 errors=0",
                      summary="========= ERROR SUMMARY: 1 error")

RACE = stream(*calls(BE, K1, K17)[:2],
              "========= Error: Race reported between Write access at be_kernel(...)+0x6f0 in softmax.cuh:88",
              "=========     and Read access at be_kernel(...)+0x9c0 in softmax.cuh:97 [256 hazards]",
              "=========",
              *calls(BE, K17)[:2], f"SANITIZE BACKEND {BE} calls=2 skipped=0 errors=0",
              summary="========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)")


def test_a_clean_run_passes_and_counts_its_calls():
    parsed = sanitizer.parse(CLEAN)
    assert parsed.error_summary == 0 and parsed.done and parsed.calls == {P4X: 2}
    v = sanitizer.verdict("memcheck", 0, parsed)
    assert v.status == "ok" and v.calls == 2 and v.reason == "0 errors in 2 calls"


def test_an_out_of_bounds_read_fails_and_is_pinned_to_its_call():
    parsed = sanitizer.parse(MEMCHECK_OOB)
    assert parsed.error_summary == 1
    [block] = parsed.blocks
    assert (block.backend, block.problem) == (P4X, K17)
    assert block.lines[0] == "Invalid __global__ read of size 16 bytes"
    assert "phase4x.cu:212" in block.text and "Address 0x7f3a2c000440 is out of bounds" in block.text
    v = sanitizer.verdict("memcheck", sanitizer.ERROR_EXITCODE, parsed)
    assert v.status == "failed" and v.errors == 1
    assert "memcheck reported 1 errors: Invalid __global__ read of size 16 bytes" in v.reason
    assert "exited 86 (the tool found errors)" in v.reason
    assert v.first_errors and v.first_errors[0].startswith("Invalid __global__ read")


def test_racecheck_hazards_fail_even_when_the_exit_code_is_zero():
    parsed = sanitizer.parse(RACE)
    assert parsed.race == (1, 1, 0) and parsed.error_summary is None
    v = sanitizer.verdict("racecheck", 0, parsed)
    assert v.status == "failed" and "1 hazards (1 errors, 0 warnings)" in v.reason
    assert parsed.blocks[0].lines[0].startswith("Error: Race reported between Write access")


def test_racecheck_warnings_count_as_failures():
    text = RACE.replace("1 hazard displayed (1 error, 0 warnings)", "2 hazards displayed (0 errors, 2 warnings)")
    assert sanitizer.verdict("racecheck", 0, sanitizer.parse(text)).status == "failed"
    clean = stream(*calls(BE, K1), summary="========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)")
    assert sanitizer.verdict("racecheck", 0, sanitizer.parse(clean)).status == "ok"


def test_zero_errors_do_not_pass_a_target_that_died():
    # the tool's summary is all zeros, but the target segfaulted after its first call
    died = stream(f"SANITIZE BEGIN {P4X} {K1}", f"SANITIZE END {P4X} {K1} ok", f"SANITIZE BEGIN {P4X} {K17}",
                  "========= Target application returned an error", done=False)
    parsed = sanitizer.parse(died)
    assert parsed.error_summary == 0 and parsed.calls == {P4X: 1}
    v = sanitizer.verdict("memcheck", 139, parsed)
    assert v.status == "failed"
    assert "the target did not finish" in v.reason and "returned an error" in v.reason and "exited 139" in v.reason


def test_a_missing_summary_means_the_tool_did_not_finish():
    v = sanitizer.verdict("synccheck", 0, sanitizer.parse(stream(*calls(P4X, K1), summary="")))
    assert v.status == "failed" and "no ERROR SUMMARY line: synccheck did not finish" in v.reason
    v = sanitizer.verdict("racecheck", 0, sanitizer.parse(stream(*calls(P4X, K1), summary="")))
    assert "no RACECHECK SUMMARY line" in v.reason


def test_a_timeout_fails():
    v = sanitizer.verdict("memcheck", None, sanitizer.parse("========= COMPUTE-SANITIZER\n"), timed_out=True,
                          timeout_s=600)
    assert v.status == "failed" and "timed out after 600s" in v.reason


@pytest.mark.parametrize(("line", "why"), [
    (f"SANITIZE ERROR {P4X} {K17} RuntimeError: CUDA error: an illegal memory access was encountered",
     "illegal memory access"),
    (f"SANITIZE END {P4X} {K17} nonfinite=12", "output has nonfinite=12"),
])
def test_a_call_that_raised_or_returned_garbage_fails(line, why):
    text = stream(f"SANITIZE BEGIN {P4X} {K1}", f"SANITIZE END {P4X} {K1} ok", f"SANITIZE BEGIN {P4X} {K17}", line)
    v = sanitizer.verdict("initcheck", 1, sanitizer.parse(text))
    assert v.status == "failed" and why in v.reason


def test_nothing_checked_is_skipped_not_passed():
    text = stream(f"SANITIZE UNAVAILABLE {BE} nvcc not found (the op is compiled at first use)",
                  f"SANITIZE BACKEND {BE} calls=0 skipped=0 errors=0")
    v = sanitizer.verdict("memcheck", 0, sanitizer.parse(text), backend=BE)
    assert v.status == "skipped" and "nvcc not found" in v.reason


def test_per_backend_verdicts_of_a_shared_process():
    both = stream(*calls(P4X, K1), f"SANITIZE UNAVAILABLE {BE} no kernel source",
                  f"SANITIZE BACKEND {BE} calls=0 skipped=0 errors=0")
    parsed = sanitizer.parse(both)
    assert sanitizer.verdict("memcheck", 0, parsed, backend=P4X).status == "ok"
    assert sanitizer.verdict("memcheck", 0, parsed, backend=BE).status == "skipped"
    # the tool's counts are per process: a failing shared run fails for each backend in it, which is why
    # `flashcore validate --isolate auto` re-runs each backend alone before pinning a failure on one
    bad = sanitizer.parse(MEMCHECK_OOB.replace(f"SANITIZE BACKEND {P4X}", f"SANITIZE UNAVAILABLE {BE} x\nSANITIZE BACKEND {P4X}"))
    assert sanitizer.verdict("memcheck", 86, bad, backend=BE).status == "failed"


def test_the_command():
    cmd = sanitizer.build_command("/cuda/bin/compute-sanitizer", "racecheck", [P4X, BE], python="/usr/bin/python3",
                                  target_args=["--seqlens", "1,17"])
    assert cmd[:3] == ["/cuda/bin/compute-sanitizer", "--tool", "racecheck"]
    assert cmd[cmd.index("--error-exitcode") + 1] == str(sanitizer.ERROR_EXITCODE)
    assert cmd[cmd.index("--target-processes") + 1] == "all"
    assert cmd[cmd.index("-m") + 1:] == ["harness.tools.sanitize_target", f"{P4X},{BE}", "--seqlens", "1,17"]
    with pytest.raises(ValueError, match="allowed memcheck"):
        sanitizer.build_command("cs", "leakcheck", [P4X])


def test_the_default_problem_set():
    problems = make_problems()
    assert len(problems) == 32  # D 64/128 × fp16/bf16 × causal/not × seqlen 1/17/100/257
    assert {p.seqlen_q for p in problems} == {1, 17, 100, 257} and {p.head_dim for p in problems} == {64, 128}
    assert {p.dtype for p in problems} == {"float16", "bfloat16"} and {p.causal for p in problems} == {False, True}
    assert all(p.seqlen_q == p.seqlen_k and p.batch == 1 for p in problems)
    with pytest.raises(ValueError, match="causal 'sometimes'"):
        make_problems(causal="sometimes")


def test_the_target_reports_an_unavailable_backend_and_checks_nothing():
    res = subprocess.run([sys.executable, "-m", "harness.tools.sanitize_target", "warp-drive", "--seqlens", "17"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    parsed = sanitizer.parse(res.stdout + "========= ERROR SUMMARY: 0 errors\n")
    assert "warp-drive" in parsed.unavailable and parsed.done
    assert sanitizer.verdict("memcheck", 0, parsed).status == "skipped"
