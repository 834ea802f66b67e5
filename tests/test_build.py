"""The kernel build pipeline (CPU only): every kernel compiles for sm_90a, the resource and SASS report
parses, and each kernel's machine code matches what the table in harness/tools/build/kernels.py claims.
Parsers are also tested on canned ptxas and cuobjdump text."""
from __future__ import annotations

import copy
import json

import pytest

from harness.tools.build import BuildReport, build_all, check_claims, toolchain
from harness.tools.build import kernels as ktable
from harness.tools.build.compile import short_name
from harness.tools.build.ptxas import parse_ptxas
from harness.tools.build.report import FunctionReport
from harness.tools.build.sass import opcode, parse_sass

H100_MAX_DYNAMIC_SMEM = 227 * 1024  # cudaDevAttrMaxSharedMemoryPerBlockOptin on H100

needs_nvcc = pytest.mark.skipif(toolchain.find_nvcc() is None, reason="nvcc not found (CUDA toolkit needed)")


@pytest.fixture(scope="module")
def report() -> BuildReport:
    if toolchain.find_nvcc() is None:
        pytest.skip("nvcc not found (CUDA toolkit needed)")
    if toolchain.find_cuobjdump() is None:
        pytest.skip("cuobjdump not found: install the CUDA toolkit, or the test extra (pip install -e .[test]: "
                    "nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm)")
    return build_all(write=False)


def _compiled(report: BuildReport):
    return [k for k in report.kernels if k.present]


# -- the table ------------------------------------------------------------------------------------------

def test_every_kernel_source_in_kernels_dir_is_declared_in_the_table():
    declared = {k.source for k in ktable.KERNELS}
    on_disk = {str(p.relative_to(ktable.REPO_ROOT)) for p in ktable.KERNELS_DIR.glob("*.cu")}
    assert on_disk <= declared, f"undeclared kernel sources {sorted(on_disk - declared)}: add them to KERNELS"


def test_required_kernels_are_present_and_only_optional_ones_may_be_missing():
    for k in ktable.KERNELS:
        assert k.exists() or k.optional, f"{k.source} is missing"


def test_phase4_claims_scalar_fma_and_phase4x_claims_tensor_cores_and_cp_async():
    p4, p4x = ktable.by_name("phase4"), ktable.by_name("phase4x")
    assert {"HMMA", "HGMMA"} <= set(p4.forbids) and "FFMA" in p4.requires
    assert {"HMMA", "LDGSTS"} <= set(p4x.requires)
    be = ktable.by_name("bleeding_edge")
    assert {"HGMMA", "UTMALDG", "USETMAXREG"} <= set(be.requires)
    assert {"LDL", "STL"} <= set(be.forbids) and {"C7508", "C7511", "C7515"} <= set(be.forbid_diagnostics)


def test_declared_dynamic_shared_memory_fits_an_h100_block():
    for k in ktable.KERNELS:
        for c in k.launch_configs:
            assert 0 < c.dynamic_smem_bytes <= H100_MAX_DYNAMIC_SMEM, (k.name, c)


# -- the compiled kernels ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_present_kernel_compiles_for_sm_90a(report):
    for k in _compiled(report):
        assert k.compiled, f"{k.name} failed to compile:\n{k.error}"
        assert k.functions, f"{k.name}: ptxas reported no kernel functions"
        assert all(f.sass_inspected for f in k.functions), f"{k.name}: SASS missing: {k.sass_error}"


@pytest.mark.slow
def test_report_round_trips_through_json(report, tmp_path):
    path = tmp_path / "report.json"
    report.write(path)
    again = BuildReport.read(path)
    assert again.to_dict() == report.to_dict()
    d = json.loads(path.read_text())
    assert d["flags"][0] == "-gencode=arch=compute_90a,code=sm_90a"
    for k in d["kernels"]:
        for f in k["functions"]:
            assert f["registers"] > 0 and f["total_instructions"] > 0


@pytest.mark.slow
def test_spill_free_kernels_have_no_stack_spills_or_local_memory(report):
    for k in _compiled(report):
        if not k.spill_free:
            continue
        for f in k.claimed_functions():
            assert (f.stack_frame_bytes, f.spill_store_bytes, f.spill_load_bytes) == (0, 0, 0), (k.name, f.name)
            assert f.sass["LDL"] == 0 and f.sass["STL"] == 0, (k.name, f.name)


