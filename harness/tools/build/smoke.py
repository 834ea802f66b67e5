"""Quick device checks of the built ops, outside pytest:

    python3 -m harness.tools.build.smoke                  # small ragged problems through every op (for
                                                    # compute-sanitizer memcheck / racecheck)
    python3 -m harness.tools.build.smoke --bench [--json PATH]   # CUDA-event timing at B16 H16 S2048

Timing: fresh random inputs, 5 warm-up runs, then the median of N runs each timed with its own pair of
CUDA events; TFLOPS = 4·B·H·Sq·Sk_eff·D / time (harness.spec.problem's convention).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from datetime import datetime, timezone


def _ops(names: list[str] | None):
    import torch

    from harness.tools.build import load_ops, loaded_ops

    load_ops()
    avail = loaded_ops()
    chosen = names or [n for n in ("phase4", "phase4x", "bleeding_edge") if n in avail]
    return {n: getattr(torch.ops.flashcore, n) for n in chosen}


def smoke(names: list[str] | None) -> int:
    import torch

    ops = _ops(names)
    torch.manual_seed(0)
    bad = 0
    for dtype in (torch.float16, torch.bfloat16):
        for d in (64, 128):
            for causal in (False, True):
                q = torch.randn(1, 77, 2, d, device="cuda", dtype=dtype)
                k = torch.randn(1, 130, 1, d, device="cuda", dtype=dtype)
                v = torch.randn(1, 130, 1, d, device="cuda", dtype=dtype)
                for name, fn in ops.items():
                    for qq, kk, vv in ((q, k, v), (k.expand(1, 130, 2, d).contiguous(), q[:, :, :1].contiguous(),
                                                   q[:, :, 1:].contiguous())):
                        o, _lse = fn(qq, kk, vv, d ** -0.5, causal, True)
                        torch.cuda.synchronize()
                        finite = bool(torch.isfinite(o).all())
                        bad += not finite
                        print(f"{name:14s} {dtype!s:15s} d={d} causal={causal!s:5s} q{tuple(qq.shape)} "
                              f"k{tuple(kk.shape)} finite={finite}")
    print("smoke:", "FAILED" if bad else "ok")
    return 1 if bad else 0


def bench(names: list[str] | None, reps: int, out: str | None) -> int:
    import torch

    from harness.spec.problem import Problem

    ops = _ops(names)
    dev = torch.cuda.get_device_name()
    configs = [
        Problem(batch=16, heads_q=16, seqlen_q=2048, head_dim=64, dtype="float16", causal=False),
        Problem(batch=16, heads_q=16, seqlen_q=2048, head_dim=64, dtype="float16", causal=True),
        Problem(batch=16, heads_q=16, seqlen_q=2048, head_dim=128, dtype="float16", causal=False),
        Problem(batch=16, heads_q=16, seqlen_q=2048, head_dim=64, dtype="bfloat16", causal=False),
    ]
    rows = []
    impls = dict(ops)

    def sdpa(q, k, v, scale, causal, _lse):  # PyTorch's own fused attention, for scale
        o = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=scale)
        return o.transpose(1, 2), None

    impls["torch-sdpa"] = sdpa
    for p in configs:
        dt = getattr(torch, p.dtype)
        torch.manual_seed(1)
        q = torch.randn(p.batch, p.seqlen_q, p.heads_q, p.head_dim, device="cuda", dtype=dt)
        k = torch.randn(p.batch, p.seqlen_k, p.heads_kv, p.head_dim, device="cuda", dtype=dt)
        v = torch.randn(p.batch, p.seqlen_k, p.heads_kv, p.head_dim, device="cuda", dtype=dt)
        for name, fn in impls.items():
            for _ in range(5):
                fn(q, k, v, p.softmax_scale, p.causal, False)
            torch.cuda.synchronize()
            times = []
            for _ in range(reps):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn(q, k, v, p.softmax_scale, p.causal, False)
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b) * 1e-3)
            med = statistics.median(times)
            row = {"op": name, "problem": p.key(), "ms_median": med * 1e3, "ms_min": min(times) * 1e3,
                   "ms_max": max(times) * 1e3, "reps": reps, "tflops": p.flops() / med / 1e12,
                   "gbps_min_bytes": p.min_bytes() / med / 1e9}
            rows.append(row)
            print(f"{name:14s} {p.key():60s} {row['ms_median']:9.3f} ms  {row['tflops']:7.2f} TFLOPS "
                  f"(min {row['ms_min']:.3f} max {row['ms_max']:.3f})")
    meta = {"device": dev, "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "command": " ".join(["python3", "-m", "harness.tools.build.smoke", *sys.argv[1:]]),
            "method": "5 warm-up runs, then median of per-run CUDA-event times; TFLOPS = 4*B*H*pairs*D/time"}
    if out:
        with open(out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--ops", default="", help="comma-separated op names (default: every loaded op)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    names = [n for n in a.ops.split(",") if n] or None
    return bench(names, a.reps, a.json) if a.bench else smoke(names)


if __name__ == "__main__":
    sys.exit(main())
