"""Count instruction classes per kernel in ``cuobjdump -sass`` output.

Each function starts with a ``Function : <mangled name>`` line; each instruction line looks like
``/*0030*/   @!P0 HMMA.16816.F32 R4, R8, R12, R4 ;   /* 0x... */``. The opcode is the first word after
the optional predicate; counters match on its base (before the first dot) or on a dotted prefix.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.tools.build import toolchain

#: longest error kept from a failed cuobjdump: one line a person reads, not a log
MAX_ERROR_CHARS = 300

#: counter name -> how it matches the opcode ("base" = opcode up to the first dot; "prefix" = the
#: dotted opcode starts with it)
COUNTERS: dict[str, tuple[str, str]] = {
    "HGMMA": ("base", "HGMMA"),  # Hopper warpgroup MMA (wgmma)
    "HMMA": ("base", "HMMA"),  # warp-level tensor-core MMA (mma.sync / WMMA)
    "UTMALDG": ("base", "UTMALDG"),  # TMA tensor load
    "UTMA": ("prefix", "UTMA"),  # every TMA op (UTMALDG, UTMASTG, UTMAPF, UTMACCTL, ...)
    "LDGSTS": ("base", "LDGSTS"),  # cp.async global->shared
    "BAR": ("base", "BAR"),  # every CTA barrier op
    "BAR.SYNC": ("prefix", "BAR.SYNC"),
    "LDL": ("base", "LDL"),  # local-memory load (spill or local array)
    "STL": ("base", "STL"),
    "FFMA": ("base", "FFMA"),
    "MUFU.EX2": ("prefix", "MUFU.EX2"),
    "SYNCS": ("base", "SYNCS"),  # mbarrier operations
    "USETMAXREG": ("base", "USETMAXREG"),
    "LDSM": ("base", "LDSM"),  # ldmatrix
    "STS": ("base", "STS"),
    "LDS": ("base", "LDS"),
}

_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INSTR = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(.*?)\s*;?\s*/\*\s*0x[0-9a-fA-F]+\s*\*/\s*$")
_PRED = re.compile(r"^@!?U?P(?:T|\d+)\s+")


@dataclass
class SassFunction:
    name: str  # mangled
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0  # instructions, NOPs excluded

    def count(self, counter: str) -> int:
        return self.counts.get(counter, 0)


def opcode(instruction: str) -> str:
    """'@!P0 HMMA.16816.F32 R4, ...' -> 'HMMA.16816.F32'."""
    text = _PRED.sub("", instruction.strip())
    return text.split(None, 1)[0] if text else ""


def base_opcode(instruction: str) -> str:
    """'@!P0 HMMA.16816.F32 R4, ...' -> 'HMMA'."""
    return opcode(instruction).split(".", 1)[0]


def classify(op: str) -> list[str]:
    base = base_opcode(op)
    hits = []
    for name, (kind, pattern) in COUNTERS.items():
        if kind == "base" and base == pattern or kind == "prefix" and (op == pattern or op.startswith(pattern)):
            hits.append(name)
    return hits


def function_instructions(text: str) -> dict[str, list[tuple[int, str]]]:
    """Mangled name -> the function's instructions in order: (address, text without the final ';')."""
    funcs: dict[str, list[tuple[int, str]]] = {}
    cur: list[tuple[int, str]] | None = None
    for line in text.splitlines():
        if m := _FUNCTION.match(line):
            cur = funcs.setdefault(m.group(1), [])
        elif cur is not None and (m := _INSTR.match(line)):
            cur.append((int(m.group(1), 16), m.group(2)))
    return funcs


def parse_sass(text: str) -> dict[str, SassFunction]:
    funcs: dict[str, SassFunction] = {}
    for name, instructions in function_instructions(text).items():
        f = funcs[name] = SassFunction(name=name, counts={k: 0 for k in COUNTERS})
        for _, instruction in instructions:
            op = opcode(instruction)
            if not op or op == "NOP":
                continue
            f.total += 1
            for counter in classify(op):
                f.counts[counter] += 1
    return funcs


class SassError(RuntimeError):
    """cuobjdump could not disassemble an object; the message is one line naming the cause."""


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` with its whitespace collapsed, cut to ``limit`` characters."""
    s = " ".join(text.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def disassemble(cuobjdump: str, obj: Path, nvdisasm: str | None = None) -> str:
    """``cuobjdump -sass obj`` with ``nvdisasm``'s folder on its PATH; raises SassError naming what failed
    (cuobjdump's own error line, e.g. that it cannot find nvdisasm)."""
    try:
        proc = subprocess.run([cuobjdump, "-sass", str(obj)], capture_output=True, text=True, check=False,
                              env=toolchain.cuobjdump_env(nvdisasm))
    except OSError as exc:
        raise SassError(one_line(f"cannot run {cuobjdump}: {exc.strerror or exc}")) from None
    if proc.returncode == 0:
        return proc.stdout
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    # cuobjdump prints the reason on a "cuobjdump fatal : ..." or "... error ..." line
    why = next((ln for ln in lines if "fatal" in ln or "error" in ln.lower()), lines[-1] if lines else "")
    why = why or f"exit status {proc.returncode} and no message"
    if "nvdisasm" in why and nvdisasm is None:
        why += " (install it: pip install nvidia-cuda-nvdisasm)"
    raise SassError(one_line(f"cuobjdump -sass {Path(obj).name} failed: {why}"))
