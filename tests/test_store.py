"""The results store: append-as-you-go, resume bookkeeping, exports with the promised columns."""
import sqlite3

import pytest

from harness.records.result import Result
from harness.spec.problem import Problem
from harness.store.database import RunInfo, Store, StoreError, now
from harness.views.export import EXPORT_COLUMNS, ExportError, export

P = Problem(batch=1, heads_q=2, seqlen_q=16, head_dim=64)


def fill(store: Store, run_id: str = "r1") -> None:
    store.create_run(RunInfo(run_id=run_id, suite="smoke", created_at=now(), env={"gpu": "NVIDIA H100 80GB HBM3"}))
    store.add_result(Result.for_problem(run_id, "smoke", "naive", P, "ok", median_ms=1.0, tflops=0.5,
                                        max_abs_err=1e-3, passed=True, deterministic=True, extra={"samples_ms": [1.0]}))
    store.add_result(Result.for_problem(run_id, "smoke", "fa2", P, "skipped", "flash_attn not importable"))


def test_results_round_trip_with_types(tmp_path):
    with Store(tmp_path / "r.db") as s:
        fill(s)
        rows = list(s.iter_results("r1"))
    assert [r.backend for r in rows] == ["naive", "fa2"]
    assert rows[0].passed is True and rows[0].extra == {"samples_ms": [1.0]}
    assert rows[1].status == "skipped" and rows[1].reason


def test_each_result_is_committed_immediately(tmp_path):
    s = Store(tmp_path / "r.db")
    fill(s)
    # a second connection (another process, or after a kill -9) sees every row at once
    other = sqlite3.connect(tmp_path / "r.db")
    assert other.execute("select count(*) from results").fetchone()[0] == 2


def test_done_cells_drive_resume(tmp_path):
    with Store(tmp_path / "r.db") as s:
        fill(s)
        assert s.done_cells("r1") == {("naive", P.key()), ("fa2", P.key())}
        assert s.latest_run_id("smoke") == "r1"


def test_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope.db", create=False)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    f = tmp_path / "junk.db"
    f.write_text("not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a flashcore results database"):
        Store(f)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_has_the_promised_columns_first_and_one_row_per_cell(tmp_path, fmt):
    pd = pytest.importorskip("pandas")
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    with Store(tmp_path / "r.db") as s:
        fill(s)
        out = tmp_path / f"x.{fmt}"
        assert export(s, fmt, out) == 2
    df = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(df.columns[: len(EXPORT_COLUMNS)]) == EXPORT_COLUMNS
    assert set(df["status"]) == {"ok", "skipped"}
    assert set(df["gpu"]) == {"NVIDIA H100 80GB HBM3"}


def test_export_rejects_unknown_format_and_run(tmp_path):
    with Store(tmp_path / "r.db") as s:
        fill(s)
        with pytest.raises(ExportError, match="allowed csv, parquet"):
            export(s, "xlsx", tmp_path / "x")
        with pytest.raises(ExportError, match="no run 'zzz'"):
            export(s, "csv", tmp_path / "x.csv", ["zzz"])
