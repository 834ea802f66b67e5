"""kernels/tools/sass_loops.py: the GEMM loops of a kernel read from its SASS, counted and given the longest chain
of dependent arithmetic, the numbers kernels/NOTES.md quotes per key block."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from harness.tools.build.sass import function_instructions

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sass_loops", ROOT / "kernels/tools/sass_loops.py")
sass_loops = importlib.util.module_from_spec(_spec)
sys.modules["sass_loops"] = sass_loops  # a dataclass needs its module registered
_spec.loader.exec_module(sass_loops)


def _function(name: str, body: list[str]) -> str:
    lines = [f"\t\tFunction : {name}"]
    lines += [f"        /*{16 * i:04x}*/                   {text} ;                 /* 0x000fe20000000f00 */"
              for i, text in enumerate(body)]
    return "\n".join(lines) + "\n"


GEMM = ["HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], RZ, !UPT, gsb0"] * 8
LOOP = [
    "MOV R2, R3",                         # 0x0010: the loop starts here
    *GEMM,
    "FMNMX R4, R24, R25, !PT",            # chain: 4
    "FMNMX R4, R4, R26, !PT",             # 8
    "FFMA R5, R4, R6, -R7",               # 12
    "MUFU.EX2 R8, R5",                    # 30
    "@P0 FADD R9, R8, R9",                # 34 (a predicated instruction reads and writes registers too)
    "FMUL R10, R11, R12",                 # independent: 4
    "@!P1 BRA 0x10",                      # back to 0x0010
]
SASS = _function("_Z6kernelILi1EEvv", ["S2R R0, SR_TID.X", *LOOP, "EXIT"]) + _function(
    "_Z6kernelILi2EEvv", ["S2R R0, SR_TID.X", "BRA 0x20", "EXIT"])


def test_a_backward_branch_over_enough_hgmma_is_one_loop_with_its_instruction_counts():
    [loop] = sass_loops.loops(function_instructions(SASS)["_Z6kernelILi1EEvv"])
    assert loop.start == 0x10
    assert len(loop.instructions) == len(LOOP)
    counts = loop.counts()
    assert (counts["HGMMA"], counts["FMNMX"], counts["MUFU"], counts["FADD"], counts["FMUL"]) == (8, 2, 1, 1, 1)


def test_the_chain_follows_register_dependencies_with_nominal_latencies():
    [loop] = sass_loops.loops(function_instructions(SASS)["_Z6kernelILi1EEvv"])
    assert loop.critical_path() == 4 + 4 + 4 + 18 + 4


def test_forward_branches_and_loops_without_gemms_are_not_reported():
    fns = function_instructions(SASS)
    assert sass_loops.loops(fns["_Z6kernelILi2EEvv"]) == []
    assert sass_loops.loops(fns["_Z6kernelILi1EEvv"], min_hgmma=9) == []


def test_the_command_prints_the_functions_that_match_every_substring(tmp_path, capsys):
    path = tmp_path / "k.sass"
    path.write_text(SASS)
    sass_loops.main([str(path), "ILi1E"])
    out = capsys.readouterr().out
    assert "_Z6kernelILi1EEvv" in out and "_Z6kernelILi2EEvv" not in out
    assert f"{len(LOOP)} instructions, chain 34 cycles" in out
