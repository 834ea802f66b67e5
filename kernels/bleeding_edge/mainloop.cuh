// The forward kernel: one producer warpgroup (one thread issues every TMA) and NCWG consumer
// warpgroups of 64 query rows each, register budgets moved with setmaxnreg.
//
// Shared memory (1024-B aligned, every tile 128-B swizzled by TMA):
//   Q  [D/64 chunks][BM rows][128 B]                  loaded once, later reused to stage O
//   K  [STAGES][D/64][BN][128 B], V likewise          ring buffers
//   mbarriers: q_full, k_full[S], v_full[S] (1 arrival + tx bytes), k_empty[S], v_empty[S]
//   (one arrival per consumer warp).
//
// Consumer loop (FA3's intra-warpgroup overlap): with P(j) in registers,
//   issue S(j+1) = Q K(j+1)^T (SS) ; issue O += P(j) V(j) (RS) ; wait S(j+1) ; release K ;
//   mask + online softmax of S(j+1) while the PV wgmma runs ; wait PV ; release V ; rescale O.
// No __syncthreads in the main loop; O is written once in the epilogue.
// fwd_kernel: one CTA per output tile. fwd_kernel_persistent (non-causal): #SMs CTAs loop over
// tiles, loads of the next tile overlapping the current tile's last P V and epilogue.
#pragma once
#include <cstdint>
#include <cuda.h>
#include "bleeding_edge/mbarrier.cuh"
#include "bleeding_edge/tma.cuh"
#include "bleeding_edge/wgmma.cuh"
#include "bleeding_edge/softmax.cuh"
#include "bleeding_edge/epilogue.cuh"
#include "bleeding_edge/scheduler.cuh"

