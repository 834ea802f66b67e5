// The causal-mask rule of api.h (bottom-right aligned, FlashAttention >= 2.1) and what it implies
// for tiling: query row i attends key j iff j <= i + (seqlen_k - seqlen_q).
#pragma once

namespace flashcore {
namespace common {

__host__ __device__ inline bool causal_allows(int row, int col, int seqlen_q, int seqlen_k) {
  return col <= row + (seqlen_k - seqlen_q);
}

// One past the last key any row of the query tile [m0, m0 + bm) may attend: tiles starting at or after
// it lie entirely above the diagonal and are skipped. Can be <= 0 (the whole tile attends nothing).
__host__ __device__ inline int kv_end_for_tile(int m0, int bm, int seqlen_q, int seqlen_k, bool causal) {
  if (!causal) return seqlen_k;
  const long long last_row = static_cast<long long>(m0) + bm - 1;
  const long long end = last_row + (seqlen_k - seqlen_q) + 1;
  return static_cast<int>(end < seqlen_k ? end : seqlen_k);
}

// True if some element of key tile [n0, n0 + bn) x query tile [m0, m0 + bm) needs a mask: the tile
// runs past seqlen_k, or (causal) its last key lies right of the first row's diagonal.
__host__ __device__ inline bool tile_needs_mask(int m0, int n0, int bn, int seqlen_q, int seqlen_k, bool causal) {
  if (n0 + bn > seqlen_k) return true;
  return causal && !causal_allows(m0, n0 + bn - 1, seqlen_q, seqlen_k);
}

}  // namespace common
}  // namespace flashcore
