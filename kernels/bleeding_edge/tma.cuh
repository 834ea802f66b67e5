// TMA (cp.async.bulk.tensor) on 4-D tensor maps over (D, S, H, B) for [B, S, H, D] tensors with any
// batch/seq/head strides (D contiguous).
// Host: make_tmap_bshd builds the map with cuTensorMapEncodeTiled, reached through
// cudaGetDriverEntryPointByVersion (no -lcuda). Box = {64 elements (128 bytes), rows, 1, 1} with
// 128-byte swizzle, which is exactly the K-major SW128 layout the wgmma descriptors describe; a
// head_dim of 128 is two boxes ("chunks") placed rows*128 bytes apart in shared memory.
// Out-of-bounds rows are zero-filled on loads (and still count towards complete_tx) and dropped on
// stores, which handles ragged sequence ends.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <cstdint>
#include "flashcore/api.h"

namespace flashcore { namespace be {

// ---- device ----
__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" :: "l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

__device__ __forceinline__ void tma_load_4d(const CUtensorMap* map, uint32_t smem_dst, uint32_t bar,
                                            int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n"
      :: "r"(smem_dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar),
         "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// L2 eviction priority of a TMA load (a cache policy made by createpolicy): K and V are read again by every
// query tile of their head, so they are kept (evict_last); Q is read once (evict_first).
__device__ __forceinline__ uint64_t l2_policy_evict_last() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
  return p;
}

__device__ __forceinline__ void tma_load_4d_hint(const CUtensorMap* map, uint32_t smem_dst, uint32_t bar,
                                                 int c0, int c1, int c2, int c3, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%3, %4, %5, %6}], [%2], %7;\n"
      :: "r"(smem_dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar),
         "r"(c0), "r"(c1), "r"(c2), "r"(c3), "l"(policy)
      : "memory");
}

__device__ __forceinline__ void tma_store_4d(const CUtensorMap* map, uint32_t smem_src,
                                             int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n"
      :: "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

__device__ __forceinline__ void bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

// Waits until the committed bulk stores have finished reading shared memory.
__device__ __forceinline__ void bulk_wait_group_read0() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

// Generic-proxy shared-memory writes -> visible to the async proxy (TMA store, wgmma).
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ---- host ----
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      ptr = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
  }();
  return fn;
}

// What TMA cannot describe in one stride (in elements) of a dimension of the given extent, or nullptr.
// cuTensorMapEncodeTiled wants every stride a multiple of 16 bytes (8 16-bit elements) below 2^40
// bytes. A dimension of extent 1 is only ever at coordinate 0, so its stride does not matter (it is
// replaced in make_tmap_bshd). A stride of 0 on a longer dimension (a broadcast view) is refused rather
// than left to the driver.
inline const char* tma_stride_problem(int64_t stride, int extent) {
  if (extent == 1) return nullptr;
  if (stride < 0) return "is negative";
  if (stride == 0) return "is 0 (a broadcast view)";
  if (stride % 8 != 0) return "is not a multiple of 8 elements (TMA needs 16-byte strides)";
  if (stride >= (int64_t{1} << 39)) return "is 2^39 elements (2^40 bytes) or more (the TMA limit)";
  return nullptr;
}

// Tensor map over a [B, S, H, D] tensor of 16-bit elements with element strides st (D contiguous),
// dims ordered (D, S, H, B), box {64, box_rows, 1, 1}, 128-byte swizzle, zero fill out of bounds.
// The strides may be in any order (a transposed [B, H, S, D] view has seq stride D and head stride
// S*D); only the D elements of a row are read, so a row may sit inside a wider buffer. The caller
// has checked every stride with tma_stride_problem; false if the driver still refuses the map.
inline bool make_tmap_bshd(CUtensorMap* map, const void* ptr, bool bf16, int B, int S, int H, int D,
                           const Strides& st, int box_rows) {
  auto enc = tensor_map_encoder();
  if (!enc) return false;
  const cuuint64_t es = 2;
  // extent-1 dimensions: any valid stride will do (coordinate 0 only)
  const auto pick = [D](int64_t stride, int extent) { return (cuuint64_t)(extent == 1 ? D : stride); };
  cuuint64_t dims[4] = {(cuuint64_t)D, (cuuint64_t)S, (cuuint64_t)H, (cuuint64_t)B};
  cuuint64_t strides[3] = {pick(st.seq, S) * es, pick(st.head, H) * es, pick(st.batch, B) * es};
  cuuint32_t box[4] = {64, (cuuint32_t)box_rows, 1, 1};
  cuuint32_t estr[4] = {1, 1, 1, 1};
  CUresult r = enc(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                   const_cast<void*>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                   CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

}}  // namespace flashcore::be
