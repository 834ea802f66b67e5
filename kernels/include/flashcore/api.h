// Public C++ launch API of flashcore's attention kernels.
//
// Pure CUDA (no torch headers) so that users outside Python can call the kernels and so that
// every source compiles on a machine without torch. The torch binding (kernels/binding.cpp) is a
// thin layer over these functions.
//
// Layout: Q is [batch, seqlen_q, heads_q, head_dim], K and V are [batch, seqlen_k, heads_kv, head_dim],
// O is [batch, seqlen_q, heads_q, head_dim], same 16-bit dtype. head_dim is contiguous (stride 1); the
// batch, seqlen and head strides of each tensor are given in AttnParams (in elements), so a transposed
// view of a [batch, heads, seqlen, head_dim] tensor, a slice of a wider buffer or one part of a packed
// QKV tensor is described without a copy. Which strides a kernel accepts is its supports_* function's
// to say: phase4 and phase4x read contiguous tensors only; bleeding_edge reads any stride that TMA
// can describe (a multiple of 8 elements, not 0 along a dimension longer than 1). heads_q must be a
// multiple of heads_kv (grouped-query attention: query head h reads kv head h / (heads_q/heads_kv)).
// LSE (optional, may be null) is float32 [batch, heads_q, seqlen_q], natural-log log-sum-exp of the
// scaled scores.
//
// Causal masking is bottom-right aligned (FlashAttention >= 2.1): query row i attends key j iff
// j <= i + seqlen_k - seqlen_q. A query row that attends no key (possible when seqlen_q > seqlen_k)
// gets O = 0 and LSE = -inf.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>

namespace flashcore {

enum class DType : int { kFloat16 = 0, kBFloat16 = 1 };

// Strides of a [batch, seqlen, heads, head_dim] tensor, in elements (head_dim's stride is 1).
struct Strides {
  int64_t batch;
  int64_t seq;
  int64_t head;
};

// The strides of a contiguous [batch, seqlen, heads, head_dim] tensor.
inline Strides contiguous_strides(int seqlen, int heads, int head_dim) {
  return {int64_t{seqlen} * heads * head_dim, int64_t{heads} * head_dim, int64_t{head_dim}};
}

struct AttnParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;  // nullptr: not written
  int batch;
  int heads_q;
  int heads_kv;
  int seqlen_q;
  int seqlen_k;
  int head_dim;
  float softmax_scale;
  bool causal;
  DType dtype;
  Strides q_stride, k_stride, v_stride, o_stride;
  // One int of device memory, zero, for the kernel variants that hand out tiles dynamically (bleeding_edge's
  // "dyn" schedules; a launch of one without it fails with cudaErrorInvalidValue). Such a launch leaves it
  // zero again; two launches must not use one counter at the same time (the torch op keeps one per stream).
  // May be null for every other variant.
  int* tile_counter;
};

// Sets the four strides of p to those of contiguous tensors of p's sizes.
inline void set_contiguous_strides(AttnParams& p) {
  p.q_stride = contiguous_strides(p.seqlen_q, p.heads_q, p.head_dim);
  p.k_stride = contiguous_strides(p.seqlen_k, p.heads_kv, p.head_dim);
  p.v_stride = p.k_stride;
  p.o_stride = contiguous_strides(p.seqlen_q, p.heads_q, p.head_dim);
}

// Each returns cudaSuccess, cudaErrorInvalidValue for a problem the kernel does not support
// (see supports_*), or the launch error. They never synchronize.
cudaError_t launch_phase4(const AttnParams& p, cudaStream_t stream);
cudaError_t launch_phase4x(const AttnParams& p, cudaStream_t stream);
cudaError_t launch_bleeding_edge(const AttnParams& p, cudaStream_t stream);

// nullptr if supported, otherwise a static string naming what is not supported and what is allowed.
const char* supports_phase4(const AttnParams& p);
const char* supports_phase4x(const AttnParams& p);
const char* supports_bleeding_edge(const AttnParams& p);

}  // namespace flashcore
