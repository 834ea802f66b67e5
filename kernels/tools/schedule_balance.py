"""How evenly the persistent schedules of the bleeding-edge kernel spread causal work over the CTAs: per CTA,
the key blocks of the tiles it computes, for the fa-paper shapes; printed as max / mean (1.00 = even; the
CTA with the most work sets the kernel's time).

    python kernels/tools/schedule_balance.py [--ctas 132] [--d 128]

Mirrors scheduler.cuh: TileOrder's causal order (L2 sections of (batch, head) pairs, heaviest m-block first,
pairs fastest) under the static scheduler's fixed stride, and the dynamic scheduler's claims (each CTA takes
the next tile when it finishes one, modelled as the least-loaded CTA taking it). BM = BN = 128 (d128) or
BM 192, BN 128 (d64); a tile of m-block m has the key blocks up to the diagonal.
"""
from __future__ import annotations

import argparse
import heapq


def causal_order(num_m: int, pairs: int, section: int) -> list[int]:
    """m-blocks of the tiles in TileOrder<causal>'s order."""
    out = []
    for first in range(0, pairs, section):
        n = min(section, pairs - first)
        out += [num_m - 1 - r // n for r in range(n * num_m)]
    return out


def section_for(seqlen: int, d: int, hq_per_kv: int = 1) -> int:
    kv_head_bytes = seqlen * d * 2 * 2
    kv_heads = max(1, (32 << 20) // kv_head_bytes)
    pow2 = 1
    while 2 * pow2 <= kv_heads:
        pow2 *= 2
    return pow2 * hq_per_kv


def blocks(m: int, bm: int, bn: int) -> int:
    return ((m + 1) * bm + bn - 1) // bn


def static_stride(work: list[int], ctas: int) -> list[int]:
    per = [0] * ctas
    for t, w in enumerate(work):
        per[t % ctas] += w
    return per


def dynamic(work: list[int], ctas: int) -> list[int]:
    heap = [(0, c) for c in range(ctas)]
    for w in work:
        load, c = heapq.heappop(heap)
        heapq.heappush(heap, (load + w, c))
    return [load for load, _ in heap]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ctas", type=int, default=132)
    ap.add_argument("--d", type=int, default=128, choices=(64, 128))
    a = ap.parse_args()
    bm, bn = (128, 128) if a.d == 128 else (192, 128)
    print(f"d{a.d} causal, {a.ctas} CTAs: max / mean key blocks per CTA")
    for s in (512, 1024, 2048, 4096, 8192, 16384):
        num_m, pairs = (s + bm - 1) // bm, (16384 // s) * (2048 // a.d)
        work = [blocks(m, bm, bn) for m in causal_order(num_m, pairs, min(section_for(s, a.d), pairs))]
        ratio = {name: max(f(work, a.ctas)) / (sum(work) / a.ctas) for name, f in
                 (("static", static_stride), ("dynamic", dynamic))}
        print(f"  S {s:>5}: {len(work)} tiles, static {ratio['static']:.3f}, dynamic {ratio['dynamic']:.3f}")


if __name__ == "__main__":
    main()
