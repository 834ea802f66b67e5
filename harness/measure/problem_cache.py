"""The inputs and references of the problem being measured, made once and shared by all its backends;
and the seeds they are made from."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from harness.measure import correctness as C
from harness.measure import guards
from harness.measure.kinds import make_inputs
from harness.spec.problem import Problem


def derive_seed(base: int, *parts: object) -> int:
    """Stable across processes (unlike hash())."""
    return zlib.crc32("|".join(map(str, (base, *parts))).encode()) & 0x7FFFFFFF


@dataclass
class InputSet:
    seed: int
    distribution: str
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    oracle: C.Oracle | None
    fingerprint: tuple[int, ...] = ()  # of q, k, v when made: checked after every cell


@dataclass
class ProblemCache:
    """Inputs and references of the problem being measured, shared by all its backends."""

    problem: Problem | None = None
    sets: dict[tuple[int, str], InputSet] = field(default_factory=dict)

    def get(self, problem: Problem, seed: int, distribution: str, device: str, with_oracle: bool,
            calibrate: bool) -> InputSet:
        if problem != self.problem:
            self.problem, self.sets = problem, {}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        key = (seed, distribution)
        s = self.sets.get(key)
        if s is None:
            q, k, v = make_inputs(problem, seed, distribution, device)
            s = InputSet(seed, distribution, q, k, v, None, guards.fingerprint(q, k, v))
            self.sets[key] = s
        if with_oracle and s.oracle is None:
            s.oracle = C.build_oracle(problem, s.q, s.k, s.v, calibrate=calibrate)
        return s
