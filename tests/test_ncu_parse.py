"""Nsight Compute: the command that profiles one cell, and the parsing of its CSV (canned text, no GPU)."""
import json
import subprocess
import sys

import pytest

from harness.measure.nvtx_ranges import DOMAIN, range_name
from harness.spec.problem import Problem
from harness.tools.profiling import compare, ncu
from harness.tools.profiling.proc import ProcResult

PROBLEM = Problem(batch=8, heads_q=16, seqlen_q=2048, head_dim=128, dtype="bfloat16")

# The raw page as `ncu --csv --page raw --print-units base` prints it after the application's own output:
# progress lines first, then a header, a units row, one row per kernel launch. Two calls of a backend
# that launches gemm, softmax, gemm per call; thousands separators and an n/a as ncu writes them.
RAW = """\
PROFILE_TARGET DONE calls=2
==PROF== Connected to process 4242 (/usr/bin/python3.12)
==PROF== Profiling "gemm_kernel" - 0: 0%....50%....100% - 38 passes
==WARNING== Some warning that is not part of the table
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC",\
"dram__bytes.sum","dram__bytes.sum.per_second","gpu__time_duration.sum","launch__registers_per_thread",\
"launch__shared_mem_per_block_dynamic","launch__shared_mem_per_block_static",\
"sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",\
"smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio",\
"smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",\
"smsp__average_warps_issue_stalled_selected_per_issue_active.ratio","sm__warps_active.avg.pct_of_peak_sustained_active"
"","","","","","","","","","","","byte","byte/second","nsecond","register/thread","byte","byte","%","","","","%"
"0","4242","python3.12","127.0.0.1","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","1,000,000","2,000,000,000,000","100,000","168","98,304","1,024","60","0.5","2","1","25"
"1","4242","python3.12","127.0.0.1","softmax_kernel","1","7","(256, 1, 1)","(2048, 1, 1)","0","9.0","4,000","1,000","50,000","32","0","0","0","n/a","3","1","80"
"2","4242","python3.12","127.0.0.1","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","3,000,000","4,000,000,000,000","300,000","168","98,304","1,024","80","1.5","4","1","35"
"3","4242","python3.12","127.0.0.1","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","1,000,000","2,000,000,000,000","100,000","168","98,304","1,024","60","0.5","2","1","25"
"4","4242","python3.12","127.0.0.1","softmax_kernel","1","7","(256, 1, 1)","(2048, 1, 1)","0","9.0","4,000","1,000","50,000","32","0","0","0","n/a","3","1","80"
"5","4242","python3.12","127.0.0.1","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","3,000,000","4,000,000,000,000","300,000","168","98,304","1,024","80","1.5","4","1","35"
"""

# The same data as the details page (one row per metric, scaled units, as without --print-units base)
DETAILS = """\
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device",\
"CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","1","python3","h","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","100.00"
"0","1","python3","h","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","Command line profiler metrics","dram__bytes.sum","Mbyte","1.00"
"0","1","python3","h","gemm_kernel","1","7","(128, 1, 1)","(16, 16, 8)","0","9.0","Command line profiler metrics","dram__bytes.sum.per_second","Tbyte/second","2.00"
"1","1","python3","h","softmax_kernel","1","7","(256, 1, 1)","(2048, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","msecond","0.05"
"1","1","python3","h","softmax_kernel","1","7","(256, 1, 1)","(2048, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes.sum","Kbyte","4.00"
"""


def test_raw_page_gives_one_launch_per_row_in_base_units():
    launches = ncu.parse_csv(RAW)
    assert [lc.kernel for lc in launches] == ["gemm_kernel", "softmax_kernel", "gemm_kernel"] * 2
    first = launches[0]
    assert first.id == 0 and first.block == "(128, 1, 1)" and first.grid == "(16, 16, 8)"
    assert first.metrics["gpu__time_duration.sum"] == 100_000.0  # ns, thousands separators removed
    assert first.metrics["dram__bytes.sum"] == 1e6
    assert first.metrics["launch__registers_per_thread"] == 168.0
    assert launches[1].metrics["smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio"] is None  # n/a


def test_details_page_is_read_too_and_scaled_units_are_undone():
    launches = ncu.parse_csv(DETAILS)
    assert [lc.kernel for lc in launches] == ["gemm_kernel", "softmax_kernel"]
    assert launches[0].metrics["gpu__time_duration.sum"] == pytest.approx(100_000.0)  # 100 us in ns
    assert launches[0].metrics["dram__bytes.sum"] == pytest.approx(1e6)
    assert launches[0].metrics["dram__bytes.sum.per_second"] == pytest.approx(2e12)
    assert launches[1].metrics["gpu__time_duration.sum"] == pytest.approx(50_000.0)  # 0.05 ms
    assert launches[1].metrics["dram__bytes.sum"] == pytest.approx(4000.0)


