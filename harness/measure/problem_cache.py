"""The inputs and references of the problem being measured, made once and shared by all its backends
(and by its operations: the forward and the backward of one shape are measured on the same Q, K, V);
and the seeds they are made from."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from harness.measure import correctness as C
from harness.measure import guards
from harness.measure.inputs import make_grad_output
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
    fingerprint: tuple[int, ...] = ()  # of q, k, v (and do, once made) when made: checked after every cell
    #: the output gradient of the backward, fresh random per set in the input dtype (made on first need)
    do: torch.Tensor | None = None
    #: per output of a backward operation (o, dq, dk, dv): its float64 reference and tolerance
    grads: dict[str, C.Oracle] | None = None

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The inputs the backends are handed: q, k, v, and do once it exists."""
        return (self.q, self.k, self.v) if self.do is None else (self.q, self.k, self.v, self.do)


@dataclass
class ProblemCache:
    """Inputs and references of the problem being measured, shared by all its backends."""

    problem: Problem | None = None
    sets: dict[tuple[int, str], InputSet] = field(default_factory=dict)

    def get(self, problem: Problem, seed: int, distribution: str, device: str, with_oracle: bool,
            calibrate: bool) -> InputSet:
        """The input set of ``seed`` and ``distribution``, with what ``problem``'s operation needs: the
        forward's oracle (fwd), or dO and an oracle per output (bwd, fwd_bwd)."""
        shape = problem.with_(op="fwd")  # every operation of a shape shares its inputs
        if shape != self.problem:
            self.problem, self.sets = shape, {}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        key = (seed, distribution)
        s = self.sets.get(key)
        if s is None:
            q, k, v = make_inputs(problem, seed, distribution, device)
            s = InputSet(seed, distribution, q, k, v, None, guards.fingerprint(q, k, v))
            self.sets[key] = s
        if problem.op == "fwd":
            if with_oracle and s.oracle is None:
                s.oracle = C.build_oracle(shape, s.q, s.k, s.v, calibrate=calibrate)
            return s
        if s.do is None:
            s.do = make_grad_output(problem, derive_seed(seed, "dO"), device)
            s.fingerprint = guards.fingerprint(*s.tensors())
        if with_oracle and s.grads is None:
            s.grads = C.build_grad_oracles(problem, s.q, s.k, s.v, s.do, calibrate=calibrate)
        return s
