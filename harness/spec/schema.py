"""The suite file's tables as pydantic models: each key's type, bounds and choices are written once, here.

``Checks`` and ``Timing`` are pydantic dataclasses, so the rest of the code keeps using them as frozen
dataclasses (``dataclasses.replace`` validates too: a command-line override is held to the same bounds).
``describe`` turns a validation error into the key, the value and what that key allows, for the
one-line ``SuiteError``.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from harness.spec.distributions import DISTRIBUTIONS

TIMING_MODES = ("events", "graph")
#: the two named timing modes a suite reports (harness.measure.timing.sustained says what each measures)
MEASURE_MODES = ("isolated", "sustained")
L2_FLUSH_MODES = ("read", "write")  # harness.measure.timing.l2.FLUSH_MODES, without importing torch here
#: how the sustained mode times a host-bound cell (harness.measure.timing.sustained): batches behind holds, or
#: batches captured once as a CUDA graph and replayed back to back
HOST_BOUND_TIMINGS = ("gated", "graph")
GRID_KEYS = ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim", "dtype", "causal",
             "softmax_scale", "layout", "op", "tokens", "hidden",
             # serving shapes (harness.spec.kinds); window = N stands for window_left = N, window_right = 0
             "kind", "page_size", "lengths", "window_left", "window_right", "window", "softcap")

# TOML has real types: a bool is not an int and "3" is not a number, so scalars are strict
Bool = Annotated[bool, Strict()]
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # an int is taken (and stored as a float); nan and inf are not
Text = Annotated[str, Strict()]


def _as_tuple(v: Any) -> Any:
    """A single name stands for a list of one; a TOML or JSON list becomes the frozen tuple."""
    if isinstance(v, str):
        return (v,)
    return tuple(v) if isinstance(v, list) else v


def _unique(v: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(v)) != len(v):
        raise PydanticCustomError("duplicate", "lists a value twice")
    return v


def Names(*choices: str) -> Any:  # noqa: N802 - reads as a type in the annotations below
    """A non-empty list of distinct names, each one of ``choices``."""
    return Annotated[tuple[Literal[choices], ...], BeforeValidator(_as_tuple), Field(min_length=1, strict=True),
                     AfterValidator(_unique)]


_TABLE = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, config=_TABLE)
class Checks:
    correctness: Bool = True
    trials: Int = Field(1, ge=1, le=1000)  # fresh inputs per trial, per distribution
    distributions: Names(*DISTRIBUTIONS) = ("normal",)
    determinism_runs: Int = Field(3, ge=0, le=1000)  # same inputs, compared bit for bit
    # true: a repeat that differs bit for bit fails the cell; false: reported only; left out: the forward
    # must be bit-exact (as always) and a backward's nondeterminism is a reported property (backward
    # kernels that accumulate dQ with atomics differ legitimately)
    require_deterministic: Bool | None = Field(None, description="must be true or false")
    calibrate: Bool = True  # null-kernel calibration of the tolerance
    seed: Int = Field(1234, ge=0, le=2**63 - 1)

    def requires_determinism(self, op: str) -> bool:
        """Whether a nondeterministic result of operation ``op`` fails its cell."""
        if self.require_deterministic is None:
            return op == "fwd"
        return self.require_deterministic


# bounds: a value past them is a typo, or a run that would never end
@dataclass(frozen=True, config=_TABLE)
class Timing:
    enabled: Bool = True
    mode: Literal[TIMING_MODES] = "events"
    warmup: Int = Field(3, ge=0, le=100_000)
    min_samples: Int = Field(10, ge=1, le=1_000_000)
    max_samples: Int = Field(1000, ge=1, le=1_000_000)
    max_noise: Number = Field(0.01, ge=1e-6, le=0.999)
    time_cap_s: Number = Field(1.0, ge=1e-3, le=86_400.0)
    # the noise criteria wait for this much sampled time (see harness.measure.timing.stopping)
    min_time_s: Number = Field(0.1, ge=0.0, le=86_400.0)
    l2_flush: Bool = True
    l2_flush_mode: Literal[L2_FLUSH_MODES] = "read"  # see harness.measure.timing.l2
    # samples of the first settle_s seconds set aside (see harness.measure.timing.timer)
    settle_s: Number = Field(0.2, ge=0.0, le=60.0)
    # > 0: also sum the kernel time of this many calls (profiler, CUPTI)
    kernel_clock_calls: Int = Field(0, ge=0, le=10_000)
    # GPU idle before each call, in multiples of the call's time (see harness.measure.timing.timer)
    cool: Number = Field(0.0, ge=0.0, le=100.0)
    cell_timeout_s: Number = Field(600.0, ge=1.0, le=7 * 86_400.0)
    # the named timing modes, each its own result row per cell (see harness.measure.timing.sustained, docs/timing.md)
    modes: Names(*MEASURE_MODES) = ("isolated",)
    # sustained: back-to-back calls timed for this long (GPU time) after the warm-up
    sustained_s: Number = Field(0.15, ge=0.01, le=60.0)
    # sustained: back-to-back calls before the timed window, set aside
    sustained_warmup_s: Number = Field(0.05, ge=0.0, le=60.0)
    # sustained, a cell whose host cannot enqueue a call in its GPU time: "graph" (a batch captured as a CUDA graph,
    # replayed back to back; gated if capture fails) or "gated" (batches behind holds: the GPU idles during them,
    # so it meets a lighter duty cycle than a cell timed back to back; docs/timing.md)
    sustained_host_bound: Literal[HOST_BOUND_TIMINGS] = "graph"
    # every backend of a problem visited this many times in rotation, samples pooled
    rounds: Int = Field(1, ge=1, le=100)
    baseline: Text = ""  # the backend every other one is reported as a ratio to (bootstrap interval)

    @model_validator(mode="after")
    def _samples_in_order(self) -> Timing:
        if self.max_samples < self.min_samples:
            raise PydanticCustomError("cross_key", "need 1 <= min_samples <= max_samples",
                                      {"key": "max_samples", "value": self.max_samples})
        return self


def _printable_name(v: str) -> str:
    if not v.strip() or not v.isprintable():
        raise PydanticCustomError("name", "not printable")
    return v


def _as_list(v: Any) -> Any:
    return v if isinstance(v, list) else [v]


#: one grid axis: a scalar is a list of one value; the values themselves are the problem's to check
Axis = Annotated[list[Any], BeforeValidator(_as_list), Field(min_length=1,
                                                             description="empty list: give at least one value")]


class SuiteTable(BaseModel):
    """``[suite]``: the backends are checked against the registry as the suite loads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[Text, Field(min_length=1, max_length=100), AfterValidator(_printable_name)] | None = Field(
        None, description="must be a non-empty printable string of at most 100 characters")
    description: Text = ""
    backends: Literal["all"] | Annotated[list[Text], Field(min_length=1)]


