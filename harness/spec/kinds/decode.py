"""``decode``: each of ``batch`` sequences brings ``seqlen_q`` (1–16) new query tokens that attend a KV cache
of ``seqlen_k`` tokens (the new tokens' keys are its last ``seqlen_q``; causal masks are bottom-right
aligned among them). The cache is contiguous (``page_size`` 0: K and V ``[batch, seqlen_k, heads_kv,
head_dim]``) or paged (``page_size`` P: a pool of ``batch · ceil(seqlen_k / P)`` pages
``[pages, P, heads_kv, head_dim]``, shuffled, with a page table ``[batch, ceil(seqlen_k / P)]`` int32 naming
each sequence's pages in order; the unused slots of a last page hold values no right kernel reads).

FLOPs: as dense (``4 · batch · heads_q · pairs · head_dim``). Minimum bytes: Q read and O written once,
the ``seqlen_k`` cached tokens of K and V read once per sequence (never the unused slots of a last page),
and the page table read once (``4 · batch · pages_per_seq`` bytes; 0 for a contiguous cache).
"""
from __future__ import annotations

MAX_QUERY = 16
#: page sizes FlashAttention, FlashInfer and vLLM use; others are refused to keep grids honest
PAGE_SIZES = (0, 1, 8, 16, 32, 64, 128, 256, 512, 1024)


def pages_per_seq(seqlen_k: int, page_size: int) -> int:
    return -(-seqlen_k // page_size) if page_size else 0


def check(p) -> str | None:  # p: Problem (not imported: this module is imported by it)
    if not (1 <= p.seqlen_q <= MAX_QUERY):
        return f"seqlen_q={p.seqlen_q}: a decode problem has 1 to {MAX_QUERY} query tokens per sequence"
    if p.seqlen_k is not None and p.seqlen_k < p.seqlen_q:
        return (f"seqlen_k={p.seqlen_k} < seqlen_q={p.seqlen_q}: the cache holds the new tokens' keys, "
                "so seqlen_k >= seqlen_q")
    if p.layout != "bshd":
        return f"layout={p.layout!r}: a decode cache is bshd (NHD pages) only"
    return None


def min_bytes(p, elem: int) -> int:
    q = p.batch * p.seqlen_q * p.heads_q * p.head_dim
    kv = 2 * p.batch * p.seqlen_k * p.heads_kv * p.head_dim
    return elem * (2 * q + kv) + 4 * p.batch * pages_per_seq(p.seqlen_k, p.page_size)