@pytest.mark.slow
def test_claimed_instructions_are_in_the_machine_code_and_forbidden_ones_are_not(report):
    for k in _compiled(report):
        for f in k.claimed_functions():
            for c in k.requires:
                assert f.sass[c] > 0, f"{k.name}: {f.name} claims {c}, SASS has none"
            for c in k.forbids:
                assert f.sass[c] == 0, f"{k.name}: {f.name} claims no {c}, SASS has {f.sass[c]}"


@pytest.mark.slow
def test_phase_kernels_cover_both_dtypes_head_dims_and_mask_modes(report):
    for name in ("phase4", "phase4x"):
        fns = {f.name for f in report.kernel(name).functions}
        for dt in ("__half", "__nv_bfloat16"):
            for d in (64, 128):
                for causal in ("false", "true"):
                    assert f"{name}_fwd_kernel<{dt}, {d}, {causal}>" in fns, (name, sorted(fns))


@pytest.mark.slow
def test_check_claims_is_empty_for_this_tree(report):
    assert check_claims(report) == []


@pytest.mark.slow
def test_a_second_build_reuses_the_cache(report):
    again = build_all(write=False)
    assert again.cached and again.source_hash == report.source_hash


# -- check_claims on doctored reports (it must be able to say no) ----------------------------------------

@pytest.mark.slow
def test_check_claims_reports_spills_missing_and_forbidden_instructions(report):
    bad = copy.deepcopy(report)
    p4 = bad.kernel("phase4").functions[0]
    p4.spill_store_bytes = 16
    p4.sass["LDL"] = 3
    p4.sass["HMMA"] = 2
    bad.kernel("phase4x").functions[0].sass["HMMA"] = 0
    v = "\n".join(check_claims(bad))
    assert f"phase4: {p4.name}: claimed spill-free" in v
    assert "claims no HMMA but the SASS has 2" in v
    assert "phase4x:" in v and "claims HMMA but the SASS has none" in v


def test_check_claims_reports_forbidden_diagnostics_and_failed_compiles():
    from harness.tools.build.report import DiagnosticReport, kernel_report_from_spec

    be = kernel_report_from_spec(ktable.by_name("bleeding_edge"))
    be.present, be.compiled = True, True
    be.functions = [FunctionReport(name="be::fwd_kernel<X>", mangled="_Z1x", registers=168, sass_inspected=True,
                                   sass={"HGMMA": 4, "UTMALDG": 2, "USETMAXREG": 2, "LDL": 0, "STL": 0})]
    be.diagnostics = [DiagnosticReport(code="C7515", severity="warning", message="wgmma serialized")]
    p4 = kernel_report_from_spec(ktable.by_name("phase4"))
    p4.present, p4.compiled, p4.error = True, False, "kernels/phase4.cu(3): error: expected a ';'"
    p4x = kernel_report_from_spec(ktable.by_name("phase4x"))
    p4x.present = False  # required source missing
    rep = BuildReport(created="", nvcc="", nvcc_version="", cuobjdump=None, flags=[], include_dirs=[],
                      source_hash="", cache_dir="", kernels=[be, p4, p4x])
    v = check_claims(rep)
    assert any("bleeding_edge: ptxas C7515" in x for x in v)
    assert any(x.startswith("phase4: compile failed: kernels/phase4.cu(3)") for x in v)
    assert "phase4x: source kernels/phase4x.cu is missing" in v
    be.present = False  # an absent optional kernel is fine
    assert not any(x.startswith("bleeding_edge") for x in check_claims(rep))


# -- parsers on canned text -------------------------------------------------------------------------------

PTXAS_TEXT = """\
ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline stage in the function '_Z4wgmmPf'
ptxas info    : (C7508) Potential Performance Loss: 'setmaxnreg' ignored; unable to determine register count at entry.
ptxas info    : (C7519) warpgroup.arrive is injected in around line 12 by compiler to allow use of registers in GMMA in function '_Z4wgmmPf'
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z4wgmmPf' for 'sm_90a'
ptxas info    : Function properties for _Z4wgmmPf
    24 bytes stack frame, 16 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 168 registers, used 16 barriers, 1024 bytes smem, 24 bytes cumulative stack size
ptxas info    : Compile time = 2.938 ms
ptxas warning : Registers are spilled to local memory in function '_Z4wgmmPf', 16 bytes spill stores, 8 bytes spill loads
ptxas info    : Function properties for _Z6helperv
    8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function '_Z5plainPfi' for 'sm_90a'
ptxas info    : Function properties for _Z5plainPfi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 384 bytes cmem[0]
"""


