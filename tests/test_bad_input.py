"""Malformed suites and command lines, generated (hypothesis): every one ends in a clean exit (0, or 2 with
exactly one line ``flashcore: error: ...``), no traceback, and the results database is untouched.

Nothing is measured here: ``harness.run.supervisor.run_suite`` is replaced by a stub that only records that a
suite passed validation (the rare generated suite that is valid), so the test stays fast.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from harness.cli import app
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store, now

RUN_ID = "prefilled-1"
SETTINGS = {"deadline": None, "database": None,
            "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
cli = CliRunner()


# -- the database every example points at ------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    db = root / "results.db"
    with Store(db) as store:
        store.create_run(RunInfo(run_id=RUN_ID, suite="smoke", created_at=now(), env={"gpu": "none"}))
        for i, (backend, status) in enumerate([("reference", "ok"), ("naive", "failed"), ("fa2", "skipped")]):
            p = Problem(batch=1, heads_q=2, seqlen_q=16 + i, head_dim=64)
            store.add_result(Result.for_problem(RUN_ID, "smoke", backend, p, status,
                                                "" if status == "ok" else "a [bracketed] reason",
                                                median_ms=0.5 if status == "ok" else None))
    (root / "garbage.db").write_bytes(b"this is not sqlite\n" * 10)
    (root / "valid.toml").write_text('[suite]\nname = "valid"\nbackends = ["reference"]\n[[grid]]\nbatch = 1\n'
                                     'heads_q = 1\nseqlen_q = 16\nhead_dim = 8\n')
    (root / "adir").mkdir()
    calls = []

    def stub(suite, plan, store, opts):  # validation passed: record it, measure nothing
        calls.append((suite.name, len(plan)))
        return RUN_ID

    old = os.getcwd()
    os.chdir(root)  # `export` without --out writes under the working directory
    with mock.patch("harness.run.supervisor.run_suite", stub):
        yield {"root": root, "db": db, "digest": _digest(db), "rows": _rows(db), "calls": calls}
    os.chdir(old)


def _digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


def _rows(db: Path) -> list:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("runs", "results", "meta")]
    finally:
        con.close()


def _invoke(world, argv: list[str]):
    res = cli.invoke(app, argv)
    out = res.output  # stdout and stderr, interleaved
    try:
        stderr = res.stderr
    except ValueError:  # an older click that does not keep stderr apart
        stderr = None
    assert res.exception is None or isinstance(res.exception, SystemExit), (argv, repr(res.exception))
    assert res.exit_code in (0, 2), (argv, res.exit_code, out)
    assert "Traceback" not in out, (argv, out)
    errors = [ln for ln in out.splitlines() if ln.startswith("flashcore: error:")]
    if res.exit_code == 2:
        assert len(errors) == 1, (argv, out)
        assert len(errors[0]) > len("flashcore: error: ") + 3, (argv, out)  # it names the problem
        if stderr is not None:
            assert stderr.strip() == errors[0].strip(), (argv, stderr)  # the error is the whole of stderr
    else:
        assert not errors, (argv, out)
    assert _digest(world["db"]) == world["digest"], argv
    assert _rows(world["db"]) == world["rows"], argv
    return res, out


# -- TOML-ish values and text --------------------------------------------------------------------------
KNOWN_KEYS = {
    "suite": ["name", "description", "backends"],
    "grid": ["batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim", "dtype", "causal",
             "softmax_scale", "layout", "tokens", "hidden"],
    "checks": ["correctness", "trials", "distributions", "determinism_runs", "require_deterministic",
               "calibrate", "seed"],
    "timing": ["enabled", "mode", "warmup", "min_samples", "max_samples", "max_noise", "time_cap_s", "l2_flush",
               "cell_timeout_s"],
}
ALL_KEYS = sorted({k for v in KNOWN_KEYS.values() for k in v})
WORDS = ["bfloat16", "float16", "float32", "bshd", "bhsd", "events", "graph", "normal", "uniform", "large",
         "large_logits", "reference", "naive", "sdpa-math", "all", "fa2", "", " ", "é", "注意", "🔥", "\x00",
         "a\nb", "${x}", "'", '"', "\\"]
HUGE = [2**31, 2**63 - 1, -(2**63), 10**30, 2**64]

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(HUGE + [0, 1, -1, 16, 64, 128, 1024]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(ALL_KEYS + ["x", "é"]), inner, max_size=3)),
    max_leaves=8)


def toml_key(k: str) -> str:
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return json.dumps(k, ensure_ascii=False)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_doc(doc: dict) -> str:
    lines = []
    for section, body in doc.items():
        if isinstance(body, list) and body and all(isinstance(t, dict) for t in body):
            for t in body:
                lines.append(f"[[{toml_key(section)}]]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in t.items()]
        elif isinstance(body, dict):
            lines.append(f"[{toml_key(section)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{toml_key(section)} = {toml_value(body)}")
    return "\n".join(lines) + "\n"


VALID = {
    "suite": {"name": "fuzz", "backends": ["reference"]},
    "grid": [{"batch": 1, "heads_q": 2, "seqlen_q": [16, 32], "head_dim": 64, "dtype": "bfloat16"}],
    "checks": {"trials": 1, "distributions": ["normal"]},
    "timing": {"min_samples": 3, "max_samples": 10, "time_cap_s": 0.1},
}


@st.composite
def broken_suites(draw) -> dict:
    """A valid suite with 1-3 mutations: wrong types, unknown keys, bad or huge values, empty lists,
    missing sections, unicode."""
    doc = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["set", "set", "set", "unknown", "drop", "empty", "section", "grid"]))
        section = draw(st.sampled_from(list(KNOWN_KEYS)))
        table = doc.get(section)
        if section == "grid" and isinstance(table, list) and table and isinstance(table[0], dict):
            table = table[0]
        if how == "set" and isinstance(table, dict):
            table[draw(st.sampled_from(KNOWN_KEYS[section]))] = draw(values)
        elif how == "unknown" and isinstance(table, dict):
            table[draw(st.text(min_size=1, max_size=8))] = draw(values)
        elif how == "drop":
            doc.pop(section, None)
        elif how == "empty" and isinstance(table, dict):
            table[draw(st.sampled_from(KNOWN_KEYS[section]))] = []
        elif how == "section":
            doc[draw(st.sampled_from([section, "bogus", "suite", "grid"]))] = draw(values)
        elif how == "grid":
            doc["grid"] = draw(st.sampled_from([[], [{}], [VALID["grid"][0], {"batch": 2}], "x"]))
    return doc


toml_ish = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(
        st.sampled_from(["[suite]", "[[grid]]", "[checks]", "[timing]", "[bogus]", "[suite.x]", "[[suite]]",
                         "name = ", "backends = [", "]", "= 1", "seqlen_q = [1, 2", "{", "}", '"', "'''"]),
        st.builds(lambda k, v: f"{toml_key(k)} = {toml_value(v)}", st.sampled_from(ALL_KEYS), values),
        st.text(max_size=30)), max_size=12).map("\n".join),
)


def _suite_file(world, text: str) -> Path:
    p = world["root"] / "fuzz.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


@settings(max_examples=450, **SETTINGS)
@given(doc=broken_suites())
def test_structurally_wrong_suites_are_one_line_errors(world, doc):
    path = _suite_file(world, toml_doc(doc))
    before = len(world["calls"])
    res, out = _invoke(world, ["run", "--suite", str(path), "--db", str(world["db"])])
    if res.exit_code == 2:
        assert len(world["calls"]) == before  # rejected before anything could run
        assert str(path) in out or "--" in out or "backend" in out, out


@settings(max_examples=350, **SETTINGS)
@given(text=toml_ish)
def test_toml_ish_text_is_a_one_line_error(world, text):
    path = _suite_file(world, text)
    _invoke(world, ["run", "--suite", str(path), "--db", str(world["db"])])


# -- command lines ---------------------------------------------------------------------------------
opt_values = st.one_of(st.sampled_from(["", " ", "-1", "0", "nan", "inf", "-inf", "1e999", "9" * 50, "abc",
                                         "é", "🔥", "true", "smoke", "reference", "naive,naive", "warp-drive",
                                         RUN_ID, "seqlen_q>=1024", "colour=red", "seqlen_q>x", "dtype>=5",
                                         "causal=yes", "csv", "parquet", "xlsx", "--db", "-"]),
                       st.text(max_size=20).filter(lambda s: "\x00" not in s))


@st.composite
def argvs(draw, world) -> list[str]:
    root = world["root"]
    dbs = [str(world["db"])] * 4 + [str(root / "missing.db"), str(root / "garbage.db"), str(root / "adir"), ""]
    cmd = draw(st.sampled_from(["run", "run", "show", "export", "compare", "nope", "--bogus"]))
    argv = [cmd]
    opts = {"run": ["--suite", "--backends", "--filter", "--run-id", "--log-dir", "--resume", "-s", "-b", "-f"],
            "show": ["--run", "--runs"], "export": ["--format", "--out", "--run", "-o"],
            "compare": ["--min-ms", "--within"]}.get(cmd, [])
    if cmd == "compare":
        argv += draw(st.lists(st.one_of(st.just(RUN_ID), opt_values), min_size=0, max_size=3))
    if cmd == "run" and draw(st.booleans()):
        argv += ["--suite", draw(st.sampled_from(["smoke", str(root / "valid.toml"), str(root / "nope.toml"),
                                                  str(root / "adir"), "",
                                                  str(root / "garbage.db")]))]
    for _ in range(draw(st.integers(0, 4))):
        opt = draw(st.sampled_from(opts + ["--what", "--db"]))
        argv.append(opt)
        if opt not in ("--resume", "--runs") and draw(st.integers(0, 9)):
            argv.append(draw(opt_values))
    if cmd != "nope" and draw(st.integers(0, 3)):
        argv += ["--db", draw(st.sampled_from(dbs))]
    if cmd == "run" and "--backends" not in argv and "-b" not in argv:
        argv += ["--backends", "reference"]  # never a real measurement, even of a valid combination
    return argv


@settings(max_examples=400, **SETTINGS)
@given(data=st.data())
def test_malformed_command_lines_are_one_line_errors(world, data):
    argv = data.draw(argvs(world))
    res, out = _invoke(world, argv)
    if argv[0] == "show" and res.exit_code == 0 and "--runs" not in argv:
        assert "a [bracketed] reason" in out  # reasons are printed verbatim (no markup eaten)


# -- fixed cases: each gap found by the generators stays closed --------------------------------------
@pytest.mark.parametrize("text,msg", [
    ('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\ntokens=16\nseqlen_q=16\nbatch=1\nheads_q=1\nhead_dim=8',
     "give either tokens or batch"),
    ('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\ntokens=16\nseqlen_q=0\nheads_q=1\nhead_dim=8',
     "seqlen_q=0: must be a positive integer"),
    ('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\ntokens=20\nseqlen_q=16\nheads_q=1\nhead_dim=8',
     "positive integer multiple of seqlen_q"),
    ('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nhidden=64\nhead_dim=0\nseqlen_q=1\nbatch=1',
     "head_dim=0: must be a positive integer"),
    (('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=1\nheads_q=1\nseqlen_q=1\nhead_dim=8\n'
     'softmax_scale=true'), "softmax_scale=True"),
    (('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=100000\nheads_q=1000\nseqlen_q=100000\n'
     'head_dim=128'), "larger than any GPU"),
    ('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=1\nheads_q=1\nhead_dim=8\nseqlen_q=['
     + ",".join(str(i) for i in range(1, 400)) + "]\nseqlen_k=[" + ",".join(str(i) for i in range(1, 400)) + "]",
     "multiplies out to 159201 problems"),
    (('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=1\nheads_q=1\nseqlen_q=1\nhead_dim=8\n'
     '[timing]\nmax_noise=nan'), "[timing] max_noise = nan"),
    (('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=1\nheads_q=1\nseqlen_q=1\nhead_dim=8\n'
     '[timing]\ncell_timeout_s=inf'), "[timing] cell_timeout_s = inf"),
    (('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=1\nheads_q=1\nseqlen_q=1\nhead_dim=8\n'
     '[checks]\ntrials=1000000000'), "[checks] trials = 1000000000"),
    (('[suite]\nname="x"\nbackends=["reference", "reference"]\n[[grid]]\nbatch=1\nheads_q=1\nseqlen_q=1\n'
     'head_dim=8'), "listed twice"),
    (('[suite]\nname="x"\nbackends=["reference"]\n[[grid]]\nbatch=1\nheads_q=1\nseqlen_q=1\nhead_dim=8\n'
     '[checks]\ndistributions=["normal","normal"]'), "lists a value twice"),
    ("a = " + "[" * 3000 + "]" * 3000, "invalid TOML"),
])
def test_each_found_gap_is_a_named_one_line_error(world, text, msg):
    path = _suite_file(world, text)
    res, out = _invoke(world, ["run", "--suite", str(path), "--db", str(world["db"])])
    assert res.exit_code == 2 and msg in out, out


@pytest.mark.parametrize("argv,msg", [
    (["run", "--suite", "a" * 5000], "not a usable file name"),
    (["run", "--suite", "valid.toml", "--backends", "reference,reference"], "given twice"),
    (["run", "--suite", "valid.toml", "--run-id", RUN_ID], "already in"),
    (["run", "--suite", "valid.toml", "--run-id", " x"], "--run-id"),
    (["run", "--suite", "valid.toml", "--log-dir", "garbage.db"], "is a file"),
    (["run", "--suite", "valid.toml", "--resume", "--run-id", RUN_ID], "is of suite 'smoke', not 'valid'"),
    (["show", "--db", "adir"], "adir is a directory, not a results database"),
    (["show", "--db", "garbage.db"], "not a flashcore results database"),
    (["export", "--out", "adir"], "Is a directory"),
    (["compare", RUN_ID, RUN_ID, "--min-ms", "nan"], "--min-ms nan"),
    (["compare", RUN_ID, RUN_ID, "--within", "0"], "--within 0.0"),
    (["run", "--suite", "smoke", "--bogus"], "run: No such option: --bogus"),
    (["compare", "a"], "compare: Missing argument"),
    (["show", "--runs", "extra"], "unexpected extra argument"),
])
def test_each_found_cli_gap_is_a_named_one_line_error(world, argv, msg):
    argv = [a if a not in ("adir", "garbage.db", "valid.toml") else str(world["root"] / a) for a in argv]
    if "--db" not in argv and argv[0] in ("run", "show", "export", "compare"):
        argv += ["--db", str(world["db"])]
    res, out = _invoke(world, argv)
    assert res.exit_code == 2 and msg in out, out
