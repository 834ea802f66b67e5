"""The process compute-sanitizer watches: the given backends on a small set of problems, one call each.

    python -m harness.tools.sanitize_target flashcore-phase4x[,flashcore-bleeding-edge] \\
        [--seqlens 1,17,100,257] [--head-dims 64,128] [--dtypes float16,bfloat16] [--causal both]

Default problems: batch 1, 2 heads, seqlen_q = seqlen_k in {1, 17, 100, 257} (a single row, ragged tiles
below and above one 64/128 tile), head_dim 64 and 128, fp16 and bf16, causal and not: 32 problems.
Every call is followed by a device synchronize, so the tool reports a kernel's errors before the next
call starts, and the output is bracketed by marker lines the parser (harness/tools/profiling/sanitizer.py)
uses to attribute errors:

    SANITIZE UNAVAILABLE <backend> <reason>
    SANITIZE BEGIN <backend> <problem key>
    SANITIZE SKIP <backend> <problem key> <reason>
    SANITIZE END <backend> <problem key> ok | nonfinite=<n>
    SANITIZE ERROR <backend> <problem key> <exception>
    SANITIZE BACKEND <backend> calls=<n> skipped=<n> errors=<n>
    SANITIZE DONE calls=<n> skipped=<n> errors=<n>

Exit status 0 when every call returned finite output without raising, else 1.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence

from harness.spec.problem import Problem, ProblemError

DEFAULT_SEQLENS, DEFAULT_HEAD_DIMS, DEFAULT_DTYPES = "1,17,100,257", "64,128", "float16,bfloat16"


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ProblemError(f"{what} {text!r}: expected comma-separated integers") from None
    if not values:
        raise ProblemError(f"{what} {text!r}: give at least one value")
    return values


def make_problems(seqlens: str = DEFAULT_SEQLENS, head_dims: str = DEFAULT_HEAD_DIMS,
                  dtypes: str = DEFAULT_DTYPES, causal: str = "both", batch: int = 1,
                  heads: int = 2) -> list[Problem]:
    causals = {"both": [False, True], "true": [True], "false": [False]}.get(causal.lower())
    if causals is None:
        raise ProblemError(f"causal {causal!r}: allowed both, true, false")
    dts = [d.strip() for d in dtypes.split(",") if d.strip()]
    return [Problem(batch=batch, heads_q=heads, seqlen_q=s, head_dim=d, dtype=dt, causal=c)
            for d, dt, c, s in itertools.product(_ints(head_dims, "head dims"), dts, causals,
                                                 _ints(seqlens, "seqlens"))]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.tools.sanitize_target")
    ap.add_argument("backends", help="comma-separated backend names")
    ap.add_argument("--seqlens", default=DEFAULT_SEQLENS)
    ap.add_argument("--head-dims", default=DEFAULT_HEAD_DIMS)
    ap.add_argument("--dtypes", default=DEFAULT_DTYPES)
    ap.add_argument("--causal", default="both", help="both, true or false")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=4321)
    args = ap.parse_args(argv)

    def say(*parts: object) -> None:
        print("SANITIZE", *parts, flush=True)

    try:
        problems = make_problems(args.seqlens, args.head_dims, args.dtypes, args.causal, args.batch,
                                 args.heads)
    except ProblemError as exc:
        print(f"sanitize_target: error: {exc}", file=sys.stderr)
        return 2

    import torch

    from harness.backends import registry
    from harness.backends.base import Unsupported
    from harness.measure.inputs import make_inputs

    total = {"calls": 0, "skipped": 0, "errors": 0}
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        n = {"calls": 0, "skipped": 0, "errors": 0}
        try:
            backend = registry.get(name)
            why = backend.unavailable() or ("" if "cuda" in backend.devices else "not a CUDA backend")
        except registry.UnknownBackendError as exc:
            why = str(exc)
        if not torch.cuda.is_available():
            why = "no CUDA GPU visible to torch"
        if why:
            say("UNAVAILABLE", name, why)
            say("BACKEND", name, "calls=0", "skipped=0", "errors=0")
            continue
        for p in problems:
            key = p.key()
            say("BEGIN", name, key)
            why = backend.unsupported(p)
            if why:
                n["skipped"] += 1
                say("SKIP", name, key, why)
                continue
            try:
                q, k, v = make_inputs(p, args.seed, "normal", "cuda")
                out = backend.prepare(p, q, k, v)()
                torch.cuda.synchronize()
                bad = int((~torch.isfinite(out)).sum())
                n["calls"] += 1
                if bad:
                    n["errors"] += 1
                    say("END", name, key, f"nonfinite={bad}")
                else:
                    say("END", name, key, "ok")
                del q, k, v, out
            except Unsupported as exc:
                n["skipped"] += 1
                say("SKIP", name, key, str(exc).replace("\n", " "))
            except Exception as exc:  # noqa: BLE001 - recorded as this call's error, then go on
                n["errors"] += 1
                first = str(exc).splitlines()[0] if str(exc) else ""
                say("ERROR", name, key, f"{type(exc).__name__}: {first}")
        say("BACKEND", name, *(f"{k}={v}" for k, v in n.items()))
        for k in total:
            total[k] += n[k]
    say("DONE", *(f"{k}={v}" for k, v in total.items()))
    return 0 if total["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