def test_summary_per_kernel_and_the_gpu_time_of_one_call():
    kernels, call_ns = ncu.summarize(ncu.parse_csv(RAW), calls=2)
    assert list(kernels) == ["gemm_kernel", "softmax_kernel"]
    gemm = kernels["gemm_kernel"]
    assert gemm["launches"] == 4 and gemm["launches_per_call"] == 2
    assert gemm["gpu__time_duration.sum"] == 200_000.0  # mean over its four launches
    assert gemm["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"] == 70.0
    assert gemm["smem_per_block_bytes"] == 98_304 + 1_024  # static + dynamic
    # all six launches summed, per call: (4 × 200 us + 2 × 50 us) / 2
    assert call_ns == pytest.approx(450_000.0)
    assert ncu.top_stalls(gemm, 2) == [("long_scoreboard", 3.0), ("barrier", 1.0)]  # "selected" is not a stall
    json.dumps(kernels)  # stored as extra["ncu"]: must be JSON


def test_a_launch_without_its_duration_leaves_the_call_time_unknown():
    text = RAW.replace('"50,000","32"', '"n/a","32"', 1)
    _, call_ns = ncu.summarize(ncu.parse_csv(text), calls=2)
    assert call_ns is None


@pytest.mark.parametrize(("value", "unit", "want"), [
    (1.5, "usecond", 1500.0), (2.0, "msecond", 2e6), (3.0, "nsecond", 3.0), (1.0, "second", 1e9),
    (2.0, "Kbyte", 2000.0), (1.0, "Mibyte", 2.0**20), (3.0, "Gbyte/second", 3e9), (1.98, "cycle/nsecond", 1.98e9),
    (1.5, "Ghz", 1.5e9), (42.0, "%", 42.0), (96.0, "register/thread", 96.0), (7.0, "", 7.0),
])
def test_units_are_converted_to_base(value, unit, want):
    assert ncu.to_base(value, unit) == pytest.approx(want)


@pytest.mark.parametrize(("text", "want"), [
    ("1,234,567.5", 1234567.5), ("12.5", 12.5), ("n/a", None), ("", None), ("(128, 1, 1)", "(128, 1, 1)"),
    ("1e3", 1000.0),
])
def test_values(text, want):
    assert ncu.parse_value(text) == want


def test_output_without_a_table_is_an_error():
    with pytest.raises(ncu.NcuParseError, match="no CSV table"):
        ncu.parse_csv("==PROF== Connected to process 1\n==WARNING== No kernels were profiled.\n")


def test_the_command_selects_exactly_the_calls_of_one_cell():
    cmd = ncu.build_command("/opt/ncu", "sdpa-flash", PROBLEM, calls=4)
    key = PROBLEM.key()
    nvtx = cmd[cmd.index("--nvtx-include") + 1]
    # the range harness.measure.cell and the profile target open around each call, in the flashcore domain,
    # as a push/pop range (trailing slash)
    assert DOMAIN == "flashcore" and nvtx == f"flashcore@{range_name('sdpa-flash', key)}/" == f"flashcore@sdpa-flash:{key}/"
    assert "--nvtx" in cmd and cmd[cmd.index("--clock-control") + 1] == "none"
    assert cmd[cmd.index("--page") + 1] == "raw" and "--csv" in cmd
    assert cmd[cmd.index("--target-processes") + 1] == "all"
    assert cmd[cmd.index("--metrics") + 1].split(",") == list(ncu.METRICS)
    target = cmd[cmd.index("-m") + 1:]
    assert target[:2] == ["harness.tools.profile_target", "sdpa-flash"]
    assert Problem.from_dict(json.loads(target[2])) == PROBLEM
    assert target[target.index("--calls") + 1] == "4"
    with pytest.raises(ValueError, match="clock control"):
        ncu.build_command("ncu", "sdpa-flash", PROBLEM, clock_control="max")


def test_the_metric_set_covers_what_the_dashboard_reads():
    m = set(ncu.METRICS)
    for name in ("gpu__time_duration.sum", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
                 "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active", "dram__bytes.sum",
                 "dram__bytes.sum.per_second", "sm__warps_active.avg.pct_of_peak_sustained_active",
                 "launch__registers_per_thread", "launch__shared_mem_per_block_static",
                 "launch__shared_mem_per_block_dynamic",
                 "smsp__average_warps_issue_stalled_gmma_per_issue_active.ratio"):
        assert name in m


