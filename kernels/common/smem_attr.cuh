// Opting a kernel into more than 48 KB of dynamic shared memory (cudaFuncSetAttribute), once per
// kernel and device rather than on every launch: the attribute is per function and per device.
#pragma once
#include <atomic>
#include <cstdint>
#include <cuda_runtime.h>

namespace flashcore {
namespace common {

// `done` is one bitmask per kernel instantiation (a function-local static at the call site).
template <typename Kernel>
cudaError_t ensure_dynamic_smem(Kernel kernel, int bytes, std::atomic<uint64_t>& done) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const uint64_t bit = dev < 64 ? (uint64_t{1} << dev) : 0;
  if (bit && (done.load(std::memory_order_relaxed) & bit)) return cudaSuccess;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess && bit) done.fetch_or(bit, std::memory_order_relaxed);
  return e;
}

}  // namespace common
}  // namespace flashcore
