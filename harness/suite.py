"""Suite files (``suites/*.toml``): which backends, which problems, which checks, which timing.

Every mistake in a suite file is reported in one line naming the file, the key, the value and what is
allowed (``SuiteError``); nothing is run from a suite that did not validate.

    [suite]
    name = "fa-paper"
    description = "..."
    backends = ["sdpa-flash", "fa4"]          # or "all"

    [[grid]]                                  # lists multiply out; scalars are fixed
    tokens = 16384                            # derived: batch = tokens // seqlen_q
    hidden = 2048                             # derived: heads_q = hidden // head_dim
    seqlen_q = [512, 1024]
    head_dim = [64, 128]
    causal = [false, true]
    dtype = "bfloat16"

    [checks]   # see Checks      [timing]   # see Timing
"""
from __future__ import annotations

import itertools
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.inputs import DISTRIBUTIONS
from harness.problem import Problem, ProblemError

SUITE_DIRS = (Path.cwd() / "suites", Path(__file__).resolve().parent.parent / "suites")
GRID_KEYS = ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim", "dtype", "causal",
             "softmax_scale", "layout", "tokens", "hidden")
TIMING_MODES = ("events", "graph")


class SuiteError(ValueError):
    """A malformed suite: the message is one line naming file, key, value and what is allowed."""


@dataclass(frozen=True)
class Checks:
    correctness: bool = True
    trials: int = 1  # fresh inputs per trial, per distribution
    distributions: tuple[str, ...] = ("normal",)
    determinism_runs: int = 3  # same inputs, compared bit for bit
    require_deterministic: bool = True
    calibrate: bool = True  # null-kernel calibration of the tolerance
    seed: int = 1234


@dataclass(frozen=True)
class Timing:
    enabled: bool = True
    mode: str = "events"  # events | graph
    warmup: int = 3
    min_samples: int = 10
    max_samples: int = 200
    max_noise: float = 0.01
    time_cap_s: float = 1.0
    l2_flush: bool = True
    cell_timeout_s: float = 600.0


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    backends: tuple[str, ...]
    problems: tuple[Problem, ...]
    checks: Checks = field(default_factory=Checks)
    timing: Timing = field(default_factory=Timing)
    description: str = ""


