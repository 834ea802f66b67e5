// Phase 4.X of the seeds: the fused kernel with WMMA 16x16x16 tensor-core matmuls (FP32 accumulators),
// double-buffered cp.async K/V tiles, warp-shuffle row max/sum, 64x64 tiles, 8 warps, padded shared
// memory.
//
// Per K/V tile (4 block barriers):
//   (a) wait for the tile's cp.async group (the next tile's copy is already in flight)
//   S = Q·Kᵀ with WMMA; warp w owns S rows 16·(w/2).., columns 32·(w%2).. -> fp32 tile Ss in smem
//   (b) softmax: thread (w, lane) owns row 8·w + lane/4 and columns 4·(lane%4) + 16·jj .. +3; the
//       row's 4 owners are adjacent lanes, so max/sum are two xor-shuffles; P (16-bit) -> Ps in smem
//   (c) O_tile = P·V with WMMA; warp w owns rows 16·(w/2).., columns (D/2)·(w%2).. -> fp32 smem
//   (d) the softmax thread adds its O_tile elements into its register accumulator, which it scaled
//       by exp2(m_old - m_new) in (b). The accumulator's layout is ours (not the opaque WMMA fragment
//       layout), so the rescale needs no knowledge of fragment internals.
#include <mma.h>
#include <cmath>
#include <cstdint>
#include "flashcore/api.h"
#include "common/causal.cuh"
#include "common/checks.cuh"
#include "common/cp_async.cuh"
#include "common/dtype.cuh"
#include "common/query_tile_launch.cuh"

