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
import math

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.spec.distributions import DISTRIBUTIONS
from harness.spec.problem import Problem, ProblemError, check_size

SUITE_DIRS = (Path.cwd() / "suites", Path(__file__).resolve().parents[2] / "suites")
GRID_KEYS = ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim", "dtype", "causal",
             "softmax_scale", "layout", "tokens", "hidden")
TIMING_MODES = ("events", "graph")
#: the two named timing modes a suite reports (harness.measure.timing.sustained says what each measures)
MEASURE_MODES = ("isolated", "sustained")
L2_FLUSH_MODES = ("read", "write")  # harness.measure.timing.l2.FLUSH_MODES, without importing torch here
#: inclusive bounds of the numeric [checks]/[timing] keys (a value past them is a typo, or a run that
#: would never end)
NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "trials": (1, 1000), "determinism_runs": (0, 1000), "seed": (0, 2**63 - 1), "warmup": (0, 100_000),
    "min_samples": (1, 1_000_000), "max_samples": (1, 1_000_000), "time_cap_s": (1e-3, 86_400.0),
    "cell_timeout_s": (1.0, 7 * 86_400.0), "max_noise": (1e-6, 0.999), "settle_s": (0.0, 60.0),
    "min_time_s": (0.0, 86_400.0),
    "kernel_clock_calls": (0, 10_000), "cool": (0.0, 100.0),
    "sustained_s": (0.01, 60.0), "sustained_warmup_s": (0.0, 60.0), "rounds": (1, 100),
}
MAX_PROBLEMS = 100_000  # per suite, after the grids multiply out
MAX_TENSOR_ELEMENTS = 1 << 36  # Q, K, V or O: 128 GiB in 16-bit, more than any GPU holds


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
    max_samples: int = 1000
    max_noise: float = 0.01
    time_cap_s: float = 1.0
    min_time_s: float = 0.1  # the noise criteria wait for this much sampled time (see harness.measure.timing.stopping)
    l2_flush: bool = True
    l2_flush_mode: str = "read"  # read | write (see harness.measure.timing.l2)
    settle_s: float = 0.2  # samples of the first settle_s seconds set aside (see harness.measure.timing.timer)
    kernel_clock_calls: int = 0  # > 0: also sum the kernel time of this many calls (profiler, CUPTI)
    cool: float = 0.0  # GPU idle before each call, in multiples of the call's time (see harness.measure.timing.timer)
    cell_timeout_s: float = 600.0
    # the named timing modes, each its own result row per cell (see harness.measure.timing.sustained, docs/timing.md)
    modes: tuple[str, ...] = ("isolated",)
    sustained_s: float = 0.15  # sustained: back-to-back calls timed for this long (GPU time) after the warm-up
    sustained_warmup_s: float = 0.05  # sustained: back-to-back calls before the timed window, set aside
    rounds: int = 1  # every backend of a problem visited this many times in rotation, samples pooled
    baseline: str = ""  # the backend every other one is reported as a ratio to (bootstrap interval)


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
    try:
        return _find_suite(name_or_path)
    except (OSError, ValueError) as exc:  # a name the file system refuses: too long, a NUL byte...
        if isinstance(exc, SuiteError):
            raise
        raise SuiteError(f"suite {_short(name_or_path)}: not a usable file name: {exc}") from None


def _find_suite(name_or_path: str) -> Path:
    if not name_or_path.strip():
        raise SuiteError("suite '': give a suite name (suites/NAME.toml) or a path to a .toml file")
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise SuiteError(f"{p}: suite file not found")
        if not p.is_file():
            raise SuiteError(f"{p}: not a file")
        return p
    for d in SUITE_DIRS:
        cand = d / f"{name_or_path}.toml"
        if cand.is_file():
            return cand
    known = sorted({c.stem for d in SUITE_DIRS if d.exists() for c in d.glob("*.toml")})
    raise SuiteError(f"unknown suite {name_or_path!r}: allowed {', '.join(known) or '(no suites found)'}")


def _short(value: Any, n: int = 120) -> str:
    r = repr(value)
    return r if len(r) <= n else r[: n - 5] + "…" + r[-4:]


