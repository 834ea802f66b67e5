"""``flashcore standing``: where one backend stands against the per-configuration best of named peers in one
stored run. The ratio is best peer median / backend median (> 1: the backend is faster); the geometric mean
is over the configurations that can be ranked; a wrong result (correctness failed) never ranks."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from harness.analysis.standing import Standing, StandingError, standing
from harness.cli import app
from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store, StoreError

cli = CliRunner()
PREFIX = "flashcore: error: "
RUN = "r1"

#: six configurations, one per sequence length
P = {n: Problem(batch=1, heads_q=8, seqlen_q=512 * n, head_dim=64) for n in range(1, 7)}
KEY = {n: p.key() for n, p in P.items()}


def cell(backend: str, n: int, ms: float | None, *, status: str = "ok", passed: bool | None = True,
         reason: str = "", mode: str = "isolated", rounds: int = 1) -> Result:
    r = Result.for_problem(RUN, "s", backend, P[n], status, reason, passed=passed, timing_mode=mode, rounds=rounds)
    if ms is not None:
        r.median_ms, r.rel_spread = ms, 0.01
        r.tflops = r.flops / (ms * 1e-3) / 1e12
    return r


def build(path, cells: list[Result], run_id: str = RUN) -> None:
    """A database written the way a run writes it: the run's row, then each cell through Store.add_result."""
    with Store(path) as store:
        store.create_run(RunInfo(run_id=run_id, suite="s", created_at="2026-12-07T00:00:00+00:00",
                                 git_commit="c", argv="", env={}, status="complete"))
        for r in cells:
            store.add_result(r)


@pytest.fixture
def db(tmp_path):
    """Backend ``mine`` against peers ``a`` and ``b``, isolated mode, plus two sustained cells:

    1. mine 1.0, a 0.9, b 1.2                    -> best a, ratio 0.9
    2. mine 1.0, a 1.1, b 1.05                   -> best b, ratio 1.05
    3. mine 2.0, a 2.4, b 1.0 but wrong          -> b set aside, best a, ratio 1.2
    4. mine 0.5 but wrong, a 1.0                 -> mine listed as wrong, not ranked
    5. mine 1.0, a skipped, b no row             -> no peer
    6. mine skipped (unsupported), a 1.0, b 1.0  -> mine: skipped: unsupported, not ranked
    """
    path = tmp_path / "r.db"
    build(path, [
        cell("mine", 1, 1.0), cell("a", 1, 0.9), cell("b", 1, 1.2),
        cell("mine", 2, 1.0), cell("a", 2, 1.1), cell("b", 2, 1.05),
        cell("mine", 3, 2.0), cell("a", 3, 2.4), cell("b", 3, 1.0, status="failed", passed=False, reason="wrong output"),
        cell("mine", 4, 0.5, status="failed", passed=False, reason="max error 0.3 above tolerance"), cell("a", 4, 1.0),
        cell("mine", 5, 1.0), cell("a", 5, None, status="skipped", passed=None, reason="no kernel for this shape"),
        cell("mine", 6, None, status="skipped", passed=None, reason="unsupported head_dim"),
        cell("a", 6, 1.0), cell("b", 6, 1.0),
        cell("mine", 1, 1.0, mode="sustained"), cell("a", 1, 1.25, mode="sustained"),
        cell("other", 1, 3.0),
    ])
    return path


def compute(path, backend="mine", peers=("a", "b"), mode=None, floor=0.95, run_id=RUN) -> Standing:
    with Store(path, readonly=True) as store:
        return standing(store, run_id, backend, list(peers), mode, floor)


def row(s: Standing, n: int):
    return next(r for r in s.rows if r.problem_key == KEY[n])


# -- per configuration -------------------------------------------------------------------------------
def test_each_configuration_has_the_ratio_to_its_best_peer_and_names_that_peer(db):
    s = compute(db)
    assert [r.problem_key for r in s.rows] == [KEY[n] for n in range(1, 7)]  # in the run's order
    assert (row(s, 1).best_peer, row(s, 1).ratio) == ("a", pytest.approx(0.9))
    assert (row(s, 2).best_peer, row(s, 2).ratio) == ("b", pytest.approx(1.05))  # > 1: mine is faster


