"""Warm the on-disk compile caches a suite's backends fill on first use (FlashInfer's JIT modules, the
Inductor cache of flex), in parallel processes, before a run.

A fresh GPU machine compiles each FlashInfer module on first use (about 96 s each for the FA3 template on
an H200), one after another, inside the run: a serving suite of six modules spends ten minutes compiling.
``warm`` prepares each (backend, problem) of the plan once, in up to ``jobs`` processes at a time, so the
compiles overlap; the run that follows loads the modules from the cache (FlashInfer keeps them under
``$FLASHINFER_WORKSPACE_BASE``). Nothing is measured and nothing is stored: a cell's status comes from
the run alone. Problems that need the same module wait on FlashInfer's per-module lock and then load it.
"""
from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from harness.run.plan import Cell
from harness.spec.problem import Problem


@dataclass(frozen=True)
class Warmed:
    """One prepared (backend, problem): ok, skipped (the backend cannot run it, with the reason) or failed."""

    backend: str
    problem_key: str
    status: str
    seconds: float
    reason: str = ""


def _prepare_once(backend_name: str, problem: dict) -> Warmed:
    """In a child process: make the problem's inputs, prepare the backend's callable for its operation and
    call it once (flex and FA4 compile on the first call, not in prepare)."""
    import torch

    from harness.backends import registry
    from harness.backends.base import Unsupported, serving_unsupported
    from harness.measure.inputs import make_grad_output
    from harness.measure.kinds import make_inputs

    p = Problem.from_dict(problem)
    t0 = time.perf_counter()

    def done(status: str, reason: str = "") -> Warmed:
        return Warmed(backend_name, p.key(), status, round(time.perf_counter() - t0, 3), reason)

    backend = registry.get(backend_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    why = (backend.unavailable() or (None if device in backend.devices else f"runs on {'/'.join(backend.devices)} only")
           or serving_unsupported(backend, p) or backend.op_unsupported(p.op) or backend.unsupported(p))
    if why:
        return done("skipped", why)
    try:
        q, k, v = make_inputs(p, seed=0, distribution="normal", device=device)
        if p.op == "fwd":
            fn = backend.prepare(p, q, k, v)
        else:
            do = make_grad_output(p, seed=1, device=device)
            prep = backend.prepare_backward if p.op == "bwd" else backend.prepare_fwd_bwd
            fn = prep(p, q, k, v, do)
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    except Unsupported as exc:
        return done("skipped", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported per cell; the run will record its own verdict
        return done("failed", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
    return done("ok")


def warm(plan: Sequence[Cell], jobs: int = 8, on_done: Callable[[Warmed], None] | None = None) -> list[Warmed]:
    """Prepare every distinct (backend, problem) of ``plan`` once, ``jobs`` processes at a time."""
    todo: dict[tuple[str, str], Cell] = {}
    for cell in plan:
        todo.setdefault((cell.backend, cell.problem.key()), cell)
    out: list[Warmed] = []
    # spawn: a child must not inherit a parent's CUDA state (and the parent may hold none)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = [pool.submit(_prepare_once, c.backend, c.problem.as_dict()) for c in todo.values()]
        for (name, key), fut in zip(todo, futures):
            try:
                w = fut.result()
            except Exception as exc:  # noqa: BLE001 - a child that died (a native crash) is one failed entry
                w = Warmed(name, key, "failed", 0.0, f"the warming process died: {type(exc).__name__}: {exc}")
            out.append(w)
            if on_done is not None:
                on_done(w)
    return out
