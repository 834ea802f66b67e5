"""Export results as one row per (run, backend, problem) to CSV or Parquet.

A cell measured again in its run (``flashcore run --retry-failed``) is exported as its latest result,
with ``attempts`` saying how many results it had in all; ``superseded=True`` adds the earlier ones as rows
of their own, told apart by ``superseded_at`` (empty on every current row)."""
from __future__ import annotations

from pathlib import Path

from harness.store.database import Store

#: the columns every export starts with, named exactly so
EXPORT_COLUMNS = ["run_id", "suite", "backend", "status", "reason", "batch", "heads_q", "heads_kv", "seqlen_q",
                  "seqlen_k", "head_dim", "dtype", "causal", "median_ms", "tflops", "max_abs_err",
                  "mean_abs_err", "nan_count", "deterministic", "passed", "gpu", "op"]
FORMATS = ("csv", "parquet")


class ExportError(ValueError):
    pass


def frame(store: Store, run_ids: list[str] | None = None, *, superseded: bool = False):
    import pandas as pd

    runs = store.runs_frame()
    gpus = {r.run_id: (r.env or {}).get("gpu", "") for r in store.list_runs()}
    df = store.results_frame()
    earlier = store.superseded_counts()
    df = df.assign(attempts=[1 + earlier.get(k, 0) for k in zip(df["run_id"], df["backend"], df["problem_key"])],
                   superseded_at="")
    if superseded:
        old = store.superseded_frame()
        if not old.empty:
            old = old.assign(attempts=[1 + earlier.get(k, 0)
                                       for k in zip(old["run_id"], old["backend"], old["problem_key"])])
            df = pd.concat([df, old[df.columns]], ignore_index=True)
    if run_ids:
        unknown = sorted(set(run_ids) - set(runs["run_id"]))
        if unknown:
            raise ExportError(f"no run {unknown[0]!r} in {store.path}")
        df = df[df["run_id"].isin(run_ids)]
    df = df.assign(gpu=df["run_id"].map(gpus).fillna(""))
    rest = [c for c in df.columns if c not in EXPORT_COLUMNS and c != "extra"]
    out = df[EXPORT_COLUMNS + rest].copy()
    out["extra"] = df["extra"].map(lambda d: __import__("json").dumps(d, default=str))
    return pd.DataFrame(out).reset_index(drop=True)


def export(store: Store, fmt: str, out: Path, run_ids: list[str] | None = None, *,
           superseded: bool = False) -> int:
    """Write the results (``superseded``: with the earlier results of re-measured cells) to ``out``;
    the number of rows."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: allowed {', '.join(FORMATS)}")
    df = frame(store, run_ids, superseded=superseded)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(out, index=False)
    else:
        try:
            df.to_parquet(out, index=False)
        except ImportError as exc:
            raise ExportError(f"parquet export needs pyarrow (pip install pyarrow): {exc}") from None
    return len(df)