def _err(path: Path, key: str, value: Any, allowed: str) -> SuiteError:
    return SuiteError(f"{path}: {key} = {_short(value)}: {allowed}")


def _k(key: str) -> str:
    """A key as written in the message: bare when plain, quoted when it holds odd characters."""
    return key if key.isprintable() and key.strip() == key and 0 < len(key) <= 60 else _short(key, 60)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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
            raise _err(path, f"[{section}] {_k(key)}", value, f"unknown key; allowed {', '.join(names)}")
        want = type(getattr(defaults, key))
        where = f"[{section}] {key}"
        if want is bool:
            if not isinstance(value, bool):
                raise _err(path, where, value, "must be true or false")
        elif want is int:
            lo, hi = NUMBER_BOUNDS.get(key, (0, 2**63 - 1))
            if not _is_int(value) or not lo <= value <= hi:
                raise _err(path, where, value, f"must be a non-negative integer from {lo:g} to {hi:g}")
        elif want is float:
            lo, hi = NUMBER_BOUNDS.get(key, (1e-300, 1e300))
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not lo <= value <= hi):
                raise _err(path, where, value, "must be a fraction in (0, 1)" if key == "max_noise"
                           else f"must be a positive number from {lo:g} to {hi:g}")
            value = float(value)
        elif want is tuple:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise _err(path, where, value, "must be a non-empty list of strings")
            if len(set(value)) != len(value):
                raise _err(path, where, value, "lists a value twice")
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
        if obj.l2_flush_mode not in L2_FLUSH_MODES:
            raise _err(path, "[timing] l2_flush_mode", obj.l2_flush_mode, f"allowed {', '.join(L2_FLUSH_MODES)}")
        if obj.max_noise >= 1:
            raise _err(path, "[timing] max_noise", obj.max_noise, "must be a fraction in (0, 1)")
        if obj.min_samples < 1 or obj.max_samples < obj.min_samples:
            raise _err(path, "[timing] max_samples", obj.max_samples, "need 1 <= min_samples <= max_samples")
        bad_modes = [m for m in obj.modes if m not in MEASURE_MODES]
        if bad_modes:
            raise _err(path, "[timing] modes", bad_modes[0], f"allowed {', '.join(MEASURE_MODES)}")
    return obj


def _expand_grid(path: Path, i: int, grid: Any) -> list[Problem]:
    where = f"[[grid]] #{i + 1}"
    if not isinstance(grid, dict) or not grid:
        raise _err(path, where, grid, "must be a non-empty table of problem keys")
    for key in grid:
        if key not in GRID_KEYS:
            raise _err(path, f"{where} {_k(key)}", grid[key], f"unknown key; allowed {', '.join(GRID_KEYS)}")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    for k, v in axes.items():
        if not v:
            raise _err(path, f"{where} {k}", v, "empty list: give at least one value")
    n = math.prod(len(v) for v in axes.values())
    if n > MAX_PROBLEMS:
        raise _err(path, where, {k: f"{len(v)} values" for k, v in axes.items()},
                   f"multiplies out to {n} problems; at most {MAX_PROBLEMS} per suite")
    problems = []
    for combo in itertools.product(*axes.values()):
        d = dict(zip(axes.keys(), combo))
        tokens, hidden = d.pop("tokens", None), d.pop("hidden", None)
        try:
            # the sizes tokens and hidden divide are checked first, so a zero is named as itself
            for key in ("seqlen_q", "head_dim"):
                if key in d:
                    check_size(key, d[key])
            if tokens is not None:
                if "batch" in d:
                    raise ProblemError("give either tokens or batch, not both")
                if not (_is_int(tokens) and _is_int(d.get("seqlen_q")) and d["seqlen_q"] > 0
                        and tokens > 0 and tokens % d["seqlen_q"] == 0):
                    raise ProblemError(f"tokens={_short(tokens)} must be a positive integer multiple of seqlen_q")
                d["batch"] = tokens // d["seqlen_q"]
            if hidden is not None:
                if "heads_q" in d:
                    raise ProblemError("give either hidden or heads_q, not both")
                if not (_is_int(hidden) and _is_int(d.get("head_dim")) and d["head_dim"] > 0
                        and hidden > 0 and hidden % d["head_dim"] == 0):
                    raise ProblemError(f"hidden={_short(hidden)} must be a positive integer multiple of head_dim")
                d["heads_q"] = hidden // d["head_dim"]
            missing = [k for k in ("batch", "heads_q", "seqlen_q", "head_dim") if k not in d]
            if missing:
                raise ProblemError(f"missing {', '.join(missing)} (or tokens/hidden)")
            p = Problem(**d)
            biggest = max(p.batch * p.seqlen_q * p.heads_q, p.batch * p.seqlen_k * p.heads_kv) * p.head_dim
            if biggest > MAX_TENSOR_ELEMENTS:
                raise ProblemError(f"a tensor of {biggest} elements (> 2^36): larger than any GPU's memory")
            problems.append(p)
        except (ProblemError, TypeError, ValueError, OverflowError) as exc:
            raise SuiteError(f"{path}: {where} {_short(dict(zip(axes.keys(), combo)), 200)}: "
                             f"{_short(str(exc), 300)[1:-1]}") from None
    return problems


