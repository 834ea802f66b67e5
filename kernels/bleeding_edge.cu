// flashcore "bleeding-edge" attention forward for Hopper (sm_90a): TMA + mbarrier K/V pipeline,
// producer/consumer warpgroups with setmaxnreg, wgmma (SS for Q K^T, RS for P V), online softmax in
// registers with intra-warpgroup overlap; q/k/v read through their strides. Design:
// kernels/bleeding_edge/mainloop.cuh (kernel body), scheduler.cuh (tile schedulers), pipeline.cuh
// (barriers, ring state); notes and measurements: kernels/NOTES.md, section "bleeding-edge".
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include "flashcore/api.h"
#include "common/checks.cuh"
#include "bleeding_edge/mainloop.cuh"
#include "bleeding_edge/variants.cuh"

namespace flashcore {
namespace {

using be::Cfg;

template <class C>
cudaError_t launch_cfg(const AttnParams& p, cudaStream_t stream) {
  using Sched = typename C::Scheduler;
  CUtensorMap tq, tk, tv, to;
  const bool bf = C::kBF16;
  if (!be::make_tmap_bshd(&tq, p.q, bf, p.batch, p.seqlen_q, p.heads_q, C::D, p.q_stride, C::BM) ||
      !be::make_tmap_bshd(&tk, p.k, bf, p.batch, p.seqlen_k, p.heads_kv, C::D, p.k_stride, C::BN) ||
      !be::make_tmap_bshd(&tv, p.v, bf, p.batch, p.seqlen_k, p.heads_kv, C::D, p.v_stride, C::BN) ||
      !be::make_tmap_bshd(&to, p.o, bf, p.batch, p.seqlen_q, p.heads_q, C::D, p.o_stride, 64)) {
    return cudaErrorInvalidValue;
  }
  be::KernelParams kp;
  kp.lse = p.lse;
  kp.seqlen_q = p.seqlen_q;
  kp.seqlen_k = p.seqlen_k;
  kp.heads_q = p.heads_q;
  kp.hq_per_kv = p.heads_q / p.heads_kv;
  kp.scale = p.softmax_scale;
  kp.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  const be::TileShape shape{(p.seqlen_q + C::BM - 1) / C::BM, p.heads_q, p.batch};
  auto kernel = be::fwd_kernel<C, Sched>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_BYTES);
  if (e != cudaSuccess) return e;
  if constexpr (C::CTAS > 1) {  // room for CTAS CTAs' shared memory on each SM
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
    if (e != cudaSuccess) return e;
  }
  be::ScheduleHints hints{0, (long long)p.seqlen_k * C::D * 2 * 2, p.heads_q / p.heads_kv, C::kSectionBytes};
  if constexpr (Sched::kPersistent) {
    int dev = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&hints.sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    hints.sms *= C::CTAS;  // the schedule's "SMs" are the resident CTAs
    // tile indices (and the next one a CTA would look at) stay within int
    if (shape.count() + hints.sms > 0x7fffffffLL) return cudaErrorInvalidValue;
  }
  if (Sched::kNeedsCounter && p.tile_counter == nullptr) return cudaErrorInvalidValue;
  const typename Sched::Params sp = Sched::make(shape, hints, p.tile_counter);
  kernel<<<Sched::grid(sp, hints.sms), C::THREADS, C::SMEM_BYTES, stream>>>(tq, tk, tv, to, kp, sp);
  return cudaGetLastError();
}

using be::Schedule;
constexpr Schedule kTile = Schedule::kSingleTile, kStatic = Schedule::kStaticPersistent,
                   kDynamic = Schedule::kDynamicPersistent;

template <bool BF, int D, int BN, int NCWG, int ST, Schedule S, bool PP, int CTAS, bool L2, int MB>
cudaError_t launch_causal(const AttnParams& p, cudaStream_t s) {
  return p.causal ? launch_cfg<Cfg<BF, D, BN, NCWG, ST, true, S, PP, CTAS, L2, MB>>(p, s)
                  : launch_cfg<Cfg<BF, D, BN, NCWG, ST, false, S, PP, CTAS, L2, MB>>(p, s);
}

template <int D, int BN, int NCWG, int ST, Schedule S = kTile, bool PP = false, int CTAS = 1, bool L2 = false,
          int MB = 32>
cudaError_t launch_dtype(const AttnParams& p, cudaStream_t s) {
  return p.dtype == DType::kBFloat16 ? launch_causal<true, D, BN, NCWG, ST, S, PP, CTAS, L2, MB>(p, s)
                                     : launch_causal<false, D, BN, NCWG, ST, S, PP, CTAS, L2, MB>(p, s);
}
constexpr bool kPingPong = true, kL2Hints = true;

struct Variant {
  const char* name;
  cudaError_t (*launch)(const AttnParams&, cudaStream_t);
};

// Schedules (scheduler.cuh): one CTA per tile unless named; "pers" = static persistent (#SMs CTAs, a
// fixed stride over the tile order; causal longest-first within L2 sections); "dyn" = dynamic
// persistent (the same order, each CTA claiming its next tile from AttnParams::tile_counter). "pp" = the
// consumer warpgroups take turns to issue their GEMMs (pingpong.cuh). "xN" = N CTAs resident per SM. "L2" =
// the TMA loads carry L2 eviction priorities (tma.cuh). "secN" = L2 sections of N MB of K/V in the causal
// persistent order (default 32).
// Both tables have the same length, so an index names a variant for both head dims.
const Variant kVariantsD128[] = {
    {"d128 BM128 BN128 2cwg 2st", launch_dtype<128, 128, 2, 2>},
    {"d128 BM128 BN176 2cwg 2st", launch_dtype<128, 176, 2, 2>},
    {"d128 BM128 BN128 2cwg 2st pers", launch_dtype<128, 128, 2, 2, kStatic>},
    {"d128 BM128 BN128 2cwg 2st dyn", launch_dtype<128, 128, 2, 2, kDynamic>},
    {"d128 BM128 BN128 2cwg 2st pp", launch_dtype<128, 128, 2, 2, kTile, kPingPong>},
    {"d128 BM128 BN176 2cwg 2st pp", launch_dtype<128, 176, 2, 2, kTile, kPingPong>},
    {"d128 BM128 BN128 2cwg 2st pers pp", launch_dtype<128, 128, 2, 2, kStatic, kPingPong>},
    {"d128 BM64 BN64 1cwg 2st x2", launch_dtype<128, 64, 1, 2, kTile, false, 2>},
    {"d128 BM64 BN64 1cwg 2st x2 pers", launch_dtype<128, 64, 1, 2, kStatic, false, 2>},
    {"d128 BM128 BN128 2cwg 2st dyn pp", launch_dtype<128, 128, 2, 2, kDynamic, kPingPong>},
    {"d128 BM128 BN128 2cwg 2st pp L2", launch_dtype<128, 128, 2, 2, kTile, kPingPong, 1, kL2Hints>},
    {"d128 BM128 BN128 2cwg 2st dyn pp L2", launch_dtype<128, 128, 2, 2, kDynamic, kPingPong, 1, kL2Hints>},
    {"d128 BM128 BN128 2cwg 2st dyn pp sec8", launch_dtype<128, 128, 2, 2, kDynamic, kPingPong, 1, false, 8>},
};
const Variant kVariantsD64[] = {
    {"d64 BM192 BN128 3cwg 2st", launch_dtype<64, 128, 3, 2>},
    {"d64 BM128 BN128 2cwg 4st", launch_dtype<64, 128, 2, 4>},
    {"d64 BM192 BN128 3cwg 2st pers", launch_dtype<64, 128, 3, 2, kStatic>},
    {"d64 BM192 BN128 3cwg 2st dyn", launch_dtype<64, 128, 3, 2, kDynamic>},
    {"d64 BM192 BN128 3cwg 2st pp", launch_dtype<64, 128, 3, 2, kTile, kPingPong>},
    {"d64 BM128 BN128 2cwg 4st pp", launch_dtype<64, 128, 2, 4, kTile, kPingPong>},
    {"d64 BM192 BN128 3cwg 2st pers pp", launch_dtype<64, 128, 3, 2, kStatic, kPingPong>},
    {"d64 BM64 BN128 1cwg 2st x2", launch_dtype<64, 128, 1, 2, kTile, false, 2>},
    {"d64 BM64 BN128 1cwg 2st x2 pers", launch_dtype<64, 128, 1, 2, kStatic, false, 2>},
    {"d64 BM64 BN64 1cwg 2st x3", launch_dtype<64, 64, 1, 2, kTile, false, 3>},
    {"d64 BM192 BN128 3cwg 2st pp L2", launch_dtype<64, 128, 3, 2, kTile, kPingPong, 1, kL2Hints>},
    {"d64 BM192 BN128 3cwg 2st dyn pp L2", launch_dtype<64, 128, 3, 2, kDynamic, kPingPong, 1, kL2Hints>},
    {"d64 BM192 BN128 3cwg 2st dyn pp sec8", launch_dtype<64, 128, 3, 2, kDynamic, kPingPong, 1, false, 8>},
};
static_assert(sizeof(kVariantsD128) == sizeof(kVariantsD64), "one index, one kind of variant");
// The default (variant < 0) is chosen per problem from the measurements in kernels/NOTES.md (v5-v7):
// short tiles (few key blocks) want their fixed costs hidden, under the next tile's loads (a persistent
// schedule) or under other CTAs' GEMMs (two or three 64-row CTAs per SM); causal tiles of unequal length
// want the dynamic schedule (a CTA that finishes early claims the next longest tile) with the warpgroups
// taking turns, up to 8k; at 16k every schedule measured alike. Non-causal problems run the static
// persistent schedule at every length since its main loop is the one-tile kernel's (v6). Without a tile
// counter (a stream being captured into a CUDA graph, see binding.cpp) the dynamic default falls back to
// the one-tile kernel with turns.
enum : int { kPlain = 0, kPersistent = 2, kTurns = 4, kPersistentTurns = 6, kTwoCtas = 7,
             kTwoCtasPersistent = 8, kThreeCtas = 9, kDynamicTurns = 12 };
int default_variant(const AttnParams& p) {
  const int sk = p.seqlen_k;
  const int dynamic = p.tile_counter != nullptr ? kDynamicTurns : kTurns;
  if (p.head_dim == 64) {
    if (p.causal) return sk <= 2048 ? kThreeCtas : sk <= 8192 ? dynamic : kTurns;
    return sk <= 1024 ? kTwoCtasPersistent : kPersistentTurns;
  }
  if (p.causal) return sk <= 8192 ? dynamic : kPlain;
  return sk <= 1024 ? kPersistentTurns : kPersistent;
}

template <int N>
constexpr int count(const Variant (&)[N]) { return N; }

}  // namespace

