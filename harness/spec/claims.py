"""The claims file: published statements to audit, one ``[[claim]]`` table each.

Kinds (``kind``, default ``measured``):
  measured    backend + problem + tflops and/or latency_ms: checked for arithmetic consistency and
              against the latest measured result of that backend on that problem.
  speedup     backend + baseline + problem + claimed (×): checked against the measured ratio.
  occupancy   inputs {regs_per_thread, threads_per_block, smem_bytes | smem_kib} + quantity + claimed:
              recomputed with the H100 occupancy formula.
  traffic     problem + quantity (q_read, …, unfused_total) + claimed + unit (GB, GiB, …).
  flops       problem + claimed + unit (FLOP, GFLOP, TFLOP).
  arithmetic  expr + claimed: the expression is recomputed.
Numbers may be a range ``[lo, hi]`` where the source gives one ("12-15 TFLOPS").
A measured claim about something that is not a flashcore backend (a serving engine such as SGLang or
vLLM) names the backends that run the kernels it uses, ``measured_on = ["fa3", "flashinfer-fa3"]`` in
order of preference (the first with a passed, timed cell decides), and must cite where that mapping
comes from: ``mapping = [{url = "...", quote = "..."}, ...]``.
Every claim has ``id`` and ``source = {file = "...", quote = "..."}``; ``note`` is free text.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as model

from harness.analysis.audit.formulas import BYTE_UNITS, FLOP_UNITS, OCCUPANCY_QUANTITIES, TRAFFIC_QUANTITIES
from harness.spec.problem import DTYPES, Problem, ProblemError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = ("measured", "speedup", "occupancy", "traffic", "flops", "arithmetic")
COMPARES = ("equal", "at_most")
_COMMON = ("id", "kind", "source", "note")
_KEYS: dict[str, tuple[str, ...]] = {
    "measured": _COMMON + ("backend", "problem", "tflops", "latency_ms", "measured_on", "mapping"),
    "speedup": _COMMON + ("backend", "baseline", "problem", "claimed"),
    "occupancy": _COMMON + ("inputs", "quantity", "claimed", "compare", "tolerance"),
    "traffic": _COMMON + ("problem", "quantity", "claimed", "unit", "score_dtype", "compare", "tolerance"),
    "flops": _COMMON + ("problem", "claimed", "unit", "compare", "tolerance"),
    "arithmetic": _COMMON + ("expr", "claimed", "compare", "tolerance"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "measured": ("backend", "problem"),
    "speedup": ("backend", "baseline", "problem", "claimed"),
    "occupancy": ("inputs", "quantity", "claimed"),
    "traffic": ("problem", "quantity", "claimed", "unit"),
    "flops": ("problem", "claimed", "unit"),
    "arithmetic": ("expr", "claimed"),
}
OCCUPANCY_INPUTS = ("regs_per_thread", "threads_per_block", "smem_bytes", "smem_kib")
PROBLEM_KEYS = (
    "batch",
    "heads_q",
    "seqlen_q",
    "head_dim",
    "heads_kv",
    "seqlen_k",
    "dtype",
    "causal",
    "softmax_scale",
    "layout",
)
DTYPE_ALIASES = {
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "fp32": "float32",
    "float": "float32",
}
DEFAULT_TOLERANCE = 0.05


class ClaimsError(ValueError):
    """A claims file that cannot be audited; the message is one line naming file, claim and key."""


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    @property
    def single(self) -> bool:
        return self.lo == self.hi

    def __str__(self) -> str:
        return f"{self.lo:g}" if self.single else f"{self.lo:g}–{self.hi:g}"


#: a citation's parts: text with something in it besides spaces
Cited = Annotated[str, StringConstraints(strict=True, pattern=r"\S")]
_CITATION = ConfigDict(extra="forbid")


@model(frozen=True, config=_CITATION)
class Source:
    file: Cited
    quote: Cited


@model(frozen=True, config=_CITATION)
class MappingSource:
    url: Cited
    quote: Cited


_SOURCE = TypeAdapter(Source)
_MAPPING = TypeAdapter(Annotated[list[MappingSource], Field(min_length=1)])


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str
    source: Source
    note: str = ""
    backend: str = ""
    baseline: str = ""
    problem: Problem | None = None  # None: the source does not say (then the claim is untestable)
    tflops: Range | None = None
    latency_ms: Range | None = None
    claimed: Range | None = None
    quantity: str = ""
    unit: str = ""
    inputs: dict[str, int] = field(default_factory=dict)
    score_dtype: str = ""
    expr: str = ""
    compare: str = "equal"
    tolerance: float = DEFAULT_TOLERANCE
    measured_on: tuple[str, ...] = ()  # the backends that stand for ``backend`` (a server), in order
    mapping: tuple[MappingSource, ...] = ()  # where that mapping comes from


def load_claims(path: str | Path) -> list[Claim]:
    path = Path(path)
    if not path.is_file():
        raise ClaimsError(f"{path}: no such claims file (see suites/claims/seeds.toml for the format)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ClaimsError(f"{path}: not UTF-8 text: {exc}") from None
    return parse_claims(data, str(path))


def parse_claims(data: dict[str, Any], where: str = "<claims>") -> list[Claim]:
    extra = sorted(set(data) - {"claim"})
    if extra:
        raise ClaimsError(f"{where}: unknown top-level key(s) {extra}: allowed only [[claim]] tables")
    raw = data.get("claim")
    if not raw:
        raise ClaimsError(f"{where}: no [[claim]] tables")
    if not isinstance(raw, list):
        raise ClaimsError(f"{where}: 'claim' must be an array of tables, written [[claim]]")
    claims: list[Claim] = []
    seen: set[str] = set()
    for i, c in enumerate(raw):
        claim = _parse_one(c, f"{where}: claim[{i}]")
        if claim.id in seen:
            raise ClaimsError(
                f"{where}: claim[{i}]: key 'id' = {claim.id!r} is used twice: ids must be unique"
            )
        seen.add(claim.id)
        claims.append(claim)
    return claims


def _parse_one(c: dict[str, Any], where: str) -> Claim:
    if not isinstance(c, dict):
        raise ClaimsError(f"{where}: must be a table")
    cid = c.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise ClaimsError(f"{where}: key 'id' missing or not a non-empty string")
    where = f"{where} (id {cid!r})"
    kind = c.get("kind", "measured")
    if kind not in KINDS:
        raise ClaimsError(f"{where}: key 'kind' = {kind!r}: allowed {', '.join(KINDS)}")
    unknown = sorted(set(c) - set(_KEYS[kind]))
    if unknown:
        raise ClaimsError(
            f"{where}: unknown key(s) {unknown} for kind {kind!r}: allowed {', '.join(_KEYS[kind])}"
        )
    for key in _REQUIRED[kind]:
        if key not in c:
            raise ClaimsError(
                f"{where}: missing key {key!r} (kind {kind!r} needs {', '.join(_REQUIRED[kind])})"
            )
    kw: dict[str, Any] = {
        "id": cid,
        "kind": kind,
        "source": _source(c.get("source"), where),
        "note": _str(c, "note", where),
    }
    if kind == "measured":
        kw["tflops"] = _range(c, "tflops", where)
        kw["latency_ms"] = _range(c, "latency_ms", where)
        if kw["tflops"] is None and kw["latency_ms"] is None:
            raise ClaimsError(f"{where}: a measured claim needs 'tflops' and/or 'latency_ms'")
    else:
        kw["claimed"] = _range(c, "claimed", where)
    for key in ("backend", "baseline", "quantity", "unit", "expr"):
        if key in c:
            kw[key] = _str(c, key, where, required=True)
    if "problem" in c:
        kw["problem"] = _problem(c["problem"], where)
    if "measured_on" in c or "mapping" in c:
        kw["measured_on"], kw["mapping"] = _measured_on(c, where)
    if kind in ("measured", "speedup") and not kw.get("backend"):
        raise ClaimsError(f"{where}: key 'backend' must name a backend (e.g. sdpa-flash)")
    if kind in ("speedup", "traffic", "flops") and kw.get("problem") is None:
        raise ClaimsError(f"{where}: key 'problem' = 'unknown' is allowed only for kind 'measured'")
    if "compare" in c:
        if c["compare"] not in COMPARES:
            raise ClaimsError(f"{where}: key 'compare' = {c['compare']!r}: allowed {', '.join(COMPARES)}")
        kw["compare"] = c["compare"]
    if "tolerance" in c:
        t = c["tolerance"]
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t < 1:
            raise ClaimsError(f"{where}: key 'tolerance' = {t!r}: a relative tolerance in [0, 1), e.g. 0.05")
        kw["tolerance"] = float(t)
    if kind == "occupancy":
        kw["inputs"] = _occupancy_inputs(c["inputs"], where)
        _choice(kw["quantity"], OCCUPANCY_QUANTITIES, "quantity", where)
    if kind == "traffic":
        _choice(kw["quantity"], TRAFFIC_QUANTITIES, "quantity", where)
        _choice(kw["unit"], tuple(BYTE_UNITS), "unit", where)
        if "score_dtype" in c:
            kw["score_dtype"] = _choice(
                DTYPE_ALIASES.get(c["score_dtype"], c["score_dtype"]), DTYPES, "score_dtype", where
            )
    if kind == "flops":
        _choice(kw["unit"], tuple(FLOP_UNITS), "unit", where)
    if kind == "arithmetic":
        from harness.analysis.audit.formulas import FormulaError, evaluate

        try:
            evaluate(kw["expr"])
        except FormulaError as exc:
            raise ClaimsError(f"{where}: key 'expr': {exc}") from None
    return Claim(**kw)


def _measured_on(c: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[MappingSource, ...]]:
    """``measured_on`` (backend names, at least one) and its cited ``mapping``: each needs the other."""
    on, mapping = c.get("measured_on"), c.get("mapping")
    if on is None:
        raise ClaimsError(f"{where}: key 'mapping' without 'measured_on': name the backends it maps to")
    if not (isinstance(on, list) and on and all(isinstance(b, str) and b.strip() for b in on)):
        raise ClaimsError(f"{where}: key 'measured_on' = {on!r}: a non-empty list of backend names, "
                          'e.g. ["fa3", "flashinfer-fa3"]')
    if len(set(on)) != len(on):
        raise ClaimsError(f"{where}: key 'measured_on' = {on!r}: names a backend twice")
    if mapping is None:
        raise ClaimsError(f"{where}: key 'measured_on' needs 'mapping' = [{{url = \"...\", quote = \"...\"}}] "
                          "citing where the backends come from")
    try:
        cited = _MAPPING.validate_python(mapping, strict=False)
    except ValidationError:
        raise ClaimsError(f"{where}: key 'mapping' = {mapping!r}: a non-empty list of "
                          '{url = "...", quote = "..."} tables, each with both keys and nothing else') from None
    return tuple(on), tuple(cited)


def _str(c: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    v = c.get(key, "")
    if not isinstance(v, str) or (required and not v.strip()):
        raise ClaimsError(f"{where}: key {key!r} = {v!r}: must be a non-empty string")
    return v


def _choice(v: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if v not in allowed:
        raise ClaimsError(f"{where}: key {key!r} = {v!r}: allowed {', '.join(allowed)}")
    return v


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _range(c: dict[str, Any], key: str, where: str) -> Range | None:
    if key not in c:
        return None
    v = c[key]
    if _number(v) and v > 0:
        return Range(float(v), float(v))
    if isinstance(v, list) and len(v) == 2 and all(_number(x) and x > 0 for x in v) and v[0] <= v[1]:
        return Range(float(v[0]), float(v[1]))
    raise ClaimsError(f"{where}: key {key!r} = {v!r}: a positive number or a range [lo, hi] with lo <= hi")


def _source(v: Any, where: str) -> Source:
    try:  # file and quote first, so a missing one is named before a stray key
        source = _SOURCE.validate_python({k: v[k] for k in ("file", "quote") if k in v} if isinstance(v, dict) else v)
    except ValidationError:
        raise ClaimsError(
            f'{where}: key \'source\' must be {{file = "...", quote = "..."}} '
            "naming the document and quoting the statement"
        ) from None
    extra = sorted(set(v) - {"file", "quote"})
    if extra:
        raise ClaimsError(f"{where}: key 'source' has unknown key(s) {extra}: allowed file, quote")
    return source


def _problem(v: Any, where: str) -> Problem | None:
    if v == "unknown":
        return None
    if not isinstance(v, dict):
        raise ClaimsError(
            f"{where}: key 'problem' must be a table {{batch = …, heads_q = …, seqlen_q = …, "
            'head_dim = …, dtype = …, causal = …}} or the string "unknown"'
        )
    unknown = sorted(set(v) - set(PROBLEM_KEYS))
    if unknown:
        raise ClaimsError(
            f"{where}: key 'problem' has unknown key(s) {unknown}: allowed {', '.join(PROBLEM_KEYS)}"
        )
    d = dict(v)
    if "dtype" in d:
        d["dtype"] = DTYPE_ALIASES.get(d["dtype"], d["dtype"])
    for key in ("batch", "heads_q", "seqlen_q", "head_dim"):
        if key not in d:
            raise ClaimsError(
                f"{where}: key 'problem' lacks {key!r} (needs batch, heads_q, seqlen_q, head_dim)"
            )
    if "dtype" not in d:
        raise ClaimsError(
            f"{where}: key 'problem' lacks 'dtype': allowed {', '.join(DTYPES)} (or fp16, bf16, fp32)"
        )
    d.setdefault("causal", False)
    try:
        return Problem(**d)
    except ProblemError as exc:
        raise ClaimsError(f"{where}: key 'problem': {exc}") from None
    except TypeError as exc:
        raise ClaimsError(f"{where}: key 'problem': {exc}") from None


def _occupancy_inputs(v: Any, where: str) -> dict[str, int]:
    if not isinstance(v, dict):
        raise ClaimsError(f"{where}: key 'inputs' must be a table of {', '.join(OCCUPANCY_INPUTS)}")
    unknown = sorted(set(v) - set(OCCUPANCY_INPUTS))
    if unknown:
        raise ClaimsError(
            f"{where}: key 'inputs' has unknown key(s) {unknown}: allowed {', '.join(OCCUPANCY_INPUTS)}"
        )
    for key in ("regs_per_thread", "threads_per_block"):
        if not (isinstance(v.get(key), int) and not isinstance(v.get(key), bool) and v[key] > 0):
            raise ClaimsError(f"{where}: key 'inputs.{key}' = {v.get(key)!r}: must be a positive integer")
    if ("smem_bytes" in v) == ("smem_kib" in v):
        raise ClaimsError(f"{where}: key 'inputs' needs exactly one of smem_bytes, smem_kib")
    key = "smem_kib" if "smem_kib" in v else "smem_bytes"
    smem = v[key]
    if not _number(smem) or smem < 0:
        raise ClaimsError(f"{where}: key 'inputs.{key}' = {smem!r}: must be a number >= 0")
    smem_bytes = round(smem * 1024) if key == "smem_kib" else int(smem)
    return {
        "regs_per_thread": v["regs_per_thread"],
        "threads_per_block": v["threads_per_block"],
        "smem_bytes": smem_bytes,
    }
