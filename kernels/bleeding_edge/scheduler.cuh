// Tile schedulers: which output tiles (BM query rows of one head of one batch) a CTA computes, in what
// order; and each tile's key-block range.
//
// The kernel body is one loop for every scheduler, on each side of the pipeline:
//   for (auto w = sched.first(); w.valid; w = sched.next<kProducer>(w)) { ... w.tile ... }
// A scheduler is a small type with
//   kPersistent           whether a CTA may compute several tiles (the kernel then stages O in its own
//                         buffer and hands the Q buffer back through the q_empty barrier);
//   kNeedsCounter         whether Params needs a zeroed int in global memory;
//   kProducerWarp         whether the producer's whole warp calls next<true> (it meets the consumers at a
//                         named barrier there), not only the thread that issues the loads;
//   kSmemBytes, init()    shared memory of its own (set up by one thread before the CTA's first
//                         __syncthreads);
//   Params, make(...)     built on the host, passed to the kernel by value;
//   grid(params, sms)     the launch grid;
//   first(), next<P>(w)   the CTA's work, each a Work {valid, tile, idx}; P says which side asks (the
//                         producer or a consumer thread), for schedulers that hand tiles from one
//                         to the other. The consumers ask once per tile, after the tile's last Q K^T
//                         (before its last P V and epilogue), the producer after issuing the tile's loads.
//
// SingleTileScheduler: grid (m-blocks, heads_q, batch), one tile per CTA. For causal masks the
//   m-blocks are issued heaviest first (the block scheduler dispatches blockIdx.x fastest), which evens
//   out the tail of the grid.
// StaticPersistentScheduler: min(#tiles, #SMs) CTAs; CTA c computes tiles c, c + gridDim.x, ... of one
//   fixed order (TileOrder). Non-causal: m-block fastest, then head, then batch (CTAs running together
//   share one head's K/V in L2). Causal: longest-processing-time first within L2 sections: the
//   (batch, head) pairs are cut into sections whose K/V fit a share of L2; within a section tiles go
//   from the heaviest m-block (most key blocks) to the lightest, the section's (batch, head) pairs
//   fastest.
// DynamicPersistentScheduler: the same CTAs and order, but a CTA that finishes a tile takes the next
//   unclaimed one from a counter in global memory (atomicAdd), so heavy causal tiles do not pile up on
//   the CTAs that a fixed stride gives them. The producer thread claims the next tile as soon as it has
//   issued the current tile's loads and passes it to the consumers through shared memory and a named
//   barrier, once they have finished the tile's last Q K^T. The counter must be zero before a launch; the thread that
//   makes the launch's last claim sets it back to zero, so one counter serves launches in sequence on
//   one stream (never two launches at once).
//
// Key blocks are visited from the highest down ("it" = 0, 1, ... over n = n_max-1, n_max-2, ...), so
// the only blocks that need masking (the ragged last key block, and the causal diagonal) come first.
// Causal masking is bottom-right aligned: row i sees key j iff j <= i + (Sk - Sq).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>
#include "bleeding_edge/mbarrier.cuh"
#include "bleeding_edge/pipeline.cuh"

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
  int sms;                 // resident CTAs: multiprocessors of the device times CTAs per SM
  long long kv_head_bytes; // bytes of K and V of one kv head (seqlen_k * head_dim * 2 tensors * 2 B)
  int hq_per_kv;           // query heads per kv head
  long long section_bytes; // K/V bytes one L2 section of the causal order may hold (TileOrder)
};

struct Work {
  bool valid;
  TileCoord tile;
  int idx;  // position in the scheduler's order (persistent schedulers)
};

template <bool kCausal>
struct SingleTileScheduler {
  static constexpr bool kPersistent = false;
  static constexpr bool kNeedsCounter = false;
  static constexpr bool kProducerWarp = false;
  static constexpr int kSmemBytes = 0;
  struct Params {
    TileShape shape;
  };

  static Params make(const TileShape& shape, const ScheduleHints&, int* /*counter*/) { return {shape}; }
  static dim3 grid(const Params& p, int /*sms*/) {
    return dim3((unsigned)p.shape.num_m_blocks, (unsigned)p.shape.heads, (unsigned)p.shape.batch);
  }
  __device__ static void init(uint32_t /*smem*/) {}

