// Host-side problem checks shared by the kernels' supports_* functions: one place for what they accept
// and the message naming what is allowed.
#pragma once
#include <cmath>
#include <cstdint>
#include <array>
#include <cstdio>
#include "flashcore/api.h"

namespace flashcore {
namespace common {

// nullptr if the problem is within the limits of a kernel that handles head_dim 64/128 in fp16/bf16
// with 16-byte vector accesses, whatever its strides; otherwise a message. Messages that quote a value
// are formatted into a thread-local buffer: valid until the next call on the same thread.
inline const char* check_problem_limits(const AttnParams& p) {
  thread_local char buf[256];
  if (p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16)
    return "dtype not supported: allowed float16, bfloat16";
  if (p.batch < 1 || p.heads_q < 1 || p.heads_kv < 1 || p.seqlen_q < 1 || p.seqlen_k < 1) {
    std::snprintf(buf, sizeof buf,
                  "batch=%d heads_q=%d heads_kv=%d seqlen_q=%d seqlen_k=%d: all must be >= 1",
                  p.batch, p.heads_q, p.heads_kv, p.seqlen_q, p.seqlen_k);
    return buf;
  }
  if (p.head_dim != 64 && p.head_dim != 128) {
    std::snprintf(buf, sizeof buf, "head_dim=%d not supported: allowed 64, 128", p.head_dim);
    return buf;
  }
  if (p.heads_q % p.heads_kv != 0) {
    std::snprintf(buf, sizeof buf, "heads_q=%d is not a multiple of heads_kv=%d (grouped-query attention needs it)",
                  p.heads_q, p.heads_kv);
    return buf;
  }
  // grid.y = heads_q, grid.z = batch
  if (p.heads_q > 65535 || p.batch > 65535) {
    std::snprintf(buf, sizeof buf, "batch=%d heads_q=%d: each must be <= 65535 (CUDA grid limit)", p.batch, p.heads_q);
    return buf;
  }
  if (!std::isfinite(p.softmax_scale)) return "softmax_scale must be finite";
  if (!p.q || !p.k || !p.v || !p.o) return "q, k, v and o must be non-null device pointers";
  const auto misaligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) != 0; };
  if (misaligned(p.q) || misaligned(p.k) || misaligned(p.v) || misaligned(p.o))
    return "q, k, v and o must be 16-byte aligned (16-byte vector and TMA accesses)";
  return nullptr;
}

// q, k, v and o with the extents their strides walk.
struct Operand {
  const char* name;
  Strides st;
  int seqlen, heads;
};
inline std::array<Operand, 4> operands(const AttnParams& p) {
  return {{{"q", p.q_stride, p.seqlen_q, p.heads_q}, {"k", p.k_stride, p.seqlen_k, p.heads_kv},
           {"v", p.v_stride, p.seqlen_k, p.heads_kv}, {"o", p.o_stride, p.seqlen_q, p.heads_q}}};
}

// check_problem_limits, and q/k/v/o contiguous [batch, seqlen, heads, head_dim] tensors, as the phase4
// and phase4x kernels index them (a dimension of extent 1 may have any stride, as in torch's
// is_contiguous).
inline const char* check_basic_problem(const AttnParams& p) {
  if (const char* why = check_problem_limits(p)) return why;
  thread_local char buf[256];
  const auto contiguous = [&](const Strides& st, int seqlen, int heads) {
    const Strides want = contiguous_strides(seqlen, heads, p.head_dim);
    return (p.batch == 1 || st.batch == want.batch) && (seqlen == 1 || st.seq == want.seq) &&
           (heads == 1 || st.head == want.head);
  };
  for (const Operand& t : operands(p)) {
    if (!contiguous(t.st, t.seqlen, t.heads)) {
      const Strides want = contiguous_strides(t.seqlen, t.heads, p.head_dim);
      std::snprintf(buf, sizeof buf,
                    "%s has strides (batch %lld, seq %lld, head %lld): this kernel reads contiguous "
                    "[batch, seqlen, heads, head_dim] tensors (strides %lld, %lld, %lld)",
                    t.name, (long long)t.st.batch, (long long)t.st.seq, (long long)t.st.head, (long long)want.batch,
                    (long long)want.seq, (long long)want.head);
      return buf;
    }
  }
  return nullptr;
}

}  // namespace common
}  // namespace flashcore
