// The forward kernel: one producer warpgroup (one thread issues every TMA) and NCWG consumer
// warpgroups of 64 query rows each, register budgets moved with setmaxnreg. One kernel body for every
// tile scheduler (scheduler.cuh): a CTA loops over the tiles its scheduler gives it.
//
// Shared memory (1024-B aligned, every tile 128-B swizzled by TMA):
//   Q  [D/64 chunks][BM rows][128 B]                  one tile's Q; reused to stage O when a CTA
//                                                     computes one tile
//   K  [STAGES][D/64][BN][128 B], V likewise          ring buffers
//   O  [D/64 chunks][BM rows][128 B]                  persistent schedules only: O staged apart, so the
//                                                     next tile's Q can load during the epilogue
//   mbarriers (pipeline.cuh): q_full, q_empty, k_full[S], v_full[S], k_empty[S], v_empty[S].
//
// Producer: per tile with keys to visit, its first K block; Q once the previous tile's Q is no longer read
// (q_empty; persistent only); then the tile's K/V blocks, high to low, each K one block ahead of the V
// before it; the ring position carries over from tile to tile.
// Consumer loop (FA3's intra-warpgroup overlap): with P(j) in registers,
//   issue S(j+1) = Q K(j+1)^T (SS) ; issue O += P(j) V(j) (RS) ; wait S(j+1) ; release K ;
//   mask + online softmax of S(j+1) while the PV wgmma runs ; wait PV ; release V ; rescale O.
// No __syncthreads in the main loop; O is written once per tile in the epilogue.
#pragma once

#include <type_traits>
#include <cstdint>
#include <cuda.h>
#include "bleeding_edge/mbarrier.cuh"
#include "bleeding_edge/pipeline.cuh"
#include "bleeding_edge/tma.cuh"
#include "bleeding_edge/wgmma.cuh"
#include "bleeding_edge/softmax.cuh"
#include "bleeding_edge/epilogue.cuh"
#include "bleeding_edge/scheduler.cuh"
#include "bleeding_edge/pingpong.cuh"

