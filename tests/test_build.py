"""The kernel build pipeline (CPU only): every kernel compiles for sm_90a, the resource and SASS report
parses, and each kernel's machine code matches what the table in harness/build/kernels.py claims.
Parsers are also tested on canned ptxas and cuobjdump text."""
from __future__ import annotations

import copy
import json

import pytest

from harness.build import BuildReport, build_all, check_claims, toolchain
from harness.build import kernels as ktable
from harness.build.compile import short_name
from harness.build.ptxas import parse_ptxas
from harness.build.report import FunctionReport
from harness.build.sass import opcode, parse_sass

H100_MAX_DYNAMIC_SMEM = 227 * 1024  # cudaDevAttrMaxSharedMemoryPerBlockOptin on H100

needs_nvcc = pytest.mark.skipif(toolchain.find_nvcc() is None, reason="nvcc not found (CUDA toolkit needed)")


@pytest.fixture(scope="module")
def report() -> BuildReport:
    if toolchain.find_nvcc() is None:
        pytest.skip("nvcc not found (CUDA toolkit needed)")
    if toolchain.find_cuobjdump() is None:
        pytest.skip("cuobjdump not found: install the CUDA toolkit or `pip install nvidia-cuda-cuobjdump`")
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
        assert all(f.sass_inspected for f in k.functions), f"{k.name}: SASS missing for some function"


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
    from harness.build.report import DiagnosticReport, kernel_report_from_spec

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


@needs_nvcc
def test_a_kernel_that_does_not_compile_is_reported_not_raised(monkeypatch, tmp_path):
    from harness.build import compile as bc

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
    from harness.problem import Problem

    b = flashcore_ops.FlashcorePhase4X()
    assert b.custom_kernel and b.name == "flashcore-phase4x"
    ok = Problem(batch=1, heads_q=2, seqlen_q=64, head_dim=128, dtype="float16")
    assert b.unsupported(ok) is None
    assert b.unsupported(ok.with_(head_dim=96)) == "head_dim=96 not supported by flashcore-phase4x: allowed 64, 128"
    assert "allowed float16, bfloat16" in b.unsupported(ok.with_(dtype="float32"))
    names = {c.name for c in (flashcore_ops.FlashcorePhase4, flashcore_ops.FlashcorePhase4X,
                              flashcore_ops.FlashcoreBleedingEdge)}
    assert names == {"flashcore-phase4", "flashcore-phase4x", "flashcore-bleeding-edge"}


def test_backends_say_why_they_are_unavailable_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from harness.backends import flashcore_ops

    assert flashcore_ops.FlashcorePhase4().unavailable() == "no CUDA GPU visible to torch"