def test_every_peers_tflops_is_given_beside_the_backends(db):
    r = row(compute(db), 1)
    assert r.tflops == pytest.approx(P[1].flops() / 1e-3 / 1e12)
    assert [(p.backend, p.tflops) for p in r.peers] == [("a", pytest.approx(P[1].flops() / 0.9e-3 / 1e12)),
                                                        ("b", pytest.approx(P[1].flops() / 1.2e-3 / 1e12))]


def test_a_peer_whose_correctness_failed_is_never_the_best(db):
    s = compute(db)
    r = row(s, 3)
    assert (r.best_peer, r.ratio) == ("a", pytest.approx(1.2))  # b was faster (1.0 ms) but wrong
    assert [p.note for p in r.peers] == ["", "wrong"]
    assert s.peer_rows_wrong == 1


# -- what is not ranked ------------------------------------------------------------------------------
def test_the_backends_wrong_result_is_listed_as_wrong_and_not_ranked(db):
    s = compute(db)
    r = row(s, 4)
    assert r.wrong and not r.ranked and r.ratio is None
    assert r.excluded == "mine: wrong (correctness failed: max error 0.3 above tolerance)"
    assert s.excluded_wrong == 1


def test_a_configuration_without_an_ok_peer_row_is_listed_with_no_peer(db):
    r = row(compute(db), 5)
    assert not r.ranked and r.excluded == "no peer" and r.best_peer is None
    assert [p.note for p in r.peers] == ["skipped: no kernel for this shape", "no row"]


def test_a_configuration_where_the_backend_has_no_ok_row_gives_its_status_and_reason(db):
    s = compute(db)
    assert row(s, 6).excluded == "mine: skipped: unsupported head_dim" and not row(s, 6).ranked
    assert (s.excluded_backend, s.excluded_wrong, s.excluded_no_peer, s.excluded) == (1, 1, 1, 3)


# -- over the configurations -------------------------------------------------------------------------
def test_the_geometric_mean_and_the_worst_are_over_the_ranked_configurations_only(db):
    s = compute(db)
    assert [r.problem_key for r in s.ranked] == [KEY[1], KEY[2], KEY[3]]
    assert s.geomean == pytest.approx((0.9 * 1.05 * 1.2) ** (1 / 3))
    assert (s.worst_problem, s.worst_ratio) == (KEY[1], pytest.approx(0.9))


@pytest.mark.parametrize(("floor", "below"), [(0.95, 1), (0.9, 0), (1.1, 2), (1.5, 3)])
def test_the_floor_counts_the_ranked_configurations_below_it(db, floor, below):
    assert compute(db, floor=floor).below_floor == below


def test_a_peer_measured_on_one_configuration_leaves_the_others_without_a_peer(db):
    s = compute(db, peers=["other"])  # other has a row only on configuration 1, 3 times slower
    assert [r.problem_key for r in s.ranked] == [KEY[1]] and s.geomean == pytest.approx(3.0)
    assert s.excluded_no_peer == 3  # configurations 2, 3 and 5; 4 is wrong and 6 skipped for mine


def test_nothing_to_rank_gives_no_mean(db):
    s = compute(db, backend="other", peers=["b"], mode="sustained")  # neither has a sustained row
    assert s.rows == [] and s.geomean is None and s.worst_problem is None and s.below_floor == 0


# -- timing mode -------------------------------------------------------------------------------------
def test_the_mode_defaults_to_isolated_and_sustained_is_chosen_by_name(db):
    assert compute(db).mode == "isolated" and compute(db).modes == ["isolated", "sustained"]
    s = compute(db, mode="sustained")
    assert [(r.problem_key, r.best_peer, r.ratio) for r in s.rows] == [(KEY[1], "a", pytest.approx(1.25))]


def test_a_run_with_one_mode_other_than_isolated_uses_that_one(tmp_path):
    path = tmp_path / "s.db"
    build(path, [cell("mine", 1, 1.0, mode="sustained"), cell("a", 1, 0.8, mode="sustained")])
    s = compute(path, peers=["a"])
    assert s.mode == "sustained" and s.rows[0].ratio == pytest.approx(0.8)