namespace flashcore { namespace be {

struct KernelParams {
  float* lse;  // may be null
  int seqlen_q, seqlen_k, heads_q, hq_per_kv;
  float scale, scale_log2;
};

template <bool kBF16_, int D_, int BN_, int NCWG_, int STAGES_, bool kCausal_, bool kPersistent_ = false>
struct Cfg {
  static constexpr bool kBF16 = kBF16_;
  static constexpr bool kPersistent = kPersistent_;
  static constexpr int D = D_, BN = BN_, NCWG = NCWG_, STAGES = STAGES_;
  static constexpr bool kCausal = kCausal_;
  static constexpr int BM = 64 * NCWG;
  static constexpr int THREADS = 128 * (NCWG + 1);
  static constexpr int NCHUNK = D / 64;
  static constexpr int Q_CHUNK = BM * 128, KV_CHUNK = BN * 128;
  static constexpr int Q_BYTES = NCHUNK * Q_CHUNK, KV_BYTES = NCHUNK * KV_CHUNK;
  static constexpr int OFF_K = Q_BYTES;
  static constexpr int OFF_V = OFF_K + STAGES * KV_BYTES;
  // persistent: O is staged in its own buffer so the next tile's Q can load during the epilogue
  static constexpr int OFF_O = OFF_V + STAGES * KV_BYTES;
  static constexpr int OFF_BAR = OFF_O + (kPersistent ? Q_BYTES : 0);
  static constexpr int NBARS = 2 + 4 * STAGES;  // q_full, q_empty, k_full[S], v_full[S], k_empty[S], v_empty[S]
  static constexpr int SMEM_BYTES = OFF_BAR + 8 * NBARS + 1024;  // + alignment slack
  static constexpr int PRODUCER_REGS = NCWG == 2 ? 24 : 32;
  static constexpr int CONSUMER_REGS = NCWG == 2 ? 240 : 160;
  static constexpr int SR = BN / 2;  // S accumulator registers per thread
  static constexpr int OR = D / 2;   // O accumulator registers per thread
  static_assert(D == 64 || D == 128, "head_dim");
  static_assert(BN % 16 == 0 && BN <= 256, "BN");
  static_assert(Q_CHUNK % 1024 == 0 && KV_CHUNK % 1024 == 0, "1024-B alignment of swizzled tiles");
  static_assert(SMEM_BYTES <= 227 * 1024, "shared memory");
  static_assert(PRODUCER_REGS * 128 + CONSUMER_REGS * 128 * NCWG <= 65536, "register pool");
};

template <class C>
__device__ __forceinline__ void qk_gemm(float (&s)[C::SR], uint32_t q_slice, uint32_t k_tile) {
  const uint64_t da0 = make_desc_sw128(q_slice, 16, 1024);
  const uint64_t db0 = make_desc_sw128(k_tile, 16, 1024);
#pragma unroll
  for (int kk = 0; kk < C::D / 16; ++kk) {
    const uint32_t oa = (kk / 4) * C::Q_CHUNK + (kk % 4) * 32;
    const uint32_t ob = (kk / 4) * C::KV_CHUNK + (kk % 4) * 32;
    Wgmma<C::kBF16, C::BN>::ss(s, desc_add(da0, oa), desc_add(db0, ob), kk > 0 ? 1 : 0);
  }
}

template <class C>
__device__ __forceinline__ void pv_gemm(float (&o)[C::OR], const uint32_t (&p)[C::BN / 4], uint32_t v_tile) {
  const uint64_t db0 = make_desc_sw128(v_tile, C::KV_CHUNK, 1024);
#pragma unroll
  for (int kk = 0; kk < C::BN / 16; ++kk) {
    Wgmma<C::kBF16, C::D>::rs(o, p[4 * kk + 0], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3],
                              desc_add(db0, kk * 16 * 128), 1);
  }
}


// mbarrier addresses inside the barrier block.
template <class C>
struct Bars {
  uint32_t base;
  __device__ __forceinline__ uint32_t q_full() const { return base; }
  __device__ __forceinline__ uint32_t q_empty() const { return base + 8u; }
  __device__ __forceinline__ uint32_t k_full(int s) const { return base + 8u * (2 + s); }
  __device__ __forceinline__ uint32_t v_full(int s) const { return base + 8u * (2 + C::STAGES + s); }
  __device__ __forceinline__ uint32_t k_empty(int s) const { return base + 8u * (2 + 2 * C::STAGES + s); }
  __device__ __forceinline__ uint32_t v_empty(int s) const { return base + 8u * (2 + 3 * C::STAGES + s); }
  __device__ __forceinline__ void init() const {
    mbar_init(q_full(), 1);
    mbar_init(q_empty(), C::NCWG * 4);
#pragma unroll
    for (int s = 0; s < C::STAGES; ++s) {
      mbar_init(k_full(s), 1);
      mbar_init(v_full(s), 1);
      mbar_init(k_empty(s), C::NCWG * 4);  // one arrival per consumer warp
      mbar_init(v_empty(s), C::NCWG * 4);
    }
    mbar_fence_init();
  }
};

template <int STAGES>
__device__ __forceinline__ void advance(int& stage, uint32_t& phase) {
  if (++stage == STAGES) {
    stage = 0;
    phase ^= 1;
  }
}

// Producer side of one tile: Q (into the Q buffer) and the tile's K/V blocks, high to low, into
// the ring; stage/phase carry over between tiles.
template <class C>
__device__ __forceinline__ void produce_tile(const CUtensorMap* tm_q, const CUtensorMap* tm_k, const CUtensorMap* tm_v,
                                             const Bars<C>& bars, uint32_t sQ, uint32_t sK, uint32_t sV, int m0,
                                             int head, int hkv, int batch, int n_max, int& stage, uint32_t& phase) {
  mbar_arrive_expect_tx(bars.q_full(), C::Q_BYTES);
#pragma unroll
  for (int c = 0; c < C::NCHUNK; ++c) tma_load_4d(tm_q, sQ + c * C::Q_CHUNK, bars.q_full(), c * 64, m0, head, batch);
  for (int it = 0; it < n_max; ++it) {
    const int n0 = (n_max - 1 - it) * C::BN;
    mbar_wait(bars.k_empty(stage), phase ^ 1);
    mbar_arrive_expect_tx(bars.k_full(stage), C::KV_BYTES);
#pragma unroll
    for (int c = 0; c < C::NCHUNK; ++c)
      tma_load_4d(tm_k, sK + stage * C::KV_BYTES + c * C::KV_CHUNK, bars.k_full(stage), c * 64, n0, hkv, batch);
    mbar_wait(bars.v_empty(stage), phase ^ 1);
    mbar_arrive_expect_tx(bars.v_full(stage), C::KV_BYTES);
#pragma unroll
    for (int c = 0; c < C::NCHUNK; ++c)
      tma_load_4d(tm_v, sV + stage * C::KV_BYTES + c * C::KV_CHUNK, bars.v_full(stage), c * 64, n0, hkv, batch);
    advance<C::STAGES>(stage, phase);
  }
}

// Consumer main loop of one tile (kr.n_max > 0, Q already landed). On return o holds the
// unnormalised output and sm the row statistics. stage/phase carry over between tiles. If
// signal_q_empty, each warp arrives on q_empty once its last Q K^T has completed.
template <class C>
__device__ __forceinline__ void consume_tile(float (&o)[C::OR], OnlineSoftmax& sm, const KeyRange& kr,
                                             const Bars<C>& bars, uint32_t q_slice, uint32_t sK, uint32_t sV,
                                             int lim0, int lim1, int lane, float scale_log2, bool signal_q_empty,
                                             int& stage, uint32_t& phase) {
  uint32_t p[C::BN / 4];
  float f[2];
  // ---- first key block: S = Q K^T, softmax, P ----
  {
    float s[C::SR];
    mbar_wait(bars.k_full(stage), phase);
    wgmma_fence();
    qk_gemm<C>(s, q_slice, sK + stage * C::KV_BYTES);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(s);
    if (lane == 0) mbar_arrive(bars.k_empty(stage));
    const int n = kr.n_max - 1;
    if (n >= kr.n_nomask_end) mask_scores(s, n * C::BN, lim0, lim1, lane);
    sm.step<true>(s, scale_log2, f);
    pack_probs<C::kBF16>(s, p);
  }
  int pstage = stage;
  uint32_t pphase = phase;
  advance<C::STAGES>(stage, phase);
  if (kr.n_max > 1) mbar_wait(bars.k_full(stage), phase);
  for (int it = 1; it < kr.n_max; ++it) {
    const int n = kr.n_max - 1 - it;
    float s[C::SR];
    // K(it) has landed (waited at the end of the previous iteration / before the loop).
    wgmma_fence();
    qk_gemm<C>(s, q_slice, sK + stage * C::KV_BYTES);
    wgmma_commit();
    mbar_wait(bars.v_full(pstage), pphase);
    wgmma_fence();
    pv_gemm<C>(o, p, sV + pstage * C::KV_BYTES);
    wgmma_commit();
    wgmma_wait<1>();
    fence_regs(s);
    if (lane == 0) mbar_arrive(bars.k_empty(stage));
    if (n >= kr.n_nomask_end) mask_scores(s, n * C::BN, lim0, lim1, lane);
    sm.step<false>(s, scale_log2, f);
    // Wait for the next K tile here rather than at the top of the next iteration: the spin
    // loop ends the basic block, which keeps ptxas from hoisting the wgmma wait below above
    // the softmax (it schedules WARPGROUP.DEPBAR as early as its block allows), so the
    // exponentials really overlap the P V wgmma.
    {
      int ns = stage;
      uint32_t nph = phase;
      advance<C::STAGES>(ns, nph);
      if (it + 1 < kr.n_max) mbar_wait(bars.k_full(ns), nph);
    }
    wgmma_wait<0>();
    fence_regs(o);
    fence_regs(p);
    if (lane == 0) mbar_arrive(bars.v_empty(pstage));
    rescale_rows(o, f);
    pack_probs<C::kBF16>(s, p);
    pstage = stage;
    pphase = phase;
    advance<C::STAGES>(stage, phase);
  }
  // every Q K^T of this tile has completed (waited above)
  if (signal_q_empty && lane == 0) mbar_arrive(bars.q_empty());
  // ---- last PV ----
  mbar_wait(bars.v_full(pstage), pphase);
  wgmma_fence();
  pv_gemm<C>(o, p, sV + pstage * C::KV_BYTES);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(o);
  if (lane == 0) mbar_arrive(bars.v_empty(pstage));
}

// Normalise, write LSE, stage O (swizzled) in o_slice and TMA-store it. In persistent kernels the
// staging buffer is reused by the next tile: the storing thread first waits until the previous
// store has read it.
template <class C>
__device__ __forceinline__ void epilogue_tile(float (&o)[C::OR], OnlineSoftmax& sm, const CUtensorMap* tm_o,
                                              const KernelParams& kp, uint32_t o_slice, int m0, int head, int batch,
                                              int cw, int tid, int row0, int row1) {
  const int warp_w = tid / 32, lane = tid % 32;
  float inv[2], lse[2];
  sm.finalize(kp.scale, inv, lse);
  rescale_rows(o, inv);
  if (kp.lse != nullptr && (lane & 3) == 0) {
    float* lrow = kp.lse + ((size_t)batch * kp.heads_q + head) * (size_t)kp.seqlen_q;
    if (row0 < kp.seqlen_q) lrow[row0] = lse[0];
    if (row1 < kp.seqlen_q) lrow[row1] = lse[1];
  }
  if constexpr (C::kPersistent) {
    if (tid == 0) bulk_wait_group_read0();
    wg_bar_sync(1 + cw);
  }
  stage_o_smem<C::kBF16, C::D>(o, o_slice, C::Q_CHUNK, warp_w, lane);
  fence_proxy_async_smem();
  wg_bar_sync(1 + cw);
  if (tid == 0 && m0 + cw * 64 < kp.seqlen_q) {
#pragma unroll
    for (int c = 0; c < C::NCHUNK; ++c)
      tma_store_4d(tm_o, o_slice + c * C::Q_CHUNK, c * 64, m0 + cw * 64, head, batch);
    bulk_commit_group();
    if constexpr (!C::kPersistent) bulk_wait_group_read0();
  }
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, 1)
    fwd_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
               const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_o,
               const KernelParams kp) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(!C::kPersistent, "use fwd_kernel_persistent");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sQ = base, sK = base + C::OFF_K, sV = base + C::OFF_V;
  const Bars<C> bars{base + C::OFF_BAR};

  const TileCoord tc = tile_coord<C::kCausal>();
  const int m0 = tc.m_block * C::BM;
  const int Sq = kp.seqlen_q, Sk = kp.seqlen_k;
  const KeyRange kr = key_range<C::kCausal, C::BM, C::BN>(m0, Sq, Sk);
  const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x / 128), 0);

  if (threadIdx.x == 0) {
    bars.init();
  } else if (threadIdx.x == 32) {
    tma_prefetch_desc(&tm_q);
    tma_prefetch_desc(&tm_k);
    tma_prefetch_desc(&tm_v);
    tma_prefetch_desc(&tm_o);
  }
  __syncthreads();

  if (wg == 0) {
    // ------------------------------- producer -------------------------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(C::PRODUCER_REGS));
    if (threadIdx.x == 0 && kr.n_max > 0) {
      int stage = 0;
      uint32_t phase = 0;
      produce_tile<C>(&tm_q, &tm_k, &tm_v, bars, sQ, sK, sV, m0, tc.head, tc.head / kp.hq_per_kv, tc.batch, kr.n_max,
                      stage, phase);
    }
  } else {
    // ------------------------------- consumers -------------------------------
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(C::CONSUMER_REGS));
    const int cw = wg - 1;
    const int tid = threadIdx.x % 128;
    const int warp_w = tid / 32, lane = tid % 32;
    const uint32_t q_slice = sQ + cw * 64 * 128;
    const int row0 = m0 + cw * 64 + warp_w * 16 + (lane >> 2);
    const int row1 = row0 + 8;
    const int lim0 = C::kCausal ? min(Sk, row0 + Sk - Sq + 1) : Sk;
    const int lim1 = C::kCausal ? min(Sk, row1 + Sk - Sq + 1) : Sk;

    float o[C::OR];
