// Phase 4 ("Milestone 1" of the seeds): fused attention forward with scalar FP32 FMA matmuls.
//
// One block per (64-row query tile, head, batch); one pass over the key/value tiles. Each K/V tile is
// converted to fp32 in shared memory, S = Q·Kᵀ is computed into registers, masked, turned into P with
// an online softmax (running max m and sum l per row), staged in shared memory and multiplied into
// the O accumulator in registers. S and P never reach global memory; no tensor cores are used.
//
// Thread layout (256 threads = 16 x 16): thread (ty, tx) owns query rows 4·ty .. 4·ty+3 of the tile,
// S columns tx + 16·j, and O columns 4·tx + 64·jj .. +3. A row's 16 owners are 16 consecutive lanes
// of one warp, so row reductions are 4 xor-shuffles and the row's m and l never leave registers.
#include <cmath>
#include <cstdint>
#include "flashcore/api.h"
#include "common/causal.cuh"
#include "common/checks.cuh"
#include "common/dtype.cuh"
#include "common/query_tile_launch.cuh"

namespace flashcore {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 64;  // query rows per block
using common::kLn2;
using common::QueryTileParams;

// Shared-memory layout per head_dim. BN is halved for D=128 so two blocks still fit on an SM.
template <int D>
struct Phase4Cfg {
  static constexpr int BN = D == 64 ? 64 : 32;
  // +4 floats per row: the 16 lanes of a row group read 16 different K rows as float4; a row pitch
  // of D+4 floats puts them in 16 different bank quads (pitch/4 is odd).
  static constexpr int QLD = D + 4;
  static constexpr int KLD = D + 4;
  static constexpr int VLD = D;  // V is read along rows by consecutive lanes: conflict-free unpadded
  static constexpr int PLD = BN + 4;
  static constexpr int SMEM_BYTES = (kBM * QLD + BN * KLD + BN * VLD + kBM * PLD) * 4;
};
// The build report's table (harness/tools/build/kernels.py) quotes these; keep the two in step.
static_assert(Phase4Cfg<64>::SMEM_BYTES == 68608, "update harness/tools/build/kernels.py");
static_assert(Phase4Cfg<128>::SMEM_BYTES == 76288, "update harness/tools/build/kernels.py");

// Rows [r0, r0 + R) of a [rows, row_stride] 16-bit matrix -> fp32 shared memory with pitch `ld`,
// multiplied by `mul`. Rows at or past `rows` are zero: finite values that masking then discards.
template <typename T, int D, int R>
__device__ inline void load_tile_f32(float* dst, int ld, const T* src, int64_t row_stride, int r0, int rows,
                                     float mul) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(R * kChunks % kThreads == 0, "every thread loads the same number of chunks");
#pragma unroll
  for (int i = 0; i < R * kChunks / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int r = c / kChunks, d = (c % kChunks) * 8;
    float f[8];
    if (r0 + r < rows) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(src + (r0 + r) * row_stride + d));
      common::unpack8<T>(raw, f);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) f[e] = 0.f;
    }
    float4* out = reinterpret_cast<float4*>(dst + r * ld + d);
    out[0] = make_float4(f[0] * mul, f[1] * mul, f[2] * mul, f[3] * mul);
    out[1] = make_float4(f[4] * mul, f[5] * mul, f[6] * mul, f[7] * mul);
  }
}

template <typename T, int D, bool kCausal>
__global__ void __launch_bounds__(kThreads) phase4_fwd_kernel(const QueryTileParams kp) {
  using Cfg = Phase4Cfg<D>;
  constexpr int BN = Cfg::BN;
  constexpr int NJ = BN / 16;  // S columns per thread
  constexpr int NO = D / 64;   // float4 groups of O columns per thread

  extern __shared__ __align__(16) float smem[];
  float* Qs = smem;
  float* Ks = Qs + kBM * Cfg::QLD;
  float* Vs = Ks + BN * Cfg::KLD;
  float* Ps = Vs + BN * Cfg::VLD;

  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  // Heaviest causal tiles (last query rows) first, so the tail of the grid is short tiles.
  const int m0 = (gridDim.x - 1 - blockIdx.x) * kBM;
  const int h = blockIdx.y, b = blockIdx.z, hk = h / kp.group;
  const int sq = kp.seqlen_q, sk = kp.seqlen_k;

  const int64_t q_row_stride = static_cast<int64_t>(kp.heads_q) * D;
  const int64_t kv_row_stride = static_cast<int64_t>(kp.heads_kv) * D;
  const T* qg = static_cast<const T*>(kp.q) + (static_cast<int64_t>(b) * sq * kp.heads_q + h) * D;
  const T* kg = static_cast<const T*>(kp.k) + (static_cast<int64_t>(b) * sk * kp.heads_kv + hk) * D;
  const T* vg = static_cast<const T*>(kp.v) + (static_cast<int64_t>(b) * sk * kp.heads_kv + hk) * D;
  T* og = static_cast<T*>(kp.o) + (static_cast<int64_t>(b) * sq * kp.heads_q + h) * D;

  // Q pre-scaled by scale·log2(e): scores come out in log2 units, p = exp2(s - m) is one FADD + MUFU.
  load_tile_f32<T, D, kBM>(Qs, Cfg::QLD, qg, q_row_stride, m0, sq, kp.scale_log2);

  float m[4], l[4], o[4][NO][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;  // partial sum over this thread's columns; reduced across the row group at the end
#pragma unroll
    for (int jj = 0; jj < NO; ++jj)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[i][jj][e] = 0.f;
  }

  const int n_end = common::kv_end_for_tile(m0, kBM, sq, sk, kCausal);
  for (int n0 = 0; n0 < n_end; n0 += BN) {
    __syncthreads();  // previous tile's P·V is done with Ks/Vs/Ps (and Q is visible on the first pass)
    load_tile_f32<T, D, BN>(Ks, Cfg::KLD, kg, kv_row_stride, n0, sk, 1.f);
    load_tile_f32<T, D, BN>(Vs, Cfg::VLD, vg, kv_row_stride, n0, sk, 1.f);
    __syncthreads();

    // S = Q·Kᵀ for this thread's 4 x NJ scores, reading both operands as float4 along head_dim.
    float s[4][NJ];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < NJ; ++j) s[i][j] = 0.f;
#pragma unroll 4
    for (int d = 0; d < D; d += 4) {
      float4 a[4], kb[NJ];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<const float4*>(&Qs[(ty * 4 + i) * Cfg::QLD + d]);
#pragma unroll
      for (int j = 0; j < NJ; ++j) kb[j] = *reinterpret_cast<const float4*>(&Ks[(tx + 16 * j) * Cfg::KLD + d]);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
          s[i][j] = fmaf(a[i].x, kb[j].x, s[i][j]);
          s[i][j] = fmaf(a[i].y, kb[j].y, s[i][j]);
          s[i][j] = fmaf(a[i].z, kb[j].z, s[i][j]);
          s[i][j] = fmaf(a[i].w, kb[j].w, s[i][j]);
        }
    }

    const bool masked = common::tile_needs_mask(m0, n0, BN, sq, sk, kCausal);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + ty * 4 + i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const int col = n0 + tx + 16 * j;
        if (masked && (col >= sk || (kCausal && !common::causal_allows(row, col, sq, sk)))) s[i][j] = -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float m_new = fmaxf(m[i], mx);
      // A row with no key attended yet keeps m = -inf; subtracting 0 instead keeps exp2 at 0, not NaN.
      const float m_use = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2f(m[i] - m_use);
      m[i] = m_new;
      l[i] *= alpha;
