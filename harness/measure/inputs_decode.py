"""A decode problem's KV cache as a shuffled page pool, and the page table that says where each sequence's
tokens are.

The pool holds exactly ``batch · pages_per_seq`` pages of ``page_size`` tokens, ``[pages, page_size, heads_kv,
head_dim]`` (FlashAttention's and FlashInfer's NHD paged layout); the pages are a permutation of the pool
seeded by the problem's key, so no sequence's pages are contiguous or in order. The slots past ``seqlen_k``
in a sequence's last page hold large finite values (keys ×8, values ×60): a kernel that reads them into
its softmax is far off the reference, while one that loads and masks them is not affected (finite, so
0·value stays 0).

``paging(problem, device)`` is shared by the harness (inputs, reference) and by backends, which must
clone what they pass to a kernel (``Paging.for_backend``): the harness's copy stays its own.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import torch

from harness.measure.inputs import make_inputs
from harness.spec.kinds.decode import pages_per_seq
from harness.spec.problem import Problem

JUNK_K, JUNK_V = 8.0, 60.0


@dataclass(frozen=True)
class Paging:
    page_size: int  # 0: contiguous
    pages_per_seq: int
    num_pages: int
    page_table: torch.Tensor | None  # int32 [batch, pages_per_seq]: page ids in sequence order
    owner: torch.Tensor | None  # int64 [num_pages]: the sequence each page belongs to
    token_slots: torch.Tensor | None  # int64 [batch, seqlen_k]: each token's row in the flattened pool
    cache_seqlens: torch.Tensor  # int32 [batch]: seqlen_k for every sequence

    def for_backend(self) -> dict[str, torch.Tensor | None]:
        """Copies a backend may hand to a kernel (the harness's own tensors stay untouched)."""
        return {"page_table": None if self.page_table is None else self.page_table.clone(),
                "cache_seqlens": self.cache_seqlens.clone()}


@lru_cache(maxsize=4)
def _paging(key: str, batch: int, seqlen_k: int, page_size: int, device: str) -> Paging:
    seqlens = torch.full((batch,), seqlen_k, dtype=torch.int32, device=device)
    if not page_size:
        return Paging(0, 0, 0, None, None, None, seqlens)
    pps = pages_per_seq(seqlen_k, page_size)
    n = batch * pps
    gen = torch.Generator().manual_seed(zlib.crc32(f"pages|{key}".encode()))
    perm = torch.randperm(n, generator=gen)
    table = perm.view(batch, pps)
    owner = torch.empty(n, dtype=torch.int64)
    owner[perm] = torch.arange(batch).repeat_interleave(pps)
    t = torch.arange(seqlen_k)
    slots = table[:, t // page_size] * page_size + (t % page_size)
    return Paging(page_size, pps, n, table.to(torch.int32).to(device), owner.to(device), slots.to(device), seqlens)


def paging(problem: Problem, device: str | torch.device) -> Paging:
    return _paging(problem.key(), problem.batch, problem.seqlen_k, problem.page_size, str(torch.device(device)))


def to_pool(problem: Problem, logical: torch.Tensor, junk: torch.Tensor) -> torch.Tensor:
    """The pool holding ``logical`` ([b, sk, h, d]) at the page table's slots, ``junk`` elsewhere."""
    pg = paging(problem, logical.device)
    pool = junk.reshape(pg.num_pages * pg.page_size, *logical.shape[2:]).clone()
    pool[pg.token_slots.reshape(-1)] = logical.reshape(-1, *logical.shape[2:])
    return pool.view(pg.num_pages, pg.page_size, *logical.shape[2:])


def gather(problem: Problem, cache: torch.Tensor) -> torch.Tensor:
    """The logical ``[b, sk, h, d]`` cache: the cache itself when contiguous, else read through the table."""
    if not problem.page_size:
        return cache
    pg = paging(problem, cache.device)
    return cache.reshape(-1, *cache.shape[2:])[pg.token_slots]


def make_decode_inputs(problem: Problem, seed: int, distribution: str,
                       device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q ``[b, sq, hq, d]``; k and v the cache: ``[b, sk, hkv, d]`` or the page pool."""
    q, k, v = make_inputs(problem, seed, distribution, device)
    if not problem.page_size:
        return q, k, v
    pg = paging(problem, device)
    shape = (pg.num_pages, pg.page_size, problem.heads_kv, problem.head_dim)
    gen = torch.Generator(device=device).manual_seed(zlib.crc32(f"junk|{seed}".encode()))
    junk_k = torch.randn(shape, generator=gen, device=device).mul_(JUNK_K).to(k.dtype)
    junk_v = torch.randn(shape, generator=gen, device=device).mul_(JUNK_V).to(v.dtype)
    return q, to_pool(problem, k, junk_k), to_pool(problem, v, junk_v)
