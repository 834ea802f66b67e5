"""Test backends that misbehave on purpose: ``faulty`` (crashes, hangs, CUDA errors, OOM) and
``exploits`` (tricks a cheating kernel plays on an evaluator). None is in the default registry: each is
registered only when named in ``FLASHCORE_BACKENDS`` (which also reaches the worker processes), e.g.

    FLASHCORE_BACKENDS="$(python -m harness.testing faults)" flashcore run --suite faults

``python -m harness.testing faults|exploits|all`` prints that value.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

FAULTS = {
    "fault-illegal-address": "harness.testing.faulty:IllegalAddress",
    "fault-misaligned": "harness.testing.faulty:Misaligned",
    "fault-launch-failure": "harness.testing.faulty:LaunchFailure",
    "fault-hang": "harness.testing.faulty:Hang",
    "fault-oom": "harness.testing.faulty:OutOfMemory",
    "fault-abort": "harness.testing.faulty:Abort",
    "fault-segfault": "harness.testing.faulty:Segfault",
}

#: helpers for tests of the run itself (not faults)
TOOLS = {"test-slow": "harness.testing.faulty:Slow"}

EXPLOITS = {
    "exploit-side-stream": "harness.testing.exploits:SideStream",
    "exploit-cache-ptr": "harness.testing.exploits:CachePtr",
    "exploit-cache-content": "harness.testing.exploits:CacheContent",
    "exploit-stale-buffer": "harness.testing.exploits:StaleBuffer",
    "exploit-partial-write": "harness.testing.exploits:PartialWrite",
    "exploit-mutate-inputs": "harness.testing.exploits:MutateInputs",
    "exploit-lazy-output": "harness.testing.exploits:LazyOutput",
    "exploit-expanded-output": "harness.testing.exploits:ExpandedOutput",
    "exploit-library-call": "harness.testing.exploits:LibraryCall",
    "exploit-null-mean-v": "harness.testing.exploits:NullMeanV",
    "exploit-fake-fast": "harness.testing.exploits:FakeFast",
    "exploit-patch-harness": "harness.testing.exploits:PatchHarness",
    "control-custom": "harness.testing.exploits:ControlCustom",
}

#: the tricks a backward can play (one each), registered with the exploits group
BACKWARD_EXPLOITS = {
    "exploit-stale-grads": "harness.testing.exploits:StaleGrads",
    "exploit-dq-only": "harness.testing.exploits:DqOnly",
}


def _with_companions(groups: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
    """The groups as registered: the exploits group brings the backward's tricks with it."""
    if any(g is EXPLOITS for g in groups) and not any(g is BACKWARD_EXPLOITS for g in groups):
        return (*groups, BACKWARD_EXPLOITS)
    return groups


def env_value(*groups: dict[str, str]) -> str:
    """The FLASHCORE_BACKENDS value that registers these backends."""
    groups = _with_companions(groups)
    return ",".join(v for g in groups for v in g.values())


@contextlib.contextmanager
def registered(*groups: dict[str, str]) -> Iterator[str]:
    """In-process (tests): register these backends here and in every worker started meanwhile."""
    from harness.backends import registry

    groups = _with_companions(groups)
    old = os.environ.get(registry.EXTRA_ENV)
    value = env_value(*groups)
    os.environ[registry.EXTRA_ENV] = ",".join(filter(None, [old, value]))
    registry._loaded = False
    try:
        yield value
    finally:
        if old is None:
            os.environ.pop(registry.EXTRA_ENV, None)
        else:
            os.environ[registry.EXTRA_ENV] = old
        for g in groups:
            for name in g:
                registry._REGISTRY.pop(name, None)
        registry._loaded = False


def tiny_suite(name: str, backends: list[str], seqlens: list[int], rounds: int = 1,
               cell_timeout_s: float | None = 60) -> str:
    """The TOML of a suite small enough for tests of the run itself: one float32 problem per seqlen
    (batch 1, one head, head_dim 8), three samples per cell."""
    quoted = ", ".join(f'"{b}"' for b in backends)
    timeout = "" if cell_timeout_s is None else f"cell_timeout_s = {cell_timeout_s:g}\n"
    return (f'[suite]\nname = "{name}"\nbackends = [{quoted}]\n\n'
            f"[[grid]]\nbatch = 1\nheads_q = 1\nseqlen_q = {list(seqlens)}\nhead_dim = 8\ndtype = \"float32\"\n\n"
            "[timing]\nmin_samples = 3\nmax_samples = 3\ntime_cap_s = 0.05\nmin_time_s = 0\nwarmup = 1\n"
            f"rounds = {rounds}\n{timeout}")


def as_older_schema(db: str | os.PathLike[str], version: int, dropped: tuple[str, ...]) -> None:
    """Make a results database look as an older flashcore wrote it: ``dropped`` columns removed from the
    result tables and the schema version set back to ``version`` (for the migration tests)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        for table in ("results", "superseded_results"):
            for col in dropped:
                con.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
        con.execute(f"PRAGMA user_version = {int(version)}")
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
        con.commit()
    finally:
        con.close()