def test_ptxas_parser_reads_registers_smem_spills_and_stack_per_entry():
    r = parse_ptxas(PTXAS_TEXT)
    w = r.functions["_Z4wgmmPf"]
    assert w.entry and w.arch == "sm_90a"
    assert (w.registers, w.barriers, w.static_smem_bytes) == (168, 16, 1024)
    assert (w.stack_frame_bytes, w.spill_store_bytes, w.spill_load_bytes, w.cumulative_stack_bytes) == (24, 16, 8, 24)
    p = r.functions["_Z5plainPfi"]
    assert (p.registers, p.barriers, p.static_smem_bytes, p.cmem0_bytes, p.stack_frame_bytes) == (40, 1, 0, 384, 0)
    helper = r.functions["_Z6helperv"]  # a non-inlined device function: properties, not an entry
    assert not helper.entry and helper.stack_frame_bytes == 8


def test_ptxas_parser_collects_coded_and_uncoded_diagnostics_with_their_functions():
    r = parse_ptxas(PTXAS_TEXT)
    by_code = {d.code: d for d in r.diagnostics}
    assert by_code["C7515"].function == "_Z4wgmmPf" and by_code["C7515"].severity == "warning"
    assert by_code["C7508"].function is None and by_code["C7508"].severity == "warning"
    assert by_code["C7519"].severity == "info"
    spill = [d for d in r.diagnostics if d.code == ""]
    assert len(spill) == 1 and spill[0].function == "_Z4wgmmPf" and spill[0].severity == "warning"


SASS_TEXT = """\

Fatbin elf code:
================
arch = sm_90a

\tcode for sm_90a
\t\tFunction : _Z4wgmmPf
\t.headerflags\t@"EF_CUDA_ACCELERATORS EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                      /* 0x00000a00ff017b82 */
                                                                               /* 0x000fe20000000800 */
        /*0010*/                   USETMAXREG.TRY_ALLOC.CTAPOOL UP0, 0xf0 ;    /* 0x000000f0000079c8 */
        /*0020*/              @!P0 BRA 0x20 ;                                  /* 0xfffffffc00f08947 */
        /*0030*/                   UTMALDG.2D [UR8], [UR4] ;                   /* 0x00000008040075b4 */
        /*0040*/                   UTMACCTL.PF [UR4] ;                         /* 0x00000000040079b9 */
        /*0050*/                   SYNCS.ARRIVE.TRANS64.RED.A1T0 RZ, [UR6+0x8], RZ ;  /* 0x000008ffffff79a7 */
        /*0060*/                   HGMMA.64x128x16.F32 R24, gdesc[UR8], RZ, !UPT ;  /* 0x00e00000081879f0 */
        /*0070*/              @P1  MUFU.EX2 R5, R4 ;                           /* 0x0000000400051308 */
        /*0080*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;               /* 0x0000000000007b1d */
        /*0090*/                   BAR.ARV 0x1, 0x100 ;                        /* 0x0004000000007b1d */
        /*00a0*/                   STL [R1], R2 ;                              /* 0x0000000201007387 */
        /*00b0*/                   LDL R3, [R1] ;                              /* 0x0000000001037983 */
        /*00c0*/                   NOP;                                        /* 0x0000000000007918 */
        /*00d0*/                   EXIT ;                                      /* 0x000000000000794d */
\t\t..........

\t\tFunction : _Z5plainPfi
        /*0000*/                   LDGSTS.E.BYPASS.LTC128B.128 [R3], desc[UR4][R4.64] ;  /* 0x0000000004037fae */
        /*0010*/                   HMMA.16816.F32 R8, R12, R16, R8 ;           /* 0x000000100c08723c */
        /*0020*/                   HMMA.16816.F32.BF16 R8, R12, R16, R8 ;      /* 0x000000100c08723c */
        /*0030*/                   FFMA R0, R1, R2, R0 ;                       /* 0x0000000201007223 */
        /*0040*/                   FFMA.FTZ R0, R1, R2, R0 ;                   /* 0x0000000201007223 */
        /*0050*/                   MUFU.RCP R0, R1 ;                           /* 0x0000000100007308 */
        /*0060*/                   EXIT ;                                      /* 0x000000000000794d */
"""


