"""Which GPUs a run's workers are pinned to (``--gpus``), and the units they share.

A *unit* is one problem with every cell of the plan on it (its backends, timing modes and visits, in the
plan's order), so a problem's backends are measured on one GPU and their ratios never mix GPUs. Units wait
in one queue, longest first by predicted work (FLOPs of the problem times its cells), so the long ones do
not start last and leave the other GPUs idle at the end of a run.

No torch here: the supervisor reads the GPUs from ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from harness.run.plan import Cell


class GpuSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Slot:
    """One worker's place: the GPU index as the user gave it and what its worker's CUDA_VISIBLE_DEVICES is
    set to (the same, unless the supervisor itself sees only some GPUs). ``index`` None: the default
    single worker, not pinned (it sees what the supervisor sees)."""

    index: int | None
    visible: str | None

    @property
    def env(self) -> dict[str, str]:
        return {} if self.visible is None else {"CUDA_VISIBLE_DEVICES": self.visible}


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries: that variable's own entries where it
    is set (empty: none), else one per GPU ``nvidia-smi -L`` lists (none without the tool)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [e.strip() for e in env.split(",") if e.strip()]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    n = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(n)] if out.returncode == 0 else []


def parse_gpus(spec: str, visible: Sequence[str]) -> list[Slot]:
    """``all`` (every visible GPU), ``N`` (the first N) or a list of indices ``0,2,3`` (``3,`` for GPU 3
    alone; an index may repeat: two workers on one GPU). Indices count the GPUs in ``visible``. Without any
    GPU visible, a count or a list still starts its workers (they run on the CPU, as in tests); ``all``
    cannot. GpuSpecError, one line, for anything else."""
    text = spec.strip().lower()
    if text == "all":
        if not visible:
            raise GpuSpecError("--gpus all: no GPU is visible (CUDA_VISIBLE_DEVICES and nvidia-smi -L name none)")
        return [Slot(i, v) for i, v in enumerate(visible)]
    if "," not in text:
        if not text.isdigit() or int(text) < 1:
            raise GpuSpecError(f"--gpus {spec!r}: allowed all, a count N >= 1, or indices such as 0,2,3 "
                               "(3, for GPU 3 alone)")
        n = int(text)
        if visible and n > len(visible):
            raise GpuSpecError(f"--gpus {n}: only {len(visible)} GPU(s) visible")
        return [_slot(i, visible) for i in range(n)]
    parts = [p.strip() for p in text.split(",")]
    if parts[-1] == "":  # "3,": one GPU named by its index
        parts.pop()
    if not parts or not all(p.isdigit() for p in parts):
        raise GpuSpecError(f"--gpus {spec!r}: a list holds GPU indices (non-negative integers), e.g. 0,2,3")
    out = [int(p) for p in parts]
    bad = [i for i in out if visible and i >= len(visible)]
    if bad:
        raise GpuSpecError(f"--gpus {spec!r}: no GPU {bad[0]} (visible: {len(visible)}, indices 0 to "
                           f"{len(visible) - 1})")
    return [_slot(i, visible) for i in out]


def _slot(i: int, visible: Sequence[str]) -> Slot:
    return Slot(i, visible[i] if visible else str(i))


@dataclass
class Unit:
    """One problem's cells, measured in order by one worker."""

    cells: list[Cell]
    #: cells whose stored row was measured on a GPU since lost: the new row supersedes it, which is kept
    supersede: frozenset[tuple[str, str, str]] = frozenset()

    @property
    def problem_key(self) -> str:
        return self.cells[0].problem.key()

    @property
    def work(self) -> float:
        """Predicted cost: every cell of a problem does its FLOPs (the skipped ones too few to matter)."""
        return self.cells[0].problem.flops() * len(self.cells)


def units(todo: Sequence[Cell], longest_first: bool = True) -> list[Unit]:
    """The cells grouped by problem, each group in the plan's order; longest first by predicted work
    (ties: the plan's order), or in the plan's order."""
    groups: dict[str, list[Cell]] = {}
    for c in todo:
        groups.setdefault(c.problem.key(), []).append(c)
    out = [Unit(cells) for cells in groups.values()]
    if longest_first:
        out.sort(key=lambda u: -u.work)  # stable: equal work keeps the plan's order
    return out
