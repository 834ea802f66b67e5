// cp.async (sm_80+) wrappers: 16-byte global->shared copies that bypass registers and L1, so a tile's
// load can be in flight while the previous tile is computed. Out-of-range rows are zero-filled
// (src-size 0) instead of branching around the copy, which keeps padded rows finite (0 * 0, never NaN).
#pragma once
#include <cstdint>

namespace flashcore {
namespace common {

// `src` must be a valid global address even when `valid` is false (it is not read then).
__device__ inline void cp_async_16(void* smem_dst, const void* src, bool valid) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}

__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed groups are still pending.
template <int N>
__device__ inline void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

}  // namespace common
}  // namespace flashcore
