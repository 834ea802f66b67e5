"""``build_all``: compile every kernel source for sm_90a with nvcc, read ptxas's resource report and
count SASS instructions per kernel, cache the result by source hash."""
from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from harness.tools.build import toolchain
from harness.tools.build.kernels import INCLUDE_DIRS, KERNELS, REPO_ROOT, KernelSpec
from harness.tools.build.ptxas import parse_ptxas
from harness.tools.build.report import (
    BuildReport,
    DiagnosticReport,
    FunctionReport,
    KernelReport,
    kernel_report_from_spec,
)
from harness.tools.build.sass import SassError, disassemble, parse_sass

#: where ``build_all`` and ``flashcore build`` write the report: an ignored folder, so a build leaves the
#: checkout clean
DEFAULT_REPORT = REPO_ROOT / "results" / "local" / "build" / "report.json"
#: the report kept in git (``flashcore build --out results/build/report.json`` refreshes it)
COMMITTED_REPORT = REPO_ROOT / "results" / "build" / "report.json"


def short_name(demangled: str) -> str:
    """'void flashcore::(anonymous namespace)::k<__half, 64, true>(flashcore::...)' -> 'k<__half, 64, true>'."""
    s = demangled
    s = s.removeprefix("void ")
    depth = 0
    for i, ch in enumerate(s):  # drop the parameter list: the first '(' at template depth 0
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not s.startswith("(anonymous", i):
            s = s[:i]
            break
    s = s.replace("(anonymous namespace)::", "")
    s = re.sub(r"\bflashcore::", "", s)
    return s.strip()


def _compile_one(spec: KernelSpec, out_dir: Path, nvcc: str, cuobjdump: str | None,
                 nvdisasm: str | None = None) -> KernelReport:
    rep = kernel_report_from_spec(spec)
    if not rep.present:
        return rep
    obj = out_dir / f"{spec.name}.o"
    cmd = [nvcc, *toolchain.NVCC_FLAGS, *toolchain.include_flags(), "-c", str(spec.path), "-o", str(obj)]
    rep.command = cmd
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    rep.compile_seconds = round(time.monotonic() - t0, 2)
    log = proc.stdout + proc.stderr
    (out_dir / f"{spec.name}.ptxas.txt").write_text(log)
    if proc.returncode != 0:
        rep.error = "\n".join(ln for ln in log.splitlines() if "ptxas info" not in ln)[-8000:] or log[-8000:]
        return rep
    rep.compiled = True

    px = parse_ptxas(log)
    sass = {}
    if cuobjdump:
        try:
            text = disassemble(cuobjdump, obj, nvdisasm or toolchain.find_nvdisasm())
        except SassError as exc:
            rep.sass_error = str(exc)
        else:
            (out_dir / f"{spec.name}.sass.txt").write_text(text)
            sass = parse_sass(text)
    entries = [f for f in px.functions.values() if f.entry]
    names = sorted({*(f.name for f in entries), *sass, *(d.function for d in px.diagnostics if d.function)})
    dem = toolchain.demangle(names)
    for f in sorted(entries, key=lambda f: short_name(dem.get(f.name, f.name))):
        s = sass.get(f.name)
        rep.functions.append(FunctionReport(
            name=short_name(dem.get(f.name, f.name)), mangled=f.name, registers=f.registers, barriers=f.barriers,
            static_smem_bytes=f.static_smem_bytes, stack_frame_bytes=f.stack_frame_bytes,
            spill_store_bytes=f.spill_store_bytes, spill_load_bytes=f.spill_load_bytes,
            cumulative_stack_bytes=f.cumulative_stack_bytes,
            sass=dict(s.counts) if s else {}, total_instructions=s.total if s else 0, sass_inspected=s is not None,
        ))
    for d in px.diagnostics:
        rep.diagnostics.append(DiagnosticReport(
            code=d.code, severity=d.severity, message=d.message,
            function=short_name(dem.get(d.function, d.function)) if d.function else None))
    return rep


def sass_complete(report: BuildReport) -> bool:
    """True when every compiled kernel's functions have their SASS read, or no cuobjdump was there to read
    it (the cache key names the tools, so finding one later builds afresh)."""
    if not report.cuobjdump:
        return True
    return all(not k.sass_error and all(f.sass_inspected for f in k.functions)
               for k in report.kernels if k.compiled)


def build_all(out_json: Path | None = None, *, force: bool = False, write: bool = True,
              jobs: int | None = None) -> BuildReport:
    """Compile every kernel in ``harness.tools.build.kernels.KERNELS`` whose source exists; return the report
    and write it as JSON to ``out_json`` (default ``DEFAULT_REPORT``, an ignored folder) unless ``write`` is
    false. A cached report for the same sources, flags and tools is reused unless ``force``; a report
    whose SASS step failed is neither cached nor reused.
    A kernel that fails to compile is recorded in the report (``check_claims`` lists it), not raised.
    Raises ``ToolchainError`` when nvcc is not found."""
    nvcc = toolchain.find_nvcc()
    if nvcc is None:
        raise toolchain.ToolchainError(
            "nvcc not found: install the CUDA toolkit, or set CUDA_HOME or PATH to one (needs CUDA >= 12.0 "
            "for sm_90a)")
    cuobjdump = toolchain.find_cuobjdump()
    nvdisasm = toolchain.find_nvdisasm()
    version = toolchain.nvcc_version(nvcc)
    digest = toolchain.source_hash((version, cuobjdump or "no-cuobjdump", nvdisasm or "no-nvdisasm"))
    out_dir = toolchain.cache_dir() / digest
    cached_json = out_dir / "report.json"
    out_path = Path(out_json) if out_json is not None else DEFAULT_REPORT

    report: BuildReport | None = None
    if cached_json.is_file() and not force:
        try:
            report = BuildReport.read(cached_json)
            report.cached = True
        except (OSError, ValueError, TypeError, json.JSONDecodeError):
            report = None  # unreadable cache: rebuild
        if report is not None and not sass_complete(report):
            report = None  # written without SASS (older code, or a failed disassembly): rebuild
    if report is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        specs = list(KERNELS)
        with ThreadPoolExecutor(max_workers=jobs or min(4, len(specs))) as pool:
            kernels = list(pool.map(lambda s: _compile_one(s, out_dir, nvcc, cuobjdump, nvdisasm), specs))
        report = BuildReport(
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            nvcc=nvcc, nvcc_version=version, cuobjdump=cuobjdump, flags=list(toolchain.NVCC_FLAGS),
            include_dirs=[str(d.relative_to(REPO_ROOT)) for d in INCLUDE_DIRS], source_hash=digest,
            cache_dir=str(out_dir), cached=False, kernels=kernels,
        )
        if sass_complete(report):
            report.write(cached_json)
        else:  # the next build must try the SASS step again, not reuse this report
            cached_json.unlink(missing_ok=True)
    if write:
        report.write(out_path)
    return report