namespace flashcore { namespace be {

struct KernelParams {
  float* lse;  // may be null
  int seqlen_q, seqlen_k, heads_q, hq_per_kv;
  float scale, scale_log2;
};

// SCHED: the tile scheduler (scheduler.cuh). Under a persistent one (a CTA may compute several tiles)
// O is staged in a buffer of its own; the dynamic one has a little shared memory of its own.
// PINGPONG: the consumer warpgroups take turns to issue their GEMMs (pingpong.cuh).
// CTAS: CTAs resident per SM (registers and shared memory are split between them), so that one CTA's
// prologue and epilogue run under another's GEMMs when tiles are short.
// L2HINTS: the TMA loads carry L2 eviction priorities (K, V kept; Q first out), as FlashAttention-3's do.
// SECTION_MB: the K/V megabytes of one L2 section of the persistent causal order (scheduler.cuh).
template <bool kBF16_, int D_, int BN_, int NCWG_, int STAGES_, bool kCausal_,
          Schedule SCHED_ = Schedule::kSingleTile, bool PINGPONG_ = false, int CTAS_ = 1, bool L2HINTS_ = false,
          int SECTION_MB_ = 32>
struct Cfg {
  static constexpr bool kBF16 = kBF16_;
  static constexpr bool kL2Hints = L2HINTS_;
  static constexpr long long kSectionBytes = (long long)SECTION_MB_ << 20;
  using Scheduler = typename SchedulerFor<SCHED_, kCausal_, NCWG_ * 4>::type;
  using Turns = PingPong<NCWG_, PINGPONG_>;
  static constexpr bool kPersistent = Scheduler::kPersistent;
  static constexpr int D = D_, BN = BN_, NCWG = NCWG_, STAGES = STAGES_;
  static constexpr bool kCausal = kCausal_;
  static constexpr int BM = 64 * NCWG;
  static constexpr int THREADS = 128 * (NCWG + 1);
  static constexpr int NCHUNK = D / 64;
  static constexpr int Q_CHUNK = BM * 128, KV_CHUNK = BN * 128;
  static constexpr int Q_BYTES = NCHUNK * Q_CHUNK, KV_BYTES = NCHUNK * KV_CHUNK;
  static constexpr int OFF_K = Q_BYTES;
  static constexpr int OFF_V = OFF_K + STAGES * KV_BYTES;
  static constexpr int OFF_O = OFF_V + STAGES * KV_BYTES;
  static constexpr int OFF_BAR = OFF_O + (kPersistent ? Q_BYTES : 0);
  using Barriers = PipelineBarriers<STAGES, NCWG * 4>;  // one arrival per consumer warp
  static constexpr int OFF_SCHED = OFF_BAR + 8 * Barriers::kCount;
  static constexpr int SMEM_BYTES = OFF_SCHED + Scheduler::kSmemBytes + 1024;  // + alignment slack
  static constexpr int CTAS = CTAS_;
  // registers per thread at launch (__launch_bounds__(THREADS, CTAS)), then moved by setmaxnreg from
  // the producer warpgroup to the consumers: 24/240 (2 consumer WGs), 32/160 (3), 24/232 (1 WG, 2 CTAs),
  // 24/136 (1 WG, 3 CTAs)
  static constexpr int ENTRY_REGS = (65536 / (THREADS * CTAS) > 255 ? 255 : 65536 / (THREADS * CTAS)) & ~7;
  static constexpr int PRODUCER_REGS = NCWG == 3 ? 32 : 24;
  static constexpr int CONSUMER_REGS_FIT = ((ENTRY_REGS * THREADS - PRODUCER_REGS * 128) / (128 * NCWG)) & ~7;
  static constexpr int CONSUMER_REGS = CONSUMER_REGS_FIT > 240 ? 240 : CONSUMER_REGS_FIT;
  static constexpr int SR = BN / 2;  // S accumulator registers per thread
  static constexpr int OR = D / 2;   // O accumulator registers per thread
  static_assert(D == 64 || D == 128, "head_dim");
  static_assert(BN % 16 == 0 && BN <= 256, "BN");
  static_assert(Q_CHUNK % 1024 == 0 && KV_CHUNK % 1024 == 0, "1024-B alignment of swizzled tiles");
  static_assert(SMEM_BYTES <= 227 * 1024 && CTAS * (SMEM_BYTES + 1024) <= 228 * 1024, "shared memory");
  static_assert(PRODUCER_REGS * 128 + CONSUMER_REGS * 128 * NCWG <= ENTRY_REGS * THREADS, "register pool");
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

// One TMA box load, with the L2 policy under kL2Hints.
template <class C>
__device__ __forceinline__ void load_box(const CUtensorMap* map, uint32_t dst, uint32_t bar, int c0, int c1, int c2,
                                         int c3, uint64_t policy) {
  if constexpr (C::kL2Hints) tma_load_4d_hint(map, dst, bar, c0, c1, c2, c3, policy);
  else tma_load_4d(map, dst, bar, c0, c1, c2, c3);
}

// Producer side of one tile: its first K block, then Q (into the Q buffer; under a persistent schedule once
// the previous tile's Q K^T have all completed, q.phase), then its K/V blocks, high to low, into the ring at
// kv (which carries over between tiles), each K one block ahead of the V before it: K(0) Q K(1) V(0) K(2)
// V(1) ... V(n-1). The consumers need K(j+1) before V(j) (S(j+1) is issued before O += P(j) V(j)), and a K
// slot frees half an iteration before a V slot, so in plain K(j) V(j) order the next K waited behind the
// V slot's release. The first K goes before Q for the same reason across tiles: it does not wait for the
// previous tile's last Q K^T, as FlashAttention-3's producer does. pol_q, pol_kv: L2 policies (kL2Hints).
template <class C>
__device__ __forceinline__ void produce_tile(const CUtensorMap* tm_q, const CUtensorMap* tm_k, const CUtensorMap* tm_v,
                                             const typename C::Barriers& bars, uint32_t sQ, uint32_t sK, uint32_t sV,
                                             int m0, int head, int hkv, int batch, int n_max,
                                             PipelineState<C::STAGES>& kv, const PipelineState<1>& q,
                                             uint64_t pol_q, uint64_t pol_kv) {
  // one K or V block (key block `it` of the tile) into the ring's stage `at`, once that stage is free
  auto load_block = [&](const CUtensorMap* map, uint32_t ring, uint32_t full, uint32_t empty,
                        const PipelineState<C::STAGES>& at, int it) {
    mbar_wait(empty, at.phase ^ 1);
    mbar_arrive_expect_tx(full, C::KV_BYTES);
#pragma unroll
    for (int c = 0; c < C::NCHUNK; ++c)
      load_box<C>(map, ring + at.index * C::KV_BYTES + c * C::KV_CHUNK, full, c * 64, (n_max - 1 - it) * C::BN, hkv,
                  batch, pol_kv);
  };
  auto load_k = [&](const PipelineState<C::STAGES>& at, int it) {
    load_block(tm_k, sK, bars.k_full(at.index), bars.k_empty(at.index), at, it);
  };
  auto load_v = [&](const PipelineState<C::STAGES>& at, int it) {
    load_block(tm_v, sV, bars.v_full(at.index), bars.v_empty(at.index), at, it);
  };
  load_k(kv, 0);
  // the previous tile's Q K^T have all completed (passes at once for the first tile)
  if constexpr (C::kPersistent) mbar_wait(bars.q_empty(), q.phase ^ 1);
  mbar_arrive_expect_tx(bars.q_full(), C::Q_BYTES);
#pragma unroll
  for (int c = 0; c < C::NCHUNK; ++c)
    load_box<C>(tm_q, sQ + c * C::Q_CHUNK, bars.q_full(), c * 64, m0, head, batch, pol_q);
  for (int it = 0; it < n_max; ++it) {
    if (it + 1 < n_max) load_k(kv.next(), it + 1);
    load_v(kv, it);
    kv.advance();
  }
}

// Consumer main loop of one tile (kr.n_max > 0, Q already landed). On return o holds the
// unnormalised output and sm the row statistics; kv has advanced past the tile's key blocks. If
// signal_q_empty, each warp arrives on q_empty once its last Q K^T has completed. after_last_qk() runs
// there too, before the last P V (the dynamic scheduler's hand-off).
template <class C, class AfterLastQK>
__device__ __forceinline__ void consume_tile(float (&o)[C::OR], OnlineSoftmax& sm, const KeyRange& kr,
                                             const typename C::Barriers& bars, uint32_t q_slice, uint32_t sK,
                                             uint32_t sV, int lim0, int lim1, int cw, int lane, float scale_log2,
                                             bool signal_q_empty, PipelineState<C::STAGES>& kv,
                                             AfterLastQK&& after_last_qk) {
  uint32_t p[C::BN / 4];
  float f[2];
  // The ring position is the same in every thread, but under a persistent schedule (carried from tile to
  // tile) ptxas keeps it in a vector register and then builds every wgmma descriptor there and moves it to
  // uniform registers (R2UR): +108 instructions per key block at d128. Read from lane 0, it stays uniform.
  kv.index = __shfl_sync(0xffffffffu, kv.index, 0);
  kv.phase = __shfl_sync(0xffffffffu, kv.phase, 0);
  // ---- first key block: S = Q K^T, softmax, P ----
  {
    float s[C::SR];
    mbar_wait(bars.k_full(kv.index), kv.phase);
    C::Turns::wait_turn(cw);
    wgmma_fence();
    qk_gemm<C>(s, q_slice, sK + kv.index * C::KV_BYTES);
    wgmma_commit();
    C::Turns::end_turn(cw);
    wgmma_wait<0>();
    fence_regs(s);
    if (lane == 0) mbar_arrive(bars.k_empty(kv.index));
    const int n = kr.n_max - 1;
    if (n >= kr.n_nomask_end) mask_scores(s, n * C::BN, lim0, lim1, lane);
    sm.step<true>(s, scale_log2, f);
    pack_probs<C::kBF16>(s, p);
  }
  PipelineState<C::STAGES> pv = kv;  // the stage whose V the P in registers multiplies
  kv.advance();
  if (kr.n_max > 1) mbar_wait(bars.k_full(kv.index), kv.phase);
  // One key block after the first. The blocks that need masking (n >= n_nomask_end: the diagonal of a
  // causal tile, a ragged last block) come first, so the loop runs in two parts, each compiled on its own:
  // with the mask folded into one body behind a runtime test, ptxas kept its selects and compares in every
  // iteration (588 instructions per key block at d128 against FA3's 469 for its unmasked loop).
  auto key_block = [&](int it, auto masked) {
    const int n = kr.n_max - 1 - it;
    float s[C::SR];
    // K(it) has landed (waited at the end of the previous iteration / before the loop).
    C::Turns::wait_turn(cw);
    wgmma_fence();
    qk_gemm<C>(s, q_slice, sK + kv.index * C::KV_BYTES);
    wgmma_commit();
    mbar_wait(bars.v_full(pv.index), pv.phase);
    wgmma_fence();
    pv_gemm<C>(o, p, sV + pv.index * C::KV_BYTES);
    wgmma_commit();
    C::Turns::end_turn(cw);
    wgmma_wait<1>();
    fence_regs(s);
    if (lane == 0) mbar_arrive(bars.k_empty(kv.index));
    if constexpr (decltype(masked)::value) mask_scores(s, n * C::BN, lim0, lim1, lane);
    sm.step<false>(s, scale_log2, f);
    // Wait for the next K tile here rather than at the top of the next iteration: the spin
    // loop ends the basic block, which keeps ptxas from hoisting the wgmma wait below above
    // the softmax (it schedules WARPGROUP.DEPBAR as early as its block allows), so the
    // exponentials really overlap the P V wgmma.
    {
      const PipelineState<C::STAGES> nk = kv.next();
      if (it + 1 < kr.n_max) mbar_wait(bars.k_full(nk.index), nk.phase);
    }
    wgmma_wait<0>();
    fence_regs(o);
    fence_regs(p);
    if (lane == 0) mbar_arrive(bars.v_empty(pv.index));
    rescale_rows(o, f);
    pack_probs<C::kBF16>(s, p);
    pv = kv;
    kv.advance();
  };
  const int masked_end = max(1, min(kr.n_max, kr.n_max - kr.n_nomask_end));  // iterations [1, masked_end) mask
  int it = 1;
  for (; it < masked_end; ++it) key_block(it, std::true_type{});
  for (; it < kr.n_max; ++it) key_block(it, std::false_type{});
  // every Q K^T of this tile has completed (waited above)
  if (signal_q_empty && lane == 0) mbar_arrive(bars.q_empty());
  after_last_qk();
  // ---- last PV (outside the turns, as in FA3: every warpgroup takes the same number of turns) ----
  mbar_wait(bars.v_full(pv.index), pv.phase);
  wgmma_fence();
  pv_gemm<C>(o, p, sV + pv.index * C::KV_BYTES);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(o);
  if (lane == 0) mbar_arrive(bars.v_empty(pv.index));
}

// Normalise, write LSE, stage O (swizzled) in o_slice and TMA-store it. Under a persistent schedule
// the staging buffer is reused by the next tile: the storing thread first waits until the previous
// store has read it, and the last wait is the caller's.
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

// The kernel, for any scheduler Sched (scheduler.cuh) whose persistence matches C's shared-memory
// layout. Producer and consumers walk the same tile sequence; a tile that attends no key (causal,
// seqlen_q > seqlen_k) loads nothing and is written as zeros (LSE -inf) by the consumers.
template <class C, class Sched>
__global__ void __launch_bounds__(C::THREADS, C::CTAS)
    fwd_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
               const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_o,
               const KernelParams kp, const typename Sched::Params sp) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(Sched::kPersistent == C::kPersistent, "O has its own buffer exactly under a persistent schedule");
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sQ = base, sK = base + C::OFF_K, sV = base + C::OFF_V;
  const typename C::Barriers bars{base + C::OFF_BAR};
  Sched sched(sp, base + C::OFF_SCHED);
  const int Sq = kp.seqlen_q, Sk = kp.seqlen_k;
  const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x / 128), 0);

  if (threadIdx.x == 0) {
    Sched::init(base + C::OFF_SCHED);
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
    // One thread issues every load. Where the scheduler hands tiles to the consumers through a named
    // barrier (kProducerWarp), its whole warp walks the tiles with it, so that every warp meets the barrier
    // converged.
    const bool leader = threadIdx.x == 0;
    if (Sched::kProducerWarp ? threadIdx.x < 32 : leader) {
      PipelineState<C::STAGES> kv;
      PipelineState<1> q;
      uint64_t pol_q = 0, pol_kv = 0;
      if constexpr (C::kL2Hints) {
        pol_q = l2_policy_evict_first();
        pol_kv = l2_policy_evict_last();
      }
      for (Work w = sched.first(); w.valid; w = sched.template next<true>(w)) {
        const int m0 = w.tile.m_block * C::BM;
        const KeyRange kr = key_range<C::kCausal, C::BM, C::BN>(m0, Sq, Sk);
        if (kr.n_max == 0) continue;  // (the next tile is still claimed: `continue` runs next())
        if (leader) {
          produce_tile<C>(&tm_q, &tm_k, &tm_v, bars, sQ, sK, sV, m0, w.tile.head, w.tile.head / kp.hq_per_kv,
                          w.tile.batch, kr.n_max, kv, q, pol_q, pol_kv);
        }
        q.advance();
      }
    }
  } else {
    // ------------------------------- consumers -------------------------------
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(C::CONSUMER_REGS));
    const int cw = wg - 1;
    const int tid = threadIdx.x % 128;
    const int warp_w = tid / 32, lane = tid % 32;
    const uint32_t q_slice = sQ + cw * 64 * 128;
    // one tile per CTA: O is staged in the warpgroup's own slice of the Q tile (free once its last
    // Q K^T has completed); persistent: in its own buffer, as the next tile's Q may be loading
    const uint32_t o_slice = C::kPersistent ? base + C::OFF_O + cw * 64 * 128 : q_slice;
    PipelineState<C::STAGES> kv;
    PipelineState<1> q;
    C::Turns::start(cw);
    for (Work w = sched.first(); w.valid;) {
      const int m0 = w.tile.m_block * C::BM;
      const KeyRange kr = key_range<C::kCausal, C::BM, C::BN>(m0, Sq, Sk);
      const int row0 = m0 + cw * 64 + warp_w * 16 + (lane >> 2);
      const int row1 = row0 + 8;
      const int lim0 = C::kCausal ? min(Sk, row0 + Sk - Sq + 1) : Sk;
      const int lim1 = C::kCausal ? min(Sk, row1 + Sk - Sq + 1) : Sk;
      float o[C::OR];
#pragma unroll
      for (int i = 0; i < C::OR; ++i) o[i] = 0.f;
      OnlineSoftmax sm;
      sm.init();
      Work next_w;
      if (kr.n_max > 0) {
        mbar_wait(bars.q_full(), q.phase);
        q.advance();
        consume_tile<C>(o, sm, kr, bars, q_slice, sK, sV, lim0, lim1, cw, lane, kp.scale_log2, Sched::kPersistent,
                        kv, [&] { next_w = sched.template next<false>(w); });
      } else {
        next_w = sched.template next<false>(w);
      }
      epilogue_tile<C>(o, sm, &tm_o, kp, o_slice, m0, w.tile.head, w.tile.batch, cw, tid, row0, row1);
      w = next_w;
    }
    if constexpr (C::kPersistent) {
      if (tid == 0) bulk_wait_group_read0();  // the last store has read shared memory
    }
  }
#endif
}

}}  // namespace flashcore::be