def find_suite(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise SuiteError(f"{p}: suite file not found")
        return p
    for d in SUITE_DIRS:
        cand = d / f"{name_or_path}.toml"
        if cand.exists():
            return cand
    known = sorted({c.stem for d in SUITE_DIRS if d.exists() for c in d.glob("*.toml")})
    raise SuiteError(f"unknown suite {name_or_path!r}: allowed {', '.join(known) or '(no suites found)'}")


def _err(path: Path, key: str, value: Any, allowed: str) -> SuiteError:
    return SuiteError(f"{path}: {key} = {value!r}: {allowed}")


def _typed(path: Path, section: str, cls: type, raw: Any) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise _err(path, f"[{section}]", raw, "must be a table")
    defaults = cls()
    kw: dict[str, Any] = {}
    names = {f.name: f for f in fields(cls)}
    for key, value in raw.items():
        if key not in names:
            raise _err(path, f"[{section}] {key}", value, f"unknown key; allowed {', '.join(names)}")
        want = type(getattr(defaults, key))
        where = f"[{section}] {key}"
        if want is bool:
            if not isinstance(value, bool):
                raise _err(path, where, value, "must be true or false")
        elif want is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _err(path, where, value, "must be a non-negative integer")
        elif want is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise _err(path, where, value, "must be a positive number")
            value = float(value)
        elif want is tuple:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise _err(path, where, value, "must be a non-empty list of strings")
            value = tuple(value)
        elif want is str and not isinstance(value, str):
            raise _err(path, where, value, "must be a string")
        kw[key] = value
    obj = cls(**kw)
    if isinstance(obj, Checks):
        bad = [d for d in obj.distributions if d not in DISTRIBUTIONS]
        if bad:
            raise _err(path, "[checks] distributions", bad[0], f"allowed {', '.join(DISTRIBUTIONS)}")
        if obj.trials < 1:
            raise _err(path, "[checks] trials", obj.trials, "must be at least 1")
    if isinstance(obj, Timing):
        if obj.mode not in TIMING_MODES:
            raise _err(path, "[timing] mode", obj.mode, f"allowed {', '.join(TIMING_MODES)}")
        if obj.max_noise >= 1:
            raise _err(path, "[timing] max_noise", obj.max_noise, "must be a fraction in (0, 1)")
        if obj.min_samples < 1 or obj.max_samples < obj.min_samples:
            raise _err(path, "[timing] max_samples", obj.max_samples, "need 1 <= min_samples <= max_samples")
    return obj


def _expand_grid(path: Path, i: int, grid: Any) -> list[Problem]:
    where = f"[[grid]] #{i + 1}"
    if not isinstance(grid, dict) or not grid:
        raise _err(path, where, grid, "must be a non-empty table of problem keys")
    for key in grid:
        if key not in GRID_KEYS:
            raise _err(path, f"{where} {key}", grid[key], f"unknown key; allowed {', '.join(GRID_KEYS)}")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    for k, v in axes.items():
        if not v:
            raise _err(path, f"{where} {k}", v, "empty list: give at least one value")
    problems = []
    for combo in itertools.product(*axes.values()):
        d = dict(zip(axes.keys(), combo))
        tokens, hidden = d.pop("tokens", None), d.pop("hidden", None)
        try:
            if tokens is not None:
                if "batch" in d:
                    raise ProblemError("give either tokens or batch, not both")
                if not isinstance(tokens, int) or "seqlen_q" not in d or tokens % d["seqlen_q"]:
                    raise ProblemError(f"tokens={tokens!r} must be an integer multiple of seqlen_q")
                d["batch"] = tokens // d["seqlen_q"]
            if hidden is not None:
                if "heads_q" in d:
                    raise ProblemError("give either hidden or heads_q, not both")
                if not isinstance(hidden, int) or "head_dim" not in d or hidden % d["head_dim"]:
                    raise ProblemError(f"hidden={hidden!r} must be an integer multiple of head_dim")
                d["heads_q"] = hidden // d["head_dim"]
            missing = [k for k in ("batch", "heads_q", "seqlen_q", "head_dim") if k not in d]
            if missing:
                raise ProblemError(f"missing {', '.join(missing)} (or tokens/hidden)")
            problems.append(Problem(**d))
        except (ProblemError, TypeError) as exc:
            raise SuiteError(f"{path}: {where} {dict(zip(axes.keys(), combo))}: {exc}") from None
    return problems


def load_suite(name_or_path: str) -> Suite:
    path = find_suite(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    allowed_top = ("suite", "grid", "checks", "timing")
    for key in raw:
        if key not in allowed_top:
            raise _err(path, key, raw[key], f"unknown section; allowed {', '.join(allowed_top)}")
    meta = raw.get("suite")
    if not isinstance(meta, dict):
        raise _err(path, "[suite]", meta, "missing: a [suite] table with name and backends is required")
    for key in meta:
        if key not in ("name", "description", "backends"):
            raise _err(path, f"[suite] {key}", meta[key], "unknown key; allowed name, description, backends")
    name = meta.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise _err(path, "[suite] name", name, "must be a non-empty string")
    backends = meta.get("backends")
    from harness.backends import registry

    known = registry.names()
    if backends == "all":
        backends = known
    if not isinstance(backends, list) or not backends or not all(isinstance(b, str) for b in backends):
        raise _err(path, "[suite] backends", backends, f'must be "all" or a list from {", ".join(known)}')
    for b in backends:
        if b not in known:
            raise _err(path, "[suite] backends", b, f"unknown backend; allowed {', '.join(known)}")
    grids = raw.get("grid")
    if not isinstance(grids, list) or not grids:
        raise _err(path, "[[grid]]", grids, "missing: at least one [[grid]] table of problems is required")
    problems: list[Problem] = []
    for i, g in enumerate(grids):
        for p in _expand_grid(path, i, g):
            if p not in problems:
                problems.append(p)
    return Suite(name=name, path=path, backends=tuple(backends), problems=tuple(problems),
                 checks=_typed(path, "checks", Checks, raw.get("checks")),
                 timing=_typed(path, "timing", Timing, raw.get("timing")),
                 description=str(meta.get("description", "")))
