// Epilogue: normalise O, write LSE straight from registers, stage O (16-bit) in the warpgroup's own
// slice of the Q tile (free once its last Q K^T has completed) in the 128-byte-swizzled layout, and
// store it with TMA, which drops rows >= seqlen_q.
#pragma once
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "bleeding_edge/mbarrier.cuh"
#include "bleeding_edge/tma.cuh"

namespace flashcore { namespace be {

template <bool kBF16>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (kBF16) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  } else {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// Named barrier over the 128 threads of one warpgroup (ids 1..NCWG).
__device__ __forceinline__ void wg_bar_sync(int id) { named_bar_sync<128>(id); }

// o: the warpgroup's m64nDk16 accumulator, already normalised. slice: smem address of the
// warpgroup's 64-row slice of chunk 0; chunk_stride: bytes between 64-column chunks.
// Row rr (0..63) of a chunk lives at rr*128; its 16-byte piece j at (j ^ (rr % 8)) * 16.
template <bool kBF16, int D>
__device__ __forceinline__ void stage_o_smem(const float (&o)[D / 2], uint32_t slice, uint32_t chunk_stride,
                                             int warp_w, int lane) {
  const int rr0 = warp_w * 16 + (lane >> 2);  // rr0 % 8 == (rr0 + 8) % 8 == lane >> 2
  const int sw = lane >> 2;
#pragma unroll
  for (int cb = 0; cb < D / 8; ++cb) {  // 8-column blocks
    const int c = cb / 8, j = cb % 8;
    const uint32_t a = slice + c * chunk_stride + rr0 * 128 + ((j ^ sw) << 4) + ((lane & 3) << 2);
    st_shared_b32(a, pack2<kBF16>(o[4 * cb + 0], o[4 * cb + 1]));
    st_shared_b32(a + 8 * 128, pack2<kBF16>(o[4 * cb + 2], o[4 * cb + 3]));
  }
}

}}  // namespace flashcore::be