  __device__ SingleTileScheduler(const Params& params, uint32_t /*smem*/) : p(params) {}
  Params p;

  __device__ __forceinline__ Work first() const {
    const int m = kCausal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
    return {true, {m, (int)blockIdx.y, (int)blockIdx.z}, 0};
  }
  template <bool kProducer>
  __device__ __forceinline__ Work next(const Work&) { return {false, {0, 0, 0}, 0}; }
};

// The order persistent schedulers walk: tile index t -> coordinates (see the top of this file).
template <bool kCausal>
struct TileOrder {
  TileShape shape;
  int num_tiles;
  int section;  // (batch, head) pairs per L2 section (causal order only)

  // The caller has checked shape.count() + sms <= INT_MAX.
  static TileOrder make(const TileShape& shape, const ScheduleHints& h) {
    TileOrder o{shape, (int)shape.count(), 1};
    if (kCausal) {
      // K and V of `section` kv heads within a share of the 50 MB L2 (Cfg's SECTION_MB, 32 by default,
      // FlashAttention-3's choice too), the rest left to Q/O traffic; rounded down to a power of two of kv heads
      const long long budget = h.section_bytes;
      long long kv_heads = h.kv_head_bytes > 0 ? budget / h.kv_head_bytes : 1;
      if (kv_heads < 1) kv_heads = 1;
      int pow2 = 1;
      while (2ll * pow2 <= kv_heads && pow2 < (1 << 20)) pow2 *= 2;
      const long long hb = (long long)shape.heads * shape.batch;
      const long long s = (long long)pow2 * (h.hq_per_kv > 0 ? h.hq_per_kv : 1);
      o.section = (int)(s < hb ? s : hb);
    }
    return o;
  }

  __host__ __device__ __forceinline__ TileCoord decode(int t) const {
    const int nm = shape.num_m_blocks, heads = shape.heads;
    TileCoord c;
    if constexpr (!kCausal) {
      c.m_block = t % nm;
      const int bh = t / nm;
      c.head = bh % heads;
      c.batch = bh / heads;
    } else {
      // sections of `section` (batch, head) pairs; the last may be shorter
      const int hb_total = heads * shape.batch;
      const int per_section = section * nm;
      const int sec = t / per_section, r = t % per_section;
      const int first_hb = sec * section;
      const int n_hb = section < hb_total - first_hb ? section : hb_total - first_hb;
      const int hb = first_hb + r % n_hb;
      c.m_block = nm - 1 - r / n_hb;  // heaviest first
      c.head = hb % heads;
      c.batch = hb / heads;
    }
    return c;
  }
  __device__ __forceinline__ Work at(int t) const {
    const bool ok = t < num_tiles;
    return {ok, ok ? decode(t) : TileCoord{0, 0, 0}, t};
  }
};

template <bool kCausal>
struct StaticPersistentScheduler {
  static constexpr bool kPersistent = true;
  static constexpr bool kNeedsCounter = false;
  static constexpr bool kProducerWarp = false;
  static constexpr int kSmemBytes = 0;
  using Params = TileOrder<kCausal>;

  static Params make(const TileShape& shape, const ScheduleHints& h, int* /*counter*/) {
    return TileOrder<kCausal>::make(shape, h);
  }
  static dim3 grid(const Params& p, int sms) { return dim3((unsigned)(p.num_tiles < sms ? p.num_tiles : sms)); }
  __device__ static void init(uint32_t /*smem*/) {}

  __device__ StaticPersistentScheduler(const Params& params, uint32_t /*smem*/) : p(params) {}
  Params p;

  __device__ __forceinline__ Work first() const { return p.at((int)blockIdx.x); }
  template <bool kProducer>
  __device__ __forceinline__ Work next(const Work& w) { return p.at(w.idx + (int)gridDim.x); }
};