namespace flashcore {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kThreads = 256;  // 8 warps
constexpr int kBM = 64;
constexpr int kBN = 64;
using common::kLn2;
using common::QueryTileParams;

template <int D>
struct Phase4xCfg {
  // 16-bit tiles: +8 elements (16 B) per row keeps rows 16-byte aligned for cp.async and shifts
  // consecutive rows by 4 banks so WMMA fragment loads do not pile onto one bank.
  static constexpr int LDH = D + 8;
  static constexpr int LDP = kBN + 8;
  // fp32 tiles: pitch = 4 (mod 8) float4s, so the 8 lanes of a quarter-warp (2 rows x 4 column
  // groups) reading float4s hit 8 different bank quads.
  static constexpr int LDS = kBN + 16;
  static constexpr int LDO = D + 16;
  static constexpr int Q_BYTES = kBM * LDH * 2;
  static constexpr int KV_BYTES = kBN * LDH * 2;  // one K or V stage
  // Ss (S tile) and Os (P·V tile) are never live at once: one region.
  static constexpr int U_BYTES = kBM * (LDS > LDO ? LDS : LDO) * 4;
  static constexpr int P_BYTES = kBM * LDP * 2;
  static constexpr int SMEM_BYTES = Q_BYTES + 4 * KV_BYTES + U_BYTES + P_BYTES;
};
// The build report's table (harness/tools/build/kernels.py) quotes these; keep the two in step.
static_assert(Phase4xCfg<64>::SMEM_BYTES == 75776, "update harness/tools/build/kernels.py");
static_assert(Phase4xCfg<128>::SMEM_BYTES == 133120, "update harness/tools/build/kernels.py");

// Rows [r0, r0 + R) of a [rows, row_stride] 16-bit matrix into shared memory (pitch ld), 16 bytes per
// cp.async; rows at or past `rows` are zero-filled.
template <typename T, int D, int R>
__device__ inline void cp_async_tile(T* dst, int ld, const T* src, int64_t row_stride, int r0, int rows) {
  constexpr int kChunks = D / 8;
  static_assert(R * kChunks % kThreads == 0, "every thread copies the same number of chunks");
#pragma unroll
  for (int i = 0; i < R * kChunks / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int r = c / kChunks, d = (c % kChunks) * 8;
    const bool valid = r0 + r < rows;
    const T* g = valid ? src + (r0 + r) * row_stride + d : src;
    common::cp_async_16(dst + r * ld + d, g, valid);
  }
}

// Register caps: D=64 (74 KB smem) allows 2 blocks/SM worth of registers (128/thread); capping for 3
// blocks (85) made ptxas spill. D=128 (130 KB smem) runs one block per SM, so no cap below 255: without
// the hint ptxas stopped at 128 and spilled.
template <typename T, int D, bool kCausal>
__global__ void __launch_bounds__(kThreads, D == 64 ? 2 : 1) phase4x_fwd_kernel(const QueryTileParams kp) {
  using Cfg = Phase4xCfg<D>;
  constexpr int NJ_S = kBN / 16;  // float4 groups of S per softmax thread
  constexpr int NJ_O = D / 16;    // float4 groups of O per softmax thread
  constexpr int NF_O = D / 32;    // P·V accumulator fragments per warp

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = reinterpret_cast<T*>(smem_raw + Cfg::Q_BYTES);                     // [2][kBN][LDH]
  T* Vs = reinterpret_cast<T*>(smem_raw + Cfg::Q_BYTES + 2 * Cfg::KV_BYTES);  // [2][kBN][LDH]
  float* Us = reinterpret_cast<float*>(smem_raw + Cfg::Q_BYTES + 4 * Cfg::KV_BYTES);
  T* Ps = reinterpret_cast<T*>(smem_raw + Cfg::Q_BYTES + 4 * Cfg::KV_BYTES + Cfg::U_BYTES);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int m0 = (gridDim.x - 1 - blockIdx.x) * kBM;  // heaviest causal tiles first
  const int h = blockIdx.y, b = blockIdx.z, hk = h / kp.group;
  const int sq = kp.seqlen_q, sk = kp.seqlen_k;

  const int64_t q_row_stride = static_cast<int64_t>(kp.heads_q) * D;
  const int64_t kv_row_stride = static_cast<int64_t>(kp.heads_kv) * D;
  const T* qg = static_cast<const T*>(kp.q) + (static_cast<int64_t>(b) * sq * kp.heads_q + h) * D;
  const T* kg = static_cast<const T*>(kp.k) + (static_cast<int64_t>(b) * sk * kp.heads_kv + hk) * D;
  const T* vg = static_cast<const T*>(kp.v) + (static_cast<int64_t>(b) * sk * kp.heads_kv + hk) * D;
  T* og = static_cast<T*>(kp.o) + (static_cast<int64_t>(b) * sq * kp.heads_q + h) * D;

  // MMA roles
  const int mrow = 16 * (warp / 2);
  const int scol = 32 * (warp % 2);
  const int ocol = (D / 2) * (warp % 2);
  // softmax / accumulator role
  const int srow = 8 * warp + lane / 4;
  const int cq = lane % 4;

  float m_run = -INFINITY, l_run = 0.f;  // l_run: partial over this thread's columns
  float acc[NJ_O][4];
#pragma unroll
  for (int j = 0; j < NJ_O; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.f;

  const int n_end = common::kv_end_for_tile(m0, kBM, sq, sk, kCausal);
  const int n_tiles = n_end > 0 ? (n_end + kBN - 1) / kBN : 0;

  if (n_tiles > 0) {
    cp_async_tile<T, D, kBM>(Qs, Cfg::LDH, qg, q_row_stride, m0, sq);
    cp_async_tile<T, D, kBN>(Ks, Cfg::LDH, kg, kv_row_stride, 0, sk);
    cp_async_tile<T, D, kBN>(Vs, Cfg::LDH, vg, kv_row_stride, 0, sk);
  }
  common::cp_async_commit();

  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1, n0 = t * kBN;
    if (t + 1 < n_tiles) {  // prefetch the next tile into the other stage (freed by barrier (d) of t-1)
      cp_async_tile<T, D, kBN>(Ks + (buf ^ 1) * kBN * Cfg::LDH, Cfg::LDH, kg, kv_row_stride, n0 + kBN, sk);
      cp_async_tile<T, D, kBN>(Vs + (buf ^ 1) * kBN * Cfg::LDH, Cfg::LDH, vg, kv_row_stride, n0 + kBN, sk);
    }
    common::cp_async_commit();  // possibly empty: keeps "all but the newest group" = tile t
    common::cp_async_wait<1>();
    __syncthreads();  // (a) tile t visible to all; previous O_tile reads finished

    const T* Kt = Ks + buf * kBN * Cfg::LDH;
    const T* Vt = Vs + buf * kBN * Cfg::LDH;
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf[2];
      wmma::fill_fragment(sf[0], 0.f);
      wmma::fill_fragment(sf[1], 0.f);
#pragma unroll
      for (int kk = 0; kk < D; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa;
        wmma::load_matrix_sync(qa, Qs + mrow * Cfg::LDH + kk, Cfg::LDH);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          // Kᵀ as a column-major B operand is K's rows as stored.
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kb;
          wmma::load_matrix_sync(kb, Kt + (scol + 16 * j) * Cfg::LDH + kk, Cfg::LDH);
          wmma::mma_sync(sf[j], qa, kb, sf[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(Us + mrow * Cfg::LDS + scol + 16 * j, sf[j], Cfg::LDS, wmma::mem_row_major);
    }
    __syncthreads();  // (b)

    {
      const bool masked = common::tile_needs_mask(m0, n0, kBN, sq, sk, kCausal);
      const int row = m0 + srow;
      float s[NJ_S][4];
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < NJ_S; ++j) {
        const float4 v4 = *reinterpret_cast<const float4*>(&Us[srow * Cfg::LDS + 4 * cq + 16 * j]);
        s[j][0] = v4.x * kp.scale_log2;
        s[j][1] = v4.y * kp.scale_log2;
        s[j][2] = v4.z * kp.scale_log2;
        s[j][3] = v4.w * kp.scale_log2;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n0 + 4 * cq + 16 * j + e;
          if (masked && (col >= sk || (kCausal && !common::causal_allows(row, col, sq, sk)))) s[j][e] = -INFINITY;
          mx = fmaxf(mx, s[j][e]);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run, mx);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;  // fully masked so far: avoid inf - inf
      const float alpha = exp2f(m_run - m_use);
      m_run = m_new;
      l_run *= alpha;
#pragma unroll
      for (int j = 0; j < NJ_O; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][e] *= alpha;
#pragma unroll
      for (int j = 0; j < NJ_S; ++j) {
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          p[e] = exp2f(s[j][e] - m_use);
          l_run += p[e];
        }
        *reinterpret_cast<uint2*>(&Ps[srow * Cfg::LDP + 4 * cq + 16 * j]) = common::pack4<T>(p[0], p[1], p[2], p[3]);
      }
    }
    __syncthreads();  // (c) P complete; S reads done, so Us can take the P·V tile

    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[NF_O];
#pragma unroll
      for (int j = 0; j < NF_O; ++j) wmma::fill_fragment(of[j], 0.f);
#pragma unroll
      for (int kk = 0; kk < kBN; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
        wmma::load_matrix_sync(pa, Ps + mrow * Cfg::LDP + kk, Cfg::LDP);
#pragma unroll
        for (int j = 0; j < NF_O; ++j) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vb;
          wmma::load_matrix_sync(vb, Vt + kk * Cfg::LDH + ocol + 16 * j, Cfg::LDH);
          wmma::mma_sync(of[j], pa, vb, of[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < NF_O; ++j)
        wmma::store_matrix_sync(Us + mrow * Cfg::LDO + ocol + 16 * j, of[j], Cfg::LDO, wmma::mem_row_major);
    }
    __syncthreads();  // (d) O_tile complete; K/V stage `buf` free for the prefetch of tile t+2

#pragma unroll
    for (int j = 0; j < NJ_O; ++j) {
      const float4 v4 = *reinterpret_cast<const float4*>(&Us[srow * Cfg::LDO + 4 * cq + 16 * j]);
      acc[j][0] += v4.x;
      acc[j][1] += v4.y;
      acc[j][2] += v4.z;
      acc[j][3] += v4.w;
    }
  }
  common::cp_async_wait<0>();  // nothing may be in flight into shared memory when the block exits

  // Epilogue: O = acc / l, LSE = (m + log2 l)·ln2; a row with no attended key: O = 0, LSE = -inf.
  float lsum = l_run;
  lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
  lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
  const int row = m0 + srow;
  if (row < sq) {
    const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
    T* orow = og + row * q_row_stride;
#pragma unroll
    for (int j = 0; j < NJ_O; ++j)
      *reinterpret_cast<uint2*>(orow + 4 * cq + 16 * j) =
          common::pack4<T>(acc[j][0] * inv, acc[j][1] * inv, acc[j][2] * inv, acc[j][3] * inv);
    if (kp.lse != nullptr && cq == 0)
      kp.lse[(static_cast<int64_t>(b) * kp.heads_q + h) * sq + row] =
          lsum > 0.f ? (m_run + log2f(lsum)) * kLn2 : -INFINITY;
  }
}

}  // namespace

const char* supports_phase4x(const AttnParams& p) { return common::check_basic_problem(p); }

cudaError_t launch_phase4x(const AttnParams& p, cudaStream_t stream) {
  if (supports_phase4x(p) != nullptr) return cudaErrorInvalidValue;
  return common::dispatch_dtype_dim_causal(p, [&](auto type, auto dim, auto causal) {
    using T = typename decltype(type)::type;
    constexpr int D = decltype(dim)::value;
    static std::atomic<uint64_t> smem_set{0};  // one per instantiation of this lambda's body
    return common::launch_query_tiles(phase4x_fwd_kernel<T, D, decltype(causal)::value>, kBM, kThreads,
                                      Phase4xCfg<D>::SMEM_BYTES, smem_set, p, stream);
  });
}

}  // namespace flashcore
