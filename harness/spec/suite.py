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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.spec.problem import Problem, ProblemError, check_size
from harness.spec.schema import (
    GRID_KEYS,
    L2_FLUSH_MODES,
    MEASURE_MODES,
    TIMING_MODES,
    Checks,
    SuiteFile,
    SuiteTable,
    Timing,
    allowed,
)

__all__ = ["GRID_KEYS", "L2_FLUSH_MODES", "MEASURE_MODES", "TIMING_MODES", "Checks", "Suite", "SuiteError",
           "Timing", "find_suite", "load_suite"]

SUITE_DIRS = (Path.cwd() / "suites", Path(__file__).resolve().parents[2] / "suites")
MAX_PROBLEMS = 100_000  # per suite, after the grids multiply out
MAX_TENSOR_ELEMENTS = 1 << 36  # Q, K, V or O: 128 GiB in 16-bit, more than any GPU holds
SECTIONS = {"suite": "[suite]", "grid": "[[grid]]", "checks": "[checks]", "timing": "[timing]"}


class SuiteError(ValueError):
    """A malformed suite: the message is one line naming file, key, value and what is allowed."""


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


def _expand_grid(path: Path, i: int, axes: dict[str, list[Any]]) -> list[Problem]:
    where = f"[[grid]] #{i + 1}"
    n = math.prod(len(v) for v in axes.values())
    if n > MAX_PROBLEMS:
        raise _err(path, where, {k: f"{len(v)} values" for k, v in axes.items()},
                   f"multiplies out to {n} problems; at most {MAX_PROBLEMS} per suite")
    problems = []
    for combo in itertools.product(*axes.values()):
        d = dict(zip(axes.keys(), combo))
        tokens, hidden = d.pop("tokens", None), d.pop("hidden", None)
        window = d.pop("window", None)
        try:
            if window is not None:
                _window(d, window)
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


def _window(d: dict[str, Any], window: Any) -> None:
    """``window = N``: causal local attention, FlashAttention's ``window_size=(N, 0)``."""
    if "window_left" in d or "window_right" in d:
        raise ProblemError("give either window or window_left/window_right, not both")
    if not _is_int(window) or window < 0:
        raise ProblemError(f"window={_short(window)} must be an integer >= 0 (keys to the left; the right bound is 0)")
    d["window_left"], d["window_right"] = window, 0


def _where(loc: tuple[Any, ...]) -> str:
    """A validation error's location as the suite file spells it: ``[timing] cool``, ``[[grid]] #2 batch``."""
    section, rest = str(loc[0]), list(loc[1:])
    if section not in SECTIONS:
        return _k(section)
    head = SECTIONS[section]
    if section == "grid" and rest and isinstance(rest[0], int):
        head = f"{head} #{rest.pop(0) + 1}"
    return f"{head} {_k(str(rest[0]))}" if rest else head


def _error(path: Path, exc: ValidationError, raw: dict[str, Any]) -> SuiteError:
    """The first of pydantic's errors as the one-line message: file, key, value, what is allowed."""
    e = exc.errors(include_url=False)[0]
    loc, kind = e["loc"], e["type"]
    value = None if kind == "missing" else e.get("input")
    section = str(loc[0])
    if section not in SECTIONS:
        return _err(path, _where(loc), value, f"unknown section; allowed {', '.join(SECTIONS)}")
    table = {"suite": SuiteTable, "checks": Checks, "timing": Timing}.get(section)
    rest = [x for x in loc[1:] if not isinstance(x, int)]
    if kind == "cross_key":  # a rule between keys, named by the key it puts the blame on
        return _err(path, f"{SECTIONS[section]} {e['ctx']['key']}", e["ctx"]["value"], e["msg"])
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        keys = GRID_KEYS if section == "grid" else tuple(table.__pydantic_fields__)
        return _err(path, _where(loc), value, f"unknown key; allowed {', '.join(keys)}")
    if section == "grid":
        if len(loc) == 3:
            return _err(path, _where(loc), value, "empty list: give at least one value")
        if len(loc) == 2:
            return _err(path, _where(loc), value, "must be a non-empty table of problem keys")
        return _err(path, "[[grid]]", value, SuiteFile.model_fields["grid"].description)
    if not rest:
        return _err(path, SECTIONS[section], value, SuiteFile.model_fields[section].description or "must be a table")
    if section == "suite" and rest[0] == "backends":
        from harness.backends import registry

        return _err(path, "[suite] backends", raw["suite"].get("backends"),
                    f'must be "all" or a list from {", ".join(registry.names())}')
    if section == "suite" and rest[0] == "name":
        value = raw["suite"]["name"]
    return _err(path, _where(loc[:2]), value, allowed(table, str(rest[0]), e))


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
    try:
        spec = SuiteFile.model_validate(raw)
    except ValidationError as exc:
        raise _error(path, exc, raw) from None
    return _build(path, spec)


def _build(path: Path, spec: SuiteFile) -> Suite:
    """The suite from its validated tables: the backends against the registry, the grids multiplied out."""
    from harness.backends import registry

    meta = spec.suite
    known = registry.names()
    backends = known if meta.backends == "all" else meta.backends
    for b in backends:
        if b not in known:
            hint = ""
            if b.startswith(("fault-", "exploit-", "control-", "test-")):
                hint = ('; the test backends are registered only on request: FLASHCORE_BACKENDS='
                        '"$(python -m harness.testing all)"')
            broken = registry.load_errors()
            if broken:  # a plugin or FLASHCORE_BACKENDS entry that did not load may be the one meant
                hint += "; failed to load: " + "; ".join(f"{k}: {v}" for k, v in list(broken.items())[:3])
            raise _err(path, "[suite] backends", b, f"unknown backend; allowed {', '.join(known)}{hint}")
    if len(set(backends)) != len(backends):
        twice = next(b for b in backends if backends.count(b) > 1)
        raise _err(path, "[suite] backends", twice, "listed twice")
    problems: dict[Problem, None] = {}  # ordered, and no quadratic membership test
    for i, g in enumerate(spec.grid):
        for p in _expand_grid(path, i, g.axes()):
            problems[p] = None
            if len(problems) > MAX_PROBLEMS:
                raise _err(path, "[[grid]]", f"{len(spec.grid)} tables", f"more than {MAX_PROBLEMS} problems in all")
    # the operations of one shape next to each other: they share the shape's inputs and references, which
    # a worker keeps for one shape at a time (a suite without operations keeps its order)
    by_inputs: dict[str, list[Problem]] = {}
    for p in problems:
        by_inputs.setdefault(p.inputs_key(), []).append(p)
    problems = {p: None for group in by_inputs.values() for p in group}
    timing = spec.timing
    if timing.baseline and timing.baseline not in backends:
        raise _err(path, "[timing] baseline", timing.baseline, f"not one of the suite's backends {', '.join(backends)}")
    return Suite(name=path.stem if meta.name is None else meta.name, path=path, backends=tuple(backends),
                 problems=tuple(problems), checks=spec.checks, timing=timing, description=meta.description)
