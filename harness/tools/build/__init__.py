"""Kernel build pipeline: compile every kernel for sm_90a, report registers / shared memory / spills
(ptxas) and instruction mix (SASS) against each kernel's claims, and JIT-load the torch ops.

Public API::

    build_all(out_json: Path | None = None, *, force=False, write=True, jobs=None) -> BuildReport
    print_report(report: BuildReport, console=None) -> None
    check_claims(report: BuildReport) -> list[str]
    load_ops(verbose: bool = False) -> None
"""
from __future__ import annotations

from harness.tools.build.compile import COMMITTED_REPORT, DEFAULT_REPORT, build_all
from harness.tools.build.jit import BuildError, load_ops, loaded_ops
from harness.tools.build.kernels import KERNELS, KernelSpec, LaunchConfig
from harness.tools.build.report import BuildReport, FunctionReport, KernelReport, check_claims, print_report
from harness.tools.build.toolchain import ToolchainError, cache_dir

__all__ = [
    "COMMITTED_REPORT", "DEFAULT_REPORT", "KERNELS", "BuildError", "BuildReport", "FunctionReport", "KernelReport",
    "KernelSpec", "LaunchConfig", "ToolchainError", "build_all", "cache_dir", "check_claims", "load_ops",
    "loaded_ops", "print_report",
]
