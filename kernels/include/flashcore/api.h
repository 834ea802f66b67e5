// Public C++ launch API of flashcore's attention kernels.
//
// Pure CUDA (no torch headers) so that users outside Python can call the kernels and so that
// every source compiles on a machine without torch. The torch binding (kernels/binding.cpp) is a
// thin layer over these functions.
//
// Layout: Q is [batch, seqlen_q, heads_q, head_dim], K and V are [batch, seqlen_k, heads_kv, head_dim],
// O is [batch, seqlen_q, heads_q, head_dim], all contiguous, same 16-bit dtype. heads_q must be a
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
};

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
