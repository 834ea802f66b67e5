"""Parse ``ptxas -v`` output (nvcc ``-Xptxas -v``) into per-function resources and diagnostics.

The lines this reads (CUDA 12/13)::

    ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90a'
    ptxas info    : Function properties for _Z6kernelPf
        8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
    ptxas info    : Used 128 registers, used 1 barriers, 8 bytes smem, 8 bytes cumulative stack size
    ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized ... in the function '_Z6kernelPf'
    ptxas warning : Registers are spilled to local memory in function '_Z6kernelPf', 8 bytes spill stores, ...

A "Used" line belongs to the function named by the latest "Compiling entry function" or "Function
properties for" line. Diagnostics (a ``(Cnnnn)`` code, or any ``ptxas warning``) name their function
when the text does; otherwise they belong to the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

#: diagnostics that mean the machine code is not what the source asked for (setmaxnreg ignored,
#: wgmma serialized): reported as warnings whatever ptxas's own severity word
PERF_LOSS_CODES = ("C7508", "C7509", "C7510", "C7511", "C7515")

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"\bUsed (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CMEM0 = re.compile(r"(\d+) bytes cmem\[0\]")
_CUMSTACK = re.compile(r"(\d+) bytes cumulative stack size")
_CODE = re.compile(r"\((C\d{4})\)")
_IN_FUNCTION = re.compile(r"function '([^']+)'")


@dataclass
class PtxasFunction:
    name: str  # mangled
    entry: bool = False  # a kernel (__global__), not a non-inlined device function
    arch: str = ""
    registers: int = 0
    barriers: int = 0
    static_smem_bytes: int = 0
    cmem0_bytes: int = 0
    stack_frame_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    cumulative_stack_bytes: int = 0


@dataclass
class Diagnostic:
    code: str  # "C7515", or "" for an uncoded warning
    severity: str  # "warning" or "info"
    message: str
    function: str | None = None  # mangled, when the text names one


@dataclass
class PtxasReport:
    functions: dict[str, PtxasFunction] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def parse_ptxas(text: str) -> PtxasReport:
    rep = PtxasReport()
    current: PtxasFunction | None = None

    def fn(name: str) -> PtxasFunction:
        if name not in rep.functions:
            rep.functions[name] = PtxasFunction(name=name)
        return rep.functions[name]

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _ENTRY.search(line):
            current = fn(m.group(1))
            current.entry = True
            current.arch = m.group(2)
            continue
        if m := _PROPS.search(line):
            current = fn(m.group(1))
            continue
        if (m := _FRAME.search(line)) and current is not None and "spilled" not in line:
            current.stack_frame_bytes, current.spill_store_bytes, current.spill_load_bytes = map(int, m.groups())
            continue
        if (m := _USED.search(line)) and current is not None and "ptxas" in line:
            current.registers = int(m.group(1))
            if b := _BARRIERS.search(line):
                current.barriers = int(b.group(1))
            if s := _SMEM.search(line):
                current.static_smem_bytes = int(s.group(1))
            if c := _CMEM0.search(line):
                current.cmem0_bytes = int(c.group(1))
            if c := _CUMSTACK.search(line):
                current.cumulative_stack_bytes = int(c.group(1))
            continue
        code = _CODE.search(line)
        is_warning = "warning" in line.split(":", 1)[0] if ":" in line else False
        if code or is_warning:
            c = code.group(1) if code else ""
            f = _IN_FUNCTION.search(line)
            msg = line.split(":", 1)[1].strip() if ":" in line else line
            severity = "warning" if is_warning or c in PERF_LOSS_CODES else "info"
            rep.diagnostics.append(Diagnostic(code=c, severity=severity, message=msg,
                                              function=f.group(1) if f else None))
    return rep
