// Tile order and per-tile key-block ranges.
//
// Grid = (m-blocks, heads_q, batch), one CTA per BM x head_dim output tile (not persistent). For
// causal masks the m-blocks are issued heaviest first (the block scheduler dispatches blockIdx.x
// fastest), which evens out the tail of the grid.
//
// Key blocks are visited from the highest down ("it" = 0, 1, ... over n = n_max-1, n_max-2, ...), so
// the only blocks that need masking (the ragged last key block, and the causal diagonal) come first.
// Causal masking is bottom-right aligned: row i sees key j iff j <= i + (Sk - Sq).
#pragma once

namespace flashcore { namespace be {

struct TileCoord {
  int m_block, head, batch;
};

template <bool kCausal>
__device__ __forceinline__ TileCoord tile_coord() {
  TileCoord t;
  t.m_block = kCausal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
  t.head = blockIdx.y;
  t.batch = blockIdx.z;
  return t;
}

// Persistent kernels: tile t -> (m-block fastest, then head, then batch).
__device__ __forceinline__ TileCoord decode_tile(int t, int num_m_blocks, int heads) {
  TileCoord c;
  c.m_block = t % num_m_blocks;
  const int bh = t / num_m_blocks;
  c.head = bh % heads;
  c.batch = bh / heads;
  return c;
}

struct KeyRange {
  int n_max;         // key blocks [0, n_max) are visited; 0 means the tile attends nothing
  int n_nomask_end;  // key blocks n >= n_nomask_end need element masking
};

template <bool kCausal, int BM, int BN>
__device__ __forceinline__ KeyRange key_range(int m0, int Sq, int Sk) {
  KeyRange r;
  const int nblk = (Sk + BN - 1) / BN;
  const int full = Sk / BN;  // blocks with no key >= Sk
  if constexpr (kCausal) {
    const int off = Sk - Sq;
    const int last = m0 + BM - 1 + off;  // the largest key any row of the tile may see
    r.n_max = last < 0 ? 0 : min(nblk, last / BN + 1);
    const int t = m0 + off + 1;  // block n is fully visible to every row iff (n+1)*BN <= t
    r.n_nomask_end = min(full, t <= 0 ? 0 : t / BN);
  } else {
    r.n_max = nblk;
    r.n_nomask_end = full;
  }
  return r;
}

}}  // namespace flashcore::be
