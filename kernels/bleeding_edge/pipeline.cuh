// The producer/consumer pipeline of the forward kernel: its mbarrier block and the position in a ring.
//
// Barriers (8 bytes each, one block in shared memory):
//   q_full            1 arrival (the producer's expect_tx) + the Q tile's bytes
//   q_empty           one arrival per consumer warp once its last Q K^T of the tile has completed
//                     (persistent schedules only: the next tile's Q may then overwrite the buffer)
//   k_full[s], v_full[s]    1 arrival + one K (V) block's bytes, per ring stage s
//   k_empty[s], v_empty[s]  one arrival per consumer warp once it no longer reads stage s
//
// PipelineState is where one side stands in a ring of STAGES buffers: the stage index and the parity
// of the current use of that stage's barriers. Both sides start at {0, 0} and advance once per block;
// "full" barriers are awaited with `phase`, "empty" ones (by the producer) with `phase ^ 1`, which passes
// at once on a fresh barrier (see mbarrier.cuh). The Q buffer is a ring of one.
#pragma once
#include <cstdint>
#include "bleeding_edge/mbarrier.cuh"

namespace flashcore { namespace be {

template <int STAGES>
struct PipelineState {
  int index = 0;
  uint32_t phase = 0;

  __device__ __forceinline__ void advance() {
    if (++index == STAGES) {
      index = 0;
      phase ^= 1u;
    }
  }
  __device__ __forceinline__ PipelineState next() const {
    PipelineState s = *this;
    s.advance();
    return s;
  }
};

// Addresses of the barrier block at `base`; NCWARPS = consumer warps (the arrivals an "empty" barrier
// waits for).
template <int STAGES, int NCWARPS>
struct PipelineBarriers {
  static constexpr int kCount = 2 + 4 * STAGES;
  uint32_t base;

  __device__ __forceinline__ uint32_t q_full() const { return base; }
  __device__ __forceinline__ uint32_t q_empty() const { return base + 8u; }
  __device__ __forceinline__ uint32_t k_full(int s) const { return base + 8u * (2 + s); }
  __device__ __forceinline__ uint32_t v_full(int s) const { return base + 8u * (2 + STAGES + s); }
  __device__ __forceinline__ uint32_t k_empty(int s) const { return base + 8u * (2 + 2 * STAGES + s); }
  __device__ __forceinline__ uint32_t v_empty(int s) const { return base + 8u * (2 + 3 * STAGES + s); }

  // One thread initialises; the caller synchronises the CTA before any use.
  __device__ __forceinline__ void init() const {
    mbar_init(q_full(), 1);
    mbar_init(q_empty(), NCWARPS);
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(k_full(s), 1);
      mbar_init(v_full(s), 1);
      mbar_init(k_empty(s), NCWARPS);
      mbar_init(v_empty(s), NCWARPS);
    }
    mbar_fence_init();
  }
};

}}  // namespace flashcore::be