def test_sass_parser_counts_instruction_classes_per_function():
    f = parse_sass(SASS_TEXT)
    assert set(f) == {"_Z4wgmmPf", "_Z5plainPfi"}
    w = f["_Z4wgmmPf"]
    assert w.count("USETMAXREG") == 1 and w.count("UTMALDG") == 1 and w.count("UTMA") == 2
    assert w.count("SYNCS") == 1 and w.count("HGMMA") == 1 and w.count("HMMA") == 0
    assert w.count("MUFU.EX2") == 1
    assert w.count("BAR") == 2 and w.count("BAR.SYNC") == 1
    assert w.count("LDL") == 1 and w.count("STL") == 1
    assert w.total == 13  # NOP excluded, predicated instructions included
    p = f["_Z5plainPfi"]
    assert p.count("LDGSTS") == 1 and p.count("HMMA") == 2 and p.count("FFMA") == 2
    assert p.count("MUFU.EX2") == 0 and p.total == 7


def test_opcode_strips_predicates():
    assert opcode("@!P0 BRA 0x20") == "BRA"
    assert opcode("@UP1 UTMALDG.2D [UR8], [UR4]") == "UTMALDG.2D"
    assert opcode("HMMA.16816.F32 R8, R12, R16, R8") == "HMMA.16816.F32"


def test_short_name_drops_namespaces_and_parameters():
    assert short_name("void flashcore::(anonymous namespace)::phase4_fwd_kernel<__half, 64, true>"
                      "(flashcore::(anonymous namespace)::KParams)") == "phase4_fwd_kernel<__half, 64, true>"
    assert short_name("void flashcore::be::fwd_kernel<flashcore::be::Cfg<false, 64, 128, 2, 4, false> >"
                      "(CUtensorMap_st, flashcore::be::KernelParams)") == "be::fwd_kernel<be::Cfg<false, 64, 128, 2, 4, false> >"


def test_source_hash_depends_on_flags_and_tool_versions():
    assert toolchain.source_hash(("nvcc 13.0",)) != toolchain.source_hash(("nvcc 12.8",))
    assert toolchain.source_hash(("x",)) == toolchain.source_hash(("x",))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASHCORE_CACHE", str(tmp_path / "c"))
    assert toolchain.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FLASHCORE_CACHE")
    assert toolchain.cache_dir().parts[-3:] == (".cache", "flashcore", "build")


# -- cuobjdump, nvdisasm and the cache, with stand-in tools -------------------------------------------------

NVDISASM_MISSING = ("cuobjdump fatal   : Could not find executable file 'nvdisasm'; you can try adding path to "
                    "environment variables PATH or NVDISASM_PATH")
TINY_KERNEL = "__global__ void k(float* x) { x[0] = x[0] * 2.0f + 1.0f; }\n"
TINY_SASS = """\
\t\tFunction : _Z1kPf
        /*0000*/                   LDC R1, c[0x0][0x28] ;                      /* 0x00000a00ff017b82 */
        /*0010*/                   FFMA R0, R1, R2, R0 ;                       /* 0x0000000201007223 */
        /*0020*/                   EXIT ;                                      /* 0x000000000000794d */
"""


def _script(path, body: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _path_without_nvdisasm() -> str:
    import os
    from pathlib import Path

    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "nvdisasm").exists())


@pytest.fixture
def tiny_build(monkeypatch, tmp_path):
    """build_all over one tiny kernel, a fresh cache, no nvdisasm on PATH, and a cuobjdump that behaves as
    the real one does: it disassembles through nvdisasm, found on PATH or in NVDISASM_PATH only."""
    from harness.tools.build import compile as bc

    src = tmp_path / "k.cu"
    src.write_text(TINY_KERNEL)
    (tmp_path / "k.sass").write_text(TINY_SASS)
    monkeypatch.setattr(bc, "KERNELS", (ktable.KernelSpec(name="tiny", source=str(src), description="a test"),))
    monkeypatch.setenv("FLASHCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", _path_without_nvdisasm())
    monkeypatch.delenv("NVDISASM_PATH", raising=False)
    fake = _script(tmp_path / "cuobjdump-wheel" / "bin" / "cuobjdump", f"""\
if command -v nvdisasm >/dev/null 2>&1 || [ -x "${{NVDISASM_PATH:-/nonexistent}}/nvdisasm" ]; then
  /bin/cat '{tmp_path / "k.sass"}'
  exit 0
fi
echo "{NVDISASM_MISSING}" >&2
exit 1
""")
    monkeypatch.setattr(toolchain, "find_cuobjdump", lambda: str(fake))
    monkeypatch.setattr(toolchain, "find_nvdisasm", lambda: None, raising=False)  # as on a fresh machine
    return tmp_path