#pragma unroll
      for (int jj = 0; jj < NO; ++jj)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][jj][e] *= alpha;
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const float p = exp2f(s[i][j] - m_use);
        l[i] += p;
        Ps[(ty * 4 + i) * Cfg::PLD + tx + 16 * j] = p;
      }
    }
    __syncthreads();  // the row group's P is complete

    // O += P·V: P read as float4 along keys (broadcast within a row group), V as float4 along head_dim.
#pragma unroll 2
    for (int n = 0; n < BN; n += 4) {
      float4 pa[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) pa[i] = *reinterpret_cast<const float4*>(&Ps[(ty * 4 + i) * Cfg::PLD + n]);
#pragma unroll
      for (int nn = 0; nn < 4; ++nn) {
#pragma unroll
        for (int jj = 0; jj < NO; ++jj) {
          const float4 vb = *reinterpret_cast<const float4*>(&Vs[(n + nn) * Cfg::VLD + tx * 4 + 64 * jj]);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float p = nn == 0 ? pa[i].x : nn == 1 ? pa[i].y : nn == 2 ? pa[i].z : pa[i].w;
            o[i][jj][0] = fmaf(p, vb.x, o[i][jj][0]);
            o[i][jj][1] = fmaf(p, vb.y, o[i][jj][1]);
            o[i][jj][2] = fmaf(p, vb.z, o[i][jj][2]);
            o[i][jj][3] = fmaf(p, vb.w, o[i][jj][3]);
          }
        }
      }
    }
  }

  // Epilogue: O = acc / l; LSE = ln(sum exp(scale·s)) = (m + log2 l)·ln2. A row with no attended key
  // has l = 0: O = 0, LSE = -inf (api.h).
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float lsum = l[i];
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) lsum += __shfl_xor_sync(0xffffffffu, lsum, off);
    const int row = m0 + ty * 4 + i;
    if (row >= sq) continue;
    const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
    T* orow = og + row * q_row_stride;
#pragma unroll
    for (int jj = 0; jj < NO; ++jj) {
      *reinterpret_cast<uint2*>(orow + tx * 4 + 64 * jj) = common::pack4<T>(
          o[i][jj][0] * inv, o[i][jj][1] * inv, o[i][jj][2] * inv, o[i][jj][3] * inv);
    }
    if (kp.lse != nullptr && tx == 0) {
      kp.lse[(static_cast<int64_t>(b) * kp.heads_q + h) * sq + row] =
          lsum > 0.f ? (m[i] + log2f(lsum)) * kLn2 : -INFINITY;
    }
  }
}

}  // namespace

const char* supports_phase4(const AttnParams& p) { return common::check_basic_problem(p); }

cudaError_t launch_phase4(const AttnParams& p, cudaStream_t stream) {
  if (supports_phase4(p) != nullptr) return cudaErrorInvalidValue;
  return common::dispatch_dtype_dim_causal(p, [&](auto type, auto dim, auto causal) {
    using T = typename decltype(type)::type;
    constexpr int D = decltype(dim)::value;
    static std::atomic<uint64_t> smem_set{0};  // one per instantiation of this lambda's body
    return common::launch_query_tiles(phase4_fwd_kernel<T, D, decltype(causal)::value>, kBM, kThreads,
                                      Phase4Cfg<D>::SMEM_BYTES, smem_set, p, stream);
  });
}

}  // namespace flashcore