// Shared memory: two ints, slots for the next tile, used in turn. The producer thread hands each claimed
// tile to the consumers through one of them and one named barrier that both sides wait on (barrier.sync,
// unaligned: each side meets it at its own instruction, which synccheck flags under the aligned bar.sync), so
// every read and write of a slot is ordered by barriers compute-sanitizer's racecheck follows (an mbarrier
// arrive, st.async without a cluster, or bar.arrive on the consumers' side drew hazards or faults). The
// hand-off happens once per tile, where neither side loses time: the producer has issued every load of the
// current tile and waits anyway (its ring is full); the consumers have finished the tile's last Q K^T (the
// kernel body calls next<false> there, before the last P V and the epilogue). The producer writes slot
// k % 2 before hand-off k, the consumers read it after; the next write to that slot comes after hand-off
// k + 1, which no consumer passes before its read of slot k. kConsumerWarps: the kernel's consumer warps;
// the producer's whole warp calls next<true> (lane 0 claims), so every warp reaches the barrier converged.
template <bool kCausal, int kConsumerWarps>
struct DynamicPersistentScheduler {
  static constexpr bool kPersistent = true;
  static constexpr bool kNeedsCounter = true;
  static constexpr bool kProducerWarp = true;
  static constexpr int kSmemBytes = 16;
  // ids 0 (__syncthreads), 1..3 (epilogue), 4..6 (ping-pong) are taken
  static constexpr int kHandoffId = 15;
  static constexpr int kThreads = 32 * (kConsumerWarps + 1);
  struct Params {
    TileOrder<kCausal> order;
    int* counter;  // zero before the launch; left zero after it
  };

  static Params make(const TileShape& shape, const ScheduleHints& h, int* counter) {
    return {TileOrder<kCausal>::make(shape, h), counter};
  }
  static dim3 grid(const Params& p, int sms) {
    return dim3((unsigned)(p.order.num_tiles < sms ? p.order.num_tiles : sms));
  }
  __device__ static void init(uint32_t /*smem*/) {}

  __device__ DynamicPersistentScheduler(const Params& params, uint32_t smem_base) : p(params), slots(smem_base) {}
  Params p;
  uint32_t slots;
  uint32_t handoffs = 0;  // this thread's count; both sides make one per tile

  __device__ __forceinline__ Work first() const { return p.order.at((int)blockIdx.x); }

  // Producer (its warp; lane 0 claims): claim the next tile and publish it, also when it is past the end
  // (the consumers stop on it). Consumers: read what the producer published.
  template <bool kProducer>
  __device__ __forceinline__ Work next(const Work&) {
    const uint32_t slot = slots + 4u * (handoffs++ & 1u);
    int t = 0;
    if constexpr (kProducer) {
      if (threadIdx.x == 0) {
        const int v = atomicAdd(p.counter, 1);
        // claims 0 .. num_tiles - 1 are made in all (num_tiles - grid valid ones, one past the end per
        // CTA), so the claim of num_tiles - 1 is the launch's last: reset for the next launch
        if (v == p.order.num_tiles - 1) atomicExch(p.counter, 0);
        t = v + (int)gridDim.x;
        st_shared_b32(slot, (uint32_t)t);
      }
      t = __shfl_sync(0xffffffffu, t, 0);  // the claim, to the whole warp, which converges here
      barrier_sync_unaligned<kThreads>(kHandoffId);
    } else {
      __syncwarp();
      barrier_sync_unaligned<kThreads>(kHandoffId);
      t = (int)ld_shared_b32(slot);
    }
    return p.order.at(t);
  }
};

// Schedule kinds as a template argument of Cfg.
enum class Schedule : int { kSingleTile = 0, kStaticPersistent = 1, kDynamicPersistent = 2 };

template <Schedule S, bool kCausal, int kConsumerWarps>
struct SchedulerFor;
template <bool kCausal, int W>
struct SchedulerFor<Schedule::kSingleTile, kCausal, W> {
  using type = SingleTileScheduler<kCausal>;
};
template <bool kCausal, int W>
struct SchedulerFor<Schedule::kStaticPersistent, kCausal, W> {
  using type = StaticPersistentScheduler<kCausal>;
};
template <bool kCausal, int W>
struct SchedulerFor<Schedule::kDynamicPersistent, kCausal, W> {
  using type = DynamicPersistentScheduler<kCausal, W>;
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