def _install_nvdisasm(monkeypatch, tmp_path) -> str:
    """A stand-in nvdisasm in a folder of its own (as its wheel puts it), found by flashcore, not on PATH."""
    nvd = str(_script(tmp_path / "nvdisasm-wheel" / "bin" / "nvdisasm", "exit 0\n"))
    monkeypatch.setattr(toolchain, "find_nvdisasm", lambda: nvd, raising=False)
    return nvd


@needs_nvcc
def test_a_cuobjdump_without_nvdisasm_is_named_in_one_line_and_not_cached(tiny_build):
    rep = build_all(write=False)
    v = check_claims(rep)
    assert len(v) == 1, v
    assert "Could not find executable file 'nvdisasm'" in v[0] and "pip install nvidia-cuda-nvdisasm" in v[0], v
    assert "\n" not in v[0] and len(v[0]) < 400
    assert not (toolchain.cache_dir() / rep.source_hash / "report.json").exists()  # never kept
    again = build_all(write=False)
    assert not again.cached and check_claims(again) == v  # the next build tries the SASS step again


@needs_nvcc
def test_nvdisasm_in_its_own_folder_reaches_cuobjdump_without_path_edits(tiny_build, monkeypatch):
    _install_nvdisasm(monkeypatch, tiny_build)
    rep = build_all(write=False)
    (f,) = rep.kernel("tiny").functions
    assert f.sass_inspected and f.sass["FFMA"] == 1 and f.total_instructions == 3
    assert check_claims(rep) == []
    assert build_all(write=False).cached


@needs_nvcc
def test_a_cached_report_without_sass_is_not_reused(tiny_build, monkeypatch):
    _install_nvdisasm(monkeypatch, tiny_build)
    first = build_all(write=False)
    cached = toolchain.cache_dir() / first.source_hash / "report.json"
    d = json.loads(cached.read_text())  # as an older build, or one whose disassembly failed, left it
    for f in d["kernels"][0]["functions"]:
        f["sass"], f["total_instructions"], f["sass_inspected"] = {}, 0, False
    cached.write_text(json.dumps(d))
    again = build_all(write=False)
    assert not again.cached and all(f.sass_inspected for f in again.kernel("tiny").functions)


def test_a_failing_cuobjdump_error_is_one_capped_line(tmp_path, monkeypatch):
    from harness.tools.build.sass import MAX_ERROR_CHARS, SassError, disassemble

    fake = _script(tmp_path / "cuobjdump", "echo 'some preamble' >&2\n"
                   "printf 'cuobjdump fatal   : %05000d\\n  more\\n' 0 >&2\nexit 1\n")
    with pytest.raises(SassError) as exc:
        disassemble(str(fake), tmp_path / "x.o", None)
    msg = str(exc.value)
    assert msg.startswith("cuobjdump -sass x.o failed: cuobjdump fatal : 00000") and "\n" not in msg
    assert len(msg) <= MAX_ERROR_CHARS


@pytest.mark.parametrize(("tool", "wheel"), [("nvdisasm", "nvidia-cuda-nvdisasm"),
                                             ("cuobjdump", "nvidia-cuda-cuobjdump")])
def test_the_tools_are_found_in_their_wheels_without_path(tool, wheel, tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / f"{wheel.replace('-', '_')}-99.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {wheel}\nVersion: 99.0\n")
    (info / "RECORD").write_text(f"nvidia/cu13/bin/{tool},,\n{info.name}/METADATA,,\n")
    binary = site / "nvidia" / "cu13" / "bin" / tool
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o644)  # wheels can lose the executable bit
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(toolchain, "_cuda_homes", lambda: [])
    finder = getattr(toolchain, f"find_{tool}")
    finder.cache_clear()
    try:
        assert finder() == str(binary)
    finally:
        finder.cache_clear()
    assert binary.stat().st_mode & 0o111


def test_cuobjdump_runs_with_the_folder_of_nvdisasm_on_its_path(tmp_path):
    env = toolchain.cuobjdump_env(str(tmp_path / "bin" / "nvdisasm"))
    assert env["PATH"].split(":")[0] == str(tmp_path / "bin") and env["NVDISASM_PATH"] == str(tmp_path / "bin")


