// What the seeds' teaching kernels (phase4, phase4x) share on the host: their parameters, a grid of one
// block per (query tile, head, batch), and the dispatch of a problem to the instantiation for its dtype,
// head_dim and causal flag.
#pragma once
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include "flashcore/api.h"
#include "common/smem_attr.cuh"

namespace flashcore {
namespace common {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// q/k/v/o are contiguous [batch, seqlen, heads, head_dim] (their supports_* functions insist).
struct QueryTileParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;
  int seqlen_q, seqlen_k, heads_q, heads_kv, group;
  float scale_log2;  // softmax_scale * log2(e): folded into Q so the softmax is exp2 of a difference
};

// Launches `kernel` over ceil(seqlen_q / block_m) x heads_q x batch blocks of `threads` threads with
// `smem_bytes` of dynamic shared memory. `smem_set` is a function-local static of the caller, one per
// kernel instantiation (see ensure_dynamic_smem).
template <typename Kernel>
cudaError_t launch_query_tiles(Kernel kernel, int block_m, int threads, int smem_bytes,
                               std::atomic<uint64_t>& smem_set, const AttnParams& p, cudaStream_t stream) {
  cudaError_t e = ensure_dynamic_smem(kernel, smem_bytes, smem_set);
  if (e != cudaSuccess) return e;
  const QueryTileParams kp{p.q, p.k, p.v, p.o, p.lse, p.seqlen_q, p.seqlen_k, p.heads_q, p.heads_kv,
                           p.heads_q / p.heads_kv, p.softmax_scale * kLog2e};
  const dim3 grid((p.seqlen_q + block_m - 1) / block_m, p.heads_q, p.batch);
  kernel<<<grid, threads, smem_bytes, stream>>>(kp);
  return cudaGetLastError();
}

template <typename T> struct TypeTag { using type = T; };

// Calls launch(TypeTag<T>{}, std::integral_constant<int, D>{}, std::bool_constant<kCausal>{}) with the
// element type (half or bfloat16), head_dim (64 or 128) and causal flag of the problem, so that each
// kernel writes its instantiation once.
template <typename Launch>
cudaError_t dispatch_dtype_dim_causal(const AttnParams& p, Launch&& launch) {
  const auto by_dim_and_mask = [&](auto type) -> cudaError_t {
    using D64 = std::integral_constant<int, 64>;
    using D128 = std::integral_constant<int, 128>;
    if (p.head_dim == 64) return p.causal ? launch(type, D64{}, std::true_type{}) : launch(type, D64{}, std::false_type{});
    return p.causal ? launch(type, D128{}, std::true_type{}) : launch(type, D128{}, std::false_type{});
  };
  return p.dtype == DType::kBFloat16 ? by_dim_and_mask(TypeTag<__nv_bfloat16>{}) : by_dim_and_mask(TypeTag<__half>{});
}

}  // namespace common
}  // namespace flashcore