def test_a_run_that_did_not_complete_is_said_so(tmp_path):
    path = tmp_path / "i.db"
    build(path, [cell("mine", 1, 1.0), cell("a", 1, 0.9), cell("a", 2, 0.9)])
    with Store(path) as store:
        store.update_run(RUN, status="interrupted")
    assert compute(path, peers=["a"]).run_status == "interrupted"
    res = cli.invoke(app, ["standing", "--db", str(path), "--backend", "mine", "--peers", "a"])
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "mine: no row" in out and "run r1 is interrupted" in out, res.output


def test_pooled_rounds_are_read_as_the_one_row_the_run_stored(tmp_path):
    # interleaved rounds pool every visit of a cell into one row per backend, problem and mode
    # (harness.analysis.verdict.pool): its median is the standing's time, its rounds are reported
    path = tmp_path / "rounds.db"
    build(path, [cell("mine", 1, 1.0, rounds=3), cell("a", 1, 0.95, rounds=3)])
    s = compute(path, peers=["a"])
    assert len(s.rows) == 1 and s.rows[0].ratio == pytest.approx(0.95) and s.rows[0].rounds == 3
    assert s.max_rounds == 3


# -- bad input: one line naming the problem and what is allowed ---------------------------------------
@pytest.mark.parametrize(("kwargs", "says"), [
    ({"run_id": "nope"}, "no run 'nope'"),
    ({"backend": "ghost"}, "backend 'ghost' is not in run r1; the run has mine, a, b, other"),
    ({"peers": ["a", "ghost"]}, "peer 'ghost' is not in run r1; the run has mine, a, b, other"),
    ({"peers": ["a", "mine"]}, "--peers names mine, the backend being ranked"),
    ({"peers": []}, "--peers: name at least one peer backend"),
    ({"mode": "warm"}, "--mode 'warm': run r1 has no rows in that timing mode; it has isolated, sustained"),
    ({"floor": 0.0}, "--floor 0.0: must be a finite ratio > 0"),
    ({"floor": math.nan}, "--floor nan"),
])
def test_bad_input_is_refused_naming_what_is_allowed(db, kwargs, says):
    with pytest.raises((StandingError, StoreError)) as e:
        compute(db, **kwargs)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("argv", "says"), [
    (["--run", "nope"], "no run 'nope'"),
    (["--backend", "ghost"], "backend 'ghost' is not in run r1; the run has mine, a, b, other"),
    (["--peers", "a,ghost"], "peer 'ghost' is not in run r1; the run has mine, a, b, other"),
    (["--peers", "a,mine"], "--peers names mine, the backend being ranked"),
    (["--mode", "warm"], "it has isolated, sustained"),
])
def test_the_command_gives_bad_input_one_error_line(db, argv, says):
    args = {"--run": RUN, "--backend": "mine", "--peers": "a,b"}
    args.update(dict(zip(argv[::2], argv[1::2])))
    res = cli.invoke(app, ["standing", "--db", str(db), *[x for kv in args.items() for x in kv]])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and res.output.startswith(PREFIX) and says in res.output, res.output


def test_the_command_refuses_a_database_that_does_not_exist(tmp_path):
    res = cli.invoke(app, ["standing", "--db", str(tmp_path / "none.db"), "--backend", "mine", "--peers", "a"])
    assert res.exit_code == 2 and res.output.startswith(PREFIX) and "does not exist" in res.output


