"""compute-sanitizer over the project's kernels: the command, parsing of its output, and the verdict.

    compute-sanitizer --tool memcheck --print-limit 20 --error-exitcode 86 --report-api-errors no
        --target-processes all  python -m harness.tools.sanitize_target <backend>[,<backend>...] [problem options]

The target runs with ``PYTORCH_NO_CUDA_MEMORY_CACHING=1`` (``TARGET_ENV``): every tensor is its own
allocation, so memcheck sees a tensor's exact bounds and initcheck sees fresh memory.
``--report-api-errors no``: CUDA API errors that PyTorch provokes and handles itself during start-up would
otherwise count as errors; an API error in a kernel launch under test still surfaces, as the call raising
(a ``SANITIZE ERROR`` line from the target) and a non-zero exit.

The verdict is conjunctive, because a zero in the tool's summary says nothing about a target that died
before it ran anything. A run passes only if ALL hold:
  * the tool printed its summary (``ERROR SUMMARY: N errors``; racecheck: ``RACECHECK SUMMARY: N hazards
    displayed (E errors, W warnings)``), i.e. it finished;
  * the summary counts are zero (racecheck warnings count too);
  * the target printed ``SANITIZE DONE`` (it was not killed), reported no call error and exited 0;
  * the tool did not report "Target application returned an error";
  * at least one call ran (otherwise the status is ``skipped``: nothing was checked).
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")
#: PyTorch's caching allocator sub-allocates large segments, so a read past a tensor's end but inside its
#: segment is invisible to memcheck, and initcheck sees recycled memory as initialised: the target runs
#: with one cudaMalloc per tensor instead
TARGET_ENV = {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
ERROR_EXITCODE = 86
SANITIZER_ENV = "FLASHCORE_COMPUTE_SANITIZER"  # path to compute-sanitizer, if it is not on PATH
FIRST_ERRORS = 5  # error blocks kept per run
BLOCK_LINES = 12  # lines kept per block

_SAN = re.compile(r"^========= ?(.*)$")
_ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
_RACE_SUMMARY = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")
_MARK = re.compile(r"^SANITIZE (\w+) ?(.*)$")


def find_sanitizer() -> str | None:
    forced = os.environ.get(SANITIZER_ENV)
    if forced:
        return forced if os.path.exists(forced) else None
    return shutil.which("compute-sanitizer")


def build_command(sanitizer: str, tool: str, backends: list[str], *, python: str = "python3",
                  target_args: list[str] | None = None, print_limit: int = 20) -> list[str]:
    if tool not in TOOLS:
        raise ValueError(f"tool {tool!r}: allowed {', '.join(TOOLS)}")
    if not backends:
        raise ValueError("no backend to run")
    return [sanitizer, "--tool", tool, "--print-limit", str(print_limit),
            "--error-exitcode", str(ERROR_EXITCODE), "--report-api-errors", "no", "--target-processes", "all",
            python, "-m", "harness.tools.sanitize_target", ",".join(backends), *(target_args or [])]


@dataclass
class Block:
    """One error report of the tool, with the call it happened in (from the target's markers)."""

    lines: list[str]
    backend: str | None = None
    problem: str | None = None

    @property
    def text(self) -> str:
        kept = self.lines[:BLOCK_LINES]
        more = len(self.lines) - len(kept)
        return "\n".join(kept) + (f"\n... ({more} more lines)" if more > 0 else "")


@dataclass
class Parsed:
    error_summary: int | None = None  # ERROR SUMMARY count, if printed
    race: tuple[int, int, int] | None = None  # racecheck: hazards, errors, warnings
    blocks: list[Block] = field(default_factory=list)
    target_app_error: bool = False  # "Target application returned an error"
    done: bool = False  # the target printed SANITIZE DONE
    calls: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    call_errors: list[tuple[str, str, str]] = field(default_factory=list)  # backend, problem, what
    problems: dict[str, list[str]] = field(default_factory=dict)  # backend -> problem keys begun

    @property
    def summary_found(self) -> bool:
        return self.error_summary is not None or self.race is not None

    @property
    def tool_errors(self) -> int:
        n = self.error_summary or 0
        if self.race is not None:
            n = max(n, self.race[1] + self.race[2], self.race[0])
        return n


def parse(text: str) -> Parsed:
    out = Parsed()
    current: Block | None = None
    where: tuple[str | None, str | None] = (None, None)

    def close() -> None:
        nonlocal current
        if current is not None:
            out.blocks.append(current)
            current = None

    for line in text.splitlines():
        m = _SAN.match(line)
        if m is None:
            close()
            mark = _MARK.match(line.strip())
            if not mark:
                continue
            tag, rest = mark.group(1), mark.group(2)
            parts = rest.split(" ", 2)
            if tag == "BEGIN" and len(parts) >= 2:
                where = (parts[0], parts[1])
                out.problems.setdefault(parts[0], []).append(parts[1])
            elif tag == "END" and len(parts) >= 2:
                out.calls[parts[0]] = out.calls.get(parts[0], 0) + 1
                if len(parts) > 2 and parts[2].startswith("nonfinite"):
                    out.call_errors.append((parts[0], parts[1], f"output has {parts[2]}"))
                where = (None, None)
            elif tag == "SKIP" and len(parts) >= 2:
                out.skipped[parts[0]] = out.skipped.get(parts[0], 0) + 1
                where = (None, None)
            elif tag == "ERROR" and len(parts) >= 2:
                out.call_errors.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
                where = (None, None)
            elif tag == "UNAVAILABLE" and parts:
                out.unavailable[parts[0]] = rest[len(parts[0]):].strip()
            elif tag == "DONE":
                out.done = True
            continue
        body = m.group(1)
        if not body.strip():
            close()
            continue
        if body.startswith(" "):  # continuation of the current report
            if current is not None:
                current.lines.append(body.strip())
            continue
        close()
        if s := _ERROR_SUMMARY.search(body):
            out.error_summary = int(s.group(1))
        elif r := _RACE_SUMMARY.search(body):
            out.race = (int(r.group(1)), int(r.group(2)), int(r.group(3)))
        elif "Target application returned an error" in body:
            out.target_app_error = True
        elif body.startswith(("COMPUTE-SANITIZER", "LEAK SUMMARY", "Process ID")):
            continue
        else:
            current = Block([body.strip()], *where)
    close()
    return out


@dataclass
class Verdict:
    status: str  # ok | failed | skipped
    reasons: list[str]
    errors: int  # the tool's count (process-wide)
    calls: int
    first_errors: list[str]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def verdict(tool: str, returncode: int | None, parsed: Parsed, *, backend: str | None = None,
            timed_out: bool = False, timeout_s: float = 0.0) -> Verdict:
    """The verdict of one sanitizer run, for one of its backends (``backend``) or for all of them.
    The tool's counts are process-wide: a run with several backends that fails is re-run per backend
    (``flashcore validate --isolate auto``) before a failure is pinned on one of them."""
    mine = (lambda b: b == backend) if backend else (lambda b: True)
    calls = sum(n for b, n in parsed.calls.items() if mine(b))
    blocks = [b for b in parsed.blocks if backend is None or b.backend in (backend, None)]
    errs = [f"{b} {p}: {what}" for b, p, what in parsed.call_errors if mine(b)]
    reasons: list[str] = []
    if timed_out:
        reasons.append(f"timed out after {timeout_s:g}s (process group killed)")
    if not parsed.summary_found:
        want = "RACECHECK SUMMARY" if tool == "racecheck" else "ERROR SUMMARY"
        reasons.append(f"no {want} line: {tool} did not finish")
    if parsed.tool_errors:
        what = (f"{parsed.race[0]} hazards ({parsed.race[1]} errors, {parsed.race[2]} warnings)"
                if parsed.race is not None and parsed.race[0] else f"{parsed.tool_errors} errors")
        first = f": {blocks[0].lines[0]}" if blocks else ""
        reasons.append(f"{tool} reported {what}{first}")
    if errs:
        reasons.append(f"{len(errs)} call(s) failed: {errs[0]}")
    if not parsed.done and not timed_out:
        reasons.append("the target did not finish (crashed or was killed): no SANITIZE DONE line")
    if parsed.target_app_error:
        reasons.append("the tool says the target application returned an error")
    if returncode not in (0, None):
        found = " (the tool found errors)" if returncode == ERROR_EXITCODE else ""
        reasons.append(f"exited {returncode}{found}")
    first_errors = [b.text for b in blocks[:FIRST_ERRORS]]
    if reasons:
        return Verdict("failed", reasons, parsed.tool_errors, calls, first_errors)
    if calls == 0:
        why = [f"{b}: {r}" for b, r in parsed.unavailable.items() if mine(b)]
        skipped = sum(n for b, n in parsed.skipped.items() if mine(b))
        if skipped:
            why.append(f"all {skipped} problems unsupported")
        return Verdict("skipped", [f"nothing checked ({'; '.join(why) or 'no call ran'})"], 0, 0, [])
    return Verdict("ok", [f"0 errors in {calls} calls"], 0, calls, [])
