// Tile schedulers: which output tiles (BM query rows of one head of one batch) a CTA computes, in what
// order; and each tile's key-block range.
//
// The kernel body is one loop for every scheduler:
//   for (auto w = sched.first(); w.valid; w = sched.next(w)) { ... w.tile ... }
// and a scheduler is a small value type with
//   kPersistent          whether a CTA may compute several tiles (the kernel then stages O in its own
//                        buffer and hands the Q buffer back through the q_empty barrier);
//   Params, make(...)    built on the host, passed to the kernel by value;
//   grid(params, sms)    the launch grid;
//   first(), next(w)     the CTA's work, each a Work {valid, tile}.
//
// SingleTileScheduler: grid (m-blocks, heads_q, batch), one tile per CTA. For causal masks the
//   m-blocks are issued heaviest first (the block scheduler dispatches blockIdx.x fastest), which evens
//   out the tail of the grid.
// StaticPersistentScheduler: min(#tiles, #SMs) CTAs; CTA c computes tiles c, c + gridDim.x, ... of one
//   fixed order. Non-causal: m-block fastest, then head, then batch (CTAs running together share one
//   head's K/V in L2). Causal: longest-processing-time first within L2 sections: the (batch, head) pairs
//   are cut into sections whose K/V fit a share of L2; within a section tiles go from the heaviest
//   m-block (most key blocks) to the lightest, the section's (batch, head) pairs fastest.
//   (A dynamic persistent scheduler, each CTA taking the next tile from a global counter, is not here.)
//
// Key blocks are visited from the highest down ("it" = 0, 1, ... over n = n_max-1, n_max-2, ...), so
// the only blocks that need masking (the ragged last key block, and the causal diagonal) come first.
// Causal masking is bottom-right aligned: row i sees key j iff j <= i + (Sk - Sq).
#pragma once
#include <cuda_runtime.h>

namespace flashcore { namespace be {

struct TileCoord {
  int m_block, head, batch;
};

// The output tiles of one launch.
struct TileShape {
  int num_m_blocks, heads, batch;
  __host__ __device__ long long count() const { return (long long)num_m_blocks * heads * batch; }
};

// What the host knows that a scheduler may use to order tiles.
struct ScheduleHints {
  int sms;                 // multiprocessors of the device
  long long kv_head_bytes; // bytes of K and V of one kv head (seqlen_k * head_dim * 2 tensors * 2 B)
  int hq_per_kv;           // query heads per kv head
};

template <bool kCausal>
struct SingleTileScheduler {
  static constexpr bool kPersistent = false;
  struct Params {
    TileShape shape;
  };
  struct Work {
    bool valid;
    TileCoord tile;
  };

  static Params make(const TileShape& shape, const ScheduleHints&) { return {shape}; }
  static dim3 grid(const Params& p, int /*sms*/) {
    return dim3((unsigned)p.shape.num_m_blocks, (unsigned)p.shape.heads, (unsigned)p.shape.batch);
  }

  Params p;

  __device__ __forceinline__ Work first() const {
    const int m = kCausal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
    return {true, {m, (int)blockIdx.y, (int)blockIdx.z}};
  }
  __device__ __forceinline__ Work next(const Work&) const { return {false, {0, 0, 0}}; }
};

template <bool kCausal>
struct StaticPersistentScheduler {
  static constexpr bool kPersistent = true;
  struct Params {
    TileShape shape;
    int num_tiles;
    int section;  // (batch, head) pairs per L2 section (causal order only)
  };
  struct Work {
    bool valid;
    TileCoord tile;
    int idx;
  };

  // The caller has checked shape.count() + sms <= INT_MAX.
  static Params make(const TileShape& shape, const ScheduleHints& h) {
    Params p{shape, (int)shape.count(), 1};
    if (kCausal) {
      // K and V of `section` kv heads within 32 MB of the 50 MB L2, the rest left to Q/O traffic (a
      // tuning constant, FlashAttention-3's choice too; rounded down to a power of two of kv heads)
      const long long budget = 32ll << 20;
      long long kv_heads = h.kv_head_bytes > 0 ? budget / h.kv_head_bytes : 1;
      if (kv_heads < 1) kv_heads = 1;
      int pow2 = 1;
      while (2ll * pow2 <= kv_heads && pow2 < (1 << 20)) pow2 *= 2;
      const long long hb = (long long)shape.heads * shape.batch;
      const long long s = (long long)pow2 * (h.hq_per_kv > 0 ? h.hq_per_kv : 1);
      p.section = (int)(s < hb ? s : hb);
    }
    return p;
  }
  static dim3 grid(const Params& p, int sms) { return dim3((unsigned)(p.num_tiles < sms ? p.num_tiles : sms)); }

  Params p;

  __host__ __device__ __forceinline__ TileCoord decode(int t) const {
    const int nm = p.shape.num_m_blocks, heads = p.shape.heads;
    TileCoord c;
    if constexpr (!kCausal) {
      c.m_block = t % nm;
      const int bh = t / nm;
      c.head = bh % heads;
      c.batch = bh / heads;
    } else {
      // sections of p.section (batch, head) pairs; the last may be shorter
      const int hb_total = heads * p.shape.batch;
      const int per_section = p.section * nm;
      const int sec = t / per_section, r = t % per_section;
      const int first_hb = sec * p.section;
      const int n_hb = p.section < hb_total - first_hb ? p.section : hb_total - first_hb;
      const int hb = first_hb + r % n_hb;
      c.m_block = nm - 1 - r / n_hb;  // heaviest first
      c.head = hb % heads;
      c.batch = hb / heads;
    }
    return c;
  }
  __device__ __forceinline__ Work at(int t) const {
    const bool ok = t < p.num_tiles;
    return {ok, ok ? decode(t) : TileCoord{0, 0, 0}, t};
  }
  __device__ __forceinline__ Work first() const { return at((int)blockIdx.x); }
  __device__ __forceinline__ Work next(const Work& w) const { return at(w.idx + (int)gridDim.x); }
};

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