def load_suite(name_or_path: str) -> Suite:
    path = find_suite(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    except RecursionError:
        raise SuiteError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    allowed_top = ("suite", "grid", "checks", "timing")
    for key in raw:
        if key not in allowed_top:
            raise _err(path, _k(key), raw[key], f"unknown section; allowed {', '.join(allowed_top)}")
    meta = raw.get("suite")
    if not isinstance(meta, dict):
        raise _err(path, "[suite]", meta, "missing: a [suite] table with name and backends is required")
    for key in meta:
        if key not in ("name", "description", "backends"):
            raise _err(path, f"[suite] {_k(key)}", meta[key], "unknown key; allowed name, description, backends")
    name = meta.get("name", path.stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable():
        raise _err(path, "[suite] name", name, "must be a non-empty printable string of at most 100 characters")
    if not isinstance(meta.get("description", ""), str):
        raise _err(path, "[suite] description", meta["description"], "must be a string")
    backends = meta.get("backends")
    from harness.backends import registry

    known = registry.names()
    if backends == "all":
        backends = known
    if not isinstance(backends, list) or not backends or not all(isinstance(b, str) for b in backends):
        raise _err(path, "[suite] backends", backends, f'must be "all" or a list from {", ".join(known)}')
    for b in backends:
        if b not in known:
            hint = ""
            if isinstance(b, str) and b.startswith(("fault-", "exploit-", "control-", "test-")):
                hint = ('; the test backends are registered only on request: FLASHCORE_BACKENDS='
                        '"$(python -m harness.testing all)"')
            broken = registry.load_errors()
            if broken:  # a plugin or FLASHCORE_BACKENDS entry that did not load may be the one meant
                hint += "; failed to load: " + "; ".join(f"{k}: {v}" for k, v in list(broken.items())[:3])
            raise _err(path, "[suite] backends", b, f"unknown backend; allowed {', '.join(known)}{hint}")
    if len(set(backends)) != len(backends):
        twice = next(b for b in backends if backends.count(b) > 1)
        raise _err(path, "[suite] backends", twice, "listed twice")
    grids = raw.get("grid")
    if not isinstance(grids, list) or not grids:
        raise _err(path, "[[grid]]", grids, "missing: at least one [[grid]] table of problems is required")
    problems: dict[Problem, None] = {}  # ordered, and no quadratic membership test
    for i, g in enumerate(grids):
        for p in _expand_grid(path, i, g):
            problems[p] = None
            if len(problems) > MAX_PROBLEMS:
                raise _err(path, "[[grid]]", f"{len(grids)} tables", f"more than {MAX_PROBLEMS} problems in all")
    timing = _typed(path, "timing", Timing, raw.get("timing"))
    if timing.baseline and timing.baseline not in backends:
        raise _err(path, "[timing] baseline", timing.baseline, f"not one of the suite's backends {', '.join(backends)}")
    return Suite(name=name, path=path, backends=tuple(backends), problems=tuple(problems),
                 checks=_typed(path, "checks", Checks, raw.get("checks")), timing=timing,
                 description=str(meta.get("description", "")))