# -- where the report goes ---------------------------------------------------------------------------------

def test_the_default_report_is_ignored_by_git_and_the_committed_one_is_not():
    import shutil
    import subprocess

    from harness.tools.build import compile as bc

    if shutil.which("git") is None or not (ktable.REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(bc.DEFAULT_REPORT)], cwd=ktable.REPO_ROOT,
                             check=False)
    assert ignored.returncode == 0, f"{bc.DEFAULT_REPORT} is not ignored: every build would dirty the tree"
    committed = getattr(bc, "COMMITTED_REPORT", ktable.REPO_ROOT / "results" / "build" / "report.json")
    assert bc.DEFAULT_REPORT != committed
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(committed)], cwd=ktable.REPO_ROOT,
                             capture_output=True, check=False)
    assert tracked.returncode == 0


@needs_nvcc
def test_flashcore_build_writes_the_default_report_not_the_committed_one(tiny_build, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.tools.build import compile as bc

    _install_nvdisasm(monkeypatch, tiny_build)
    default = tiny_build / "local" / "report.json"
    monkeypatch.setattr(bc, "DEFAULT_REPORT", default)
    monkeypatch.chdir(tiny_build)  # a relative path the command writes lands here, not in the checkout
    res = CliRunner().invoke(app, ["build"])
    assert res.exit_code == 0, res.output
    assert BuildReport.read(default).kernel("tiny").compiled
    assert not (tiny_build / "results" / "build" / "report.json").exists()
    asked = tiny_build / "asked.json"
    assert CliRunner().invoke(app, ["build", "--out", str(asked)]).exit_code == 0 and asked.is_file()


@needs_nvcc
def test_a_kernel_that_does_not_compile_is_reported_not_raised(monkeypatch, tmp_path):
    from harness.tools.build import compile as bc

    src = tmp_path / "broken.cu"
    src.write_text("__global__ void k(float* x) { x[0] = undeclared; }\n")
    spec = ktable.KernelSpec(name="broken", source=str(src), description="")
    monkeypatch.setattr(ktable.KernelSpec, "path", property(lambda self: src))
    rep = bc._compile_one(spec, tmp_path, toolchain.find_nvcc(), toolchain.find_cuobjdump())
    assert not rep.compiled and "undeclared" in (rep.error or "")


# -- the backends' static limits (no GPU needed) ---------------------------------------------------------

def test_backends_name_what_they_do_not_support():
    pytest.importorskip("torch")
    from harness.backends import flashcore_ops
    from harness.spec.problem import Problem

    b = flashcore_ops.FlashcorePhase4X()
    assert b.custom_kernel and b.name == "flashcore-phase4x"
    ok = Problem(batch=1, heads_q=2, seqlen_q=64, head_dim=128, dtype="float16")
    assert b.unsupported(ok) is None
    assert b.unsupported(ok.with_(head_dim=96)) == "head_dim=96 not supported by flashcore-phase4x: allowed 64, 128"
    assert "allowed float16, bfloat16" in b.unsupported(ok.with_(dtype="float32"))
    names = {c.name for c in (flashcore_ops.FlashcorePhase4, flashcore_ops.FlashcorePhase4X,
                              flashcore_ops.FlashcoreBleedingEdge)}
    assert names == {"flashcore-phase4", "flashcore-phase4x", "flashcore-bleeding-edge"}


def test_only_the_bleeding_edge_backend_reads_strided_inputs_in_place():
    pytest.importorskip("torch")
    from harness.backends import flashcore_ops
    from harness.spec.problem import Problem

    bhsd = Problem(batch=2, heads_q=8, heads_kv=2, seqlen_q=300, seqlen_k=200, head_dim=64, dtype="bfloat16",
                   causal=True, layout="bhsd")
    be = flashcore_ops.FlashcoreBleedingEdge()
    assert be.strided_inputs and be.unsupported(bhsd) is None
    # phase4/phase4x take bhsd too, through one untimed copy in prepare
    assert not flashcore_ops.FlashcorePhase4X.strided_inputs
    assert flashcore_ops.FlashcorePhase4X().unsupported(bhsd) is None


def test_backends_say_why_they_are_unavailable_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from harness.backends import flashcore_ops

    assert flashcore_ops.FlashcorePhase4().unavailable() == "no CUDA GPU visible to torch"
