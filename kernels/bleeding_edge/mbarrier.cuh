// CTA synchronisation primitives (sm_90): mbarriers (init, arrive, arrive.expect_tx, parity waits), the
// named barriers (bar.sync / bar.arrive), and the 4-byte shared-memory accesses they order.
// Phase convention: the k-th use (k = 0, 1, ...) of a "full" barrier is awaited with parity k & 1;
// a producer waits on an "empty" barrier with parity (k & 1) ^ 1, which passes at once on a fresh
// barrier (the phase "before" phase 0 counts as complete).
#pragma once
#include <cstdint>
#include <cstdio>

namespace flashcore { namespace be {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void st_shared_b32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" :: "r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t ld_shared_b32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(addr) : "memory");
  return v;
}

// Named barrier `id` (1..15; 0 is __syncthreads) of kThreads threads, a multiple of 32: a warp arrives as
// a whole, its exited lanes too. sync waits for the barrier to complete, arrive does not.
template <int kThreads>
__device__ __forceinline__ void named_bar_sync(int id) {
  asm volatile("bar.sync %0, %1;\n" :: "r"(id), "n"(kThreads) : "memory");
}
// The same wait as named_bar_sync without .aligned: the threads of a warp need not meet it at one
// instruction. The dynamic scheduler's hand-off (scheduler.cuh) meets the barrier at a different
// instruction on each side, which synccheck flags under bar.sync.
template <int kThreads>
__device__ __forceinline__ void barrier_sync_unaligned(int id) {
  asm volatile("barrier.sync %0, %1;\n" :: "r"(id), "n"(kThreads) : "memory");
}
template <int kThreads>
__device__ __forceinline__ void named_bar_arrive(int id) {
  asm volatile("bar.arrive %0, %1;\n" :: "r"(id), "n"(kThreads) : "memory");
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(bar), "r"(count) : "memory");
}

// Makes the initialisations visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival plus an expected transaction byte count (the exact bytes the TMA copies will deliver).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(bar) : "memory");
}

__device__ __forceinline__ bool mbar_try_wait(uint32_t bar, uint32_t parity) {
  uint32_t ok;
  asm volatile(
      "{\n.reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
  return ok != 0;
}

// With -DFLASHCORE_BE_HANG_TRAP a wait that spins ~2^28 times traps (a deadlock becomes a launch
// failure instead of a hang); for test builds only.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#ifdef FLASHCORE_BE_HANG_TRAP
  uint32_t n = 0;
  while (!mbar_try_wait(bar, parity)) {
    if (++n == (1u << 28)) {
      printf("flashcore bleeding_edge: mbarrier wait timed out (block %d,%d,%d thread %d, bar 0x%x parity %u)\n",
             blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, bar, parity);
      __trap();
    }
  }
#else
  while (!mbar_try_wait(bar, parity)) {
  }
#endif
}

}}  // namespace flashcore::be
