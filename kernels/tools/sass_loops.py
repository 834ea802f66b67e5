"""The GEMM loops of compiled kernels, read from their SASS: for each function whose mangled name holds every
given substring, each loop (a backward branch) with at least --min-hgmma HGMMA instructions: its start, its
instruction count, the count of the instructions the softmax is made of, and the longest chain of dependent
arithmetic in one pass over its body with nominal latencies (registers only; what HGMMA writes is taken as
ready at the top). The chain is a model for comparing two builds, not a measured time.

    python kernels/tools/sass_loops.py KERNEL.sass [SUBSTRING ...]
    cuobjdump -sass build.o > KERNEL.sass   (cuobjdump: see docs/kernels.md)

It reads the SASS with the build audit's parser (harness.tools.build.sass), so the project must be installed.

The numbers in kernels/NOTES.md's "instructions per key block" come from this count.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass

from harness.tools.build.sass import base_opcode, function_instructions, opcode

#: cycles from issue to a dependent instruction, rough values for sm_90 (FMA pipe, MUFU, shuffles)
NOMINAL_LATENCY = {"FMNMX": 4, "FADD": 4, "FFMA": 4, "FMUL": 4, "FSEL": 4, "FSETP": 4, "F2FP": 4,
                   "MUFU": 18, "SHFL": 25}
SHOWN = ("HGMMA", "FMNMX", "FFMA", "FMUL", "MUFU", "FADD", "F2FP", "FSEL", "ISETP", "SHFL", "SYNCS", "BAR")

_REGISTER = re.compile(r"\bR(\d+)\b")
_ADDRESS = re.compile(r"0x[0-9a-f]+")


@dataclass(frozen=True)
class Loop:
    start: int
    instructions: list[str]

    def counts(self) -> dict[str, int]:
        c = Counter(base_opcode(t) for t in self.instructions)
        return {k: c.get(k, 0) for k in SHOWN}

    def critical_path(self) -> int:
        """Longest chain of dependent arithmetic (NOMINAL_LATENCY) through one pass of the body."""
        ready: dict[int, int] = {}
        longest = 0
        for text in self.instructions:
            op = opcode(text)
            latency = NOMINAL_LATENCY.get(base_opcode(op))
            if latency is None:
                continue
            operands = text[text.index(op) + len(op):].split(",")
            written = [int(r) for r in _REGISTER.findall(operands[0])]
            read = [int(r) for o in operands[1:] for r in _REGISTER.findall(o)]
            done = max([ready.get(r, 0) for r in read] + [0]) + latency
            for r in written:
                ready[r] = done
            longest = max(longest, done)
        return longest


def loops(instructions: list[tuple[int, str]], min_hgmma: int = 8) -> list[Loop]:
    """Loops (a branch back to an earlier address of the function) holding at least min_hgmma HGMMA, in one
    function's instructions as harness.tools.build.sass.function_instructions gives them."""
    index = {a: i for i, (a, _) in enumerate(instructions)}
    found = []
    for i, (address, text) in enumerate(instructions):
        if base_opcode(text) != "BRA":
            continue
        target = _ADDRESS.search(text.split("BRA", 1)[1])
        if not target:
            continue
        start = int(target.group(0), 16)
        if start < address and start in index:
            body = [t for _, t in instructions[index[start]:i + 1]]
            if sum(base_opcode(t) == "HGMMA" for t in body) >= min_hgmma:
                found.append(Loop(start, body))
    return found


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sass", help="cuobjdump -sass output")
    ap.add_argument("substrings", nargs="*", help="every one must occur in the mangled function name")
    ap.add_argument("--min-hgmma", type=int, default=8)
    args = ap.parse_args(argv)
    with open(args.sass) as f:
        text = f.read()
    for name, body in function_instructions(text).items():
        if not all(s in name for s in args.substrings):
            continue
        print(name)
        for loop in loops(body, args.min_hgmma):
            counts = " ".join(f"{k} {v}" for k, v in loop.counts().items() if v)
            print(f"  loop at {loop.start:#06x}: {len(loop.instructions)} instructions, chain {loop.critical_path()} "
                  f"cycles; {counts}")


if __name__ == "__main__":
    main()