# -- the command -------------------------------------------------------------------------------------
def test_the_command_prints_the_table_and_the_summary(db):
    res = cli.invoke(app, ["standing", "--db", str(db), "--run", RUN, "--backend", "mine", "--peers", "a,b"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert KEY[1] in out and "0.900" in out and "1.050" in out and "1.200" in out
    g = (0.9 * 1.05 * 1.2) ** (1 / 3)
    assert f"geometric mean {g:.3f} over 3 configurations" in out
    assert f"worst 0.900 at {KEY[1]}; 1 of 3 configurations below 0.95" in out
    assert "mine: wrong (correctness failed: max error 0.3 above tolerance)" in out and "no peer" in out and "mine: skipped" in out
    assert ("excluded from the geometric mean: 3 of 6 configurations, 1 where mine has no ok row; "
            "1 where mine's result was wrong (never ranked); 1 where no peer has an ok, correct row") in out
    assert "1 peer row(s) set aside because their correctness failed" in out
    assert "the run also has sustained" in out


def test_the_command_takes_the_mode_and_the_floor(db):
    res = cli.invoke(app, ["standing", "--db", str(db), "--run", RUN, "--backend", "mine", "--peers", "a",
                           "--mode", "sustained", "--floor", "1.3"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "sustained mode: geometric mean 1.250 over 1 configuration" in out
    assert "1 of 1 configurations below 1.3" in out


def test_json_holds_the_same_record(db, tmp_path):
    out = tmp_path / "out" / "standing.json"
    res = cli.invoke(app, ["standing", "--db", str(db), "--run", RUN, "--backend", "mine", "--peers", "a,b",
                           "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in " ".join(res.output.split())
    got = json.loads(out.read_text())
    assert got == json.loads(json.dumps(compute(db).as_dict()))
    assert (got["run_id"], got["backend"], got["peers"], got["mode"]) == (RUN, "mine", ["a", "b"], "isolated")
    assert got["geomean"] == pytest.approx((0.9 * 1.05 * 1.2) ** (1 / 3)) and got["below_floor"] == 1
    first = got["rows"][0]
    assert (first["problem_key"], first["best_peer"], first["ratio"]) == (KEY[1], "a", pytest.approx(0.9))
    assert first["peers"][0] == {"backend": "a", "median_ms": 0.9, "tflops": pytest.approx(first["peers"][0]["tflops"]),
                                 "note": "", "duty": None}
    assert got["rows"][3]["wrong"] is True and got["rows"][3]["ratio"] is None


def test_the_database_is_only_read(db):
    before = db.read_bytes()
    cli.invoke(app, ["standing", "--db", str(db), "--run", RUN, "--backend", "mine", "--peers", "a,b"])
    assert db.read_bytes() == before and not db.with_name(db.name + "-wal").exists()


# -- duty cycles in the sustained mode --------------------------------------------------------------------


def gated(r: Result, batch: int = 38, gate_ms: float = 14.6, probe_ms: float = 0.135) -> Result:
    """A sustained row the way a host-bound cell stores it: timed in batches behind holds."""
    r.extra.update(sustained_gated=True, sustained_batch=batch, sustained_gate_ms=gate_ms, sustained_probe_ms=probe_ms)
    return r


def test_a_ratio_between_a_gated_peer_and_a_back_to_back_backend_is_flagged_with_the_peers_busy_share(tmp_path):
    path = tmp_path / "g.db"
    build(path, [cell("mine", 1, 1.0, mode="sustained"), gated(cell("a", 1, 0.9, mode="sustained")),
                 cell("mine", 2, 1.0, mode="sustained"), cell("a", 2, 1.1, mode="sustained")])
    s = compute(path, peers=("a",), mode="sustained")
    assert row(s, 1).mixed_duty and not row(s, 2).mixed_duty and s.mixed_duty == 1
    busy = 38 * 0.135
    assert row(s, 1).peers[0].duty == pytest.approx(busy / (busy + 14.6)) and row(s, 1).duty is None
    res = cli.invoke(app, ["standing", "--db", str(path), "--run", RUN, "--backend", "mine", "--peers", "a",
                           "--mode", "sustained"])
    assert res.exit_code == 0, res.output
    assert "(g 26%)" in res.output and "0.900*" in res.output
    assert "1 of 2 ratios compare a row timed gated" in res.output


def test_two_gated_rows_or_two_back_to_back_rows_are_not_flagged(tmp_path):
    path = tmp_path / "g.db"
    build(path, [gated(cell("mine", 1, 1.0, mode="sustained")), gated(cell("a", 1, 0.9, mode="sustained"))])
    s = compute(path, peers=("a",), mode="sustained")
    assert s.mixed_duty == 0 and row(s, 1).duty is not None
