// Which producer -> consumer hand-off forms pass compute-sanitizer's synccheck and racecheck?
// The bleeding-edge kernel's dynamic scheduler hands each claimed tile from the producer warp to the consumer
// warps through shared memory; synccheck flags its current form (kernels/NOTES.md, "The dynamic hand-off under
// synccheck, again"). One CTA here: warp 0 produces (lane 0 writes a value into one of two shared slots),
// warps 1..4 consume, 64 hand-offs. Forms:
//   0  both sides bar.sync (aligned), each at its own instruction (the kernel today)
//   1  both sides barrier.sync (unaligned)
//   2  two barriers: producer bar.sync(empty) + bar.arrive(full), consumers bar.sync(full) + bar.arrive(empty)
//   3  mbarriers per slot: full (the producer's lane 0 arrives), empty (each consumer warp's lane 0 arrives)
//   4  one bar.sync instruction that both sides reach after a join
//   5  the value through global memory and a bulk copy (TMA's proxy) into the slot, completing on the slot's
//      full mbarrier, as the kernel's Q/K/V arrive; empty as in 3
//   6  the value in global memory, ordered by the mbarriers of 3 (no shared-memory slot)
// Build: nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -lineinfo kernels/tools/handoff_probe.cu -o build/handoff_probe
// Run:   for f in 0 1 2 3 4 5 6; do for t in synccheck racecheck; do
//          compute-sanitizer --tool $t --error-exitcode 9 build/handoff_probe $f; done; done
#include <cstdio>
#include <cstdlib>
#include <cstdint>
constexpr int kConsumerWarps = 4, kThreads = 32 * (kConsumerWarps + 1), kRounds = 64;
__device__ __forceinline__ void bar_sync(int id, int n) { asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void bar_sync_u(int id, int n) { asm volatile("barrier.sync %0, %1;" :: "r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void bar_arrive(int id, int n) { asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ uint32_t sa(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_init(uint64_t* b, int c) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(sa(b)), "r"(c) : "memory"); }
__device__ __forceinline__ void mb_arrive(uint64_t* b) { asm volatile("{ .reg .b64 s; mbarrier.arrive.shared::cta.b64 s, [%0]; }" :: "r"(sa(b)) : "memory"); }
__device__ __forceinline__ void mb_wait(uint64_t* b, int phase) {
  asm volatile("{ .reg .pred p; W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1; @!p bra W; }" :: "r"(sa(b)), "r"(phase) : "memory");
}
__device__ __forceinline__ void mb_expect_tx(uint64_t* b, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(sa(b)), "r"(bytes) : "memory");
}
// global -> shared, 16 bytes, by the async proxy, completing on mbarrier b
__device__ __forceinline__ void bulk_copy16(void* dst, const void* src, uint64_t* b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 16, [%2];"
               :: "r"(sa(dst)), "l"(src), "r"(sa(b)) : "memory");
}
__global__ void probe(int form, int* out, int* mbox) {
  __shared__ int slot[2];
  __shared__ alignas(16) int slot16[2][4];
  __shared__ uint64_t full[2], empty[2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) for (int s = 0; s < 2; ++s) { mb_init(&full[s], 1); mb_init(&empty[s], kConsumerWarps); }
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  __syncthreads();
  int sum = 0;
  if (form == 2 && warp != 0) bar_arrive(2, kThreads);  // the slot starts free
  for (int r = 0; r < kRounds; ++r) {
    const int s = r & 1, ph = (r >> 1) & 1;
    if (form == 4) {
      if (warp == 0 && lane == 0) slot[s] = r + 1;
      bar_sync(1, kThreads);
      if (warp != 0) sum += slot[s];
      continue;
    }
    if (warp == 0) {
      if (form == 2) bar_sync(2, kThreads);            // the slot is free (consumers arrived on "empty")
      if (form >= 3 && lane == 0 && r >= 2) mb_wait(&empty[s], ph ^ 1);
      if (form == 5 && lane == 0) {
        volatile int* m = mbox + 4 * s;
        m[0] = r + 1;
        asm volatile("fence.proxy.async.global;" ::: "memory");  // the store, visible to the bulk copy
        mb_expect_tx(&full[s], 16);
        bulk_copy16(slot16[s], mbox + 4 * s, &full[s]);
      }
      if (form == 6 && lane == 0) *(volatile int*)(mbox + 4 * s) = r + 1;
      if (form < 5 && lane == 0) slot[s] = r + 1;
      __syncwarp();
      if (form == 0) bar_sync(1, kThreads);
      if (form == 1) bar_sync_u(1, kThreads);
      if (form == 2) bar_arrive(1, kThreads);
      if ((form == 3 || form == 6) && lane == 0) mb_arrive(&full[s]);
    } else {
      __syncwarp();
      if (form == 0) bar_sync(1, kThreads);
      if (form == 1) bar_sync_u(1, kThreads);
      if (form == 2) bar_sync(1, kThreads);
      if (form >= 3) mb_wait(&full[s], ph);
      sum += form == 5 ? slot16[s][0] : form == 6 ? *(volatile int*)(mbox + 4 * s) : slot[s];
      __syncwarp();
      if (form == 2 && r + 1 < kRounds) bar_arrive(2, kThreads);
      if (form >= 3 && lane == 0) mb_arrive(&empty[s]);
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
