// Which producer -> consumer hand-off forms pass compute-sanitizer's synccheck and racecheck?
// The bleeding-edge kernel's dynamic scheduler hands each claimed tile from the producer warp to the consumer
// warps through shared memory; synccheck flagged its first form, 0 below (kernels/NOTES.md, "The dynamic hand-off
// under synccheck, again"); the kernel uses form 1 since v13. One CTA here: warp 0 produces (lane 0 writes a
// value into one of two shared slots), warps 1..4 consume, 64 hand-offs. Forms:
//   0  both sides bar.sync (aligned), each at its own instruction (the kernel up to v8)
//   1  both sides barrier.sync (unaligned)
//   2  two barriers: producer bar.sync(empty) + bar.arrive(full), consumers bar.sync(full) + bar.arrive(empty)
//   3  mbarriers per slot: full (the producer's lane 0 arrives), empty (each consumer warp's lane 0 arrives)
//   4  one bar.sync instruction that both sides reach after a join
//   5  the value through global memory and a bulk copy (TMA's proxy) into the slot, completing on the slot's
//      full mbarrier, as the kernel's Q/K/V arrive; empty as in 3
//   6  the value in global memory, ordered by the mbarriers of 3 (no shared-memory slot)
// Build: nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -lineinfo -I kernels kernels/tools/handoff_probe.cu -o build/handoff_probe
// Run:   for f in 0 1 2 3 4 5 6; do for t in synccheck racecheck; do
//          compute-sanitizer --tool $t --error-exitcode 9 build/handoff_probe $f; done; done
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include "bleeding_edge/mbarrier.cuh"
using namespace flashcore::be;
constexpr int kConsumerWarps = 4, kThreads = 32 * (kConsumerWarps + 1), kRounds = 64;
// global -> shared, 16 bytes, by the async proxy, completing on mbarrier `bar`
__device__ __forceinline__ void bulk_copy16(uint32_t dst, const void* src, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 16, [%2];"
               :: "r"(dst), "l"(src), "r"(bar) : "memory");
}
__global__ void probe(int form, int* out, int* mbox) {
  __shared__ int slot[2];
  __shared__ alignas(16) int slot16[2][4];
  __shared__ uint64_t full[2], empty[2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) for (int s = 0; s < 2; ++s) { mbar_init(smem_u32(&full[s]), 1); mbar_init(smem_u32(&empty[s]), kConsumerWarps); }
  mbar_fence_init();
  __syncthreads();
  int sum = 0;
  if (form == 2 && warp != 0) named_bar_arrive<kThreads>(2);  // the slot starts free
  for (int r = 0; r < kRounds; ++r) {
    const int s = r & 1, ph = (r >> 1) & 1;
    if (form == 4) {
      if (warp == 0 && lane == 0) slot[s] = r + 1;
      named_bar_sync<kThreads>(1);
      if (warp != 0) sum += slot[s];
      continue;
    }
    if (warp == 0) {
      if (form == 2) named_bar_sync<kThreads>(2);      // the slot is free (consumers arrived on "empty")
      if (form >= 3 && lane == 0 && r >= 2) mbar_wait(smem_u32(&empty[s]), ph ^ 1);
      if (form == 5 && lane == 0) {
        volatile int* m = mbox + 4 * s;
        m[0] = r + 1;
        asm volatile("fence.proxy.async.global;" ::: "memory");  // the store, visible to the bulk copy
        mbar_arrive_expect_tx(smem_u32(&full[s]), 16);
        bulk_copy16(smem_u32(slot16[s]), mbox + 4 * s, smem_u32(&full[s]));
      }
      if (form == 6 && lane == 0) *(volatile int*)(mbox + 4 * s) = r + 1;
      if (form < 5 && lane == 0) slot[s] = r + 1;
      __syncwarp();
      if (form == 0) named_bar_sync<kThreads>(1);
      if (form == 1) barrier_sync_unaligned<kThreads>(1);
      if (form == 2) named_bar_arrive<kThreads>(1);
      if ((form == 3 || form == 6) && lane == 0) mbar_arrive(smem_u32(&full[s]));
    } else {
      __syncwarp();
      if (form == 0) named_bar_sync<kThreads>(1);
      if (form == 1) barrier_sync_unaligned<kThreads>(1);
      if (form == 2) named_bar_sync<kThreads>(1);
      if (form >= 3) mbar_wait(smem_u32(&full[s]), ph);
      sum += form == 5 ? slot16[s][0] : form == 6 ? *(volatile int*)(mbox + 4 * s) : slot[s];
      __syncwarp();
      if (form == 2 && r + 1 < kRounds) named_bar_arrive<kThreads>(2);
      if (form >= 3 && lane == 0) mbar_arrive(smem_u32(&empty[s]));
    }
  }
  if (warp != 0) atomicAdd(out, sum);
}
int main(int argc, char** argv) {
  const int form = argc > 1 ? std::atoi(argv[1]) : 0;
  int *d, *mbox;
  cudaMalloc(&d, 4); cudaMemset(d, 0, 4);
  cudaMalloc(&mbox, 32); cudaMemset(mbox, 0, 32);
  probe<<<1, kThreads>>>(form, d, mbox);
  int h = 0; cudaError_t e = cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost);
  const int want = 32 * kConsumerWarps * (kRounds * (kRounds + 1) / 2);
  std::printf("form %d: %s, sum %d (want %d) %s\n", form, cudaGetErrorString(e), h, want, h == want ? "ok" : "WRONG");
  return h == want && e == cudaSuccess ? 0 : 1;
}
