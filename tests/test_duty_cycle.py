"""`flashcore diagnose duty-cycle`: its table from canned readings (the GPU loops run only on a GPU), a JSON it
wrote read back without a GPU, and its refusals."""
from __future__ import annotations

import json

import pytest

from harness.tools.diagnostics import duty_cycle as dc


def _cell() -> dc.CellReadings:
    c = dc.CellReadings("fa4", "b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-full-bshd", sets=3)
    for r, (gapless, flushed, bench) in enumerate([(1.78, 1.65, 1.64), (1.80, 1.66, 1.66)]):
        c.readings += [dc.LoopReading("gapless", r, gapless, 90, 1755.0, 699.0),
                       dc.LoopReading("flush-gaps", r, flushed, 85, 1905.0, 640.0),
                       dc.LoopReading("do_bench", r, bench, 60, 1910.0, 636.0)]
    return c


def test_the_report_gives_each_loop_its_rounds_clock_and_power_and_the_three_ratios():
    lines = dc.report([_cell()])
    assert lines[0] == "fa4 b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-full-bshd (3 input sets)"
    assert lines[1] == "  gapless         1.7900 ms  [1.7800, 1.8000]  SM 1755 MHz  699 W"
    assert lines[2] == "  flush-gaps      1.6550 ms  [1.6500, 1.6600]  SM 1905 MHz  640 W"
    assert lines[4] == f"  flush-gaps / do_bench: {1.655 / 1.65:.3f}"
    assert lines[5] == f"  gapless / flush-gaps: {1.79 / 1.655:.3f}"
    assert lines[6] == f"  gapless / do_bench: {1.79 / 1.65:.3f}"
    assert len(lines) == 7  # the one-set loops did not run: no ratio names them


def test_the_one_set_loops_are_compared_with_do_bench_and_with_the_rotated_loop():
    c = _cell()
    for r, (gapless1, flushed1) in enumerate([(1.70, 1.645), (1.72, 1.655)]):
        c.readings += [dc.LoopReading("gapless-one-set", r, gapless1, 90),
                       dc.LoopReading("flush-one-set", r, flushed1, 85)]
    lines = dc.report([c])
    assert "  flush-one-set   1.6500 ms  [1.6450, 1.6550]" in lines
    assert f"  flush-one-set / do_bench: {1.65 / 1.65:.3f}" in lines
    assert f"  gapless-one-set / do_bench: {1.71 / 1.65:.3f}" in lines
    assert f"  flush-gaps / flush-one-set: {1.655 / 1.65:.3f}" in lines


def test_each_round_starts_one_loop_later_so_every_loop_takes_every_place():
    n = len(dc.LOOPS)
    orders = [dc.round_order(r) for r in range(n)]
    assert all(sorted(o) == sorted(dc.LOOPS) for o in orders)
    for place in range(n):
        assert {o[place] for o in orders} == set(dc.LOOPS)
    assert dc.round_order(n) == orders[0]


def test_a_skipped_cell_says_why_and_has_no_ratios():
    lines = dc.report([dc.CellReadings("fa3", "k", error="skipped: fa3 is not importable")])
    assert lines == ["fa3 k", "  skipped: fa3 is not importable"]


def test_a_saved_json_prints_the_same_table_without_a_gpu(tmp_path, capsys):
    from dataclasses import asdict

    f = tmp_path / "d.json"
    f.write_text(json.dumps([asdict(_cell())]))
    dc.main(["--from-json", str(f)])
    assert capsys.readouterr().out.splitlines() == dc.report([_cell()])


@pytest.mark.parametrize("argv, says", [
    ([], "--cell BACKEND:PROBLEM_KEY is required"),
    (["--cell", "fa4"], "--cell BACKEND:PROBLEM_KEY is required"),
    (["--cell", "fa4:k", "--rounds", "0"], "allowed --rounds 1 to 20"),
    (["--cell", "fa4:no-such-problem"], "not a cell of suite 'fa-paper'"),
])
def test_bad_arguments_are_refused_in_one_line(argv, says):
    with pytest.raises(SystemExit) as e:
        dc.main(argv)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_command_is_registered():
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["diagnose", "--help"])
    assert res.exit_code == 0 and "duty-cycle" in res.output


@pytest.mark.gpu
def test_on_a_gpu_each_loop_gives_a_time_and_the_flush_shows_only_between_the_calls(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none visible); run on a Hopper GPU (H100/H200)")
    f = tmp_path / "d.json"
    dc.main(["--cell", "sdpa-flash:b32-hq32-hkv32-sq512-sk512-d64-bfloat16-full-bshd", "--rounds", "1",
             "--window-s", "0.05", "--warmup-s", "0.01", "--json", str(f)])
    [cell] = json.loads(f.read_text())
    got = {r["loop"]: r for r in cell["readings"]}
    assert set(got) == set(dc.LOOPS) and cell["sets"] >= 3
    assert all(r["median_ms"] > 0 and r["calls"] >= 10 for r in got.values())
    # the flush is outside the event pairs: the per-call times of the two loops stay within a few percent
    assert got["flush-gaps"]["median_ms"] == pytest.approx(got["gapless"]["median_ms"], rel=0.15)