class GridTable(BaseModel):
    """``[[grid]]``: lists multiply out, scalars are fixed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: Axis = None
    heads_q: Axis = None
    heads_kv: Axis = None
    seqlen_q: Axis = None
    seqlen_k: Axis = None
    head_dim: Axis = None
    dtype: Axis = None
    causal: Axis = None
    softmax_scale: Axis = None
    layout: Axis = None
    op: Axis = None
    tokens: Axis = None
    hidden: Axis = None
    kind: Axis = None
    page_size: Axis = None
    lengths: Axis = None
    window_left: Axis = None
    window_right: Axis = None
    window: Axis = None
    softcap: Axis = None

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if isinstance(v, dict) and not v:
            raise PydanticCustomError("empty_table", "must be a non-empty table of problem keys")
        return v

    def axes(self) -> dict[str, list[Any]]:
        """The keys the table gives, in the order it gives them."""
        return {k: getattr(self, k) for k in self.model_fields_set}


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    suite: SuiteTable = Field(description="missing: a [suite] table with name and backends is required")
    grid: Annotated[list[GridTable], Field(min_length=1)] = Field(
        description="missing: at least one [[grid]] table of problems is required")
    checks: Checks = Checks()
    timing: Timing = Timing()


def bounds(table: type, key: str) -> tuple[float, float]:
    """The inclusive bounds a numeric key's ``Field`` sets."""
    lo, hi = float("-inf"), float("inf")
    for m in table.__pydantic_fields__[key].metadata:
        if isinstance(m, (Ge, Gt)):
            lo = m.ge if isinstance(m, Ge) else m.gt
        elif isinstance(m, Le):
            hi = m.le
    return lo, hi


def choices(table: type, key: str) -> tuple[str, ...]:
    """The names a key (or each item of a list key) may take."""
    t = table.__pydantic_fields__[key].annotation
    while get_origin(t) is not Literal:
        args = [a for a in get_args(t) if a is not Ellipsis]
        if not args:
            return ()
        t = args[0]
    return get_args(t)


def allowed(table: type, key: str, error: dict[str, Any]) -> str:
    """What ``key`` of ``table`` allows, worded for the one-line error ``error`` (a pydantic error dict)."""
    info = table.__pydantic_fields__[key]
    if error["type"] in ("duplicate", "cross_key"):
        return error["msg"]
    if info.description:
        return info.description
    names = choices(table, key)
    t = info.annotation
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    if get_origin(t) is tuple:
        return f"allowed {', '.join(names)}" if error["type"] == "literal_error" else \
            "must be a non-empty list of strings"
    if names:
        return f"allowed {', '.join(names)}"
    if t is bool:
        return "must be true or false"
    lo, hi = bounds(table, key)
    if t is int:
        return f"must be a non-negative integer from {lo:g} to {hi:g}"
    if t is float:
        return "must be a fraction in (0, 1)" if 0 < lo and hi < 1 else f"must be a positive number from {lo:g} to {hi:g}"
    return "must be a string"
