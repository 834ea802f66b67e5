// Ping-pong between the consumer warpgroups (FA3's "warp scheduler barrier"): the warpgroups take turns
// to issue their GEMMs, so while one warpgroup's wgmmas run on the tensor cores the others do their
// softmax, instead of every warpgroup issuing at once and then all of them waiting on the exponentials.
//
// One named barrier per consumer warpgroup, each of NCWG * 128 threads: warpgroup w waits on its own
// (bar.sync, 128 threads) before it issues, and after issuing it arrives (bar.arrive, 128 threads) on the
// barriers of the other NCWG - 1 warpgroups. At the start every warpgroup w > 0 arrives on the barriers of
// the warpgroups before it, so the turn order is 0, 1, .., NCWG-1, 0, ... Every warpgroup of a CTA takes
// the same number of turns per tile (they share the tile's key range), so the order carries over from
// tile to tile; the last turn's arrivals are left pending when the CTA exits, which ends them.
#pragma once
#include "bleeding_edge/mbarrier.cuh"

namespace flashcore { namespace be {

template <int NCWG, bool kEnabled>
struct PingPong {
  // ids 0 (__syncthreads) and 1..NCWG (the epilogue's per-warpgroup barriers) are taken
  static constexpr int kFirstId = 1 + NCWG;
  static constexpr int kThreads = 128 * NCWG;
  static_assert(kFirstId + NCWG <= 16, "named barrier ids");

  // Before the consumer loop of the kernel (not per tile).
  __device__ __forceinline__ static void start(int cw) {
    if constexpr (kEnabled) {
#pragma unroll
      for (int w = 0; w < NCWG - 1; ++w)
        if (w < cw) named_bar_arrive<kThreads>(kFirstId + w);
    }
  }
  // Wait for warpgroup cw's turn to issue.
  __device__ __forceinline__ static void wait_turn(int cw) {
    if constexpr (kEnabled) named_bar_sync<kThreads>(kFirstId + cw);
  }
  // cw has issued: the others may take their turns.
  __device__ __forceinline__ static void end_turn(int cw) {
    if constexpr (kEnabled) {
#pragma unroll
      for (int k = 1; k < NCWG; ++k) named_bar_arrive<kThreads>(kFirstId + (cw + k) % NCWG);
    }
  }
};

}}  // namespace flashcore::be