def test_metrics_this_ncu_does_not_know_are_dropped():
    query = "\n".join(["Device NVIDIA H100 80GB HBM3 (GH100)", "-" * 40, "Metric Name    Metric Description"]
                      + [f"fake__metric_{i}    counter {i}" for i in range(60)]
                      + ["gpu__time_duration    duration", "dram__bytes    bytes"])
    known = ncu.parse_query_metrics(query)
    assert {"gpu__time_duration", "dram__bytes", "fake__metric_0"} <= known and "Device" not in known
    kept, dropped = ncu.filter_known(["gpu__time_duration.sum", "dram__bytes.sum.per_second",
                                      "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
                                      "launch__registers_per_thread"], known)
    assert kept == ["gpu__time_duration.sum", "dram__bytes.sum.per_second", "launch__registers_per_thread"]
    assert dropped == ["sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"]
    assert ncu.filter_known(["a__b.sum"], set()) == (["a__b.sum"], [])  # no usable list: drop nothing


def _runner(*outputs):
    calls = []

    def run(cmd, timeout):
        calls.append(cmd)
        return outputs[len(calls) - 1]

    return run, calls


def test_a_metric_rejected_by_ncu_is_dropped_and_the_cell_retried():
    err = ProcResult(1, "==PROF== Connected to process 7\n==ERROR== Failed to find metric "
                        "regex:^sm__pipe_tensor_op_gmma_cycles_active\\.(sum|avg|max|min)$\n")
    run, calls = _runner(err, ProcResult(0, RAW))
    prof = ncu.profile_cell("ncu", "naive", PROBLEM, calls=2, runner=run)
    assert prof.status == "ok", prof.reason
    assert prof.dropped_metrics == ["sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"]
    assert "sm__pipe_tensor_op_gmma" not in calls[1][calls[1].index("--metrics") + 1]
    assert prof.call_ns == pytest.approx(450_000.0) and prof.launches == 6


@pytest.mark.parametrize(("result", "status", "reason"), [
    (ProcResult(3, "PROFILE_TARGET SKIP fa4 needs flash_attn.cute\n==WARNING== No kernels were profiled.\n"),
     "skipped", "fa4 needs flash_attn.cute"),
    (ProcResult(0, "PROFILE_TARGET DONE calls=3\n==PROF== Disconnected\n==WARNING== No kernels were profiled.\n"),
     "failed", "profiled no kernel"),
    (ProcResult(1, "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission\n"), "failed", "ERR_NVGPUCTRPERM"),
    (ProcResult(None, "partial", timed_out=True), "failed", "timed out"),
    (ProcResult(139, RAW.replace("PROFILE_TARGET DONE calls=2\n", "")), "failed", "exit 139"),
])
def test_cells_that_cannot_be_profiled_say_why(result, status, reason):
    run, _ = _runner(result)
    prof = ncu.profile_cell("ncu", "fa4", PROBLEM, calls=3, runner=run)
    assert prof.status == status and reason in prof.reason


def test_the_comparison_row_puts_ncu_time_beside_the_harness_median():
    from harness.records.result import Result

    run, _ = _runner(ProcResult(0, RAW))
    prof = ncu.profile_cell("ncu", "naive", PROBLEM, calls=2, runner=run)
    harness = Result.for_problem("r", "fa-paper", "naive", PROBLEM, "ok", median_ms=0.5)
    row = compare.make_row("naive", PROBLEM.key(), prof, harness)
    assert row.ncu_ms == pytest.approx(0.45) and row.ratio == pytest.approx(0.9)
    assert row.kernels_per_call == 3 and row.main_kernel == "gemm_kernel"
    assert row.registers == 168 and row.smem_kib == pytest.approx(97.0)
    assert compare.make_row("naive", PROBLEM.key(), prof, None).ratio is None


def test_the_row_shows_issue_slots_the_exponentials_pipe_and_l2_traffic_of_the_main_kernel():
    kernels = {
        "attn_kernel": {ncu.TIME: 900_000.0, "launches": 1, "launches_per_call": 1,
                        "sm__inst_issued.avg.pct_of_peak_sustained_active": 61.5,
                        "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active": 48.25,
                        "lts__t_bytes.sum.per_second": 5.7e12},
        "memset": {ncu.TIME: 1_000.0, "launches": 1, "launches_per_call": 1, "lts__t_bytes.sum.per_second": 9e12},
    }
    prof = ncu.CellProfile("ok", kernels=kernels, call_ns=901_000.0, launches=2)
    row = compare.make_row("flashcore-bleeding-edge", PROBLEM.key(), prof, None)
    assert (row.issue_pct, row.xu_pct, row.l2_gbs) == (61.5, 48.25, pytest.approx(5700.0))
    for name in ("sm__inst_issued.avg.pct_of_peak_sustained_active",
                 "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active", "lts__t_bytes.sum.per_second"):
        assert name in ncu.METRICS


