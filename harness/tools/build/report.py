"""The build report (dataclasses -> JSON), its rich table, and the claims check."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.tools.build.kernels import KernelSpec
from harness.tools.build.ptxas import PERF_LOSS_CODES

#: SASS counters shown in the table, in order
TABLE_COUNTERS = ("HGMMA", "HMMA", "UTMALDG", "LDGSTS", "BAR", "LDL", "STL", "FFMA", "MUFU.EX2", "SYNCS",
                  "USETMAXREG")
CUOBJDUMP_MISSING = ("cuobjdump not found: install the CUDA toolkit, or "
                     "`pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm` (both are in the test extra)")
_HEADER = {"MUFU.EX2": "EX2", "USETMAXREG": "SETMAXREG", "UTMALDG": "UTMALDG"}


@dataclass
class FunctionReport:
    name: str  # short demangled name
    mangled: str
    registers: int = 0
    barriers: int = 0
    static_smem_bytes: int = 0
    stack_frame_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    cumulative_stack_bytes: int = 0
    sass: dict[str, int] = field(default_factory=dict)
    total_instructions: int = 0
    sass_inspected: bool = False

    def spills(self) -> bool:
        return bool(self.stack_frame_bytes or self.spill_store_bytes or self.spill_load_bytes
                    or self.sass.get("LDL", 0) or self.sass.get("STL", 0))


@dataclass
class DiagnosticReport:
    code: str
    severity: str
    message: str
    function: str | None = None  # short demangled name


@dataclass
class KernelReport:
    name: str
    source: str
    op: str
    description: str
    present: bool
    optional: bool
    compiled: bool = False
    error: str | None = None  # the compile's error (compiled is False)
    sass_error: str | None = None  # why the SASS of a compiled kernel could not be read (one line)
    command: list[str] = field(default_factory=list)
    compile_seconds: float = 0.0
    # claims, copied from the table so the JSON stands alone
    spill_free: bool = True
    requires: list[str] = field(default_factory=list)
    forbids: list[str] = field(default_factory=list)
    forbid_diagnostics: list[str] = field(default_factory=list)
    functions_regex: str = ""
    launch_configs: list[dict[str, Any]] = field(default_factory=list)
    functions: list[FunctionReport] = field(default_factory=list)
    diagnostics: list[DiagnosticReport] = field(default_factory=list)

    def claimed_functions(self) -> list[FunctionReport]:
        rx = re.compile(self.functions_regex) if self.functions_regex else None
        return [f for f in self.functions if rx is None or rx.search(f.name) or rx.search(f.mangled)]


@dataclass
class BuildReport:
    created: str
    nvcc: str
    nvcc_version: str
    cuobjdump: str | None
    flags: list[str]
    include_dirs: list[str]
    source_hash: str
    cache_dir: str
    cached: bool = False
    kernels: list[KernelReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildReport:
        kernels = []
        for k in d.get("kernels", []):
            k = dict(k)
            k["functions"] = [FunctionReport(**f) for f in k.get("functions", [])]
            k["diagnostics"] = [DiagnosticReport(**x) for x in k.get("diagnostics", [])]
            kernels.append(KernelReport(**k))
        return cls(**{**d, "kernels": kernels})

    @classmethod
    def read(cls, path: Path) -> BuildReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def kernel(self, name: str) -> KernelReport:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(f"no kernel {name!r} in the report: have {', '.join(k.name for k in self.kernels)}")


def kernel_report_from_spec(spec: KernelSpec) -> KernelReport:
    return KernelReport(
        name=spec.name, source=spec.source, op=spec.op, description=spec.description, present=spec.exists(),
        optional=spec.optional, spill_free=spec.spill_free, requires=list(spec.requires),
        forbids=list(spec.forbids), forbid_diagnostics=list(spec.forbid_diagnostics),
        functions_regex=spec.functions,
        launch_configs=[asdict(c) for c in spec.launch_configs],
    )


def check_claims(report: BuildReport) -> list[str]:
    """Every difference between what the table claims and what ptxas/SASS show, one line each.
    An optional kernel whose source is absent is not a violation; any other missing or failed kernel is."""
    out: list[str] = []
    for k in report.kernels:
        if not k.present:
            if not k.optional:
                out.append(f"{k.name}: source {k.source} is missing")
            continue
        if not k.compiled:
            first = (k.error or "").strip().splitlines()
            out.append(f"{k.name}: compile failed: {first[0] if first else 'unknown error'}")
            continue
        funcs = k.claimed_functions()
        if not funcs:
            out.append(f"{k.name}: no kernel function matches {k.functions_regex or '.*'!r} in {k.source}")
            continue
        uninspected = [f for f in funcs if not f.sass_inspected]
        why = k.sass_error or (None if report.cuobjdump else CUOBJDUMP_MISSING)
        if uninspected and why:  # one line for the kernel: the cause is the same for all its functions
            out.append(f"{k.name}: SASS not inspected, claims unchecked: {why}")
        elif uninspected:
            out += [f"{k.name}: {f.name}: not in cuobjdump's SASS output, claims unchecked" for f in uninspected]
        for f in funcs:
            if not f.sass_inspected:
                continue
            if k.spill_free and f.spills():
                out.append(
                    f"{k.name}: {f.name}: claimed spill-free but has stack frame {f.stack_frame_bytes} B, "
                    f"spill stores {f.spill_store_bytes} B, spill loads {f.spill_load_bytes} B, "
                    f"LDL {f.sass.get('LDL', 0)}, STL {f.sass.get('STL', 0)}")
            for c in k.requires:
                if f.sass.get(c, 0) == 0:
                    out.append(f"{k.name}: {f.name}: claims {c} but the SASS has none")
            for c in k.forbids:
                if f.sass.get(c, 0) > 0:
                    out.append(f"{k.name}: {f.name}: claims no {c} but the SASS has {f.sass[c]}")
        for d in k.diagnostics:
            if d.code and d.code in k.forbid_diagnostics:
                where = f" in {d.function}" if d.function else ""
                out.append(f"{k.name}: ptxas {d.code}{where}: {d.message}")
    return out


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024:.1f}K" if n >= 1024 else str(n)


def print_report(report: BuildReport, console: Any = None) -> None:
    """Rich tables: per kernel function resources and SASS counts, launch configs, diagnostics and
    claim violations."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]flashcore build[/bold]  {report.nvcc_version}  flags: {' '.join(report.flags)}")
    console.print(f"sources {report.source_hash}  cache {report.cache_dir}{'  (cached)' if report.cached else ''}")

    t = Table(title="kernel functions: ptxas resources and SASS instruction counts", show_lines=False)
    t.add_column("kernel", no_wrap=True)
    t.add_column("function", overflow="fold")
    for col in ("regs", "smem", "stack/spill", *(_HEADER.get(c, c) for c in TABLE_COUNTERS), "total"):
        t.add_column(col, justify="right", no_wrap=True)
    for k in report.kernels:
        if not k.present:
            t.add_row(k.name, "[dim]source absent[/dim]" + (" (optional)" if k.optional else ""))
            continue
        if not k.compiled:
            t.add_row(k.name, "[red]compile failed[/red]")
            continue
        claimed = {id(f) for f in k.claimed_functions()}
        for f in k.functions:
            spill = f"{f.stack_frame_bytes}/{f.spill_store_bytes}/{f.spill_load_bytes}"
            if f.spills():
                spill = f"[red]{spill}[/red]"
            cells = []
            for c in TABLE_COUNTERS:
                n = f.sass.get(c, 0)
                s = str(n) if f.sass_inspected else "?"
                if id(f) in claimed and ((c in k.requires and n == 0) or (c in k.forbids and n > 0)):
                    s = f"[red]{s}[/red]"
                elif id(f) in claimed and c in k.requires:
                    s = f"[green]{s}[/green]"
                cells.append(s)
            t.add_row(k.name, f.name, str(f.registers), _fmt_bytes(f.static_smem_bytes), spill, *cells,
                      str(f.total_instructions))
    console.print(t)

    lc = Table(title="launch configurations and claims")
    for col in ("kernel", "config", "threads", "dynamic smem", "claims"):
        lc.add_column(col)
    for k in report.kernels:
        claims = []
        if k.spill_free:
            claims.append("spill-free")
        claims += [f"+{c}" for c in k.requires] + [f"-{c}" for c in k.forbids]
        claims += [f"no {c}" for c in k.forbid_diagnostics]
        if not k.launch_configs:
            lc.add_row(k.name, "[dim](not declared)[/dim]", "", "", " ".join(claims))
        for i, c in enumerate(k.launch_configs):
            lc.add_row(k.name, c["name"], str(c["threads"]),
                       f"{c['dynamic_smem_bytes']} B ({c['dynamic_smem_bytes'] / 1024:.1f} KiB)",
                       " ".join(claims) if i == 0 else "")
    console.print(lc)

    diags = [(k.name, d) for k in report.kernels for d in k.diagnostics
             if d.severity == "warning" or d.code in PERF_LOSS_CODES]
    if diags:
        console.print("[bold yellow]ptxas warnings[/bold yellow]")
        for name, d in diags:
            console.print(f"  {name}: {d.code or 'warning'} {d.message}")
    for k in report.kernels:
        if k.error:
            console.print(f"[red]{k.name}: compile failed[/red]\n{k.error.strip()[:4000]}")
        if k.sass_error:
            console.print(f"[red]{k.name}: SASS not inspected:[/red] {k.sass_error}")
    violations = check_claims(report)
    if violations:
        console.print(f"[bold red]{len(violations)} claim violation(s)[/bold red]")
        for v in violations:
            console.print(f"  [red]✗[/red] {v}")
    else:
        console.print("[bold green]all claims hold[/bold green]")