// Messages that quote values are formatted into a thread-local buffer: valid until the next call on
// the same thread.
const char* supports_bleeding_edge(const AttnParams& p) {
  if (const char* why = common::check_problem_limits(p)) return why;
  if (!(p.softmax_scale > 0.f)) return "softmax_scale must be > 0";
  thread_local char buf[320];
  for (const common::Operand& t : common::operands(p)) {
    const struct {
      const char* dim;
      int64_t stride;
      int extent;
    } dims[] = {{"batch", t.st.batch, p.batch}, {"seqlen", t.st.seq, t.seqlen}, {"heads", t.st.head, t.heads}};
    for (const auto& d : dims) {
      if (const char* why = be::tma_stride_problem(d.stride, d.extent)) {
        std::snprintf(buf, sizeof buf,
                      "%s stride along %s (%lld elements) %s: the kernel loads through TMA tensor maps, which "
                      "take strides that are positive multiples of 8 elements (16 bytes) below 2^39 elements; "
                      "pass a copy (.contiguous())",
                      t.name, d.dim, (long long)d.stride, why);
        return buf;
      }
    }
  }
  if (!be::tensor_map_encoder()) return "cuTensorMapEncodeTiled is not available from the CUDA driver";
  return nullptr;
}

namespace be {

int resolve_variant(const AttnParams& p, int v) { return v < 0 ? default_variant(p) : v; }

const char* variant_name(int head_dim, int v) {
  if (head_dim == 128 && v >= 0 && v < count(kVariantsD128)) return kVariantsD128[v].name;
  if (head_dim == 64 && v >= 0 && v < count(kVariantsD64)) return kVariantsD64[v].name;
  return nullptr;
}

cudaError_t launch_variant(const AttnParams& p, cudaStream_t stream, int variant) {
  if (supports_bleeding_edge(p) != nullptr) return cudaErrorInvalidValue;
  if (variant < 0) variant = default_variant(p);
  if (p.head_dim == 128) {
    if (variant >= count(kVariantsD128)) return cudaErrorInvalidValue;
    return kVariantsD128[variant].launch(p, stream);
  }
  if (variant >= count(kVariantsD64)) return cudaErrorInvalidValue;
  return kVariantsD64[variant].launch(p, stream);
}

}  // namespace be

cudaError_t launch_bleeding_edge(const AttnParams& p, cudaStream_t stream) {
  return be::launch_variant(p, stream, -1);
}

}  // namespace flashcore