def test_the_profile_target_skips_cleanly_where_the_backend_cannot_run():
    # the protocol profile_cell relies on: one SKIP line and exit status 3 (here: no GPU, or no such shape)
    problem = json.dumps(Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64, dtype="float16").as_dict())
    res = subprocess.run([sys.executable, "-m", "harness.tools.profile_target", "sdpa-flash", problem],
                         capture_output=True, text=True, timeout=300, check=False)
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        gpu = False
    if gpu:
        assert res.returncode == 0 and "PROFILE_TARGET DONE calls=3" in res.stdout
    else:
        assert res.returncode == 3, res.stdout + res.stderr
        assert "PROFILE_TARGET SKIP no CUDA GPU visible to torch" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "harness.tools.profile_target", "sdpa-flash", '{"batch": 0}'],
                         capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 1 and "PROFILE_TARGET ERROR bad problem" in bad.stdout


def _row(backend, ncu_ms, harness_ms, untimed=()):
    r = compare.Row(backend, "p", "ok", ncu_ms=ncu_ms, harness_ms=harness_ms, ratio=ncu_ms / harness_ms)
    r.untimed_by_ncu = list(untimed)
    return r


def test_agreement_counts_cells_of_at_least_the_threshold_and_names_the_worst():
    rows = [_row("a", 0.100, 0.101), _row("b", 0.050, 0.052), _row("c", 0.010, 0.020),  # c: too short
            _row("d", 0.021, 0.0225, untimed=["gpu_memset: Memset (Device)"])]
    a = compare.agreement(rows, min_ms=0.02, tolerance=0.02)
    assert (a.judged, a.within, a.worst.backend) == (3, 1, "d")
    k = compare.agreement(rows, min_ms=0.02, tolerance=0.02, kernels_only=True)
    assert (k.judged, k.within, k.worst.backend) == (2, 1, "b")
    lines = compare.agreement_lines(rows)
    assert lines[0].startswith("harness median (events, tare off): 1 of 3 cells of >= 20 us within 2%")
    assert "leaving out the 1 cells whose calls also run work ncu does not time" in lines[-1]


def test_a_call_that_also_runs_a_memset_is_marked_as_running_work_ncu_does_not_time():
    from harness.records.result import Result

    run, _ = _runner(ProcResult(0, RAW))
    prof = ncu.profile_cell("ncu", "naive", PROBLEM, calls=2, runner=run)
    named = Result.for_problem("r", "s", "naive", PROBLEM, "ok", median_ms=0.5,
                               extra={"kernel_clock_names": ["gpu_memset: Memset (Device)", "kernel: gemm"]})
    assert compare.make_row("naive", PROBLEM.key(), prof, named).untimed_by_ncu == ["gpu_memset: Memset (Device)"]
    counted = Result.for_problem("r", "s", "naive", PROBLEM, "ok", median_ms=0.5, extra={"kernels_per_call": 4})
    assert compare.make_row("naive", PROBLEM.key(), prof, counted).untimed_by_ncu  # 4 seen, ncu profiled 3
    same = Result.for_problem("r", "s", "naive", PROBLEM, "ok", median_ms=0.5, extra={"kernels_per_call": 3})
    assert compare.make_row("naive", PROBLEM.key(), prof, same).untimed_by_ncu == []


def test_saved_ncu_outputs_of_several_folders_are_compared_later_folders_winning(tmp_path):
    from harness.records.result import Result
    from harness.store.database import RunInfo, Store

    db = tmp_path / "r.db"
    with Store(db) as st:
        st.create_run(RunInfo(run_id="t", suite="s", created_at="now", git_commit="", argv="", env={}))
        st.add_result(Result.for_problem("t", "s", "naive", PROBLEM, "ok", median_ms=0.45))
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
    name = f"naive__{PROBLEM.key()}.ncu.txt"
    (first / name).write_text(RAW)  # 2 calls: 0.45 ms a call
    (second / name).write_text(RAW)  # read as 1 call: 0.9 ms
    script = [sys.executable, "-c", "from harness.cli import main; main()", "diagnose", "ncu-saved", "--db", str(db), "--timing", "t"]
    res = subprocess.run([*script, str(first), "--calls", "2"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "1 of 1 cells of >= 20 us within 2%" in res.stdout
    res = subprocess.run([*script, str(first), f"{second}:1", "--calls", "2"], capture_output=True, text=True)
    assert "0 of 1 cells" in res.stdout and "worst ncu/harness 2.000" in res.stdout
    bad = subprocess.run([*script, f"{first}:x"], capture_output=True, text=True)
    assert bad.returncode == 2 and ":CALLS (a whole number)" in bad.stderr
