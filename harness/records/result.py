"""One measured cell: a backend on a problem within a run. The unit the store keeps and exports."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

STATUSES = ("ok", "skipped", "failed", "rejected")


@dataclass
class Result:
    run_id: str
    suite: str
    backend: str
    problem_key: str
    status: str  # ok | skipped | failed | rejected
    reason: str = ""  # why, for every status but ok
    # problem
    batch: int = 0
    heads_q: int = 0
    heads_kv: int = 0
    seqlen_q: int = 0
    seqlen_k: int = 0
    head_dim: int = 0
    dtype: str = ""
    causal: bool = False
    softmax_scale: float = 0.0
    layout: str = "bshd"
    op: str = "fwd"  # fwd | bwd | fwd_bwd (rows from before operations: fwd)
    # serving shapes (harness.spec.kinds); rows from before them are dense with no window or soft cap
    kind: str = "dense"
    page_size: int = 0
    lengths: str = ""
    window_left: int = -1
    window_right: int = -1
    softcap: float = 0.0
    flops: float = 0.0
    min_bytes: int = 0
    # timing
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    rel_spread: float | None = None  # (p90 - p10) / median
    n_samples: int | None = None
    timing_method: str = ""  # e.g. "cuda-events+l2flush-read+hold+settle-tare"
    timing_mode: str = "isolated"  # isolated | sustained (harness.measure.timing.sustained); rows before it: isolated
    rounds: int | None = None  # visits of the interleaved rotation pooled into this row's samples
    stop_reason: str = ""  # which stopping criterion ended sampling
    wall_ms_per_call: float | None = None  # host wall clock cross-check, per call
    tflops: float | None = None
    gbs: float | None = None
    pct_peak: float | None = None  # of the matmul peak measured in the same run
    pct_bandwidth: float | None = None  # gbs as % of the copy bandwidth measured in the same run
    # correctness (worst over trials and distributions)
    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    rel_l2_err: float | None = None
    torch_max_abs_err: float | None = None  # PyTorch's own error in the input dtype
    tolerance: float | None = None  # the max-error bound applied
    seed_bounds_ok: bool | None = None  # max < 2e-3 and mean < 1e-3, reported beside
    nan_count: int | None = None
    inf_count: int | None = None
    # a backward's gradients, each against its float64 reference (worst over trials and distributions)
    dq_max_err: float | None = None
    dk_max_err: float | None = None
    dv_max_err: float | None = None
    dq_rel_l2_err: float | None = None
    dk_rel_l2_err: float | None = None
    dv_rel_l2_err: float | None = None
    timed_outputs_ok: bool | None = None
    deterministic: bool | None = None
    determinism_runs: int | None = None
    determinism_mismatches: int | None = None
    passed: bool | None = None
    error_text: str = ""
    # the GPU the cell ran on (harness.run.supervisor.Shard.stamp): the index as given to --gpus (the one
    # worker's GPU 0 without it; None on the CPU), its UUID as nvidia-smi spells it, and its name ("cpu")
    gpu_index: int | None = None
    gpu_uuid: str = ""
    gpu_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # per-distribution errors, clocks, samples…
    created_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def for_problem(cls, run_id: str, suite: str, backend: str, problem: Any, status: str,
                    reason: str = "", **kw: Any) -> Result:
        d = problem.as_dict()
        return cls(run_id=run_id, suite=suite, backend=backend, problem_key=problem.key(), status=status,
                   reason=reason, flops=problem.flops(), min_bytes=problem.min_bytes(), **d, **kw)