#pragma unroll
    for (int i = 0; i < C::OR; ++i) o[i] = 0.f;
    OnlineSoftmax sm;
    sm.init();
    if (kr.n_max > 0) {
      int stage = 0;
      uint32_t phase = 0;
      mbar_wait(bars.q_full(), 0);
      consume_tile<C>(o, sm, kr, bars, q_slice, sK, sV, lim0, lim1, lane, kp.scale_log2, false, stage, phase);
    }
    // O is staged in the warpgroup's own slice of the Q tile (free: its last Q K^T has completed)
    epilogue_tile<C>(o, sm, &tm_o, kp, q_slice, m0, tc.head, tc.batch, cw, tid, row0, row1);
  }
#endif
}

// Persistent variant (non-causal only: equal-cost tiles, so a static stride schedule balances):
// gridDim.x <= #SMs CTAs walk tiles t = blockIdx.x, blockIdx.x + gridDim.x, ... in the order
// m-block fastest, then head, then batch (the CTAs working at one time share a head's K/V in L2).
// The producer loads the next tile's Q as soon as every consumer warp has finished its last Q K^T
// (q_empty) and keeps the K/V ring running across tiles, so loads overlap the previous tile's last
// P V and epilogue; O is staged in its own buffer.
template <class C>
__global__ void __launch_bounds__(C::THREADS, 1)
    fwd_kernel_persistent(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                          const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_o,
                          const KernelParams kp, const int num_m_blocks, const int num_tiles) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(C::kPersistent && !C::kCausal, "persistent kernel is for non-causal problems");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sQ = base, sK = base + C::OFF_K, sV = base + C::OFF_V, sO = base + C::OFF_O;
  const Bars<C> bars{base + C::OFF_BAR};
  const int Sq = kp.seqlen_q, Sk = kp.seqlen_k;
  const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x / 128), 0);

  if (threadIdx.x == 0) {
    bars.init();
  } else if (threadIdx.x == 32) {
    tma_prefetch_desc(&tm_q);
    tma_prefetch_desc(&tm_k);
    tma_prefetch_desc(&tm_v);
    tma_prefetch_desc(&tm_o);
  }
  __syncthreads();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(C::PRODUCER_REGS));
    if (threadIdx.x == 0) {
      int stage = 0;
      uint32_t phase = 0, qphase = 0;
      for (int t = blockIdx.x; t < num_tiles; t += gridDim.x) {
        const TileCoord tc = decode_tile(t, num_m_blocks, kp.heads_q);
        const int m0 = tc.m_block * C::BM;
        const KeyRange kr = key_range<false, C::BM, C::BN>(m0, Sq, Sk);
        if (kr.n_max == 0) continue;
        mbar_wait(bars.q_empty(), qphase ^ 1);  // the previous tile's Q K^T are all done
        qphase ^= 1;
        produce_tile<C>(&tm_q, &tm_k, &tm_v, bars, sQ, sK, sV, m0, tc.head, tc.head / kp.hq_per_kv, tc.batch,
                        kr.n_max, stage, phase);
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(C::CONSUMER_REGS));
    const int cw = wg - 1;
    const int tid = threadIdx.x % 128;
    const int warp_w = tid / 32, lane = tid % 32;
    const uint32_t q_slice = sQ + cw * 64 * 128;
    const uint32_t o_slice = sO + cw * 64 * 128;
    int stage = 0;
    uint32_t phase = 0, qphase = 0;
    for (int t = blockIdx.x; t < num_tiles; t += gridDim.x) {
      const TileCoord tc = decode_tile(t, num_m_blocks, kp.heads_q);
      const int m0 = tc.m_block * C::BM;
      const KeyRange kr = key_range<false, C::BM, C::BN>(m0, Sq, Sk);
      const int row0 = m0 + cw * 64 + warp_w * 16 + (lane >> 2);
      const int row1 = row0 + 8;
      float o[C::OR];
#pragma unroll
      for (int i = 0; i < C::OR; ++i) o[i] = 0.f;
      OnlineSoftmax sm;
      sm.init();
      if (kr.n_max > 0) {
        mbar_wait(bars.q_full(), qphase);
        qphase ^= 1;
        consume_tile<C>(o, sm, kr, bars, q_slice, sK, sV, Sk, Sk, lane, kp.scale_log2, true, stage, phase);
      }
      epilogue_tile<C>(o, sm, &tm_o, kp, o_slice, m0, tc.head, tc.batch, cw, tid, row0, row1);
    }
    if (tid == 0) bulk_wait_group_read0();
  }
#endif
}

}}  // namespace flashcore::be
