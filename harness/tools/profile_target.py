"""The process Nsight Compute profiles: ONE backend on ONE problem, a few calls, each inside the NVTX range
``flashcore@<backend>:<problem key>`` (``harness.measure.nvtx_ranges.call_range``, the range ``harness.measure.cell``
puts around every timed call). No worker, no supervisor: just ``registry.get`` + ``make_inputs`` +
``prepare``, warm-up calls outside the range (compilation, autotuning, lazy loading stay unprofiled), then
``--calls`` calls inside it.

    python -m harness.tools.profile_target BACKEND '{"batch": 8, "heads_q": 16, ...}' [--calls 3] [--warmup 2]

Prints ``PROFILE_TARGET DONE calls=N`` at the end; ``PROFILE_TARGET SKIP <reason>`` and exit status 3 when
the backend cannot run the problem here; ``PROFILE_TARGET ERROR <reason>`` and exit status 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

SKIP, ERROR = 3, 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.tools.profile_target")
    ap.add_argument("backend")
    ap.add_argument("problem", help="the problem as JSON (Problem.as_dict())")
    ap.add_argument("--calls", type=int, default=3, help="calls inside the NVTX range")
    ap.add_argument("--warmup", type=int, default=2, help="calls before, outside any range")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)

    import torch

    from harness.backends import registry
    from harness.backends.base import Unsupported
    from harness.measure import nvtx_ranges
    from harness.measure.inputs import make_inputs
    from harness.spec.problem import Problem, ProblemError

    def done(code: int, tag: str, msg: str) -> int:
        print(f"PROFILE_TARGET {tag} {msg}", flush=True)
        return code

    try:
        problem = Problem.from_dict(json.loads(args.problem))
    except (ValueError, TypeError, ProblemError) as exc:
        return done(ERROR, "ERROR", f"bad problem {args.problem!r}: {exc}")
    if nvtx_ranges._nvtx is None:
        return done(ERROR, "ERROR", "the nvtx package is not importable: no NVTX range would select "
                                    "the calls")
    if not torch.cuda.is_available():
        return done(SKIP, "SKIP", "no CUDA GPU visible to torch")
    try:
        backend = registry.get(args.backend)
    except registry.UnknownBackendError as exc:
        return done(ERROR, "ERROR", str(exc))
    why = backend.unavailable() or ("" if "cuda" in backend.devices else "not a CUDA backend") \
        or backend.unsupported(problem) or backend.op_unsupported(problem.op)
    if why:
        return done(SKIP, "SKIP", why)
    q, k, v = make_inputs(problem, args.seed, "normal", "cuda")
    try:
        if problem.op == "fwd":
            run = backend.prepare(problem, q, k, v)
        else:  # a backward: its forward is made untimed (bwd) in prepare, outside the range
            from harness.measure.inputs import make_grad_output
            from harness.measure.stages.gradients import prepare_op

            run = prepare_op(backend, problem, q, k, v, make_grad_output(problem, args.seed + 1, "cuda"))
        for _ in range(max(args.warmup, 0)):
            run()
        torch.cuda.synchronize()
        for _ in range(args.calls):
            with nvtx_ranges.call_range(args.backend, problem.key()):
                run()
            torch.cuda.synchronize()
    except Unsupported as exc:
        return done(SKIP, "SKIP", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported as the cell's failure, one line
        return done(ERROR, "ERROR", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return done(0, "DONE", f"calls={args.calls}")


if __name__ == "__main__":
    sys.exit(main())
